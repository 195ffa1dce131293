//! Reboots during a test, with the real atex-exec binary: an emulated one
//! on a loopback sshd (sshd stopped, the boot marker wiped, sshd started
//! again), a reconnect to the same boot (which must not count as a
//! reboot), and a real container restart on podman.
//!
//! The test tells the harness when to "reboot" by writing the path of its
//! boot marker (`ATEX_BOOT_MARKER`) to a file in a directory the harness
//! watches; only that marker is wiped, so tests running in parallel keep
//! theirs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_shared::records::TestResult;
use atex_tests::pipe::{Collector, spawn_exec, stop, wait_bounded};
use atex_tests::sshd::SshdPool;
use atex_tests::{Fixture, parse_records};

/// Every process here is bounded by this.
const DEADLINE: Duration = Duration::from_secs(120);

/// A test that asks for a reboot on its first run and passes on the next:
/// it sends `disconnect`, tells the harness, and probes with `noop` until
/// the controller's end is closed (or the machine goes down).
const REBOOTING_TEST: &str = r#"echo "run reboot=$TMT_REBOOT_COUNT restart=$TMT_TEST_RESTART_COUNT"
if [ "$TMT_REBOOT_COUNT" = 0 ]; then
    printf 'disconnect\n' >&"$ATEX_TEST_CONTROL"
    echo "$ATEX_BOOT_MARKER" > "$SHARED/ready.tmp"
    mv "$SHARED/ready.tmp" "$SHARED/ready"
    # Over ssh the closed channel shows as EPIPE (a failed subshell);
    # podman exec does not pass it on, so the probing is bounded.
    for _ in $(seq 50); do
        (printf 'noop\n' >&"$ATEX_TEST_CONTROL") 2>/dev/null || break
        sleep 0.1
    done
    # Output after the controller closed the channel may be lost, as on a
    # real reboot.
    sleep 2
    exit 0
fi
echo "back after the reboot"
"#;

/// A test that sends `disconnect` and ends without any reboot.
const NOT_REBOOTING_TEST: &str = r#"echo "run reboot=$TMT_REBOOT_COUNT"
printf 'disconnect\n' >&"$ATEX_TEST_CONTROL"
while (printf 'noop\n' >&"$ATEX_TEST_CONTROL") 2>/dev/null; do sleep 0.1; done
exit 0
"#;

/// A one-test tree (`t/main.fmf` running `bash SCRIPT_NAME`), a work
/// directory with the shared directory in it, and the test's record.
struct Setup {
    _tree: Fixture,
    work: Fixture,
    shared: PathBuf,
    record: String,
}

impl Setup {
    fn new(fmf: &str, script_name: &str, script: &str) -> Result<Setup> {
        let tree =
            Fixture::fmf_tree(&[("t/main.fmf", fmf), (&format!("t/{script_name}"), script)])?;
        let work = Fixture::new()?;
        let shared = shared_dir(&work)?;
        let record = test_record(&tree.path(), &shared)?;
        Ok(Setup {
            _tree: tree,
            work,
            shared,
            record,
        })
    }

    /// The setup of [`REBOOTING_TEST`].
    fn rebooting() -> Result<Setup> {
        Setup::new(
            "test: bash reboot.sh\nduration: 1m\n",
            "reboot.sh",
            REBOOTING_TEST,
        )
    }

    /// atex-exec running the test on `machine`.
    fn exec(&self, machine: &str) -> Result<Exec> {
        Exec::start(machine, &self.work.path().join("artifacts"), &self.record)
    }
}

/// A directory every login can write (the test runs as the harness's
/// unprivileged user).
fn shared_dir(work: &Fixture) -> Result<PathBuf> {
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared)?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777))?;
    // The fixture's own directory is private to its owner.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(shared)
}

/// The Test record of the tree's only test, with `SHARED` in its environment.
fn test_record(tree: &Path, shared: &Path) -> Result<String> {
    let out = atex_tests::run(
        "atex-discover",
        ["tests", "--root", tree.to_str().context("path")?],
        None,
    )?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mut test: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    test["environment"]["SHARED"] = shared.to_str().context("path")?.into();
    Ok(test.to_string())
}

/// atex-exec running one test; stdout and stderr collected by threads.
struct Exec {
    child: Child,
    collector: Option<Collector>,
    deadline: Instant,
}

impl Exec {
    fn start(machine: &str, artifacts: &Path, record: &str) -> Result<Exec> {
        let mut child = spawn_exec(
            &[
                "--machine".as_ref(),
                machine.as_ref(),
                "--artifacts".as_ref(),
                artifacts.as_os_str(),
            ],
            Stdio::piped(),
        )?;
        let mut stdin = child.stdin.take().context("stdin")?;
        writeln!(stdin, "{record}")?;
        drop(stdin);
        let collector = Some(Collector::start(&mut child)?);
        Ok(Exec {
            child,
            collector,
            deadline: Instant::now() + DEADLINE,
        })
    }

    /// Wait for `path` to appear while atex-exec runs.
    fn wait_for(&mut self, path: &Path) -> Result<()> {
        while !path.exists() {
            if Instant::now() > self.deadline || self.child.try_wait()?.is_some() {
                stop(&mut self.child);
                bail!("the test did not ask for a reboot");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Wait for atex-exec to end: its exit code, results and stderr.
    fn finish(mut self) -> Result<(Option<i32>, Vec<TestResult>, String)> {
        let code = wait_bounded(&mut self.child, self.deadline, "atex-exec")?;
        let (stdout, stderr) = self
            .collector
            .take()
            .map(Collector::finish)
            .unwrap_or_default();
        let results = parse_records(&stdout, "atex-exec stdout")?;
        Ok((code, results, stderr))
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            stop(&mut self.child);
        }
    }
}

/// The one result's output.txt.
fn output_of(result: &TestResult) -> Result<String> {
    Ok(std::fs::read_to_string(
        result.artifacts.join("files/output.txt"),
    )?)
}

/// Let `exec` of [`REBOOTING_TEST`] finish and check that it passed in
/// one result, having run once before and once after the reboot.
fn check_rebooted(exec: Exec) -> Result<Vec<TestResult>> {
    let (code, results, stderr) = exec.finish()?;
    assert_eq!(code, Some(0), "stderr: {stderr}; {results:?}");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("pass"), "{results:?}");
    let output = output_of(&results[0])?;
    assert!(
        output.starts_with("run reboot=0 restart=0\n"),
        "output: {output}"
    );
    assert!(
        output.ends_with("run reboot=1 restart=1\nback after the reboot\n"),
        "output: {output}"
    );
    Ok(results)
}

#[test]
fn emulated_reboot_on_loopback_sshd() -> Result<()> {
    let mut pool = SshdPool::start(1)?;
    let machine = serde_json::to_string(&pool.machines()[0])?;
    let setup = Setup::rebooting()?;
    let mut exec = setup.exec(&machine)?;
    exec.wait_for(&setup.shared.join("ready"))?;
    let marker = std::fs::read_to_string(setup.shared.join("ready"))?;
    let marker = marker.trim();
    assert!(
        marker.starts_with("/dev/shm/atex-boot-") || marker.starts_with("/run/atex-boot-"),
        "{marker}"
    );
    assert!(Path::new(marker).exists(), "{marker}");
    // The "reboot": sshd goes away, the tmpfs marker is wiped, sshd returns.
    let server = &mut pool.servers_mut()[0];
    server.stop();
    std::fs::remove_file(marker)?;
    std::thread::sleep(Duration::from_millis(300));
    server.start_again()?;

    let results = check_rebooted(exec)?;
    assert_eq!(results[0].exit_code, Some(0));
    Ok(())
}

#[test]
fn reconnect_to_the_same_boot_is_not_a_reboot() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let machine = serde_json::to_string(&pool.machines()[0])?;
    let setup = Setup::new(
        "test: bash noreboot.sh\nduration: 4s\n",
        "noreboot.sh",
        NOT_REBOOTING_TEST,
    )?;
    let started = Instant::now();
    let exec = setup.exec(&machine)?;
    let (code, results, stderr) = exec.finish()?;
    assert_eq!(code, Some(3), "stderr: {stderr}; {results:?}");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("infra"));
    assert_eq!(
        results[0].note.as_deref(),
        Some("RebootError(machine did not reboot)")
    );
    // The duration bounds the wait; the test never ran a second time.
    assert!(started.elapsed() >= Duration::from_secs(4));
    assert_eq!(output_of(&results[0])?, "run reboot=0\n");
    Ok(())
}

/// A podman container running the host's userland as a copy-on-write
/// overlay, with its own tmpfs `/run` and the harness's shared directory;
/// removed on drop.
struct Container {
    name: String,
    conf: atex_tests::podman::PodmanConf,
}

impl Container {
    fn start(shared: &Path) -> Result<Container> {
        let conf = atex_tests::podman::PodmanConf::new()?;
        let name = atex_tests::podman::unique_name("atex-reboot")?;
        let volume = format!("{0}:{0}", shared.display());
        let container = Container { name, conf };
        let out = container
            .podman()
            .args([
                "run",
                "-d",
                "--name",
                &container.name,
                "--tmpfs",
                "/run:rw,notmpcopyup",
            ])
            .args(["-v", &volume, "--rootfs", "/:O", "sleep", "infinity"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "podman run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(container)
    }

    fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", self.conf.path());
        cmd
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self
            .podman()
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

#[test]
fn podman_container_restart_is_a_reboot() -> Result<()> {
    let setup = Setup::rebooting()?;
    let container = Container::start(&setup.shared)?;
    let machine = serde_json::json!({
        "id": "podman",
        "provisioner": "podman",
        "connection": {"kind": "podman", "container": container.name},
    })
    .to_string();
    let mut exec = setup.exec(&machine)?;
    exec.wait_for(&setup.shared.join("ready"))?;
    let marker = std::fs::read_to_string(setup.shared.join("ready"))?;
    // A root login: the marker is in the container's own /run.
    assert!(marker.starts_with("/run/atex-boot-"), "{marker}");
    let out = container
        .podman()
        .args(["restart", "-t", "0", &container.name])
        .output()?;
    assert!(
        out.status.success(),
        "podman restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    check_rebooted(exec)?;
    Ok(())
}

//! `atex-provision libvirt` on real virtual machines (issue 14): the guest
//! of `make vm-image` booted by this machine's libvirtd under tcg (nested
//! kvm does not boot here), reached over ssh on a port forwarded to
//! 127.0.0.1. Each test keeps its overlays in a directory of its own and
//! checks that nothing is left: no domain, no overlay, no qemu.
//!
//! These tests run in the `vm` test group, one at a time
//! (.config/nextest.toml). They need libvirtd running and the guest image:
//! scripts/install-deps.sh installs and starts libvirt and builds the
//! image; a missing part fails the test with that hint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use atex_shared::records::{Machine, TestResult};
use atex_tests::sshd::SshdPool;
use atex_tests::{Fixture, bin_path, project_root, run};
use serde_json::json;

/// How long reserving VMs may take (a tcg boot is 20 to 40 s here, slower
/// when two boot at once).
const BOOT_WAIT: Duration = Duration::from_secs(300);

/// libvirtd answers, or the test fails saying how to start it.
fn require_libvirt() -> Result<()> {
    let hint = "libvirtd must run: scripts/install-deps.sh installs and starts it \
                (without systemd: `virtlogd -d && libvirtd -d`)";
    let out = Command::new("virsh")
        .args(["-c", "qemu:///system", "version"])
        .output()
        .with_context(|| format!("virsh is missing; {hint}"))?;
    ensure!(
        out.status.success(),
        "{hint}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// The options that boot the guest image (the last line of
/// scripts/vm-image.sh, which builds it when missing).
fn vm_options() -> Result<Vec<String>> {
    let out = Command::new("bash")
        .arg(project_root().join("scripts/vm-image.sh"))
        .stderr(Stdio::inherit())
        .output()
        .context("run scripts/vm-image.sh")?;
    ensure!(
        out.status.success(),
        "scripts/vm-image.sh failed (it needs mmdebstrap and root: scripts/install-deps.sh)"
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("scripts/vm-image.sh printed nothing")?;
    Ok(line.split_whitespace().map(str::to_owned).collect())
}

/// The names of libvirt's domains.
fn domains() -> Result<Vec<String>> {
    let out = Command::new("virsh")
        .args(["-q", "-c", "qemu:///system", "list", "--all", "--name"])
        .output()?;
    ensure!(out.status.success(), "virsh list failed");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect())
}

/// Check that nothing of `machines` is left: their domains, the files in
/// `overlays`, qemu processes using them.
fn assert_nothing_left(machines: &[Machine], overlays: &Path) -> Result<()> {
    let left = domains()?;
    for machine in machines {
        let name = machine.id.trim_start_matches("libvirt/");
        ensure!(
            !left.iter().any(|d| d == name),
            "domain {name} left: {left:?}"
        );
    }
    let files: Vec<_> = std::fs::read_dir(overlays)?
        .flatten()
        .map(|e| e.path())
        .collect();
    ensure!(files.is_empty(), "files left: {files:?}");
    let dir = overlays.display().to_string();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        ensure!(
            !(cmdline.contains("qemu-system") && cmdline.contains(&dir)),
            "a qemu of this test is left: {cmdline}"
        );
    }
    Ok(())
}

/// A running `atex-provision libvirt`: its records as they come.
struct Provision {
    child: Child,
    stdin: Option<ChildStdin>,
    records: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

impl Provision {
    /// Start `atex-provision libvirt OPTIONS...`.
    fn start(options: &[String]) -> Result<Provision> {
        let mut child = Command::new(bin_path("atex-provision")?)
            .arg("libvirt")
            .args(options)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("start atex-provision")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, records) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        Ok(Provision {
            child,
            stdin,
            records,
            stderr,
        })
    }

    /// The next `n` Machine records.
    fn machines(&self, n: usize) -> Result<Vec<Machine>> {
        (0..n)
            .map(|_| {
                let line = self
                    .records
                    .recv_timeout(BOOT_WAIT)
                    .context("no Machine record came")?;
                serde_json::from_str(&line).with_context(|| line.clone())
            })
            .collect()
    }

    /// Send `signal`.
    fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id())?).context("pid")?;
        rustix::process::kill_process(pid, signal).context("signal")
    }

    /// Close stdin (the machines are released) and wait: exit code, stderr.
    fn finish(mut self) -> Result<(Option<i32>, String)> {
        drop(self.stdin.take());
        self.wait()
    }

    /// Wait for the exit, stdin left open (after a signal): exit code,
    /// stderr.
    fn wait(mut self) -> Result<(Option<i32>, String)> {
        let code = atex_tests::pipe::wait_bounded(
            &mut self.child,
            std::time::Instant::now() + Duration::from_secs(120),
            "atex-provision",
        )?;
        drop(self.stdin.take());
        let stderr = self.stderr.join().unwrap_or_default();
        Ok((code, stderr))
    }
}

/// `atex-exec` on `machine` with one test running `script`; its results
/// and the test's output.
fn exec(machine: &Machine, script: &str, work: &Path) -> Result<(Vec<TestResult>, String)> {
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree)?;
    let artifacts = work.join(format!("artifacts-{}", machine.id.replace('/', "_")));
    let test = json!({"name": "/t", "root": tree, "path": "", "test": script, "duration": 900});
    let record = serde_json::to_string(machine)?;
    let out = run(
        "atex-exec",
        [
            "--machine".as_ref(),
            record.as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(format!("{test}\n").as_bytes()),
    )?;
    let results: Vec<TestResult> = out.records()?;
    let output = std::fs::read_to_string(artifacts.join("t/files/output.txt")).unwrap_or_default();
    ensure!(out.code == Some(0), "atex-exec: {}\n{output}", out.stderr);
    Ok((results, output))
}

/// The options of a test's VMs: the image's, `--overlay-dir` its own.
fn options(overlays: &Path, more: &[&str]) -> Result<Vec<String>> {
    let mut options = vm_options()?;
    options.extend(["--overlay-dir".to_owned(), overlays.display().to_string()]);
    options.extend(more.iter().map(|s| (*s).to_owned()));
    Ok(options)
}

/// Two VMs reserved at once, a test run on each over ssh, released when
/// stdin closes: exit 0, and no domain, overlay or qemu is left.
#[test]
fn two_vms_run_a_test_each_and_nothing_is_left() -> Result<()> {
    require_libvirt()?;
    let work = Fixture::new()?;
    let overlays = work.path().join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let provision = Provision::start(&options(&overlays, &["--count", "2", "--max", "2"])?)?;
    let machines = provision.machines(2)?;
    let running = domains()?;
    for machine in &machines {
        let name = machine.id.trim_start_matches("libvirt/");
        ensure!(
            running.iter().any(|d| d == name),
            "{name} not in {running:?}"
        );
        let (results, output) = exec(
            machine,
            "cat /proc/sys/kernel/random/boot_id; uname -r",
            &work.path(),
        )?;
        ensure!(
            results.len() == 1 && results[0].status.as_deref() == Some("pass"),
            "{results:?}"
        );
        ensure!(output.lines().count() >= 2, "{output}");
    }
    let (code, stderr) = provision.finish()?;
    ensure!(code == Some(0), "exit {code:?}: {stderr}");
    ensure!(stderr.contains("released 2 machines"), "{stderr}");
    assert_nothing_left(&machines, &overlays)
}

/// SIGTERM while a VM is being reserved (its overlay made, its domain
/// booting), then while one is held: exit 143 each time, nothing left.
#[test]
fn sigterm_while_reserving_and_while_holding_leaves_nothing() -> Result<()> {
    require_libvirt()?;
    let work = Fixture::new()?;
    let overlays = work.path().join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let provision = Provision::start(&options(&overlays, &["--accel", "tcg"])?)?;
    let until = std::time::Instant::now() + Duration::from_secs(60);
    // The domain exists (its console log is made when it starts).
    while !std::fs::read_dir(&overlays)?
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".console"))
    {
        ensure!(std::time::Instant::now() < until, "no domain started");
        std::thread::sleep(Duration::from_millis(50));
    }
    provision.signal(rustix::process::Signal::TERM)?;
    let (code, stderr) = provision.wait()?;
    ensure!(code == Some(143), "exit {code:?}: {stderr}");
    assert_nothing_left(&[], &overlays)?;
    ensure!(
        !domains()?.iter().any(|d| d.starts_with("atex-")),
        "a domain is left: {:?}",
        domains()?
    );

    let provision = Provision::start(&options(&overlays, &["--accel", "tcg"])?)?;
    let machines = provision.machines(1)?;
    provision.signal(rustix::process::Signal::TERM)?;
    let (code, stderr) = provision.wait()?;
    ensure!(code == Some(143), "exit {code:?}: {stderr}");
    assert_nothing_left(&machines, &overlays)
}

/// A test that reboots its VM with `tmt-reboot` runs again after the
/// reboot (a new boot id: atex-exec confirms it) and finishes `pass`.
#[test]
fn a_test_reboots_its_vm_and_passes() -> Result<()> {
    require_libvirt()?;
    let work = Fixture::new()?;
    let overlays = work.path().join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let provision = Provision::start(&options(&overlays, &["--accel", "tcg"])?)?;
    let machines = provision.machines(1)?;
    let script = r#"echo "boot $TMT_REBOOT_COUNT $(cat /proc/sys/kernel/random/boot_id)"
if [ "$TMT_REBOOT_COUNT" = 0 ]; then tmt-reboot; fi"#;
    let (results, output) = exec(&machines[0], script, &work.path())?;
    ensure!(
        results.len() == 1 && results[0].status.as_deref() == Some("pass"),
        "{results:?}\n{output}"
    );
    let boots: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("boot "))
        .collect();
    ensure!(boots.len() == 2, "two runs of the test: {output}");
    let ids: Vec<&str> = boots.iter().filter_map(|b| b.split(' ').nth(1)).collect();
    ensure!(
        boots[0].starts_with("0 ") && boots[1].starts_with("1 ") && ids[0] != ids[1],
        "a new boot id after the reboot: {output}"
    );
    let (code, stderr) = provision.finish()?;
    ensure!(code == Some(0), "exit {code:?}: {stderr}");
    assert_nothing_left(&machines, &overlays)
}

/// A hypervisor reached through `qemu+ssh://` (a loopback sshd logging in
/// root, to this same machine's libvirtd): the overlay is made over that
/// ssh, the guest is reached through it (a ProxyCommand), release
/// destroys the domain and deletes the overlay there.
#[test]
fn a_vm_on_a_hypervisor_reached_with_qemu_ssh() -> Result<()> {
    require_libvirt()?;
    let pool = SshdPool::start_with_login(1, "root")?;
    let port = match &pool.machines()[0].connection {
        atex_shared::records::Connection::Ssh { port, .. } => *port,
        _ => bail!("not ssh"),
    };
    let work = Fixture::new()?;
    let overlays = work.path().join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let uri = format!(
        "qemu+ssh://root@127.0.0.1:{port}/system?keyfile={}&no_verify=1",
        pool.client_key().display()
    );
    let provision = Provision::start(&options(&overlays, &["--accel", "tcg", "--uri", &uri])?)?;
    let machines = provision.machines(1)?;
    let connection = serde_json::to_string(&machines[0].connection)?;
    ensure!(connection.contains("ProxyCommand"), "{connection}");
    let (results, _) = exec(&machines[0], "hostname", &work.path())?;
    ensure!(results[0].status.as_deref() == Some("pass"), "{results:?}");
    let (code, stderr) = provision.finish()?;
    ensure!(code == Some(0), "exit {code:?}: {stderr}");
    assert_nothing_left(&machines, &overlays)
}

/// atex-orchestrate with a libvirt SPEC runs a small plan on two VMs; a
/// destructive test that fails first is rerun on a fresh VM.
#[test]
fn orchestrate_runs_a_plan_on_vms() -> Result<()> {
    require_libvirt()?;
    let work = Fixture::new()?;
    let overlays = work.path().join("overlays");
    std::fs::create_dir_all(&overlays)?;
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree)?;
    let mut input = String::new();
    for (name, script, tags) in [
        ("/a", "true", json!([])),
        (
            "/wipe",
            r#"[ "$ATEX_ATTEMPT" != 0 ]"#,
            json!(["destructive"]),
        ),
        ("/b", "uname -r", json!([])),
    ] {
        let record = json!({"name": name, "root": tree, "path": "", "test": script, "tag": tags, "duration": 600});
        input.push_str(&format!("{record}\n"));
    }
    let spec = options(&overlays, &["--accel", "tcg", "--max", "2"])?
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let spec = format!("libvirt {spec}");
    let artifacts = work.path().join("artifacts");
    let out = run(
        "atex-orchestrate",
        [
            "--provision".as_ref(),
            spec.as_ref(),
            "--reruns".as_ref(),
            "1".as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(input.as_bytes()),
    )?;
    ensure!(out.code == Some(0), "{}", out.stderr);
    let results: Vec<TestResult> = out.records()?;
    let attempt = |n: u32| {
        results
            .iter()
            .find(|r| r.test == "/wipe" && r.attempt == n)
            .with_context(|| format!("/wipe attempt {n}: {results:?}"))
    };
    let (first, second) = (attempt(0)?, attempt(1)?);
    ensure!(
        first.status.as_deref() == Some("fail") && second.status.as_deref() == Some("pass"),
        "{results:?}"
    );
    ensure!(first.machine != second.machine, "a fresh VM: {results:?}");
    ensure!(
        out.stderr.contains("3 passed, 0 failed, 0 infra, 1 flaky"),
        "{}",
        out.stderr
    );
    assert_nothing_left(&[], &overlays)
}

//! Integration tests of the atex-provision library against real parts:
//! the local provisioner, the ssh provisioner on loopback sshd servers,
//! and the podman provisioner on real rootful podman (`--rootfs /:O`, the
//! host's userland as an overlay), driven through `atex_provision::Pool`
//! and the provisioners directly. Every podman test labels its containers
//! with a label of its own and checks that none is left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use atex_provision::podman::{self, Podman};
use atex_provision::ssh::{self, Ssh};
use atex_provision::{CancellationToken, Pool, PoolOptions, ProvisionError, Provisioner};
use atex_shared::connection::Connection;
use atex_shared::records::{self, Machine};
use atex_tests::podman::Labeled;
use atex_tests::sshd::{SshdPool, TEST_USER};

/// Every test body is bounded by this.
const DEADLINE: Duration = Duration::from_secs(180);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Run `body` on a fresh runtime, failing after [`DEADLINE`].
fn run<F: std::future::Future<Output = Result<()>>>(body: F) -> Result<()> {
    runtime().block_on(async {
        tokio::time::timeout(DEADLINE, body)
            .await
            .context("the test took too long")?
    })
}

fn options() -> PoolOptions {
    PoolOptions {
        retries: 0,
        ..PoolOptions::default()
    }
}

/// Connect through the machine's record, run `script`, disconnect; its
/// stdout, which must be a success.
async fn run_on(machine: &Machine, script: &str) -> Result<String> {
    let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(30));
    conn.connect()
        .await
        .with_context(|| format!("connect to {}", machine.id))?;
    let out = conn.run_script(script.as_bytes()).await;
    conn.disconnect().await?;
    let out = out?;
    ensure!(
        out.success(),
        "{script:?} on {} failed ({:?}): {}",
        machine.id,
        out.code,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Pids of ssh client processes whose command line mentions `needle`
/// (a port or a control directory): ssh masters left behind show here.
fn ssh_processes(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            if comm.trim() != "ssh" {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == needle.as_bytes())
                .then_some(pid)
        })
        .collect()
}

/// Wait (up to 5 s) until no ssh process mentions `needle`.
async fn no_ssh_left(needle: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = ssh_processes(needle);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("ssh processes for {needle} are left: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn local_pool_hands_out_the_controller() -> Result<()> {
    run(async {
        let local = atex_provision::local::Local::new(&atex_provision::local::Args {
            platform: Some("here".into()),
        });
        let mut pool = Pool::new(Arc::new(local), options());
        pool.provision(2);
        let mut ids = Vec::new();
        while let Some(machine) = pool.next().await {
            let machine = machine?;
            assert_eq!(machine.platform, "here");
            assert!(matches!(machine.connection, records::Connection::Local));
            assert_eq!(run_on(&machine, "echo local\n").await?, "local\n");
            ids.push(machine.id);
        }
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        pool.release(&ids[0]).await?;
        assert!(pool.stop().await.is_empty());
        Ok(())
    })
}

fn ssh_args(sshd: &SshdPool) -> ssh::Args {
    ssh::Args {
        hosts: sshd
            .servers()
            .iter()
            .map(|port| format!("{TEST_USER}@127.0.0.1:{port}"))
            .collect(),
        identity_file: Some(sshd.client_key().to_path_buf()),
        platform: Some("loopback".into()),
        check_timeout: Some(20),
        ..ssh::Args::default()
    }
}

/// The ports of the pool's servers.
trait Ports {
    fn servers(&self) -> Vec<u16>;
}

impl Ports for SshdPool {
    fn servers(&self) -> Vec<u16> {
        self.machines()
            .iter()
            .filter_map(|m| match &m.connection {
                records::Connection::Ssh { port, .. } => Some(*port),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn ssh_hosts_are_checked_handed_out_and_come_back() -> Result<()> {
    let sshd = SshdPool::start(2)?;
    let ports = sshd.servers();
    run(async {
        let provisioner = Ssh::new(&ssh_args(&sshd))?;
        assert_eq!(provisioner.host_count(), 2);
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(2);
        let started = Instant::now();
        let mut machines = Vec::new();
        while let Some(machine) = pool.next().await {
            machines.push(machine?);
        }
        let reserve_time = started.elapsed();
        let mut got: Vec<u16> = machines
            .iter()
            .filter_map(|m| match &m.connection {
                records::Connection::Ssh { port, .. } => Some(*port),
                _ => None,
            })
            .collect();
        got.sort_unstable();
        let mut want = ports.clone();
        want.sort_unstable();
        assert_eq!(got, want, "each host handed out once");
        // The reachability checks left no master behind.
        for port in &ports {
            no_ssh_left(&port.to_string()).await?;
        }
        for machine in &machines {
            assert_eq!(machine.provisioner, "ssh");
            assert_eq!(machine.platform, "loopback");
            assert_eq!(run_on(machine, "id -un\n").await?.trim(), TEST_USER);
        }
        // The cap is the number of hosts: a third machine is not started.
        pool.provision(1);
        let third = tokio::time::timeout(Duration::from_millis(300), pool.next()).await;
        assert!(matches!(third, Ok(None)), "{third:?}");
        assert_eq!(pool.pending(), 1);
        // A released host is handed out again.
        pool.release(&machines[0].id).await?;
        let again = pool.next().await.context("a machine")??;
        assert_eq!(again.id, machines[0].id);
        assert!(pool.stop().await.is_empty());
        ssh::release_record(&again).await?;
        for port in &ports {
            no_ssh_left(&port.to_string()).await?;
        }
        eprintln!("reserved 2 loopback hosts in {reserve_time:?}");
        Ok(())
    })
}

#[test]
fn ssh_unreachable_host_fails_with_its_name() -> Result<()> {
    let sshd = SshdPool::start(1)?;
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = ssh::Args {
        hosts: vec![format!("{TEST_USER}@127.0.0.1:{closed}")],
        ..ssh_args(&sshd)
    };
    run(async {
        let provisioner = Ssh::new(&args)?;
        let started = Instant::now();
        let err = provisioner
            .reserve(CancellationToken::new())
            .await
            .expect_err("nothing listens there");
        let message = err.to_string();
        assert!(
            message.contains(&format!("127.0.0.1:{closed}")),
            "{message}"
        );
        assert!(message.to_lowercase().contains("refused"), "{message}");
        assert!(started.elapsed() < Duration::from_secs(15));
        // The failed host is free again, and a good one still works after it.
        let both = ssh::Args {
            hosts: vec![
                format!("{TEST_USER}@127.0.0.1:{closed}"),
                format!("{TEST_USER}@127.0.0.1:{}", sshd.servers()[0]),
            ],
            ..args.clone()
        };
        let provisioner = Ssh::new(&both)?;
        assert!(provisioner.reserve(CancellationToken::new()).await.is_err());
        let machine = provisioner.reserve(CancellationToken::new()).await?;
        assert_eq!(run_on(&machine, "echo ok\n").await?, "ok\n");
        eprintln!(
            "unreachable host reported in {:?}: {message}",
            started.elapsed()
        );
        Ok(())
    })
}

#[test]
fn ssh_hosts_file_lines_and_bad_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("hosts");
    let record = serde_json::json!({
        "id": "lab/1", "provisioner": "x",
        "connection": {"kind": "ssh", "host": "10.0.0.1", "user": "u"},
        "platform": "rhel-9@x86_64"
    });
    std::fs::write(
        &good,
        format!("# the lab\n\nroot@h1\n  u@h2:2222  \n{record}\n"),
    )?;
    let args = ssh::Args {
        hosts: vec!["a@h0".into()],
        hosts_file: Some(good.clone()),
        ..ssh::Args::default()
    };
    let provisioner = Ssh::new(&args)?;
    assert_eq!(provisioner.host_count(), 4);
    let ids: Vec<&str> = provisioner.hosts().iter().map(|m| m.id.as_str()).collect();
    assert_eq!(
        ids,
        ["ssh/a@h0:22", "ssh/root@h1:22", "ssh/u@h2:2222", "lab/1"]
    );
    assert_eq!(provisioner.hosts()[3].platform, "rhel-9@x86_64");

    let bad = dir.path().join("bad");
    std::fs::write(&bad, "root@h1\n# ok\nroot@h2:port\n")?;
    let err = Ssh::new(&ssh::Args {
        hosts_file: Some(bad.clone()),
        ..ssh::Args::default()
    })
    .expect_err("line 3 is bad");
    assert!(matches!(err, ProvisionError::Invalid(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("{}:3: ", bad.display())),
        "{message}"
    );
    let missing = Ssh::new(&ssh::Args {
        hosts_file: Some(dir.path().join("nope")),
        ..ssh::Args::default()
    })
    .expect_err("no such file");
    assert!(missing.to_string().contains("nope"), "{missing}");
    Ok(())
}

/// Podman for one test: its label and configuration
/// ([`atex_tests::podman::Labeled`]).
struct PodmanTest(Labeled);

impl std::ops::Deref for PodmanTest {
    type Target = Labeled;
    fn deref(&self) -> &Labeled {
        &self.0
    }
}

impl PodmanTest {
    fn new() -> Result<PodmanTest> {
        Ok(PodmanTest(Labeled::new("provision")?))
    }

    /// Arguments for containers of the host's userland with this test's
    /// label.
    fn args(&self, max: usize) -> podman::Args {
        podman::Args {
            rootfs: Some("/:O".into()),
            max,
            run_options: vec![format!("--label={}", self.label())],
            containers_conf: Some(self.conf()),
            ..podman::Args::default()
        }
    }
}

fn container_of(machine: &Machine) -> Result<String> {
    machine.release["container"]
        .as_str()
        .map(str::to_owned)
        .context("no container in the release record")
}

#[test]
fn podman_cap_commands_and_release() -> Result<()> {
    let test = PodmanTest::new()?;
    run(async {
        let provisioner = Podman::new(&test.args(1))?;
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(2);
        let started = Instant::now();
        let first = pool.next().await.context("a machine")??;
        let first_time = started.elapsed();
        assert_eq!(first.provisioner, "podman");
        let name = container_of(&first)?;
        assert!(name.starts_with("atex-"), "{name}");
        assert_eq!(
            first.connection,
            records::Connection::Podman {
                container: name.clone()
            }
        );
        // --max 1: the second container is not started while the first is
        // held (the pool answers None: nothing it may start now).
        let second = tokio::time::timeout(Duration::from_millis(500), pool.next()).await;
        assert!(matches!(second, Ok(None)), "{second:?}");
        assert_eq!(pool.pending(), 1);
        assert_eq!(test.containers()?, std::slice::from_ref(&name));
        assert_eq!(
            test.inspect(&name, "{{index .Config.Labels \"atex.provisioner\"}}")?,
            "podman"
        );
        // PID 1 is podman's init, which runs the command and reaps
        // orphans (`sleep infinity` as PID 1 reaped nothing).
        let out = run_on(
            &first,
            "echo \"in $(cat /proc/1/cmdline | tr '\\0' ' ')\"\n",
        )
        .await?;
        assert_eq!(out, "in /run/podman-init -- sleep infinity \n");

        pool.release(&first.id).await?;
        assert!(test.containers()?.iter().all(|n| *n != name), "removed");
        let second = pool.next().await.context("a machine")??;
        assert_ne!(second.id, first.id);
        assert_eq!(run_on(&second, "echo second\n").await?, "second\n");
        assert_eq!(test.containers()?.len(), 1);
        // Releasing again (here from the record) is not an error.
        podman::release_record(&first).await?;
        assert!(pool.stop().await.is_empty());
        assert_eq!(test.containers()?, Vec::<String>::new());
        eprintln!("first podman machine ready in {first_time:?}");
        Ok(())
    })
}

#[test]
fn podman_stop_with_reservations_in_flight_leaves_no_container() -> Result<()> {
    atex_tests::procs::adopt_orphans()?;
    let own = atex_tests::procs::own_processes()?;
    let test = PodmanTest::new()?;
    run(async {
        let provisioner = Podman::new(&test.args(4))?;
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(4);
        // Start the reservations, then stop once some container exists
        // (the runs are serialized, so the others are waiting or running).
        let _ = tokio::time::timeout(Duration::from_millis(1), pool.next()).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while test.containers()?.is_empty() {
            ensure!(Instant::now() < deadline, "no container was started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.pending(), 4);
        let started = Instant::now();
        let errors = pool.stop().await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(test.containers()?, Vec::<String>::new());
        assert_eq!(pool.held().count(), 0);
        eprintln!("stop with 4 in flight took {:?}", started.elapsed());
        Ok(())
    })?;
    atex_tests::procs::assert_no_leftover_processes(&own)
}

/// The ssh target of a machine, for the leftover-process check.
fn ssh_port(machine: &Machine) -> Result<u16> {
    match &machine.connection {
        records::Connection::Ssh {
            port, host, user, ..
        } => {
            assert_eq!((host.as_str(), user.as_str()), ("127.0.0.1", "root"));
            Ok(*port)
        }
        other => bail!("not an ssh connection: {other:?}"),
    }
}

#[test]
fn podman_ssh_variant_is_reached_over_ssh_and_leaves_no_master() -> Result<()> {
    let test = PodmanTest::new()?;
    run(async {
        let provisioner = Podman::new(&podman::Args {
            ssh: true,
            ..test.args(2)
        })?;
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(1);
        let started = Instant::now();
        let machine = pool.next().await.context("a machine")??;
        let ready = started.elapsed();
        let port = ssh_port(&machine)?;
        let key = match &machine.connection {
            records::Connection::Ssh { identity_file, .. } => identity_file.clone(),
            _ => None,
        }
        .context("a key")?;
        assert!(key.is_file());
        no_ssh_left(&port.to_string()).await?;

        let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(30));
        conn.connect().await?;
        // The check really sees a live master.
        assert!(!ssh_processes(&port.to_string()).is_empty());
        let out = conn
            .run_script(
                b"id -u; cat /proc/1/comm\n\
                  for p in $(cat /proc/1/task/1/children); do\n\
                  tr '\\0' ' ' </proc/$p/cmdline; echo; done\n",
            )
            .await?;
        let out = String::from_utf8_lossy(&out.stdout);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("0"), "{out}");
        assert_eq!(lines.next(), Some("podman-init"), "{out}");
        // The wrapper started sshd, then became the command, under the
        // init (with sshd, which daemonized).
        assert!(lines.any(|l| l == "sleep infinity "), "{out}");
        conn.disconnect().await?;
        no_ssh_left(&port.to_string()).await?;

        // Release from the record (as another process would), then stop,
        // which releases it again.
        podman::release_record(&machine).await?;
        assert!(!key.exists(), "the key directory is removed");
        assert!(pool.stop().await.is_empty());
        assert_eq!(test.containers()?, Vec::<String>::new());
        no_ssh_left(&port.to_string()).await?;
        eprintln!("ssh podman machine ready in {ready:?}");
        Ok(())
    })
}

/// Wait until a fresh reservation-like check passes: `script` succeeds on
/// the machine.
async fn wait_until_runs(machine: &Machine, script: &str, within: Duration) -> Result<String> {
    let deadline = Instant::now() + within;
    loop {
        match run_on(machine, script).await {
            Ok(out) => return Ok(out),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Reboot the machine from inside and wait for it to come back: podman
/// counts a restart, /run is fresh, systemd runs again.
async fn reboot_and_check(test: &PodmanTest, machine: &Machine) -> Result<Duration> {
    let name = container_of(machine)?;
    run_on(machine, "touch /run/atex-before-reboot\n").await?;
    assert_eq!(test.inspect(&name, "{{.RestartCount}}")?, "0");
    let started = Instant::now();
    // The command may lose its connection as the machine goes down.
    let _ = run_on(machine, "systemctl reboot\n").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while test.inspect(&name, "{{.RestartCount}}")? == "0" {
        ensure!(Instant::now() < deadline, "the container did not restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let state = wait_until_runs(
        machine,
        // is-system-running exits 1 for degraded, which is fine here.
        "test ! -e /run/atex-before-reboot || exit 7\n\
         state=$(systemctl is-system-running)\n\
         echo \"$state\"\n\
         case $state in running|degraded) exit 0;; esac\n\
         exit 1\n",
        Duration::from_secs(60),
    )
    .await?;
    assert!(
        matches!(state.trim(), "running" | "degraded"),
        "systemd is {state}"
    );
    Ok(started.elapsed())
}

#[test]
fn podman_systemd_variant_survives_a_reboot() -> Result<()> {
    let test = PodmanTest::new()?;
    run(async {
        let provisioner = Podman::new(&podman::Args {
            systemd: true,
            ..test.args(1)
        })?;
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(1);
        let started = Instant::now();
        let machine = pool.next().await.context("a machine")??;
        let ready = started.elapsed();
        assert_eq!(run_on(&machine, "cat /proc/1/comm\n").await?, "systemd\n");
        let back = reboot_and_check(&test, &machine).await?;
        assert!(pool.stop().await.is_empty());
        assert_eq!(test.containers()?, Vec::<String>::new());
        eprintln!("systemd container ready in {ready:?}, back from a reboot in {back:?}");
        Ok(())
    })
}

#[test]
fn podman_systemd_ssh_variant_is_reached_over_ssh_after_a_reboot() -> Result<()> {
    let test = PodmanTest::new()?;
    run(async {
        let provisioner = Podman::new(&podman::Args {
            systemd: true,
            ssh: true,
            ..test.args(1)
        })?;
        let mut pool = Pool::new(Arc::new(provisioner), options());
        pool.provision(1);
        let started = Instant::now();
        let machine = pool.next().await.context("a machine")??;
        let ready = started.elapsed();
        let port = ssh_port(&machine)?;
        assert_eq!(run_on(&machine, "cat /proc/1/comm\n").await?, "systemd\n");
        let back = reboot_and_check(&test, &machine).await?;
        assert!(pool.stop().await.is_empty());
        assert_eq!(test.containers()?, Vec::<String>::new());
        no_ssh_left(&port.to_string()).await?;
        eprintln!("systemd+ssh container ready in {ready:?}, back from a reboot in {back:?}");
        Ok(())
    })
}

#[test]
fn podman_failed_reservations_say_why_and_leave_nothing() -> Result<()> {
    let test = PodmanTest::new()?;
    run(async {
        let no_image = Podman::new(&podman::Args {
            image: Some("localhost/atex-no-such-image".into()),
            rootfs: None,
            ..test.args(1)
        })?;
        // Bad input, found before anything starts and again by the run
        // itself (an image removed meanwhile): never retried.
        let checked = no_image.check().await.expect_err("no such image");
        let err = no_image
            .reserve(CancellationToken::new())
            .await
            .expect_err("no such image");
        for err in [checked, err] {
            assert!(matches!(err, ProvisionError::Invalid(_)), "{err:?}");
            assert!(!err.is_retryable(), "{err:?}");
            let message = err.to_string();
            assert!(message.contains("image not known"), "{message}");
            assert!(message.contains("atex-no-such-image"), "{message}");
            assert!(message.contains("podman import"), "a hint: {message}");
        }
        let no_rootfs = Podman::new(&podman::Args {
            rootfs: Some("/nonexistent-atex-rootfs:O".into()),
            ..test.args(1)
        })?;
        let err = no_rootfs.check().await.expect_err("no such rootfs");
        assert!(matches!(err, ProvisionError::Invalid(_)), "{err:?}");
        Podman::new(&test.args(1))?.check().await?;

        // A container whose command ends at once is never ready.
        let exits = Podman::new(&podman::Args {
            command: vec!["sh".into(), "-c".into(), "echo bye from the command".into()],
            ..test.args(1)
        })?;
        let err = exits
            .reserve(CancellationToken::new())
            .await
            .expect_err("the container is gone");
        let message = err.to_string();
        assert!(message.contains("is not ready"), "{message}");
        // The state is read right after the failed check: under load the
        // container may still be on its way out, its log not yet written.
        assert!(message.contains("(the container is "), "{message}");
        if message.contains("(the container is exited)") {
            assert!(message.contains("bye from the command"), "{message}");
        }
        assert_eq!(test.containers()?, Vec::<String>::new());
        eprintln!("{message}");
        Ok(())
    })
}

#[test]
fn podman_stop_during_podman_run_leaves_no_container() -> Result<()> {
    // A `podman run` killed half-way leaves conmon and `runc init` behind
    // for a container podman no longer lists: look for processes too.
    atex_tests::procs::adopt_orphans()?;
    let own = atex_tests::procs::own_processes()?;
    let test = PodmanTest::new()?;
    run(async {
        for delay_ms in [0, 30, 60, 90, 120, 150] {
            let provisioner = Podman::new(&test.args(2))?;
            let mut pool = Pool::new(Arc::new(provisioner), options());
            pool.provision(2);
            let _ = tokio::time::timeout(Duration::from_millis(1), pool.next()).await;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let errors = pool.stop().await;
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                test.containers()?,
                Vec::<String>::new(),
                "after {delay_ms} ms"
            );
        }
        Ok(())
    })?;
    atex_tests::procs::assert_no_leftover_processes(&own)
}

//! Integration tests of `atex_shared::connection` against real loopback
//! sshd machines (started by `atex_tests::sshd`) and the local machine.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use atex_shared::connection::{Connection, ConnectionError, Input};
use atex_shared::records;
use atex_tests::sshd::SshdPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn ssh_connection(pool: &SshdPool) -> Result<Connection> {
    let machine = pool.machines().remove(0);
    let mut conn = Connection::new(&machine.connection).with_timeout(Duration::from_secs(20));
    conn.connect().await.context("connect")?;
    Ok(conn)
}

fn local() -> Connection {
    Connection::new(&records::Connection::Local)
}

/// spawn: stdout read, stderr in the file, the exit code.
async fn spawn_basics(conn: &Connection, dir: &Path) -> Result<()> {
    let err_path = dir.join("stderr.txt");
    let err = std::fs::File::create(&err_path)?;
    let mut process = conn
        .spawn(
            &[
                "sh",
                "-c",
                "echo \"out $1\"; echo err >&2; exit 5",
                "x",
                "it's a test",
            ],
            Input::Null,
            err,
        )
        .await?;
    let mut out = String::new();
    process
        .take_stdout()
        .context("stdout")?
        .read_to_string(&mut out)
        .await?;
    assert_eq!(process.wait().await?, Some(5));
    assert_eq!(out, "out it's a test\n");
    assert_eq!(std::fs::read_to_string(&err_path)?, "err\n");

    let err = std::fs::File::create(dir.join("stderr2.txt"))?;
    let mut process = conn.spawn(&["cat"], Input::Piped, err).await?;
    let mut stdin = process.take_stdin().context("stdin")?;
    stdin.write_all(b"\x00\xffbinary\n").await?;
    drop(stdin);
    let mut out = Vec::new();
    process
        .take_stdout()
        .context("stdout")?
        .read_to_end(&mut out)
        .await?;
    assert_eq!(out, b"\x00\xffbinary\n");
    assert_eq!(process.wait().await?, Some(0));
    Ok(())
}

/// A small tree with a `.git` that must not travel.
fn tree(dir: &Path) -> Result<std::path::PathBuf> {
    let root = dir.join("tree");
    std::fs::create_dir_all(root.join("tests/a"))?;
    std::fs::create_dir_all(root.join(".git/objects"))?;
    std::fs::create_dir_all(root.join("tests/.git"))?;
    std::fs::write(root.join(".fmf-version"), "1\n")?;
    std::fs::write(root.join("tests/a/run me.sh"), "echo hi\n")?;
    std::fs::write(root.join(".git/HEAD"), "ref\n")?;
    std::fs::write(root.join("tests/.git/x"), "x\n")?;
    Ok(root)
}

async fn check_upload(conn: &Connection, dir: &Path, remote: &str, tar: bool) -> Result<()> {
    let root = tree(dir)?;
    if tar {
        conn.upload_tar(&root, remote).await?;
    } else {
        conn.upload(&root, remote).await?;
    }
    let script = format!("cd '{remote}' && find . | LC_ALL=C sort && cat 'tests/a/run me.sh'\n");
    let out = conn.run_script(script.as_bytes()).await?;
    assert!(out.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout)?,
        ".\n./.fmf-version\n./tests\n./tests/a\n./tests/a/run me.sh\necho hi\n"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_spawn_reads_stdout_and_writes_stderr_to_a_file() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let mut conn = ssh_connection(&pool).await?;
    let dir = tempfile::tempdir()?;
    spawn_basics(&conn, dir.path()).await?;
    conn.check_alive().await?;
    conn.disconnect().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_runs_a_script_on_stdin_as_the_test_user() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let out = conn
        .run_script(b"A='secret value'\nid -un\necho \"$A\" >&2\nexit 3\n")
        .await?;
    assert_eq!(out.code, Some(3));
    assert_eq!(out.stdout, b"atex-test\n");
    assert_eq!(out.stderr, b"secret value\n");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_upload_copies_a_tree_without_git() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let dir = tempfile::tempdir()?;
    let home = conn.run_script(b"printf %s \"$HOME\"").await?;
    let remote = format!(
        "{}/upload-{}",
        String::from_utf8(home.stdout)?,
        pool.machines()[0].id.replace('/', "-")
    );
    check_upload(&conn, dir.path(), &remote, false).await?;
    let dir = tempfile::tempdir()?;
    check_upload(&conn, dir.path(), &format!("{remote}-tar"), true).await?;
    let cleanup = format!("rm -rf '{remote}' '{remote}-tar'\n");
    assert!(conn.run_script(cleanup.as_bytes()).await?.success());
    Ok(())
}

/// A directory for a machine's `PATH` with the tools an upload and a login
/// use, as links, but only those of `tools`' choice of tar and rsync.
fn bin_dir(dir: &Path, with: &[&str]) -> Result<std::path::PathBuf> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for tool in ["sh", "bash", "mkdir", "rm", "cat", "find", "sort", "printf"]
        .iter()
        .chain(with)
    {
        let path = which(tool).with_context(|| format!("{tool} is not on PATH"))?;
        std::os::unix::fs::symlink(path, bin.join(tool))?;
    }
    // The test user's sshd reads it; the temp dir is 0700.
    for d in [dir, bin.as_path()] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    Ok(bin)
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The tree goes by tar first (decision 42); a machine without tar gets it
/// by rsync, and one with neither is told so by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_upload_without_tar_on_the_machine_goes_by_rsync() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = bin_dir(dir.path(), &["rsync"])?;
    let pool = SshdPool::start_with_env(1, &[("PATH", &bin.to_string_lossy())])?;
    let conn = ssh_connection(&pool).await?;
    let out = conn.run_script(b"command -v tar || echo none").await?;
    assert_eq!(out.stdout, b"none\n", "the machine must lack tar");
    let remote = format!(
        "/tmp/atex-upload-rsync-{}",
        pool.machines()[0].id.replace('/', "-")
    );
    let trees = tempfile::tempdir()?;
    check_upload(&conn, trees.path(), &remote, false).await?;
    assert!(
        conn.run_script(format!("rm -rf '{remote}'").as_bytes())
            .await?
            .success()
    );

    let dir = tempfile::tempdir()?;
    let bin = bin_dir(dir.path(), &[])?;
    let pool = SshdPool::start_with_env(1, &[("PATH", &bin.to_string_lossy())])?;
    let conn = ssh_connection(&pool).await?;
    let trees = tempfile::tempdir()?;
    let root = tree(trees.path())?;
    let err = conn
        .upload(&root, "/tmp/atex-upload-none")
        .await
        .expect_err("a machine with neither tar nor rsync");
    assert!(
        matches!(err, ConnectionError::NoRemoteTool { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("the machine has no tar or rsync"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_kill_ends_a_running_command() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let dir = tempfile::tempdir()?;
    let err = std::fs::File::create(dir.path().join("err"))?;
    let mut process = conn
        .spawn(&["sh", "-c", "echo started; sleep 600"], Input::Null, err)
        .await?;
    let mut stdout = process.take_stdout().context("stdout")?;
    let mut line = [0u8; 8];
    stdout.read_exact(&mut line).await?;
    assert_eq!(&line, b"started\n");
    let started = Instant::now();
    process.kill().await?;
    let code = tokio::time::timeout(Duration::from_secs(10), process.wait()).await??;
    assert_eq!(code, None, "killed by a signal");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The connection still works afterwards.
    assert!(conn.run_script(b"true").await?.success());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_many_commands_share_one_master() -> Result<()> {
    let pool = SshdPool::start(2)?;
    let mut conns = Vec::new();
    for machine in pool.machines() {
        let mut conn = Connection::new(&machine.connection);
        conn.connect().await?;
        conns.push(conn);
    }
    let started = Instant::now();
    for conn in &conns {
        for i in 0..20 {
            let out = conn.run_script(format!("echo {i}").as_bytes()).await?;
            assert_eq!(out.stdout, format!("{i}\n").as_bytes());
        }
    }
    eprintln!("40 commands over 2 masters in {:?}", started.elapsed());
    Ok(())
}

/// The pid of the connection's ssh master, as `ssh -O check` says.
fn master_pid(conn: &Connection) -> Result<u32> {
    let socket = conn.control_socket().context("control socket")?;
    let check = std::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "check", "atex"])
        .output()?;
    let text = String::from_utf8_lossy(&check.stderr).into_owned();
    text.split("pid=")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no master pid in {text:?}"))
}

/// Wait up to 10 s for process `pid` to be gone (a master told to exit
/// takes a moment); whether it went.
async fn gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        // A zombie has exited: what is left is only its entry.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let running = state
            .as_deref()
            .and_then(|stat| stat.rsplit_once(')'))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z");
        if !running {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The master is stopped on disconnect, and also when a connection is
/// dropped without one; while a command still runs over it, disconnect
/// leaves it to that command, and dropping the command stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_master_is_stopped_on_disconnect_and_on_drop() -> Result<()> {
    let pool = SshdPool::start(1)?;

    let mut conn = ssh_connection(&pool).await?;
    let pid = master_pid(&conn)?;
    conn.disconnect().await?;
    assert!(gone(pid).await, "master {pid} runs after disconnect");

    let conn = ssh_connection(&pool).await?;
    let pid = master_pid(&conn)?;
    let socket = conn.control_socket().context("socket")?.to_path_buf();
    drop(conn);
    assert!(gone(pid).await, "master {pid} runs after the drop");
    assert!(!socket.exists(), "{} is left", socket.display());

    let mut conn = ssh_connection(&pool).await?;
    let pid = master_pid(&conn)?;
    let err = std::fs::File::create("/dev/null")?;
    let mut process = conn
        .spawn(
            &["sh", "-c", "echo started; read line; echo \"got $line\""],
            Input::Piped,
            err,
        )
        .await?;
    conn.disconnect().await?;
    let mut stdin = process.take_stdin().context("stdin")?;
    stdin.write_all(b"more\n").await?;
    drop(stdin);
    let mut out = String::new();
    process
        .take_stdout()
        .context("stdout")?
        .read_to_string(&mut out)
        .await?;
    assert_eq!(out, "started\ngot more\n");
    assert_eq!(process.wait().await?, Some(0));
    drop(process);
    assert!(gone(pid).await, "master {pid} runs after its last command");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_lost_master_is_a_typed_error_within_a_bound() -> Result<()> {
    let mut pool = SshdPool::start(1)?;
    let conn = ssh_connection(&pool).await?;
    let pid = master_pid(&conn)?;
    pool.servers_mut()[0].stop();
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    let started = Instant::now();
    let err = conn
        .run_script(b"true")
        .await
        .expect_err("the master is gone");
    assert!(matches!(err, ConnectionError::Lost { .. }), "{err}");
    let err = conn.check_alive().await.expect_err("the master is gone");
    assert!(matches!(err, ConnectionError::Lost { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_connect_to_a_closed_port_fails_with_connect_error() -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut conn = Connection::new(&records::Connection::Ssh {
        host: "127.0.0.1".into(),
        port,
        user: "nobody".into(),
        identity_file: None,
        options: Default::default(),
    })
    .with_timeout(Duration::from_secs(10));
    let err = conn.connect().await.expect_err("nothing listens");
    assert!(matches!(err, ConnectionError::Connect { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn local_spawn_kill_and_upload() -> Result<()> {
    let conn = local();
    let dir = tempfile::tempdir()?;
    spawn_basics(&conn, dir.path()).await?;

    let err = std::fs::File::create(dir.path().join("err"))?;
    let mut process = conn
        .spawn(&["sh", "-c", "sleep 600 & sleep 600"], Input::Null, err)
        .await?;
    process.kill().await?;
    let code = tokio::time::timeout(Duration::from_secs(10), process.wait()).await??;
    assert_eq!(code, None);

    let remote = dir.path().join("copy");
    check_upload(
        &conn,
        dir.path(),
        remote.to_str().context("utf-8 path")?,
        false,
    )
    .await?;
    Ok(())
}

/// A podman container running the host's own userland as a copy-on-write
/// overlay (no image registry is reachable here); removed on drop.
struct Container {
    name: String,
    _conf: atex_tests::podman::PodmanConf,
}

impl Container {
    fn start() -> Result<Container> {
        let conf = atex_tests::podman::PodmanConf::new()?;
        let conf_file = conf.path();
        let name = atex_tests::podman::unique_name("atex-conn")?;
        let out = std::process::Command::new("podman")
            .env("CONTAINERS_CONF", &conf_file)
            .args([
                "run", "-d", "--name", &name, "--rootfs", "/:O", "sleep", "infinity",
            ])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "podman run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Container { name, _conf: conf })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_spawn_script_kill_and_upload() -> Result<()> {
    let container = Container::start()?;
    let mut conn = Connection::new(&records::Connection::Podman {
        container: container.name.clone(),
    })
    .with_timeout(Duration::from_secs(20));
    conn.connect().await?;
    conn.check_alive().await?;
    let dir = tempfile::tempdir()?;
    spawn_basics(&conn, dir.path()).await?;

    let out = conn.run_script(b"echo in-container; exit 4\n").await?;
    assert_eq!(
        (out.code, out.stdout),
        (Some(4), b"in-container\n".to_vec())
    );

    let err = std::fs::File::create(dir.path().join("err"))?;
    let mut process = conn
        .spawn(&["sh", "-c", "echo started; sleep 600"], Input::Null, err)
        .await?;
    let mut stdout = process.take_stdout().context("stdout")?;
    let mut line = [0u8; 8];
    stdout.read_exact(&mut line).await?;
    process.kill().await?;
    let code = tokio::time::timeout(Duration::from_secs(10), process.wait()).await??;
    assert_ne!(code, Some(0), "killed");

    check_upload(&conn, dir.path(), "/tmp/atex-upload", false).await?;

    std::process::Command::new("podman")
        .args(["rm", "-f", "-t", "0", &container.name])
        .output()?;
    let err = conn.check_alive().await.expect_err("container removed");
    assert!(matches!(err, ConnectionError::Lost { .. }), "{err}");
    conn.disconnect().await?;
    Ok(())
}

/// An ssh Machine record with `host`, `user`, `identity_file` and one
/// option.
fn ssh_record(
    host: &str,
    port: u16,
    user: &str,
    identity_file: Option<&Path>,
    option: Option<(&str, &str)>,
) -> records::Connection {
    records::Connection::Ssh {
        host: host.into(),
        port,
        user: user.into(),
        identity_file: identity_file.map(Path::to_path_buf),
        options: option
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

/// A host or user starting with `-` would be an option to ssh (a
/// `-oProxyCommand=...` host runs a command here): it is an "invalid host"
/// error and ssh never runs (issue 10 item 16).
#[tokio::test]
async fn ssh_host_or_user_starting_with_a_dash_is_refused_before_ssh_runs() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("ran");
    let host = format!("-oProxyCommand=touch {}", marker.display());
    let mut conn = Connection::new(&ssh_record(&host, 22, "root", None, None))
        .with_timeout(Duration::from_secs(10));
    let err = conn.connect().await.expect_err("an option, not a host");
    let text = err.to_string();
    assert!(text.contains("invalid host"), "{text}");
    assert!(!marker.exists(), "ssh ran the ProxyCommand");
    let mut conn = Connection::new(&ssh_record("127.0.0.1", 22, "-oProxyCommand=x", None, None))
        .with_timeout(Duration::from_secs(10));
    let text = conn.connect().await.expect_err("an option").to_string();
    assert!(text.contains("invalid user"), "{text}");
    Ok(())
}

/// A missing identity file is named with the OS reason, not left to ssh's
/// "Permission denied (publickey)" (issue 10 item 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_missing_identity_file_is_named() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let port = match pool.machines().remove(0).connection {
        records::Connection::Ssh { port, .. } => port,
        other => anyhow::bail!("not ssh: {other:?}"),
    };
    let missing = pool.client_key().with_extension("missing");
    let record = ssh_record(
        "127.0.0.1",
        port,
        atex_tests::sshd::TEST_USER,
        Some(&missing),
        None,
    );
    let mut conn = Connection::new(&record).with_timeout(Duration::from_secs(20));
    let text = conn.connect().await.expect_err("no key").to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(!text.contains("Permission denied"), "{text}");
    Ok(())
}

/// A local I/O failure carries the OS reason (issue 10 item 16: notes said
/// `OSError(start x)` without why).
#[tokio::test]
async fn io_errors_carry_the_os_reason() -> Result<()> {
    let err = std::fs::File::create("/dev/null")?;
    let failed = local()
        .spawn(&["/nonexistent/atex-program"], Input::Null, err)
        .await
        .expect_err("no such program");
    let text = failed.to_string();
    assert!(text.contains("/nonexistent/atex-program"), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
    Ok(())
}

/// atex-exec refuses a Machine record that ssh would misread with exit 2,
/// naming what is wrong, before anything starts (issue 10 item 16).
#[test]
fn exec_refuses_machine_records_ssh_would_misread_with_exit_2() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("ran");
    let tree = atex_tests::Fixture::fmf_tree(&[("t/main.fmf", "test: true\n")])?;
    let test = serde_json::json!({
        "name": "/t", "root": tree.path(), "path": "t", "test": "true",
    })
    .to_string();
    let proxy = format!("-oProxyCommand=touch {}", marker.display());
    let missing = dir.path().join("no-such-key");
    let cases = [
        (ssh_record(&proxy, 22, "root", None, None), "invalid host"),
        (
            ssh_record("127.0.0.1", 22, "-oProxyCommand=x", None, None),
            "invalid user",
        ),
        (
            ssh_record("127.0.0.1", 22, "root", None, Some(("User", "a\nb"))),
            "line break",
        ),
        (
            ssh_record("127.0.0.1", 22, "root", Some(&missing), None),
            "No such file or directory",
        ),
    ];
    for (i, (connection, expected)) in cases.into_iter().enumerate() {
        let machine = records::Machine {
            context: Default::default(),
            id: "m".into(),
            provisioner: "ssh".into(),
            connection,
            platform: "p".into(),
            release: serde_json::Value::Null,
        };
        let artifacts = dir.path().join(format!("artifacts-{i}"));
        let out = atex_tests::run(
            "atex-exec",
            [
                "--machine",
                &serde_json::to_string(&machine)?,
                "--artifacts",
                artifacts.to_str().context("path")?,
            ],
            Some(format!("{test}\n").as_bytes()),
        )?;
        assert_eq!(out.code, Some(2), "{expected}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout_text());
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", out.stderr);
        assert!(
            lines[0].starts_with("atex-exec: error: --machine:1:1: ")
                && lines[0].contains(expected),
            "{expected}: {}",
            out.stderr
        );
        assert!(!artifacts.exists(), "nothing is started");
    }
    assert!(!marker.exists(), "ssh ran the ProxyCommand");
    Ok(())
}

/// The messages of a failed connect keep ssh's words: a closed port says
/// "Connection refused", a key the machine does not accept says
/// "Permission denied (publickey...)", both as [`ConnectionError::Connect`]
/// naming the machine, and no master is left running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_connect_failures_keep_ssh_words() -> Result<()> {
    let pool = SshdPool::start(1)?;
    let port = match pool.machines().remove(0).connection {
        records::Connection::Ssh { port, .. } => port,
        other => anyhow::bail!("not ssh: {other:?}"),
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let record = ssh_record("127.0.0.1", closed, "nobody", None, None);
    let mut conn = Connection::new(&record).with_timeout(Duration::from_secs(10));
    let err = conn.connect().await.expect_err("nothing listens");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, ConnectionError::Connect { .. }), "{text}");
    assert_eq!(
        text,
        format!(
            "connect to nobody@127.0.0.1:{closed}: failed to connect to the remote host: \
             connect to host 127.0.0.1 port {closed}: Connection refused"
        )
    );

    // A key of our own that the machine does not know.
    let dir = tempfile::tempdir()?;
    let key = dir.path().join("stranger");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()?;
    anyhow::ensure!(made.status.success(), "ssh-keygen failed");
    let record = ssh_record(
        "127.0.0.1",
        port,
        atex_tests::sshd::TEST_USER,
        Some(&key),
        None,
    );
    let mut conn = Connection::new(&record).with_timeout(Duration::from_secs(20));
    let err = conn.connect().await.expect_err("the key is refused");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, ConnectionError::Connect { .. }), "{text}");
    assert!(
        text.starts_with(&format!(
            "connect to {}@127.0.0.1:{port}: failed to connect to the remote host: ",
            atex_tests::sshd::TEST_USER
        )),
        "{text}"
    );
    assert!(text.contains("Permission denied (publickey"), "{text}");
    Ok(())
}

/// The secret atex-exec is given in these tests' runs; no process a
/// connection starts may carry it (issue 10 item 14).
const TOKEN: &str = "marker-secret";

/// An atex-exec run with `TESTING_FARM_API_TOKEN` set in its environment
/// only (the test's own stays as it is); killed on drop if still running.
struct TokenExec {
    child: std::process::Child,
}

impl TokenExec {
    /// Start atex-exec on `machine` (a Machine record as JSON) with the
    /// Test `records` on stdin.
    fn start(machine: &str, artifacts: &Path, records: &[serde_json::Value]) -> Result<TokenExec> {
        use std::io::Write as _;
        let mut child = std::process::Command::new(atex_tests::bin_path("atex-exec")?)
            .args(["--quiet", "--machine", machine, "--artifacts"])
            .arg(artifacts)
            .env("TESTING_FARM_API_TOKEN", TOKEN)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("start atex-exec")?;
        let mut stdin = child.stdin.take().context("stdin")?;
        for record in records {
            writeln!(stdin, "{record}")?;
        }
        drop(stdin);
        Ok(TokenExec { child })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the end, at most 60 s: the exit code, the Result
    /// records, stderr.
    fn finish(mut self) -> Result<(Option<i32>, Vec<records::TestResult>, String)> {
        let until = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait()?.is_none() {
            anyhow::ensure!(Instant::now() < until, "atex-exec did not end within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut stdout = Vec::new();
        let mut stderr = String::new();
        use std::io::Read as _;
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_end(&mut stdout)?;
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr)?;
        }
        let code = self.child.wait()?.code();
        let results = atex_tests::parse_records(&stdout, "atex-exec stdout")?;
        Ok((code, results, stderr))
    }
}

impl Drop for TokenExec {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The environment of process `pid`, one `NAME=value` per entry.
fn environ(pid: u32) -> Result<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/environ"))
        .with_context(|| format!("read /proc/{pid}/environ"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|entry| !entry.is_empty())
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect())
}

/// Whether an environment carries the token, by name or by value.
fn carries_token(env: &[String]) -> bool {
    env.iter()
        .any(|e| e.starts_with("TESTING_FARM_API_TOKEN=") || e.contains(TOKEN))
}

/// The ssh master atex-exec starts for a machine does not inherit
/// `TESTING_FARM_API_TOKEN` from atex-exec, a test still runs over it,
/// and it is gone when atex-exec ends (issue 10 item 14). The master
/// daemonizes (`ssh -f`): this test process is made the subreaper, so the
/// master becomes its child, and is found by that parentage (every new
/// child of this process that is not atex-exec), by pid.
#[test]
fn ssh_master_does_not_inherit_the_token() -> Result<()> {
    atex_tests::procs::adopt_orphans()?;
    let pool = SshdPool::start(1)?;
    let own = atex_tests::procs::own_processes()?;
    let work = atex_tests::Fixture::new()?;
    // The test's login (an unprivileged user) writes its markers here.
    let shared = work.path().join("shared");
    std::fs::create_dir(&shared)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777))?;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    // The test holds the connection open until this process looked at
    // the master (60 s at most), then passes.
    let script = "touch \"$SHARED/started\"; i=0; \
                  while [ ! -e \"$SHARED/go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
                  [ -e \"$SHARED/go\" ]";
    let tree = atex_tests::Fixture::fmf_tree(&[("t/main.fmf", "summary: waits\n")])?;
    let test = serde_json::json!({
        "name": "/t", "root": tree.path(), "path": "t", "test": script,
        "environment": {"SHARED": shared},
    });
    let machine = serde_json::to_string(&pool.machines().remove(0))?;
    let exec = TokenExec::start(&machine, &work.path().join("artifacts"), &[test])?;
    // spawn() returns once the child is in execve, when its environment
    // may not be in place yet (it reads as empty): wait for it.
    let until = Instant::now() + Duration::from_secs(10);
    let mut env = environ(exec.pid())?;
    while env.is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
        env = environ(exec.pid())?;
    }
    assert!(
        carries_token(&env),
        "atex-exec itself must have the token for this test to mean anything"
    );

    let until = Instant::now() + Duration::from_secs(60);
    while !shared.join("started").exists() {
        anyhow::ensure!(Instant::now() < until, "the test did not start within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let own_pid = |line: &String| line.split(' ').next().and_then(|p| p.parse::<u32>().ok());
    let own_pids: Vec<u32> = own.iter().filter_map(own_pid).collect();
    let mut masters = Vec::new();
    for line in atex_tests::procs::leftover_processes()? {
        let Some(pid) = own_pid(&line) else { continue };
        if pid == exec.pid() || own_pids.contains(&pid) {
            continue;
        }
        let env = environ(pid)?;
        masters.push((line, carries_token(&env)));
    }
    std::fs::write(shared.join("go"), "")?;
    eprintln!("new children of the test while the test ran: {masters:#?}");
    assert!(
        masters.iter().any(|(line, _)| line.contains(" -M ")),
        "no ssh master among the new children: {masters:#?}"
    );
    let leaking: Vec<_> = masters.iter().filter(|(_, leaks)| *leaks).collect();
    assert!(
        leaking.is_empty(),
        "the token was inherited by {leaking:#?}"
    );

    let (code, results, stderr) = exec.finish()?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("pass"), "{results:?}");
    atex_tests::procs::assert_no_leftover_processes(&own)
}

/// A test on a local connection gets an environment without
/// `TESTING_FARM_API_TOKEN`, though atex-exec has it (issue 10 item 14).
#[test]
fn local_tests_do_not_inherit_the_token() -> Result<()> {
    let work = atex_tests::Fixture::new()?;
    let tree = atex_tests::Fixture::fmf_tree(&[("t/main.fmf", "summary: env\n")])?;
    let test = serde_json::json!({
        "name": "/t", "root": tree.path(), "path": "t", "test": "env",
    });
    let machine = r#"{"id":"local","provisioner":"local","connection":{"kind":"local"}}"#;
    let exec = TokenExec::start(machine, &work.path().join("artifacts"), &[test])?;
    let (code, results, stderr) = exec.finish()?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("pass"), "{results:?}");
    let output = std::fs::read_to_string(results[0].artifacts.join("files/output.txt"))?;
    let env: Vec<String> = output.lines().map(str::to_owned).collect();
    assert!(
        env.iter().any(|e| e.starts_with("PATH=")),
        "env printed: {output}"
    );
    assert!(!carries_token(&env), "the token reached the test: {output}");
    Ok(())
}

//! Loopback sshd machines for the integration tests: real OpenSSH servers
//! on 127.0.0.1, each with its own config, host key and pid file, logging
//! in a dedicated unprivileged user with a clean home.
//!
//! ```no_run
//! let pool = atex_tests::sshd::SshdPool::start(2).unwrap();
//! let machines = pool.machines();
//! assert_eq!(machines.len(), 2);
//! ```

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_shared::records::{Connection, Machine};

/// The login the machines accept: created if missing, never root (root's
/// shell setup on these hosts costs ~0.4 s per command).
pub const TEST_USER: &str = "atex-test";

/// How long an sshd may take to show its banner.
const READY_DEADLINE: Duration = Duration::from_secs(15);

const INSTALL_HINT: &str =
    "run `make deps` (scripts/install-deps.sh) or `apt-get install openssh-server`";

/// Several sshd machines sharing one host key, client key and user; every
/// server is stopped (by the pid in its PidFile) when the pool is dropped.
#[derive(Debug)]
pub struct SshdPool {
    servers: Vec<Sshd>,
    /// The login the servers accept.
    user: String,
    client_key: PathBuf,
    // Holds keys, configs, pid files and logs; removed after the servers stop.
    dir: tempfile::TempDir,
}

/// One sshd on 127.0.0.1.
#[derive(Debug)]
pub struct Sshd {
    port: u16,
    config: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl SshdPool {
    /// Start `count` sshd servers on free loopback ports and wait until each
    /// shows its `SSH-` banner. Fails (with an install hint) when sshd or
    /// ssh-keygen is missing.
    pub fn start(count: usize) -> Result<SshdPool> {
        ensure_user()?;
        SshdPool::start_with_login(count, TEST_USER)
    }

    /// [`SshdPool::start`], the servers accepting only `user` (root for
    /// what needs root on the far side: a qemu+ssh:// hypervisor).
    pub fn start_with_login(count: usize, user: &str) -> Result<SshdPool> {
        SshdPool::start_inner(count, user, &[])
    }

    /// [`SshdPool::start`], every login on the servers getting the
    /// variables of `env` (sshd's `SetEnv`, which overrides its default
    /// `PATH`): e.g. a `PATH` without some tool, to show what happens on
    /// a machine that lacks it.
    pub fn start_with_env(count: usize, env: &[(&str, &str)]) -> Result<SshdPool> {
        ensure_user()?;
        SshdPool::start_inner(count, TEST_USER, env)
    }

    fn start_inner(count: usize, user: &str, env: &[(&str, &str)]) -> Result<SshdPool> {
        sshd_path()?;
        require_program("ssh-keygen")?;
        require_program("ssh")?;
        std::fs::create_dir_all("/run/sshd").context("failed to create /run/sshd")?;
        let dir = tempfile::Builder::new()
            .prefix("atex-sshd-")
            .tempdir()
            .context("failed to create the sshd directory")?;
        // sshd reads AuthorizedKeysFile as the test user.
        set_mode(dir.path(), 0o755)?;
        let host_key = dir.path().join("host_key");
        let client_key = dir.path().join("client_key");
        keygen(&host_key)?;
        keygen(&client_key)?;
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(client_key.with_extension("pub"), &authorized)
            .context("failed to write authorized_keys")?;
        set_mode(&authorized, 0o644)?;
        let mut pool = SshdPool {
            servers: Vec::new(),
            user: user.to_owned(),
            client_key,
            dir,
        };
        for index in 0..count {
            let server = Sshd::start(pool.dir.path(), index, &host_key, &authorized, user, env)?;
            pool.servers.push(server);
        }
        Ok(pool)
    }

    /// The Machine records of the servers, in start order.
    pub fn machines(&self) -> Vec<Machine> {
        self.servers.iter().map(|s| self.machine(s)).collect()
    }

    /// The servers, to stop or restart one (e.g. to emulate a reboot).
    pub fn servers_mut(&mut self) -> &mut [Sshd] {
        &mut self.servers
    }

    /// The private key the machines accept.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    fn machine(&self, server: &Sshd) -> Machine {
        Machine {
            context: Default::default(),
            id: format!("sshd/{}", server.port),
            provisioner: "ssh".into(),
            connection: Connection::Ssh {
                host: "127.0.0.1".into(),
                port: server.port,
                user: self.user.clone(),
                identity_file: Some(self.client_key.clone()),
                options: Default::default(),
            },
            platform: "loopback".into(),
            release: serde_json::Value::Null,
        }
    }
}

impl Sshd {
    fn start(
        dir: &Path,
        index: usize,
        host_key: &Path,
        authorized: &Path,
        user: &str,
        env: &[(&str, &str)],
    ) -> Result<Sshd> {
        let set_env: String = env
            .iter()
            .map(|(name, value)| format!("SetEnv {name}={value}\n"))
            .collect();
        let mut last_error = None;
        // A free port can be taken between probing and binding; retry.
        for _ in 0..3 {
            let port = free_port()?;
            let config = dir.join(format!("sshd-{index}.conf"));
            let pid_file = dir.join(format!("sshd-{index}.pid"));
            let log = dir.join(format!("sshd-{index}.log"));
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
                     AuthorizedKeysFile {}\nStrictModes no\nUsePAM no\n\
                     PubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nAllowUsers {user}\n\
                     PermitRootLogin prohibit-password\n\
                     MaxSessions 200\nMaxStartups 100\nUseDNS no\nPrintMotd no\n\
                     LogLevel ERROR\nSubsystem sftp internal-sftp\n{set_env}",
                    host_key.display(),
                    pid_file.display(),
                    authorized.display()
                ),
            )
            .context("failed to write the sshd config")?;
            let mut server = Sshd {
                port,
                config,
                pid_file,
                log,
                child: None,
            };
            match server.start_again() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("sshd did not start")))
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pid written in the server's PidFile, if it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Start the server (again, after [`Sshd::stop`]) with the same port
    /// and keys, and wait for its banner.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("sshd on port {} is already running", self.port);
        }
        let _ = std::fs::remove_file(&self.pid_file);
        let log = std::fs::File::create(&self.log).context("failed to create the sshd log")?;
        let child = Command::new(sshd_path()?)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("failed to start sshd")?;
        self.child = Some(child);
        if let Err(e) = self.wait_ready() {
            self.stop();
            return Err(e);
        }
        Ok(())
    }

    /// Stop the server by the pid in its PidFile (sessions already open
    /// keep running, as on a real machine whose sshd restarts).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // sshd writes its PidFile once it listens; before that, the child's
        // own pid is the same process (-D does not fork).
        let pid = self.pid().unwrap_or_else(|| child.id());
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .stderr(Stdio::null())
                        .status();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }

    fn wait_ready(&mut self) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                self.child = None;
                bail!(
                    "sshd on port {} exited ({status}): {}",
                    self.port,
                    log.trim()
                );
            }
            if banner(addr) && self.pid().is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "sshd on port {} showed no banner within {READY_DEADLINE:?}",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `addr` answers with an SSH banner.
fn banner(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener
        .local_addr()
        .context("failed to read the port")?
        .port())
}

fn sshd_path() -> Result<PathBuf> {
    for path in ["/usr/sbin/sshd", "/usr/bin/sshd", "/sbin/sshd"] {
        if Path::new(path).is_file() {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("sshd is not installed: {INSTALL_HINT}")
}

fn require_program(name: &str) -> Result<()> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !found {
        bail!("{name} is not installed: {INSTALL_HINT}");
    }
    Ok(())
}

fn keygen(path: &Path) -> Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "atex-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("failed to run ssh-keygen")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("failed to chmod {}", path.display()))
}

/// Create [`TEST_USER`] with a home of its own, and unlock it: `useradd`
/// leaves the password locked (`!`), and sshd with `UsePAM no` refuses even
/// key logins to a locked account. Tests run in parallel processes, so a
/// concurrent creation is tolerated and retried.
fn ensure_user() -> Result<()> {
    for _ in 0..50 {
        if !user_exists() {
            let _ = Command::new("useradd")
                .args(["-m", "-s", "/bin/bash", TEST_USER])
                .stderr(Stdio::null())
                .status();
        }
        if user_exists() {
            if !locked()? {
                return Ok(());
            }
            let _ = Command::new("usermod")
                .args(["-p", "*", TEST_USER])
                .stderr(Stdio::null())
                .status();
            if !locked()? {
                return Ok(());
            }
        }
        // Another test process holds the passwd lock.
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("failed to create and unlock the user {TEST_USER} (useradd/usermod; are you root?)")
}

fn user_exists() -> bool {
    Command::new("id")
        .args(["-u", TEST_USER])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn locked() -> Result<bool> {
    let shadow = std::fs::read_to_string("/etc/shadow").context("failed to read /etc/shadow")?;
    let prefix = format!("{TEST_USER}:");
    Ok(shadow
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|rest| rest.starts_with('!'))
        .unwrap_or(true))
}

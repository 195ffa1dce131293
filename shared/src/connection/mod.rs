//! Connections to machines: run commands and upload files on the
//! controller itself, over SSH, or inside a podman container.
//!
//! A [`Connection`] is built from a Machine record's
//! [`records::Connection`], then [`Connection::connect`]ed. Every command is
//! a real process with an exit code ([`Process`]); its stdout is piped to
//! the caller, its stderr goes to a file so that test output never passes
//! through the controller's memory. Everything is async on tokio, and
//! nothing waits without a bound: a lost ssh master is reported as
//! [`ConnectionError::Lost`], a stuck one as [`ConnectionError::Timeout`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), atex_shared::connection::ConnectionError> {
//! use atex_shared::connection::Connection;
//! use atex_shared::records;
//! let mut conn = Connection::new(&records::Connection::Local);
//! conn.connect().await?;
//! let out = conn.run_script(b"echo hello\n").await?;
//! assert_eq!(out.stdout, b"hello\n");
//! conn.disconnect().await?;
//! # Ok(()) }
//! ```

mod ssh;

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::records;

pub use ssh::DEFAULT_ALIVE_TIMEOUT as SSH_DEFAULT_ALIVE_TIMEOUT;
pub use ssh::DEFAULT_OPTIONS as SSH_DEFAULT_OPTIONS;
pub use ssh::alive_timeout as ssh_alive_timeout;

/// How long connecting, starting a command or checking the master may take
/// before [`ConnectionError::Timeout`]; [`Connection::with_timeout`]
/// changes it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The remote side prints its pid first, so that [`Killer`] can signal it
/// later: the ssh mux protocol and `podman exec` give no way to signal a
/// remote process. `exec` keeps the pid, so the number is the command's.
const PID_WRAPPER: &str = "echo \"$$\"; exec \"$@\"";

/// Environment variables that no process a connection starts inherits:
/// the ssh master, rsync, tar, podman, the helpers, and the commands and
/// tests run on a local connection. They hold secrets the tools read
/// (`TESTING_FARM_API_TOKEN`: atex-provision's Testing Farm token), which a
/// child has no use for and whatever it runs could read.
///
/// ```
/// assert!(atex_shared::connection::WITHHELD_ENV.contains(&"TESTING_FARM_API_TOKEN"));
/// ```
pub const WITHHELD_ENV: &[&str] = &["TESTING_FARM_API_TOKEN"];

/// `program` as a local child process, without the [`WITHHELD_ENV`]
/// variables. Every process this module starts is made here (a tokio
/// command is made from it with `tokio::process::Command::from`).
fn child_command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    for name in WITHHELD_ENV {
        command.env_remove(name);
    }
    command
}

/// [`child_command`] for tokio.
fn async_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    tokio::process::Command::from(child_command(program))
}

/// A failure of a connection; messages read after "failed to".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A command was attempted before [`Connection::connect`] (or after
    /// [`Connection::disconnect`]).
    #[error("use the connection to {target}: not connected")]
    NotConnected {
        /// The machine, e.g. `user@host:22`.
        target: String,
    },
    /// The ssh master could not be started (refused, authentication, DNS).
    #[error("connect to {target}: {message}")]
    Connect {
        /// The machine, e.g. `user@host:22`.
        target: String,
        /// What ssh said.
        message: String,
    },
    /// The ssh master (or the podman container) is gone: the machine went
    /// away, rebooted, or the master was killed.
    #[error("reach {target}: the connection is lost ({message})")]
    Lost {
        /// The machine, e.g. `user@host:22`.
        target: String,
        /// Details of the failure.
        message: String,
    },
    /// An operation took longer than the connection's timeout.
    #[error("{action}: no answer within {after:?}")]
    Timeout {
        /// What was attempted.
        action: String,
        /// The bound that passed.
        after: Duration,
    },
    /// A Machine record's ssh option cannot be used.
    #[error("use ssh option {option:?}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: String,
        /// Why it was refused.
        reason: String,
    },
    /// A Machine record's host, user, port or container cannot be used
    /// (e.g. a host starting with `-`, which ssh would read as an option).
    #[error("use {field} {value:?}: invalid {field}: {reason}")]
    Invalid {
        /// `host`, `user`, `port` or `container`.
        field: String,
        /// The value given.
        value: String,
        /// Why it was refused.
        reason: String,
    },
    /// The Machine record's identity file cannot be read.
    #[error("read the identity file {}: {error}", path.display())]
    IdentityFile {
        /// The file named by the record.
        path: std::path::PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// A local I/O operation (starting a process, a pipe, a file) failed.
    /// The message carries the OS reason, e.g. "start ssh: No such file or
    /// directory (os error 2)".
    #[error("{action}: {source}")]
    Io {
        /// What was attempted.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The remote side did not behave as expected (no pid line, a failed
    /// upload step).
    #[error("{action}: {message}")]
    Remote {
        /// What was attempted.
        action: String,
        /// What went wrong.
        message: String,
    },
    /// The machine has none of the tools an upload unpacks with.
    #[error("{action}: the machine has no {tools}")]
    NoRemoteTool {
        /// What was attempted.
        action: String,
        /// The tools looked for, e.g. "tar or rsync".
        tools: &'static str,
    },
}

impl ConnectionError {
    fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let action = action.into();
        move |source| ConnectionError::Io { action, source }
    }
}

/// A connection to one machine, of one of the three kinds of
/// [`records::Connection`].
///
/// ```
/// use atex_shared::connection::Connection;
/// use atex_shared::records;
/// let conn = Connection::new(&records::Connection::Podman { container: "sut".into() });
/// assert_eq!(conn.target(), "podman:sut");
/// ```
#[derive(Debug)]
pub enum Connection {
    /// Commands run on the controller itself.
    Local(Local),
    /// Commands run over one OpenSSH native-mux master.
    Ssh(Ssh),
    /// Commands run inside a podman container with `podman exec -i`.
    ///
    /// ATEX 1.x runs `crun exec` (under `systemd-run`) instead, because
    /// conmon, which `podman exec` goes through, breaks SIGPIPE for the
    /// executed process; this implementation uses `podman exec` until that
    /// matters (see docs/deviations.md).
    Podman(Podman),
}

/// State of a local connection (see [`Connection::Local`]).
#[derive(Debug)]
pub struct Local {
    timeout: Duration,
}

/// State of an ssh connection (see [`Connection::Ssh`]).
#[derive(Debug)]
pub struct Ssh {
    target: ssh::Target,
    timeout: Duration,
    master: Option<ssh::Master>,
}

/// State of a podman connection (see [`Connection::Podman`]).
#[derive(Debug)]
pub struct Podman {
    container: String,
    timeout: Duration,
    id: Option<String>,
}

/// Where a spawned command's stdin comes from.
#[derive(Debug)]
pub enum Input {
    /// Nothing: the command reads end of file.
    Null,
    /// A pipe the caller writes with [`Process::take_stdin`].
    Piped,
    /// A local file (or anything opened as one), streamed to the command.
    File(File),
}

/// Where a spawned command's stderr goes (internal: public spawns always
/// write stderr to a file).
#[derive(Debug)]
enum Sink {
    File(File),
    Piped,
}

/// An async reader of a process's output.
pub type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
/// An async writer to a process's input.
pub type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// What [`Connection::run_script`] collected.
///
/// ```
/// let out = atex_shared::connection::Output { code: Some(0), stdout: b"x".to_vec(), stderr: vec![] };
/// assert!(out.success());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit code; `None` when a signal ended the command.
    pub code: Option<i32>,
    /// Everything the command wrote on stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote on stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the command exited with 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Check a Machine record's connection without connecting, so that a tool
/// can refuse bad input before anything starts: an ssh host or user that is
/// empty, starts with `-` (ssh would read it as an option) or holds spaces
/// or control characters; port 0; an option that is not a plain keyword or
/// whose value holds a line break or NUL; an identity file that cannot be
/// opened; a podman container name that is empty or starts with `-`.
/// [`Connection::connect`] runs the same checks.
///
/// ```
/// use atex_shared::connection::{validate, ConnectionError};
/// use atex_shared::records::Connection;
/// let bad = Connection::Ssh {
///     host: "-oProxyCommand=x".into(), port: 22, user: "root".into(),
///     identity_file: None, options: Default::default(),
/// };
/// let err = validate(&bad).unwrap_err();
/// assert!(matches!(err, ConnectionError::Invalid { .. }));
/// assert!(err.to_string().contains("invalid host"));
/// assert!(validate(&Connection::Local).is_ok());
/// ```
pub fn validate(record: &records::Connection) -> Result<(), ConnectionError> {
    match Connection::new(record) {
        Connection::Local(_) => Ok(()),
        Connection::Ssh(s) => s.target.check(),
        Connection::Podman(p) => ssh::check_word("container", &p.container),
    }
}

impl Connection {
    /// A connection described by a Machine record; nothing is started until
    /// [`Connection::connect`].
    ///
    /// ```
    /// use atex_shared::connection::Connection;
    /// let conn = Connection::new(&atex_shared::records::Connection::Local);
    /// assert!(matches!(conn, Connection::Local(_)));
    /// ```
    pub fn new(record: &records::Connection) -> Self {
        match record {
            records::Connection::Local => Connection::Local(Local {
                timeout: DEFAULT_TIMEOUT,
            }),
            records::Connection::Ssh {
                host,
                port,
                user,
                identity_file,
                options,
            } => Connection::Ssh(Ssh {
                target: ssh::Target {
                    host: host.clone(),
                    port: *port,
                    user: user.clone(),
                    identity_file: identity_file.clone(),
                    options: options.clone(),
                },
                timeout: DEFAULT_TIMEOUT,
                master: None,
            }),
            records::Connection::Podman { container } => Connection::Podman(Podman {
                container: container.clone(),
                timeout: DEFAULT_TIMEOUT,
                id: None,
            }),
        }
    }

    /// The same connection with another bound for connecting, starting a
    /// command and checking the master.
    ///
    /// ```
    /// use std::time::Duration;
    /// use atex_shared::connection::Connection;
    /// let conn = Connection::new(&atex_shared::records::Connection::Local)
    ///     .with_timeout(Duration::from_secs(5));
    /// assert_eq!(conn.timeout(), Duration::from_secs(5));
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        match &mut self {
            Connection::Local(l) => l.timeout = timeout,
            Connection::Ssh(s) => s.timeout = timeout,
            Connection::Podman(p) => p.timeout = timeout,
        }
        self
    }

    /// The bound set by [`Connection::with_timeout`].
    ///
    /// ```
    /// use atex_shared::connection::{Connection, DEFAULT_TIMEOUT};
    /// let conn = Connection::new(&atex_shared::records::Connection::Local);
    /// assert_eq!(conn.timeout(), DEFAULT_TIMEOUT);
    /// ```
    pub fn timeout(&self) -> Duration {
        match self {
            Connection::Local(l) => l.timeout,
            Connection::Ssh(s) => s.timeout,
            Connection::Podman(p) => p.timeout,
        }
    }

    /// The machine, for messages: `local`, `user@host:port` or
    /// `podman:<container>`.
    ///
    /// ```
    /// use atex_shared::connection::Connection;
    /// assert_eq!(Connection::new(&atex_shared::records::Connection::Local).target(), "local");
    /// ```
    pub fn target(&self) -> String {
        match self {
            Connection::Local(_) => "local".into(),
            Connection::Ssh(s) => s.target.display(),
            Connection::Podman(p) => format!("podman:{}", p.container),
        }
    }

    /// The ssh master's control socket while connected over ssh (for
    /// `ssh -S SOCKET -O check`, or for tools such as rsync).
    ///
    /// ```
    /// use atex_shared::connection::Connection;
    /// assert!(Connection::new(&atex_shared::records::Connection::Local).control_socket().is_none());
    /// ```
    pub fn control_socket(&self) -> Option<&Path> {
        match self {
            Connection::Ssh(Ssh {
                master: Some(m), ..
            }) => Some(m.control_socket()),
            _ => None,
        }
    }

    /// Open the connection: for ssh, start the one master connection of this
    /// machine (authenticating once); for podman, resolve the container's
    /// full id. Connecting twice replaces the old master.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), atex_shared::connection::ConnectionError> {
    /// use atex_shared::connection::Connection;
    /// let mut conn = Connection::new(&atex_shared::records::Connection::Ssh {
    ///     host: "127.0.0.1".into(), port: 2222, user: "atex-test".into(),
    ///     identity_file: Some("/abs/key".into()), options: Default::default(),
    /// });
    /// conn.connect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(&mut self) -> Result<(), ConnectionError> {
        match self {
            Connection::Local(_) => Ok(()),
            Connection::Ssh(s) => {
                s.master = Some(s.target.connect(s.timeout).await?);
                Ok(())
            }
            Connection::Podman(p) => {
                ssh::check_word("container", &p.container)?;
                let out = local_output(
                    &["podman", "inspect", "--format", "{{.Id}}", &p.container],
                    p.timeout,
                )
                .await?;
                if !out.success() {
                    return Err(ConnectionError::Connect {
                        target: format!("podman:{}", p.container),
                        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                    });
                }
                p.id = Some(String::from_utf8_lossy(&out.stdout).trim().to_string());
                Ok(())
            }
        }
    }

    /// Check that the machine is still reachable: for ssh, ask the master
    /// (a dead master is [`ConnectionError::Lost`], a stuck one
    /// [`ConnectionError::Timeout`]); for podman, that the container runs.
    ///
    /// ```no_run
    /// # async fn demo(conn: atex_shared::connection::Connection) {
    /// if let Err(e) = conn.check_alive().await {
    ///     eprintln!("machine lost: {e}");
    /// }
    /// # }
    /// ```
    pub async fn check_alive(&self) -> Result<(), ConnectionError> {
        match self {
            Connection::Local(_) => Ok(()),
            Connection::Ssh(s) => {
                let master = s.master()?;
                tokio::time::timeout(s.timeout, master.check())
                    .await
                    .map_err(|_| ConnectionError::Timeout {
                        action: format!("check the ssh master of {}", s.target.display()),
                        after: s.timeout,
                    })?
                    .map_err(|e| ConnectionError::Lost {
                        target: s.target.display(),
                        message: ssh::error_chain(&e),
                    })
            }
            Connection::Podman(p) => {
                let id = p.id()?;
                let out = local_output(
                    &["podman", "inspect", "--format", "{{.State.Running}}", id],
                    p.timeout,
                )
                .await?;
                if out.success() && out.stdout.trim_ascii() == b"true" {
                    Ok(())
                } else {
                    Err(ConnectionError::Lost {
                        target: format!("podman:{}", p.container),
                        message: "the container is not running".into(),
                    })
                }
            }
        }
    }

    /// Start `argv` on the machine, stdout piped (read it with
    /// [`Process::take_stdout`]), stderr written to `stderr`.
    ///
    /// Over ssh the arguments are shell-quoted for the remote login shell;
    /// they may be any bytes but NUL. Nothing sensitive belongs in `argv`
    /// (it shows in `ps`): pass environments on stdin or in a file.
    ///
    /// ```no_run
    /// # async fn demo(conn: atex_shared::connection::Connection) -> Result<(), atex_shared::connection::ConnectionError> {
    /// use atex_shared::connection::Input;
    /// use tokio::io::AsyncReadExt;
    /// let log = std::fs::File::create("/tmp/stderr.log").unwrap();
    /// let mut process = conn.spawn(&["uname", "-r"], Input::Null, log).await?;
    /// let mut text = String::new();
    /// process.take_stdout().unwrap().read_to_string(&mut text).await.unwrap();
    /// assert_eq!(process.wait().await?, Some(0));
    /// # Ok(()) }
    /// ```
    pub async fn spawn<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        stdin: Input,
        stderr: File,
    ) -> Result<Process, ConnectionError> {
        self.spawn_inner(argv, stdin, Sink::File(stderr)).await
    }

    /// Run a shell script on the machine with `bash -s`, the script on
    /// stdin, collecting stdout and stderr (for setup scripts; the script
    /// itself carries any environment, never the command line).
    ///
    /// ```no_run
    /// # async fn demo(conn: atex_shared::connection::Connection) -> Result<(), atex_shared::connection::ConnectionError> {
    /// let out = conn.run_script(b"export A=1\necho \"$A\"\nexit 3\n").await?;
    /// assert_eq!((out.code, out.stdout), (Some(3), b"1\n".to_vec()));
    /// # Ok(()) }
    /// ```
    pub async fn run_script(&self, script: &[u8]) -> Result<Output, ConnectionError> {
        // bash reads a script from a pipe one byte per read(2) (so that
        // what the script starts could read the rest): 60,000 system calls
        // for the 60 KB setup script. A long script is read by `head -c`
        // in a few reads and run by `eval` instead.
        let head = if script.len() > BASH_READS_ITSELF {
            format!("eval \"$(head -c {})\"\n", script.len())
        } else {
            String::new()
        };
        let mut process = self
            .spawn_inner(&["bash", "-s"], Input::Piped, Sink::Piped)
            .await?;
        let mut stdin = process.take_stdin();
        let mut stdout = process.take_stdout();
        let mut stderr = process.stderr.take();
        let feed = async {
            if let Some(w) = stdin.as_mut() {
                // bash may exit before reading all of it; its exit code says why.
                if w.write_all(head.as_bytes()).await.is_ok() {
                    let _ = w.write_all(script).await;
                }
                let _ = w.shutdown().await;
            }
            drop(stdin);
        };
        let read_out = read_all(stdout.as_mut());
        let read_err = read_all(stderr.as_mut());
        let ((), out, err) = tokio::join!(feed, read_out, read_err);
        let code = process.wait().await?;
        Ok(Output {
            code,
            stdout: out.map_err(ConnectionError::io("read the script's stdout"))?,
            stderr: err.map_err(ConnectionError::io("read the script's stderr"))?,
        })
    }

    /// Copy the directory `local_dir` to `remote_dir` on the machine
    /// (created if missing), skipping every `.git`: a tar stream piped over
    /// the connection (`tar -x` on the machine). Over ssh, a machine
    /// without tar (or a controller without it) gets the tree by rsync
    /// through the master instead, when both sides have rsync.
    ///
    /// ```no_run
    /// # async fn demo(conn: atex_shared::connection::Connection) -> Result<(), atex_shared::connection::ConnectionError> {
    /// conn.upload("/abs/fmf/tree".as_ref(), "/var/tmp/atex/tree").await?;
    /// # Ok(()) }
    /// ```
    pub async fn upload(&self, local_dir: &Path, remote_dir: &str) -> Result<(), ConnectionError> {
        if !local_dir.is_dir() {
            return Err(ConnectionError::Io {
                action: format!("upload {}", local_dir.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let Connection::Ssh(s) = self else {
            return self.tar_upload(local_dir, remote_dir).await;
        };
        // One session, no rsync on either side and no ssh for it: the
        // stream goes over the master (decision 42).
        if have_local("tar") {
            match self.tar_upload(local_dir, remote_dir).await {
                Err(ConnectionError::NoRemoteTool { .. }) if have_local("rsync") => {}
                done => return done,
            }
        } else if !have_local("rsync") {
            return Err(ConnectionError::Io {
                action: format!("upload {}", local_dir.display()),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "neither tar nor rsync is on this machine's PATH",
                ),
            });
        }
        let master = s.master()?;
        let script = format!(
            "command -v rsync >/dev/null 2>&1 || exit {NO_REMOTE_TOOL}\nmkdir -p -- {}\n",
            sh_quote_str(remote_dir)
        );
        let out = self.run_script(script.as_bytes()).await?;
        match out.code {
            Some(0) => self.rsync(master, local_dir, remote_dir).await,
            Some(NO_REMOTE_TOOL) => Err(ConnectionError::NoRemoteTool {
                action: format!("upload {}", local_dir.display()),
                tools: "tar or rsync",
            }),
            _ => Err(remote_failure("create the upload directory", &out)),
        }
    }

    /// Like [`Connection::upload`], but always as a tar stream piped over
    /// the connection (`tar -x` on the machine), also where rsync exists.
    ///
    /// ```no_run
    /// # async fn demo(conn: atex_shared::connection::Connection) -> Result<(), atex_shared::connection::ConnectionError> {
    /// conn.upload_tar("/abs/fmf/tree".as_ref(), "/var/tmp/atex/tree").await?;
    /// # Ok(()) }
    /// ```
    pub async fn upload_tar(
        &self,
        local_dir: &Path,
        remote_dir: &str,
    ) -> Result<(), ConnectionError> {
        if !local_dir.is_dir() {
            return Err(ConnectionError::Io {
                action: format!("upload {}", local_dir.display()),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        self.tar_upload(local_dir, remote_dir).await
    }

    /// Close the connection: for ssh, stop the master (waiting at most the
    /// timeout; the master is killed when that passes).
    ///
    /// ```no_run
    /// # async fn demo(mut conn: atex_shared::connection::Connection) -> Result<(), atex_shared::connection::ConnectionError> {
    /// conn.disconnect().await?;
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(&mut self) -> Result<(), ConnectionError> {
        match self {
            Connection::Local(_) => Ok(()),
            Connection::Podman(p) => {
                p.id = None;
                Ok(())
            }
            Connection::Ssh(s) => {
                let Some(master) = s.master.take() else {
                    return Ok(());
                };
                // Processes still holding the master stop it when the
                // last of them is dropped.
                master.close(s.timeout).await
            }
        }
    }

    /// rsync `local_dir` into `remote_dir` (which `upload` made) through
    /// the master.
    async fn rsync(
        &self,
        master: &ssh::Master,
        local_dir: &Path,
        remote_dir: &str,
    ) -> Result<(), ConnectionError> {
        let mut source = local_dir.as_os_str().to_owned();
        source.push("/");
        let mut dest = OsString::from("atex:");
        dest.push(remote_dir);
        dest.push("/");
        let out = async_command("rsync")
            .args(["-rlpt", "--exclude=.git", "--protect-args", "-e"])
            .arg(ssh::rsync_shell(master))
            .arg(source)
            .arg(dest)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(ConnectionError::io("run rsync"))?;
        // 24: files vanished before they could be sent (rsync(1)); what is
        // gone cannot be needed, and the rest was sent. A tree that holds
        // the artifacts of tests running elsewhere sees that all the time.
        if !out.status.success() && out.status.code() != Some(24) {
            return Err(ConnectionError::Remote {
                action: format!("upload {} with rsync", local_dir.display()),
                message: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }

    async fn tar_upload(&self, local_dir: &Path, remote_dir: &str) -> Result<(), ConnectionError> {
        let mut tar = async_command("tar")
            // Its messages are read below.
            .env("LC_ALL", "C")
            .arg("-C")
            .arg(local_dir)
            .args(["--exclude=.git", "-cf", "-", "."])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(ConnectionError::io("run tar"))?;
        let mut archive = tar.stdout.take().ok_or_else(|| ConnectionError::Remote {
            action: "run tar".into(),
            message: "no stdout pipe".into(),
        })?;
        // -o: do not restore the controller's owners (root here may be a
        // plain user there); GNU tar and busybox tar both read it so.
        let script = format!(
            "mkdir -p -- \"$1\" || exit 1\n\
             command -v tar >/dev/null 2>&1 || exit {NO_REMOTE_TOOL}\n\
             exec tar -C \"$1\" -xof -"
        );
        let mut process = self
            .spawn_inner(
                &["sh", "-c", &script, "atex-upload", remote_dir],
                Input::Piped,
                Sink::Piped,
            )
            .await?;
        let mut stdin = process.take_stdin();
        let mut err = process.stderr.take();
        let copy = async {
            let result = match stdin.as_mut() {
                Some(w) => tokio::io::copy(&mut archive, w).await.map(|_| ()),
                None => Ok(()),
            };
            if let Some(w) = stdin.as_mut() {
                let _ = w.shutdown().await;
            }
            drop(stdin);
            result
        };
        let (copied, remote_err) = tokio::join!(copy, read_all(err.as_mut()));
        let code = process.wait().await?;
        let tar_out = tar
            .wait_with_output()
            .await
            .map_err(ConnectionError::io("wait for tar"))?;
        if code == Some(NO_REMOTE_TOOL) {
            // Our tar met a closed pipe: nothing was unpacked.
            return Err(ConnectionError::NoRemoteTool {
                action: format!("upload {}", local_dir.display()),
                tools: "tar",
            });
        }
        if !tar_out.status.success() && !only_files_changed(&tar_out) {
            return Err(ConnectionError::Remote {
                action: format!("archive {}", local_dir.display()),
                message: String::from_utf8_lossy(&tar_out.stderr).trim().to_string(),
            });
        }
        if code != Some(0) {
            return Err(ConnectionError::Remote {
                action: format!("unpack the upload in {remote_dir}"),
                message: format!(
                    "exit code {code:?}: {}",
                    String::from_utf8_lossy(&remote_err.unwrap_or_default()).trim()
                ),
            });
        }
        copied.map_err(ConnectionError::io("stream the upload"))
    }

    async fn spawn_inner<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        stdin: Input,
        stderr: Sink,
    ) -> Result<Process, ConnectionError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ConnectionError::Remote {
                action: "start a command".into(),
                message: "the command is empty".into(),
            });
        };
        match self {
            Connection::Local(_) => {
                let mut command = async_command(program);
                command.args(args);
                // Its own process group, so that kill() reaches what it starts.
                command.process_group(0);
                let child = start_local(command, stdin, stderr, program.as_ref())?;
                let pid = child.id();
                Process::from_local(child, pid.map(Killer::local), None).await
            }
            Connection::Podman(p) => {
                let id = p.id()?;
                let mut command = async_command("podman");
                command
                    .args(["exec", "-i", id, "sh", "-c", PID_WRAPPER, "atex"])
                    .arg(program)
                    .args(args);
                let child = start_local(command, stdin, stderr, OsStr::new("podman"))?;
                let id = id.to_string();
                let killer = move |pid| Killer(KillerKind::Podman { id, pid });
                Process::from_local(child, None, Some((Box::new(killer), p.timeout))).await
            }
            Connection::Ssh(s) => {
                let master = s.master()?;
                let mut command = openssh::Session::to_raw_command(master.clone(), "sh");
                command
                    .raw_arg("-c")
                    .raw_arg(sh_quote(OsStr::new(PID_WRAPPER)));
                command.raw_arg("atex");
                for arg in argv {
                    command.raw_arg(sh_quote(arg.as_ref()));
                }
                command.stdout(openssh::Stdio::piped());
                command.stdin(match stdin {
                    Input::Null => openssh::Stdio::null(),
                    Input::Piped => openssh::Stdio::piped(),
                    Input::File(f) => openssh::Stdio::from(f),
                });
                command.stderr(match stderr {
                    Sink::File(f) => openssh::Stdio::from(f),
                    Sink::Piped => openssh::Stdio::piped(),
                });
                let action = format!("start {:?} on {}", program.as_ref(), s.target.display());
                let mut child = tokio::time::timeout(s.timeout, command.spawn())
                    .await
                    .map_err(|_| ConnectionError::Timeout {
                        action: action.clone(),
                        after: s.timeout,
                    })?
                    .map_err(|e| s.lost(&e))?;
                let stdin = child.stdin().take().map(|w| Box::pin(w) as BoxWrite);
                let stderr = child.stderr().take().map(|r| Box::pin(r) as BoxRead);
                let stdout = child.stdout().take().map(|r| Box::pin(r) as BoxRead);
                let mut stdout = BufReader::new(stdout.ok_or_else(|| ConnectionError::Remote {
                    action: action.clone(),
                    message: "no stdout pipe".into(),
                })?);
                let pid = read_pid(&mut stdout, s.timeout, &action).await;
                let pid = match pid {
                    Ok(pid) => pid,
                    Err(e) => {
                        // A dead master shows up here as an early EOF.
                        s.alive().await?;
                        return Err(e);
                    }
                };
                let session = master.clone();
                Ok(Process {
                    stdin,
                    stdout: Some(Box::pin(stdout)),
                    stderr,
                    child: Some(Child::Ssh {
                        child,
                        target: s.target.display(),
                    }),
                    killer: Some(Killer(KillerKind::Ssh {
                        session,
                        pid,
                        timeout: s.timeout,
                    })),
                    code: None,
                })
            }
        }
    }
}

impl Ssh {
    fn master(&self) -> Result<&ssh::Master, ConnectionError> {
        self.master
            .as_ref()
            .ok_or_else(|| ConnectionError::NotConnected {
                target: self.target.display(),
            })
    }

    fn lost(&self, error: &openssh::Error) -> ConnectionError {
        ConnectionError::Lost {
            target: self.target.display(),
            message: ssh::error_chain(error),
        }
    }

    async fn alive(&self) -> Result<(), ConnectionError> {
        let master = self.master()?;
        match tokio::time::timeout(self.timeout, master.check()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(&e)),
            Err(_) => Err(ConnectionError::Timeout {
                action: format!("check the ssh master of {}", self.target.display()),
                after: self.timeout,
            }),
        }
    }
}

impl Podman {
    fn id(&self) -> Result<&str, ConnectionError> {
        self.id
            .as_deref()
            .ok_or_else(|| ConnectionError::NotConnected {
                target: format!("podman:{}", self.container),
            })
    }
}

type KillerFactory = Box<dyn FnOnce(u32) -> Killer + Send>;

/// A command started by [`Connection::spawn`].
pub struct Process {
    stdin: Option<BoxWrite>,
    stdout: Option<BoxRead>,
    stderr: Option<BoxRead>,
    child: Option<Child>,
    killer: Option<Killer>,
    code: Option<Option<i32>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("killer", &self.killer)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

enum Child {
    Local(tokio::process::Child),
    Ssh {
        child: openssh::Child<ssh::Master>,
        target: String,
    },
}

impl Process {
    async fn from_local(
        mut child: tokio::process::Child,
        killer: Option<Killer>,
        remote: Option<(KillerFactory, Duration)>,
    ) -> Result<Process, ConnectionError> {
        let stdin = child.stdin.take().map(|w| Box::pin(w) as BoxWrite);
        let stderr = child.stderr.take().map(|r| Box::pin(r) as BoxRead);
        let stdout = child.stdout.take().map(|r| Box::pin(r) as BoxRead);
        let (stdout, killer) = match remote {
            None => (stdout, killer),
            Some((factory, timeout)) => {
                let stdout = stdout.ok_or_else(|| ConnectionError::Remote {
                    action: "start a command".into(),
                    message: "no stdout pipe".into(),
                })?;
                let mut reader = BufReader::new(stdout);
                let pid =
                    read_pid(&mut reader, timeout, "start a command in the container").await?;
                (Some(Box::pin(reader) as BoxRead), Some(factory(pid)))
            }
        };
        Ok(Process {
            stdin,
            stdout,
            stderr,
            child: Some(Child::Local(child)),
            killer,
            code: None,
        })
    }

    /// The command's stdin, when it was spawned with [`Input::Piped`]
    /// (once; dropping it closes the command's input).
    ///
    /// ```no_run
    /// # async fn demo(mut p: atex_shared::connection::Process) {
    /// use tokio::io::AsyncWriteExt;
    /// let mut stdin = p.take_stdin().unwrap();
    /// stdin.write_all(b"input\n").await.unwrap();
    /// # }
    /// ```
    pub fn take_stdin(&mut self) -> Option<BoxWrite> {
        self.stdin.take()
    }

    /// The command's stdout (once).
    ///
    /// ```no_run
    /// # async fn demo(mut p: atex_shared::connection::Process) {
    /// use tokio::io::AsyncReadExt;
    /// let mut out = Vec::new();
    /// p.take_stdout().unwrap().read_to_end(&mut out).await.unwrap();
    /// # }
    /// ```
    pub fn take_stdout(&mut self) -> Option<BoxRead> {
        self.stdout.take()
    }

    /// A handle that kills the command, usable while another task waits.
    ///
    /// ```no_run
    /// # async fn demo(p: atex_shared::connection::Process) {
    /// let killer = p.killer().unwrap();
    /// tokio::spawn(async move { let _ = killer.kill().await; });
    /// # }
    /// ```
    pub fn killer(&self) -> Option<Killer> {
        self.killer.clone()
    }

    /// Kill the command (and its process group where it leads one) with
    /// SIGKILL.
    ///
    /// ```no_run
    /// # async fn demo(mut p: atex_shared::connection::Process) -> Result<(), atex_shared::connection::ConnectionError> {
    /// p.kill().await?;
    /// assert_eq!(p.wait().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self) -> Result<(), ConnectionError> {
        match &self.killer {
            Some(killer) => killer.kill().await,
            None => Ok(()),
        }
    }

    /// Wait for the command to end: `Some(code)` when it exited, `None`
    /// when a signal ended it (except over podman, where `podman exec`
    /// reports a signal N as exit code 128+N). Stdin is closed first. A connection lost on
    /// the way is [`ConnectionError::Lost`]. Later calls return the same.
    ///
    /// ```no_run
    /// # async fn demo(mut p: atex_shared::connection::Process) -> Result<(), atex_shared::connection::ConnectionError> {
    /// if p.wait().await? != Some(0) { eprintln!("failed"); }
    /// # Ok(()) }
    /// ```
    pub async fn wait(&mut self) -> Result<Option<i32>, ConnectionError> {
        if let Some(code) = self.code {
            return Ok(code);
        }
        self.stdin = None;
        let code = match self.child.take() {
            None => None,
            Some(Child::Local(mut child)) => {
                let status = child
                    .wait()
                    .await
                    .map_err(ConnectionError::io("wait for a command"))?;
                status.code()
            }
            Some(Child::Ssh { child, target }) => {
                let session = child.session();
                match child.wait().await {
                    Ok(status) => status.code(),
                    // The mux protocol cannot tell a signal from a lost
                    // connection; the master can.
                    Err(openssh::Error::RemoteProcessTerminated) => match session.check().await {
                        Ok(()) => None,
                        Err(e) => {
                            return Err(ConnectionError::Lost {
                                target,
                                message: ssh::error_chain(&e),
                            });
                        }
                    },
                    Err(e) => {
                        return Err(ConnectionError::Lost {
                            target,
                            message: ssh::error_chain(&e),
                        });
                    }
                }
            }
        };
        self.code = Some(code);
        Ok(code)
    }
}

/// Kills one spawned command; cheap to clone (see [`Process::killer`]).
#[derive(Clone)]
pub struct Killer(KillerKind);

#[derive(Clone)]
enum KillerKind {
    Local(u32),
    Ssh {
        session: ssh::Master,
        pid: u32,
        timeout: Duration,
    },
    Podman {
        id: String,
        pid: u32,
    },
}

impl std::fmt::Debug for Killer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            KillerKind::Local(pid) => write!(f, "Killer(local pid {pid})"),
            KillerKind::Ssh { pid, .. } => write!(f, "Killer(ssh pid {pid})"),
            KillerKind::Podman { id, pid } => write!(f, "Killer(podman {id} pid {pid})"),
        }
    }
}

impl Killer {
    fn local(pid: u32) -> Killer {
        Killer(KillerKind::Local(pid))
    }

    /// The command's pid on its machine (inside the container for podman).
    ///
    /// ```no_run
    /// # fn demo(p: atex_shared::connection::Process) {
    /// println!("pid {}", p.killer().unwrap().pid());
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        match &self.0 {
            KillerKind::Local(pid)
            | KillerKind::Ssh { pid, .. }
            | KillerKind::Podman { pid, .. } => *pid,
        }
    }

    /// Send SIGKILL to the command's process group when it leads one
    /// (local commands and ssh sessions do), else to the command.
    ///
    /// ```no_run
    /// # async fn demo(p: atex_shared::connection::Process) -> Result<(), atex_shared::connection::ConnectionError> {
    /// p.killer().unwrap().kill().await?;
    /// # Ok(()) }
    /// ```
    pub async fn kill(&self) -> Result<(), ConnectionError> {
        let pid = self.pid();
        // No `--`: dash's kill rejects it, and reads `-PID` as a group anyway.
        let script =
            format!("kill -KILL -{pid} 2>/dev/null || kill -KILL {pid} 2>/dev/null || true");
        match &self.0 {
            KillerKind::Local(_) => {
                local_output(&["sh", "-c", &script], DEFAULT_TIMEOUT).await?;
                Ok(())
            }
            KillerKind::Podman { id, .. } => {
                local_output(
                    &["podman", "exec", id, "sh", "-c", &script],
                    DEFAULT_TIMEOUT,
                )
                .await?;
                Ok(())
            }
            KillerKind::Ssh {
                session, timeout, ..
            } => {
                let mut command = openssh::Session::to_raw_command(session.clone(), "sh");
                command.raw_arg("-c").raw_arg(sh_quote(OsStr::new(&script)));
                command
                    .stdin(openssh::Stdio::null())
                    .stdout(openssh::Stdio::null())
                    .stderr(openssh::Stdio::null());
                let run = async {
                    let child = command.spawn().await?;
                    child.wait().await
                };
                match tokio::time::timeout(*timeout, run).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(ConnectionError::Lost {
                        target: "ssh".into(),
                        message: ssh::error_chain(&e),
                    }),
                    Err(_) => Err(ConnectionError::Timeout {
                        action: format!("kill remote pid {pid}"),
                        after: *timeout,
                    }),
                }
            }
        }
    }
}

fn start_local(
    mut command: tokio::process::Command,
    stdin: Input,
    stderr: Sink,
    program: &OsStr,
) -> Result<tokio::process::Child, ConnectionError> {
    command.stdout(Stdio::piped());
    command.stdin(match stdin {
        Input::Null => Stdio::null(),
        Input::Piped => Stdio::piped(),
        Input::File(f) => Stdio::from(f),
    });
    command.stderr(match stderr {
        Sink::File(f) => Stdio::from(f),
        Sink::Piped => Stdio::piped(),
    });
    command.spawn().map_err(ConnectionError::io(format!(
        "start {}",
        program.to_string_lossy()
    )))
}

/// Read the pid line the [`PID_WRAPPER`] prints first.
async fn read_pid<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    timeout: Duration,
    action: &str,
) -> Result<u32, ConnectionError> {
    let mut line = Vec::new();
    let read = tokio::time::timeout(timeout, async {
        // The line is a few digits; a bound keeps a broken remote from
        // feeding us without end.
        let mut limited = (&mut *reader).take(32);
        limited.read_until(b'\n', &mut line).await
    })
    .await
    .map_err(|_| ConnectionError::Timeout {
        action: action.to_string(),
        after: timeout,
    })?
    .map_err(ConnectionError::io(action.to_string()))?;
    let text = std::str::from_utf8(&line[..read]).unwrap_or("").trim();
    text.parse().map_err(|_| ConnectionError::Remote {
        action: action.to_string(),
        message: format!(
            "expected the command's pid first, got {:?}",
            String::from_utf8_lossy(&line)
        ),
    })
}

async fn read_all(reader: Option<&mut BoxRead>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(r) = reader {
        r.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

/// Run a local helper command (podman, kill) to completion within `timeout`.
async fn local_output(argv: &[&str], timeout: Duration) -> Result<Output, ConnectionError> {
    let (program, args) = argv.split_first().ok_or_else(|| ConnectionError::Remote {
        action: "run a helper".into(),
        message: "empty command".into(),
    })?;
    let run = async_command(program)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| ConnectionError::Timeout {
            action: format!("run {program}"),
            after: timeout,
        })?
        .map_err(ConnectionError::io(format!("run {program}")))?;
    Ok(Output {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// Whether GNU tar's failure only says that files changed, shrank or went
/// away while it read them (exit 1, `tar(1)`: "some files differ"): the
/// archive is whole, as rsync's exit 24 says for vanished files. A tree
/// that holds the artifacts of tests running elsewhere sees that all the
/// time.
fn only_files_changed(out: &std::process::Output) -> bool {
    let text = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(1)
        && text.lines().all(|line| {
            [
                "file changed as we read it",
                "File removed before we read it",
                "File shrank by",
            ]
            .iter()
            .any(|m| line.contains(m))
        })
}

/// The longest script [`Connection::run_script`] lets bash read by itself.
const BASH_READS_ITSELF: usize = 4096;

/// The exit code of an upload's script when the machine lacks the tool it
/// unpacks with (tar, or rsync).
const NO_REMOTE_TOOL: i32 = 97;

/// Whether `program` is an executable file in a directory of this
/// process's `PATH` (what `command -v` finds, without starting a shell).
fn have_local(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn remote_failure(action: &str, out: &Output) -> ConnectionError {
    ConnectionError::Remote {
        action: action.into(),
        message: format!(
            "exit code {:?}: {}",
            out.code,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// Quote bytes for a POSIX shell: `'...'`, with each `'` as `'\''`.
fn sh_quote(arg: &OsStr) -> OsString {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    OsString::from_vec(out)
}

fn sh_quote_str(arg: &str) -> String {
    sh_quote(OsStr::new(arg)).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_output(code: i32, stderr: &str) -> std::process::Output {
        use std::os::unix::process::ExitStatusExt as _;
        std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    #[test]
    fn files_changed_while_archived_are_no_failure() {
        let changed = "tar: ./atex-artifacts/1: file changed as we read it\n\
                       tar: ./a/out: File removed before we read it\n";
        assert!(only_files_changed(&tar_output(1, changed)));
        assert!(!only_files_changed(&tar_output(2, changed)));
        let denied = "tar: ./secret: Cannot open: Permission denied\n";
        assert!(!only_files_changed(&tar_output(
            1,
            &format!("{changed}{denied}")
        )));
    }

    #[test]
    fn quoting_survives_quotes_and_bytes() {
        assert_eq!(sh_quote(OsStr::new("a b")), OsString::from("'a b'"));
        assert_eq!(sh_quote(OsStr::new("it's")), OsString::from("'it'\\''s'"));
        let raw = OsStr::from_bytes(b"\xff$x");
        assert_eq!(sh_quote(raw).as_bytes(), b"'\xff$x'");
    }

    #[tokio::test]
    async fn local_script_reports_output_and_code() {
        let conn = Connection::new(&records::Connection::Local);
        let out = conn
            .run_script(b"echo out; echo err >&2; exit 7\n")
            .await
            .expect("local bash runs");
        assert_eq!(out.code, Some(7));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn children_are_made_without_the_withheld_variables() {
        let removed = |command: &std::process::Command| -> Vec<OsString> {
            command
                .get_envs()
                .filter(|(_, value)| value.is_none())
                .map(|(name, _)| name.to_owned())
                .collect()
        };
        let token = OsString::from("TESTING_FARM_API_TOKEN");
        assert!(removed(&child_command("ssh")).contains(&token));
        assert!(removed(async_command("podman").as_std()).contains(&token));
    }

    #[tokio::test]
    async fn ssh_before_connect_is_not_connected() {
        let conn = Connection::new(&records::Connection::Ssh {
            host: "127.0.0.1".into(),
            port: 1,
            user: "nobody".into(),
            identity_file: None,
            options: Default::default(),
        });
        let err = conn.run_script(b"true\n").await.expect_err("not connected");
        assert!(matches!(err, ConnectionError::NotConnected { .. }), "{err}");
    }
}

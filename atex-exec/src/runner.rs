//! The warm test runner: one `remote/runner.py` per session's connection,
//! started once and kept on the machine, which sets each test up and starts
//! it, and sends every test's control stream, output and exit status back
//! over the one channel it was started with. A plain test is spawned by the
//! runner itself (`posix_spawn` of bash, the runner playing the wrapper's
//! part, decision 40); a `tty` test gets its wrapper by a fork of the runner
//! (the wrapper's code already loaded). A test then costs a bash on the
//! machine, not an ssh session, a login shell, a `bash -s` setup script and
//! a new Python (issue 13: about 30 ms of CPU per trivial test before). The
//! frames a test causes are the same either way, so this side does not know
//! which way a test was started.
//!
//! [`RunnerLauncher`] plugs the runner into the run loop ([`crate::run`]):
//! the loop is the same as for any [`Launcher`]; the control stream of one
//! test reaches it through a local pipe, its output through the pipe the
//! loop gave for the wrapper's stderr.
//!
//! # Wire format
//!
//! Both directions are frames: a 9-byte header (kind, sequence number and
//! payload length, big-endian `u8, u32, u32`) and the payload. The kinds
//! are listed at the top of `remote/runner.py`. Sequence numbers name one
//! request or one started wrapper.
//!
//! # Life cycle, and what happens when something goes away
//!
//! - The runner is started with `python -S -c BOOT_PY W/runner.py` (see
//!   [`Runner::start`], [`BOOT_PY`]) and says hello within the connection's timeout;
//!   otherwise starting fails and the session reports the test `infra`
//!   (`TestSetupError(failed to start the test runner on the machine: ...)`).
//!   There is no second, per-test path to fall back to: a machine where the
//!   runner cannot start could not run the wrapper either.
//! - The runner dies with its connection: its stdin ends (also when its
//!   parent, sshd's session, dies: the parent held the other end); it then stops
//!   every test (a wrapper gets SIGTERM and hangs up its test's process
//!   group, a test it spawned itself has its group hung up; SIGKILL after a
//!   grace) and exits. Dropping a [`Runner`] closes its
//!   stdin, so a session that is dropped or closed leaves no test behind.
//! - When the channel ends, every running test's control stream ends and its
//!   wait fails with the connection's error (a lost connection makes the test
//!   `infra`, as before); for a test that had sent `disconnect` (its control
//!   stream closed by the loop) the wait gives a non-zero status instead, so
//!   the loop asks for a reconnect: the machine is rebooting.
//! - After a reboot or a reconnect the session starts a new runner.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use atex_shared::connection::{BoxRead, BoxWrite, Connection, Input, Process};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::launch::{KILL_WAIT, SIGNALLED_EXIT, TERM_GRACE};
use crate::remote::TestSetup;
use crate::run::{Launcher, READ_CHUNK, RemoteLayout, TestProcess};

/// The runner's source (Python 3.6+, standard library only); it imports
/// [`crate::wrapper::WRAPPER_PY`] from the file beside it.
pub const RUNNER_PY: &str = include_str!("../remote/runner.py");

/// What starts the runner (`python -S -c BOOT W/runner.py`): it runs
/// `W/runner.py` with `W/wrapper.py` loaded, from code compiled once per
/// machine, login and Python and kept in the login's cache directory
/// (decision 45), else compiled from the sources as before.
pub const BOOT_PY: &str = include_str!("../remote/boot.py");

/// [`BOOT_PY`] as the one-line argument of `python -c`:
/// `exec('...')` of its code without comments and blank lines, newlines
/// and quotes escaped, so that `ps` shows the runner on one line.
static BOOT_ARG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut arg = String::from("exec('");
    for line in BOOT_PY.lines() {
        let code = line.trim_start();
        if code.is_empty() || code.starts_with('#') {
            continue;
        }
        for c in line.chars() {
            match c {
                '\\' => arg.push_str("\\\\"),
                '\'' => arg.push_str("\\'"),
                c => arg.push(c),
            }
        }
        arg.push_str("\\n");
    }
    arg.push_str("')");
    arg
});

/// The argv that starts the runner `script` with `python`:
/// `python -S -c BOOT script` ([`BOOT_PY`], on one line).
pub fn runner_argv<'a>(python: &'a str, script: &'a str) -> [&'a str; 5] {
    [python, "-S", "-c", BOOT_ARG.as_str(), script]
}

/// Where the answer to one request goes: its data, or the runner's message.
type Answer = oneshot::Sender<Result<Vec<u8>, String>>;

/// What the runner says first; another answer is another program.
pub const VERSION: &[u8] = b"atex-runner 2";

/// The header of a frame: kind, sequence number, payload length.
const HEADER: usize = 9;

/// The longest frame that is not test data (hello, exit status, answer).
const MAX_SMALL_FRAME: usize = 64 * 1024;

/// How much of the runner's own stderr is kept to explain its end.
const STDERR_TAIL: usize = 4096;

/// How long the runner's exit status is waited for once its channel ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);

/// A failure of the runner; messages read after "failed to".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The runner did not start or did not say hello.
    #[error("start the test runner on the machine: {0}")]
    Start(String),
    /// The runner is gone (its connection was lost, or it exited).
    #[error("reach the test runner on the machine: {0}")]
    Gone(String),
    /// The runner could not do what it was asked (its own message).
    #[error("{0}")]
    Refused(String),
}

/// What the demultiplexer is told about the requests it will see answers to.
enum Route {
    /// A wrapper was started: where its frames go, and the flag set once
    /// its X, E and D frames all came (the runner then forgot it).
    Test {
        seq: u32,
        control: pipe::Sender,
        output: OutputSink,
        exit: oneshot::Sender<Result<i32, String>>,
        sent_whole: Arc<AtomicBool>,
    },
    /// A request answered by an `R` frame.
    Reply { seq: u32, done: Answer },
    /// The wrapper's process handle is gone: only its output is still taken.
    Forget(u32),
}

/// Where a test's output goes: the pipe the run loop gave (the usual
/// case), or any other file, written in place.
enum OutputSink {
    Pipe(pipe::Sender),
    File(File),
}

impl OutputSink {
    fn new(file: File) -> OutputSink {
        use std::os::unix::fs::FileTypeExt as _;
        let fifo = file.metadata().is_ok_and(|m| m.file_type().is_fifo());
        if fifo
            && let Ok(clone) = file.try_clone()
            && let Ok(sender) = pipe::Sender::from_file(clone)
        {
            return OutputSink::Pipe(sender);
        }
        OutputSink::File(file)
    }

    /// Write all of `data`; `false` when the reader is gone.
    async fn write(&mut self, data: &[u8]) -> bool {
        match self {
            OutputSink::Pipe(sender) => sender.write_all(data).await.is_ok(),
            OutputSink::File(file) => file.write_all(data).is_ok(),
        }
    }
}

/// One machine's runner (see the [module docs](self)).
pub struct Runner {
    next: AtomicU32,
    requests: mpsc::UnboundedSender<Vec<u8>>,
    routes: mpsc::UnboundedSender<Route>,
    gone: Arc<Mutex<Option<String>>>,
    demux: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("gone", &self.gone_reason())
            .finish_non_exhaustive()
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // The writer ends with its channel; stdin then closes and the runner
        // stops its tests.
        for task in &self.tasks {
            task.abort();
        }
        if let Some(demux) = &self.demux {
            demux.abort();
        }
    }
}

impl Runner {
    /// Start the runner `script` (written by the layout) with `python` on
    /// `conn` ([`BOOT_PY`]) and wait for its hello, at most the
    /// connection's timeout.
    pub async fn start(
        conn: &Connection,
        python: &str,
        script: &str,
    ) -> Result<Runner, RunnerError> {
        let start = |e: String| RunnerError::Start(e);
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| start(format!("create a pipe: {e}")))?;
        let stderr = pipe::Receiver::from_owned_fd(read)
            .map_err(|e| start(format!("create a pipe: {e}")))?;
        let tail = Arc::new(Mutex::new(Vec::new()));
        let tail_task = tokio::spawn(keep_tail(stderr, Arc::clone(&tail)));
        let argv = runner_argv(python, script);
        let mut process = match conn.spawn(&argv, Input::Piped, File::from(write)).await {
            Ok(process) => process,
            Err(e) => {
                tail_task.abort();
                return Err(start(e.to_string()));
            }
        };
        let (Some(stdin), Some(mut stdout)) = (process.take_stdin(), process.take_stdout()) else {
            tail_task.abort();
            kill(process.killer()).await;
            return Err(start("the runner has no stdin or stdout".into()));
        };
        let hello = tokio::time::timeout(conn.timeout(), read_hello(&mut stdout)).await;
        let failed = match hello {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(format!(
                "it did not answer within {} s",
                conn.timeout().as_secs()
            )),
        };
        if let Some(why) = failed {
            kill(process.killer()).await;
            let code = tokio::time::timeout(EXIT_WAIT, process.wait()).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), tail_task).await;
            let mut message = why;
            if let Ok(Ok(Some(code))) = code {
                message.push_str(&format!(" (exit code {code})"));
            }
            append_tail(&mut message, &tail);
            return Err(start(message));
        }
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (routes, routes_rx) = mpsc::unbounded_channel();
        let gone = Arc::new(Mutex::new(None));
        let writer = tokio::spawn(write_requests(stdin, requests_rx));
        let demux = tokio::spawn(demux(stdout, process, routes_rx, Arc::clone(&gone), tail));
        Ok(Runner {
            next: AtomicU32::new(1),
            requests,
            routes,
            gone,
            demux: Some(demux),
            tasks: vec![writer, tail_task],
        })
    }

    /// Whether the runner still answers (its channel has not ended).
    pub fn is_alive(&self) -> bool {
        self.gone_reason().is_none() && !self.requests.is_closed()
    }

    fn gone_reason(&self) -> Option<String> {
        match self.gone.lock() {
            Ok(gone) => gone.clone(),
            Err(_) => Some("the runner's state is poisoned".into()),
        }
    }

    fn gone_error(&self) -> RunnerError {
        RunnerError::Gone(
            self.gone_reason()
                .unwrap_or_else(|| "its channel ended".into()),
        )
    }

    fn next_seq(&self) -> u32 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Queue one request frame.
    fn send(&self, kind: u8, seq: u32, payload: &[u8]) -> Result<(), RunnerError> {
        let len = u32::try_from(payload.len()).map_err(|_| {
            RunnerError::Refused(format!("send {} bytes to the runner", payload.len()))
        })?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.push(kind);
        frame.extend_from_slice(&seq.to_be_bytes());
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.requests.send(frame).map_err(|_| self.gone_error())
    }

    /// Send a request answered by `R` and wait for the answer's data.
    async fn request(&self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, RunnerError> {
        if !self.is_alive() {
            return Err(self.gone_error());
        }
        let seq = self.next_seq();
        let (done, answer) = oneshot::channel();
        self.routes
            .send(Route::Reply { seq, done })
            .map_err(|_| self.gone_error())?;
        self.send(kind, seq, payload)?;
        match answer.await {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(message)) => Err(RunnerError::Refused(message)),
            Err(_) => Err(self.gone_error()),
        }
    }

    /// Set a test up ([`TestSetup`]): its directory made anew, the plan
    /// environment file reset, its files written.
    pub async fn prepare_test(&self, setup: &TestSetup) -> Result<(), RunnerError> {
        // D NUL BASE NUL ENV NUL, then PATH NUL MODE NUL LENGTH NUL DATA per
        // file (remote/runner.py): no JSON parser to load on the machine.
        let size: usize = setup
            .writes
            .iter()
            .map(|f| f.path.len() + f.contents.len() + 24)
            .sum();
        let mut payload = Vec::with_capacity(
            setup.test_dir.len() + setup.plan_env_base.len() + setup.plan_env.len() + 3 + size,
        );
        for path in [&setup.test_dir, &setup.plan_env_base, &setup.plan_env] {
            payload.extend_from_slice(path.as_bytes());
            payload.push(0);
        }
        for file in &setup.writes {
            let head = format!("{}\0{:o}\0{}\0", file.path, file.mode, file.contents.len());
            payload.extend_from_slice(head.as_bytes());
            payload.extend_from_slice(file.contents.as_bytes());
        }
        self.request(b'P', &payload).await.map(drop)
    }

    /// Write `contents` to `path` on the machine (replacing it).
    pub async fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), RunnerError> {
        let mut payload = Vec::with_capacity(path.len() + 1 + contents.len());
        payload.extend_from_slice(path.as_bytes());
        payload.push(0);
        payload.extend_from_slice(contents);
        self.request(b'W', &payload).await.map(drop)
    }

    /// Read the machine's boot id and create a new boot marker (removing
    /// `previous` first, when given): `(boot id, marker path)`, as
    /// [`crate::reboot::BootIdentity::record`] makes them by a script,
    /// without a session of its own.
    pub async fn boot_identity(
        &self,
        previous: Option<&str>,
    ) -> Result<(String, String), RunnerError> {
        let data = self
            .request(b'B', previous.unwrap_or_default().as_bytes())
            .await?;
        let text = String::from_utf8_lossy(&data);
        match text.split_once('\0') {
            Some((boot_id, marker)) if !boot_id.is_empty() && marker.starts_with('/') => {
                Ok((boot_id.to_owned(), marker.to_owned()))
            }
            _ => Err(RunnerError::Refused(format!(
                "record the boot identity: the runner answered {text:?}"
            ))),
        }
    }

    /// Remove `paths` on the machine (`rm -rf`), without a session of
    /// its own.
    pub async fn remove(&self, paths: &[&str]) -> Result<(), RunnerError> {
        let mut payload = Vec::new();
        for path in paths {
            payload.extend_from_slice(path.as_bytes());
            payload.push(0);
        }
        self.request(b'U', &payload).await.map(drop)
    }

    /// Start the wrapper with `args` (its argv without the interpreter,
    /// [`crate::wrapper::wrapper_args`]), its output written to `stderr`.
    pub fn start_wrapper(
        &self,
        args: &[String],
        stderr: File,
    ) -> Result<RunnerProcess<'_>, RunnerError> {
        if !self.is_alive() {
            return Err(self.gone_error());
        }
        let io = |e: io::Error| RunnerError::Refused(format!("create a pipe: {e}"));
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io(e.into()))?;
        let control = pipe::Sender::from_owned_fd(write).map_err(io)?;
        let reader = pipe::Receiver::from_owned_fd(read).map_err(io)?;
        let seq = self.next_seq();
        let (exit, exit_rx) = oneshot::channel();
        let sent_whole = Arc::new(AtomicBool::new(false));
        let route = Route::Test {
            seq,
            control,
            output: OutputSink::new(stderr),
            exit,
            sent_whole: Arc::clone(&sent_whole),
        };
        self.routes.send(route).map_err(|_| self.gone_error())?;
        let mut payload = Vec::new();
        for arg in args {
            payload.extend_from_slice(arg.as_bytes());
            payload.push(0);
        }
        self.send(b'S', seq, &payload)?;
        let closed_early = Arc::new(AtomicBool::new(false));
        Ok(RunnerProcess {
            runner: self,
            seq,
            control: Some(RunnerControl {
                pipe: reader,
                eof: false,
                closed_early: Arc::clone(&closed_early),
                close: Some((self.requests.clone(), seq)),
            }),
            exit: exit_rx,
            ended: None,
            closed_early,
            sent_whole,
        })
    }

    /// Stop every running wrapper (SIGTERM, then SIGKILL after the
    /// runner's grace) and wait until they are reaped.
    pub async fn stop_tests(&self) -> Result<(), RunnerError> {
        self.request(b'T', &[]).await.map(drop)
    }

    /// Stop the runner: its wrappers are stopped and it exits. The caller
    /// bounds the wait (a frozen machine never answers).
    pub async fn stop(mut self) {
        if self.send(b'Q', 0, &[]).is_ok()
            && let Some(demux) = self.demux.take()
        {
            let _ = demux.await;
        }
    }
}

/// Kill a process by its killer (best effort; a [`Process`] is not
/// `Sync`, so it cannot be borrowed across an await).
async fn kill(killer: Option<atex_shared::connection::Killer>) {
    if let Some(killer) = killer {
        let _ = killer.kill().await;
    }
}

/// Read the first frame, which must be the hello.
async fn read_hello(stdout: &mut BoxRead) -> Result<(), String> {
    let mut header = [0u8; HEADER];
    stdout
        .read_exact(&mut header)
        .await
        .map_err(|e| format!("it ended before saying hello ({e})"))?;
    let (kind, _, len) = parse_header(&header);
    if kind != b'H' || len > MAX_SMALL_FRAME {
        return Err("it did not say hello: not the atex runner".into());
    }
    let mut payload = vec![0; len];
    stdout
        .read_exact(&mut payload)
        .await
        .map_err(|e| format!("read its hello: {e}"))?;
    if payload != VERSION {
        return Err(format!(
            "it is version {:?}, not {:?}",
            String::from_utf8_lossy(&payload),
            String::from_utf8_lossy(VERSION)
        ));
    }
    Ok(())
}

fn parse_header(header: &[u8; HEADER]) -> (u8, u32, usize) {
    let [kind, s0, s1, s2, s3, l0, l1, l2, l3] = *header;
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    (
        kind,
        u32::from_be_bytes([s0, s1, s2, s3]),
        usize::try_from(len).unwrap_or(usize::MAX),
    )
}

/// Keep the last [`STDERR_TAIL`] bytes the runner wrote on stderr.
async fn keep_tail(mut stderr: pipe::Receiver, tail: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 1024];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if let Ok(mut tail) = tail.lock() {
                    tail.extend_from_slice(buf.get(..n).unwrap_or_default());
                    let extra = tail.len().saturating_sub(STDERR_TAIL);
                    tail.drain(..extra);
                }
            }
        }
    }
}

fn append_tail(message: &mut String, tail: &Mutex<Vec<u8>>) {
    if let Ok(tail) = tail.lock() {
        let text = String::from_utf8_lossy(&tail);
        let text = text.trim();
        if !text.is_empty() {
            message.push_str(": ");
            message.push_str(text);
        }
    }
}

/// Copy queued requests to the runner's stdin, in order.
async fn write_requests(mut stdin: BoxWrite, mut requests: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(frame) = requests.recv().await {
        if stdin.write_all(&frame).await.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Where one started wrapper's frames go.
struct Live {
    control: Option<pipe::Sender>,
    output: Option<OutputSink>,
    exit: Option<oneshot::Sender<Result<i32, String>>>,
    /// Which of the frames that end a test (E, D, X) came, as bits.
    ends: u8,
    /// Set when all three came: the runner forgot the test by itself.
    sent_whole: Arc<AtomicBool>,
}

/// The bits of [`Live::ends`]: E, D, X.
const ENDED_CONTROL: u8 = 1;
const ENDED_OUTPUT: u8 = 2;
const ENDED_EXIT: u8 = 4;

impl Live {
    fn done(&self) -> bool {
        self.control.is_none() && self.output.is_none() && self.exit.is_none()
    }

    /// One of the ending frames came.
    fn ended(&mut self, bit: u8) {
        self.ends |= bit;
        if self.ends == ENDED_CONTROL | ENDED_OUTPUT | ENDED_EXIT {
            self.sent_whole.store(true, Ordering::Release);
        }
    }
}

/// Route the runner's frames until its channel ends, then fail whatever
/// still waits with the reason.
async fn demux(
    mut stdout: BoxRead,
    mut process: Process,
    mut routes: mpsc::UnboundedReceiver<Route>,
    gone: Arc<Mutex<Option<String>>>,
    tail: Arc<Mutex<Vec<u8>>>,
) {
    let mut tests: HashMap<u32, Live> = HashMap::new();
    let mut replies: HashMap<u32, Answer> = HashMap::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let broken = 'frames: loop {
        let mut header = [0u8; HEADER];
        if let Err(e) = stdout.read_exact(&mut header).await {
            break if e.kind() == io::ErrorKind::UnexpectedEof {
                None
            } else {
                Some(format!("read from the runner: {e}"))
            };
        }
        // Routes are queued before their requests are sent: every frame
        // finds its route here.
        while let Ok(route) = routes.try_recv() {
            take_route(route, &mut tests, &mut replies);
        }
        let (kind, seq, len) = parse_header(&header);
        if kind == b'C' || kind == b'O' {
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len());
                let Some(chunk) = buf.get_mut(..n) else {
                    break 'frames Some("bad frame length".into());
                };
                if let Err(e) = stdout.read_exact(chunk).await {
                    break 'frames Some(format!("read from the runner: {e}"));
                }
                left -= n;
                if let Some(live) = tests.get_mut(&seq) {
                    deliver(kind, live, chunk).await;
                }
            }
        } else {
            if len > MAX_SMALL_FRAME {
                break Some(format!(
                    "the runner sent a {len}-byte '{}' frame",
                    char::from(kind)
                ));
            }
            let mut payload = vec![0u8; len];
            if let Err(e) = stdout.read_exact(&mut payload).await {
                break Some(format!("read from the runner: {e}"));
            }
            match kind {
                b'E' => {
                    if let Some(live) = tests.get_mut(&seq) {
                        live.control = None;
                        live.ended(ENDED_CONTROL);
                    }
                }
                b'D' => {
                    if let Some(live) = tests.get_mut(&seq) {
                        live.output = None;
                        live.ended(ENDED_OUTPUT);
                    }
                }
                b'X' => {
                    let code = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|s| s.parse::<i32>().ok());
                    if let Some(live) = tests.get_mut(&seq) {
                        live.ended(ENDED_EXIT);
                        if let Some(exit) = live.exit.take() {
                            let _ = exit.send(code.ok_or_else(|| {
                                format!("bad exit status {:?}", String::from_utf8_lossy(&payload))
                            }));
                        }
                    }
                }
                b'R' => {
                    if let Some(done) = replies.remove(&seq) {
                        let answer = match payload.split_first() {
                            Some((b'0', data)) => Ok(data.to_vec()),
                            Some((_, message)) => {
                                Err(String::from_utf8_lossy(message).into_owned())
                            }
                            None => Err("an empty answer".into()),
                        };
                        let _ = done.send(answer);
                    }
                }
                b'H' => {}
                other => {
                    break Some(format!(
                        "the runner sent an unknown frame '{}'",
                        char::from(other)
                    ));
                }
            }
        }
        tests.retain(|_, live| !live.done());
    };
    // The channel ended: say why, once the runner's end is known.
    let ended = tokio::time::timeout(EXIT_WAIT, process.wait()).await;
    let mut reason = match (broken, ended) {
        (Some(why), _) => why,
        (None, Ok(Err(e))) => e.to_string(),
        (None, Ok(Ok(Some(0)))) => "the runner ended".into(),
        (None, Ok(Ok(Some(code)))) => format!("the runner exited with {code}"),
        (None, Ok(Ok(None))) => "the runner was killed by a signal".into(),
        (None, Err(_)) => "its channel ended".into(),
    };
    append_tail(&mut reason, &tail);
    if let Ok(mut gone) = gone.lock() {
        *gone = Some(reason.clone());
    }
    routes.close();
    while let Ok(route) = routes.try_recv() {
        take_route(route, &mut tests, &mut replies);
    }
    for live in tests.into_values() {
        if let Some(exit) = live.exit {
            let _ = exit.send(Err(reason.clone()));
        }
    }
    for done in replies.into_values() {
        let _ = done.send(Err(reason.clone()));
    }
}

fn take_route(route: Route, tests: &mut HashMap<u32, Live>, replies: &mut HashMap<u32, Answer>) {
    match route {
        Route::Test {
            seq,
            control,
            output,
            exit,
            sent_whole,
        } => {
            tests.insert(
                seq,
                Live {
                    control: Some(control),
                    output: Some(output),
                    exit: Some(exit),
                    ends: 0,
                    sent_whole,
                },
            );
        }
        Route::Reply { seq, done } => {
            replies.insert(seq, done);
        }
        Route::Forget(seq) => {
            if let Some(live) = tests.get_mut(&seq) {
                live.control = None;
                live.exit = None;
            }
            tests.retain(|_, live| !live.done());
        }
    }
}

/// Hand test data to its reader; a reader that went away gets no more.
async fn deliver(kind: u8, live: &mut Live, data: &[u8]) {
    if kind == b'C' {
        if let Some(control) = live.control.as_mut()
            && control.write_all(data).await.is_err()
        {
            live.control = None;
        }
    } else if let Some(output) = live.output.as_mut()
        && !output.write(data).await
    {
        live.output = None;
    }
}

/// The control stream of one test, as the run loop reads it. Dropping it
/// before its end (the test sent `disconnect`, or broke the protocol)
/// closes the runner's end too, so the test's writes fail with EPIPE.
#[derive(Debug)]
pub struct RunnerControl {
    pipe: pipe::Receiver,
    eof: bool,
    closed_early: Arc<AtomicBool>,
    close: Option<(mpsc::UnboundedSender<Vec<u8>>, u32)>,
}

impl AsyncRead for RunnerControl {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.pipe).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.eof = true;
        }
        polled
    }
}

impl Drop for RunnerControl {
    fn drop(&mut self) {
        if self.eof {
            return;
        }
        self.closed_early.store(true, Ordering::Relaxed);
        if let Some((requests, seq)) = self.close.take() {
            let mut frame = vec![b'C'];
            frame.extend_from_slice(&seq.to_be_bytes());
            frame.extend_from_slice(&0u32.to_be_bytes());
            let _ = requests.send(frame);
        }
    }
}

/// A wrapper started by the runner ([`TestProcess`]). Dropping it tells
/// the runner to forget it (a wrapper still running gets SIGTERM).
pub struct RunnerProcess<'a> {
    runner: &'a Runner,
    seq: u32,
    control: Option<RunnerControl>,
    exit: oneshot::Receiver<Result<i32, String>>,
    ended: Option<Result<i32, String>>,
    closed_early: Arc<AtomicBool>,
    /// Whether the runner sent this test's end whole (and forgot it).
    sent_whole: Arc<AtomicBool>,
}

impl std::fmt::Debug for RunnerProcess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerProcess")
            .field("seq", &self.seq)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Drop for RunnerProcess<'_> {
    fn drop(&mut self) {
        // A test whose end came whole is forgotten on both sides already:
        // a request per test less.
        if self.sent_whole.load(Ordering::Acquire) {
            return;
        }
        let _ = self.runner.routes.send(Route::Forget(self.seq));
        let _ = self.runner.send(b'F', self.seq, &[]);
    }
}

impl RunnerProcess<'_> {
    /// Wait for the wrapper's end (cancel-safe: the answer is kept).
    async fn ended(&mut self) -> &Result<i32, String> {
        if self.ended.is_none() {
            let ended = match (&mut self.exit).await {
                Ok(ended) => ended,
                Err(_) => Err(self
                    .runner
                    .gone_reason()
                    .unwrap_or_else(|| "the runner forgot the test".into())),
            };
            self.ended = Some(ended);
        }
        self.ended.get_or_insert_with(|| Err(String::new()))
    }
}

impl TestProcess for RunnerProcess<'_> {
    type Control = RunnerControl;

    fn take_control(&mut self) -> Option<RunnerControl> {
        self.control.take()
    }

    async fn wait(&mut self) -> io::Result<i32> {
        let closed_early = self.closed_early.load(Ordering::Relaxed);
        match self.ended().await {
            Ok(code) => Ok(*code),
            // The channel went away after the test closed its control
            // stream (`disconnect`): the machine is going down, as a
            // wrapper killed by its reboot would say.
            Err(_) if closed_early => Ok(SIGNALLED_EXIT),
            Err(reason) => Err(io::Error::other(reason.clone())),
        }
    }

    async fn kill(&mut self) -> io::Result<()> {
        if self.ended.is_some() {
            return Ok(());
        }
        for (signal, within) in [(15, TERM_GRACE), (9, KILL_WAIT)] {
            if self
                .runner
                .send(b'K', self.seq, signal.to_string().as_bytes())
                .is_err()
            {
                return Ok(());
            }
            if tokio::time::timeout(within, self.ended()).await.is_ok() {
                return Ok(());
            }
        }
        Err(io::Error::other(format!(
            "the wrapper did not end within {} s of SIGKILL",
            KILL_WAIT.as_secs()
        )))
    }
}

/// Starts wrappers through a [`Runner`] (a [`Launcher`] for the run loop).
#[derive(Debug, Clone, Copy)]
pub struct RunnerLauncher<'a> {
    runner: &'a Runner,
}

impl<'a> RunnerLauncher<'a> {
    /// A launcher on `runner`.
    pub fn new(runner: &'a Runner) -> Self {
        Self { runner }
    }
}

impl<'a> Launcher for RunnerLauncher<'a> {
    type Process = RunnerProcess<'a>;

    async fn write_file(&self, path: &str, contents: Vec<u8>) -> io::Result<()> {
        self.runner
            .write_file(path, &contents)
            .await
            .map_err(io::Error::other)
    }

    async fn launch(&self, argv: Vec<String>, _stderr: File) -> io::Result<RunnerProcess<'a>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("the test runner starts the wrapper only, not {argv:?}"),
        ))
    }

    async fn launch_wrapper(
        &self,
        layout: &RemoteLayout,
        stderr: File,
    ) -> io::Result<RunnerProcess<'a>> {
        self.runner
            .start_wrapper(&layout.wrapper_args(), stderr)
            .map_err(io::Error::other)
    }
}

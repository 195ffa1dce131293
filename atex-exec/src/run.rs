//! Running one test: the wrapper process, the control stream, the deadline,
//! results and the fallback (spec/atex-reference.md section 2 "Runner state
//! machine" and section 4 "Per-test run_test").
//!
//! The loop is written against a small process abstraction, [`Launcher`]
//! and [`TestProcess`], so that any transport can run the wrapper: the
//! connection layer (ssh, podman) plugs in there; [`LocalLauncher`] runs the
//! wrapper on this machine with `tokio::process`.
//!
//! What is the caller's job, for now: the remote layout ([`RemoteLayout`]:
//! the wrapper source, the test script and the work directory) must exist
//! on the machine before [`run_test`] starts; setup (package installation,
//! uploading the tree, writing [`crate::wrapper::WRAPPER_PY`] and the
//! script) will come from the connection layer. The environment file is
//! written here, through [`Launcher::write_file`], on every (re)start,
//! because the reboot and restart counters in it change each time.
//!
//! One run ([`TestRun::run`]) goes `STARTING_TEST` → `READING_CONTROL` →
//! `WAITING_FOR_EXIT`, like ATEX's `FMFExecutor.run_test`, and ends either
//! with a finished test ([`RunEnd::Finished`]: the fallback result is added
//! and every result has reached the [`Sink`]) or with a request to reconnect
//! ([`RunEnd::NeedsReconnect`]: the test sent `disconnect` and the wrapper
//! then exited non-zero). Reconnecting and confirming a reboot are the
//! caller's job; it resumes the same [`TestRun`] (reporter, held partial
//! results and deadline carry over) with the counters raised, or gives up
//! with [`TestRun::abort`].
//!
//! File payloads go to disk with plain (blocking) writes from the task that
//! reads the channel, and the [`Sink`] is called there too: both are local
//! and fast, and keeping them inline keeps results in stream order with no
//! copies of the payload.
//!
//! Not here yet: cancelling a run other than by dropping its future (which
//! SIGKILLs [`LocalLauncher`]'s wrapper, so the test, in its own session,
//! runs on until it ends by itself), and ATEX's `eval_exit_code` hook (the
//! exit code is used as reported).
//!
//! Deviations from ATEX 1.x, on purpose:
//! - The control channel is read in chunks of [`READ_CHUNK`] bytes and the
//!   deadline is a timer, not a 0.1 s polling loop (spec section 9 item 4).
//! - When the wrapper exits non-zero in the middle of a `result` payload
//!   (without `disconnect`), the note is the "unexpectedly exited" one;
//!   ATEX names the running parser instead.
//! - The environment reaches the machine in a file ([`crate::wrapper::env_file`]),
//!   never on the command line (spec section 9 item 3).
//! - Stopping a test sends the wrapper SIGTERM (it hangs up the test's
//!   process group) before SIGKILL, for [`LocalLauncher`]; ATEX kills its
//!   local ssh process and relies on the wrapper's parent-death signal, which
//!   is what a remote launcher does too.

use std::fs::File;
use std::future::Future;
use std::io::{self, Write as _};
use std::os::unix::process::ExitStatusExt as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::net::unix::pipe::Receiver;

use crate::artifacts::{Artifacts, ArtifactsError};
use crate::control::{ControlError, Deadline, Decoder, Event, Limits};
use crate::reporter::{Failure, JsonMap, Outcome, ReportError, Reporter, Sink};
use crate::wrapper::{WrapperFlags, env_file, wrapper_argv};

/// How many bytes of the control channel are read at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long [`LocalLauncher`] waits for the wrapper to stop after SIGTERM
/// before it sends SIGKILL (the wrapper itself gives the test one second).
pub const LOCAL_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long the test's output is still read after its wrapper ended, for
/// the end of the output to arrive; a process the test left behind that
/// keeps the output open is cut off after this.
pub const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// The note of a test that ran out of time.
pub const TIMEOUT_MESSAGE: &str = "test duration timeout reached";

/// Where the wrapper and its inputs are on the machine (all remote paths).
///
/// The caller writes the wrapper source, the test script
/// ([`crate::wrapper::test_script`]) and the work directory before the run;
/// [`run_test`] writes `env_file` itself on every start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLayout {
    /// The python interpreter that runs the wrapper, e.g. `python3`.
    pub python: String,
    /// Where [`crate::wrapper::WRAPPER_PY`] was written.
    pub wrapper: String,
    /// Where the environment file is written (overwritten on every start).
    pub env_file: String,
    /// The test script.
    pub test_script: String,
    /// The directory the test runs in.
    pub workdir: String,
    /// The wrapper's flags (`tty`, ...).
    pub flags: WrapperFlags,
}

impl RemoteLayout {
    /// The wrapper's arguments without the interpreter
    /// ([`crate::wrapper::wrapper_args`]).
    pub fn wrapper_args(&self) -> Vec<String> {
        crate::wrapper::wrapper_args(self.flags, &self.env_file, &self.test_script, &self.workdir)
    }

    /// The wrapper's argv ([`wrapper_argv`]).
    pub fn argv(&self) -> Vec<String> {
        wrapper_argv(
            &self.python,
            &self.wrapper,
            self.flags,
            &self.env_file,
            &self.test_script,
            &self.workdir,
        )
    }
}

/// How often the test was restarted, exported as `TMT_REBOOT_COUNT` and
/// `TMT_TEST_RESTART_COUNT` (ATEX sets both to the number of reconnects).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// `TMT_REBOOT_COUNT`.
    pub reboot: u32,
    /// `TMT_TEST_RESTART_COUNT`.
    pub restart: u32,
}

impl Counters {
    /// The variables, with the highest precedence of the environment
    /// (spec section 4, step 1.6).
    pub fn env(&self) -> [(String, String); 2] {
        [
            ("TMT_REBOOT_COUNT".to_owned(), self.reboot.to_string()),
            (
                "TMT_TEST_RESTART_COUNT".to_owned(),
                self.restart.to_string(),
            ),
        ]
    }
}

/// A started wrapper process.
pub trait TestProcess: Send {
    /// The control channel: the wrapper's stdout.
    type Control: AsyncRead + Unpin + Send;

    /// Take the control channel (`Some` exactly once).
    fn take_control(&mut self) -> Option<Self::Control>;

    /// Wait for the process to exit and return its exit code: the exit
    /// status, or `128 + N` when a signal N ended it. Must be cancel-safe
    /// (the run drops it when the deadline passes, then calls
    /// [`TestProcess::kill`]).
    fn wait(&mut self) -> impl Future<Output = io::Result<i32>> + Send;

    /// Stop the process (and, through the wrapper, the test) and reap it.
    /// Stopping a process that already exited is not an error.
    fn kill(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Starts wrappers on one machine; the seam where connections plug in.
pub trait Launcher: Sync {
    /// The process type it starts.
    type Process: TestProcess;

    /// Write `contents` to the file `path` on the machine (replacing it).
    fn write_file(
        &self,
        path: &str,
        contents: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> + Send;

    /// Start `argv` on the machine with stdin from `/dev/null`, stdout
    /// piped to the controller ([`TestProcess::take_control`]) and stderr
    /// written to `stderr` (the test's output file, opened for appending).
    fn launch(
        &self,
        argv: Vec<String>,
        stderr: File,
    ) -> impl Future<Output = io::Result<Self::Process>> + Send;

    /// Start the wrapper of `layout` as [`Launcher::launch`] does; by
    /// default by launching [`RemoteLayout::argv`]. A launcher that runs
    /// the wrapper some other way (the warm runner,
    /// [`crate::runner::RunnerLauncher`]) takes the layout as it is.
    fn launch_wrapper(
        &self,
        layout: &RemoteLayout,
        stderr: File,
    ) -> impl Future<Output = io::Result<Self::Process>> + Send {
        self.launch(layout.argv(), stderr)
    }
}

/// Runs wrappers on this machine, with `tokio::process`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalLauncher;

/// A wrapper started by [`LocalLauncher`].
#[derive(Debug)]
pub struct LocalProcess {
    child: tokio::process::Child,
    control: Option<tokio::process::ChildStdout>,
}

impl Launcher for LocalLauncher {
    type Process = LocalProcess;

    async fn write_file(&self, path: &str, contents: Vec<u8>) -> io::Result<()> {
        tokio::fs::write(path, contents).await
    }

    async fn launch(&self, argv: Vec<String>, stderr: File) -> io::Result<LocalProcess> {
        let Some((program, args)) = argv.split_first() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // Dropping a run (cancellation) must not leave the wrapper behind.
            .kill_on_drop(true)
            .spawn()?;
        let control = child.stdout.take();
        Ok(LocalProcess { child, control })
    }
}

impl TestProcess for LocalProcess {
    type Control = tokio::process::ChildStdout;

    fn take_control(&mut self) -> Option<Self::Control> {
        self.control.take()
    }

    async fn wait(&mut self) -> io::Result<i32> {
        let status = self.child.wait().await?;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(-1))
    }

    async fn kill(&mut self) -> io::Result<()> {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            // SIGTERM first: the wrapper then hangs up the test's session,
            // which SIGKILL of the wrapper alone would leave running.
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(LOCAL_KILL_GRACE, self.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        self.child.kill().await
    }
}

/// A finished test: how it ended and the sink holding its results.
#[derive(Debug)]
pub struct Finished<S> {
    /// How the test ended (what [`Reporter::finish`] was given).
    pub outcome: Outcome,
    /// The sink, after every result was handed to it.
    pub sink: S,
}

impl<S> Finished<S> {
    /// Whether the test could not run to its end (it is `infra`).
    pub fn is_infra(&self) -> bool {
        matches!(self.outcome, Outcome::Failed { .. })
    }

    /// The exit code the test reported, if any.
    pub fn exit_code(&self) -> Option<i32> {
        match self.outcome {
            Outcome::Exited { exit_code } => Some(exit_code),
            Outcome::Failed { exit_code, .. } => exit_code,
        }
    }
}

/// How one run of the wrapper ended.
#[derive(Debug)]
pub enum RunEnd<S> {
    /// The test is over and all its results reached the sink.
    Finished(Finished<S>),
    /// The test sent `disconnect` and the wrapper exited non-zero (the
    /// machine reboots, or the channel was closed under the wrapper): once
    /// the machine is reachable again, run the same [`TestRun`] again with
    /// the counters raised, or [`TestRun::abort`] it.
    /// (Boxed: the run is large and this variant is the rare one.)
    NeedsReconnect(Box<TestRun<S>>),
}

/// One test being run, possibly across reconnects: its reporter (with the
/// partial results it holds) and its deadline, whose clock keeps running.
#[derive(Debug)]
pub struct TestRun<S> {
    reporter: Reporter<S>,
    deadline: Deadline,
    /// The caps on what the control stream announces.
    limits: Limits,
    /// The environment file already holds the first attempt's environment.
    env_written: bool,
}

/// What ended one run of the wrapper, before the reporter is finished.
enum Attempt {
    Exited(i32),
    Reconnect,
    Failed(Failure, Option<i32>),
}

impl<S: Sink> TestRun<S> {
    /// A test run whose deadline is `duration` from now (ATEX starts the
    /// clock before the setup, so setup time counts).
    pub fn new(reporter: Reporter<S>, duration: Duration) -> Self {
        Self::with_deadline(reporter, Deadline::new(Instant::now(), duration))
    }

    /// A test run with a deadline of the caller's making.
    pub fn with_deadline(reporter: Reporter<S>, deadline: Deadline) -> Self {
        Self {
            reporter,
            deadline,
            limits: Limits::default(),
            env_written: false,
        }
    }

    /// Decode the control stream with these caps instead of the defaults
    /// ([`Limits::default`]).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Say that the setup already wrote the environment file with exactly
    /// what the first attempt would write (the same variables and counters
    /// 0), so the first attempt skips writing it: one remote round trip less
    /// per test. Later attempts (after a reboot) write it as usual.
    #[must_use]
    pub fn with_env_written(mut self) -> Self {
        self.env_written = true;
        self
    }

    /// The deadline as the test's `duration` commands left it.
    pub fn deadline(&self) -> &Deadline {
        &self.deadline
    }

    /// Start the wrapper once and follow it to its end (see the [module
    /// docs](self)); `environment` is everything but the counters, in
    /// precedence order (a later duplicate wins).
    pub async fn run<L: Launcher>(
        mut self,
        launcher: &L,
        layout: &RemoteLayout,
        environment: &[(String, String)],
        counters: Counters,
    ) -> RunEnd<S> {
        match self.attempt(launcher, layout, environment, counters).await {
            Attempt::Exited(exit_code) => {
                RunEnd::Finished(self.finish(Outcome::Exited { exit_code }))
            }
            Attempt::Reconnect => RunEnd::NeedsReconnect(Box::new(self)),
            Attempt::Failed(failure, exit_code) => {
                RunEnd::Finished(self.finish(Outcome::Failed { failure, exit_code }))
            }
        }
    }

    /// Give up on the test (e.g. the machine did not come back): it becomes
    /// `infra` with `failure` as note.
    pub fn abort(self, failure: Failure) -> Finished<S> {
        self.finish(Outcome::Failed {
            failure,
            exit_code: None,
        })
    }

    fn finish(mut self, outcome: Outcome) -> Finished<S> {
        // A file that could not be written (a full disk) is the operator's
        // problem more than the test's: said on stderr too, at once.
        if let Outcome::Failed { failure, .. } = &outcome
            && failure.class == "OSError"
        {
            let message = format!(
                "{}: {}; the test is recorded as infra",
                self.reporter.test(),
                failure.message
            );
            self.reporter.warning(message);
        }
        let sink = self.reporter.finish(&outcome);
        Finished { outcome, sink }
    }

    async fn attempt<L: Launcher>(
        &mut self,
        launcher: &L,
        layout: &RemoteLayout,
        environment: &[(String, String)],
        counters: Counters,
    ) -> Attempt {
        let mut vars = environment.to_vec();
        vars.extend(counters.env());
        let env = match env_file(&vars) {
            Ok(env) => env,
            Err(e) => return Attempt::Failed(Failure::new("TestSetupError", e.to_string()), None),
        };
        if std::mem::take(&mut self.env_written) {
            // Written by the setup (see `with_env_written`).
        } else if let Err(e) = launcher.write_file(&layout.env_file, env).await {
            let message = format!("write the environment file {}: {e}", layout.env_file);
            return Attempt::Failed(Failure::new("TestSetupError", message), None);
        }
        let (mut output, stderr) = match OutputCopy::start(self.reporter.artifacts()) {
            Ok(started) => started,
            Err(failure) => return Attempt::Failed(failure, None),
        };
        let attempt = self.follow(launcher, layout, stderr, &mut output).await;
        // What the test wrote up to its end is stored before its results
        // are final; a write that fails then still makes the test infra.
        if let Err(failure) = output.drain().await {
            return match attempt {
                Attempt::Failed(..) => attempt,
                Attempt::Exited(code) => Attempt::Failed(failure, Some(code)),
                Attempt::Reconnect => Attempt::Failed(failure, None),
            };
        }
        attempt
    }

    /// Start the wrapper with its stderr into `stderr` (the pipe `output`
    /// copies to the test's output file) and follow it to its end.
    async fn follow<L: Launcher>(
        &mut self,
        launcher: &L,
        layout: &RemoteLayout,
        stderr: File,
        output: &mut OutputCopy,
    ) -> Attempt {
        let mut process = match launcher.launch_wrapper(layout, stderr).await {
            Ok(process) => process,
            Err(e) => {
                let message = format!("start the test wrapper: {e}");
                return Attempt::Failed(Failure::new("OSError", message), None);
            }
        };
        let Some(control) = process.take_control() else {
            let failure = Failure::new("OSError", "the test wrapper has no control channel");
            return abort(&mut process, failure, None).await;
        };
        let artifacts = self.reporter.artifacts().clone();
        let mut handler = Handler {
            artifacts,
            reporter: &mut self.reporter,
            deadline: &mut self.deadline,
            exit_code: None,
            pending: None,
            file: None,
        };
        let mut decoder = Decoder::with_limits(self.limits);
        let read = {
            let control = read_control(control, &mut decoder, &mut handler);
            tokio::pin!(control);
            loop {
                tokio::select! {
                    read = &mut control => break read,
                    copied = output.copy(), if !output.is_done() => {
                        if let Err(failure) = copied {
                            break Err(failure);
                        }
                    }
                }
            }
        };
        if let Err(failure) = read {
            let exit_code = handler.exit_code;
            return abort(&mut process, failure, exit_code).await;
        }
        let exit_code = handler.exit_code;
        // The control channel is closed now (ATEX closes it right at
        // `disconnect`, so the test's `noop` probes fail with EPIPE).
        let status = if self.deadline.expired(Instant::now()) {
            None
        } else {
            // The wait is made once and kept across the output's chunks: a
            // wait dropped half-way may lose the child (the connection's
            // local processes are killed when their handle goes).
            let waited = {
                let wait = process.wait();
                let sleep = tokio::time::sleep(self.deadline.remaining(Instant::now()));
                tokio::pin!(wait, sleep);
                loop {
                    tokio::select! {
                        status = &mut wait => break Ok(Some(status)),
                        () = &mut sleep => break Ok(None),
                        copied = output.copy(), if !output.is_done() => {
                            if let Err(failure) = copied {
                                break Err(failure);
                            }
                        }
                    }
                }
            };
            match waited {
                Ok(status) => status,
                Err(failure) => return abort(&mut process, failure, exit_code).await,
            }
        };
        let code = match status {
            None => {
                let failure = Failure::new("TestAbortedError", TIMEOUT_MESSAGE);
                return abort(&mut process, failure, exit_code).await;
            }
            Some(Err(e)) => {
                let failure = Failure::new("OSError", format!("wait for the test wrapper: {e}"));
                return abort(&mut process, failure, exit_code).await;
            }
            Some(Ok(code)) => code,
        };
        if code != 0 {
            if decoder.is_disconnected() {
                return Attempt::Reconnect;
            }
            let message = format!(
                "test wrapper unexpectedly exited with {code} and disconnect was not sent via test control"
            );
            return Attempt::Failed(Failure::new("TestAbortedError", message), exit_code);
        }
        if let Err(e) = decoder.finish() {
            return Attempt::Failed(control_failure(&e), exit_code);
        }
        match exit_code {
            Some(code) => Attempt::Exited(code),
            None => Attempt::Failed(
                Failure::new("TestAbortedError", "exitcode not reported, wrapper bug?"),
                None,
            ),
        }
    }
}

/// The test's output on its way to its file: the wrapper's stderr is a
/// pipe that this copies to `testout.temp`, so that a failed write (a full
/// disk) is seen at once and fails the test, instead of stalling the
/// transport that writes it (ATEX gives the file to the transport).
struct OutputCopy {
    pipe: Receiver,
    file: File,
    path: std::path::PathBuf,
    buf: Vec<u8>,
    /// EOF was read, or a write failed.
    done: bool,
}

impl OutputCopy {
    /// Open the test's output file and a pipe into it; the pipe's write end
    /// is for the wrapper's stderr.
    fn start(artifacts: &Artifacts) -> Result<(OutputCopy, File), Failure> {
        let file = artifacts
            .open_testout()
            .map_err(|e| Failure::from(&ReportError::from(e)))?;
        let os = |e: io::Error| {
            Failure::new("OSError", format!("create a pipe for the test output: {e}"))
        };
        let (read, write) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| os(e.into()))?;
        let pipe = Receiver::from_owned_fd(read).map_err(os)?;
        let copy = OutputCopy {
            pipe,
            file,
            path: artifacts.testout_path(),
            buf: vec![0; READ_CHUNK],
            done: false,
        };
        Ok((copy, File::from(write)))
    }

    fn is_done(&self) -> bool {
        self.done
    }

    /// Copy one chunk (waiting for it); `Ok` also at EOF ([`Self::is_done`]
    /// then). Cancel-safe: nothing is held between the read and the write.
    async fn copy(&mut self) -> Result<(), Failure> {
        let n = match self.pipe.read(&mut self.buf).await {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => {
                self.done = true;
                return Err(Failure::new(
                    "OSError",
                    format!("read the test output: {e}"),
                ));
            }
        };
        if n == 0 {
            self.done = true;
            return Ok(());
        }
        let data = self.buf.get(..n).unwrap_or_default();
        if let Err(source) = self.file.write_all(data) {
            self.done = true;
            let error = ArtifactsError::Io {
                action: "write",
                path: self.path.clone(),
                source,
            };
            return Err(Failure::from(&ReportError::from(error)));
        }
        Ok(())
    }

    /// Copy what is left, until EOF or for [`OUTPUT_DRAIN`] at most.
    async fn drain(mut self) -> Result<(), Failure> {
        let until = tokio::time::Instant::now() + OUTPUT_DRAIN;
        while !self.done {
            match tokio::time::timeout_at(until, self.copy()).await {
                Ok(copied) => copied?,
                Err(_) => break,
            }
        }
        Ok(())
    }
}

/// Start the test and run it once: [`TestRun::new`] then [`TestRun::run`]
/// with the first counters. `duration` is the test's fmf duration.
pub async fn run_test<L: Launcher, S: Sink>(
    launcher: &L,
    layout: &RemoteLayout,
    environment: &[(String, String)],
    duration: Duration,
    counters: Counters,
    reporter: Reporter<S>,
) -> RunEnd<S> {
    TestRun::new(reporter, duration)
        .run(launcher, layout, environment, counters)
        .await
}

/// Kill the wrapper and fail; a failed kill is added to the note, since the
/// test may still be running.
async fn abort<P: TestProcess>(
    process: &mut P,
    failure: Failure,
    exit_code: Option<i32>,
) -> Attempt {
    let failure = match process.kill().await {
        Ok(()) => failure,
        Err(e) => Failure::new(
            failure.class,
            format!(
                "{} (and stopping the test wrapper failed: {e})",
                failure.message
            ),
        ),
    };
    Attempt::Failed(failure, exit_code)
}

fn control_failure(e: &ControlError) -> Failure {
    Failure::new(e.class_name(), e.to_string())
}

/// Read the control channel until EOF or `disconnect`, routing its events;
/// fails on a protocol error, a read error or the deadline.
async fn read_control<R: AsyncRead + Unpin, S: Sink>(
    mut control: R,
    decoder: &mut Decoder,
    handler: &mut Handler<'_, S>,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let now = Instant::now();
        if handler.deadline.expired(now) {
            return Err(Failure::new("TestAbortedError", TIMEOUT_MESSAGE));
        }
        let read = tokio::select! {
            read = control.read(&mut buf) => read,
            () = tokio::time::sleep(handler.deadline.remaining(now)) => continue,
        };
        let n = match read {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let message = format!("read the control channel: {e}");
                return Err(Failure::new("OSError", message));
            }
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if let Err(e) = decoder.feed(chunk, |event| handler.event(event)) {
            return Err(match e {
                StreamError::Control(e) => control_failure(&e),
                StreamError::Report(e) => Failure::from(&e),
            });
        }
        // Results of this chunk reach the reader now, not when a batching
        // sink's buffer fills.
        handler.reporter.flush();
        if decoder.is_disconnected() {
            return Ok(());
        }
    }
}

/// An error while handling the control stream.
enum StreamError {
    Control(ControlError),
    Report(ReportError),
}

impl From<ControlError> for StreamError {
    fn from(e: ControlError) -> Self {
        Self::Control(e)
    }
}

impl From<ReportError> for StreamError {
    fn from(e: ReportError) -> Self {
        Self::Report(e)
    }
}

impl From<ArtifactsError> for StreamError {
    fn from(e: ArtifactsError) -> Self {
        Self::Report(e.into())
    }
}

/// Routes decoded events to the artifacts, the reporter and the deadline.
struct Handler<'a, S> {
    artifacts: Artifacts,
    reporter: &'a mut Reporter<S>,
    deadline: &'a mut Deadline,
    /// The last `exitcode` (last wins).
    exit_code: Option<i32>,
    /// The current `result`: its JSON, its name and its file names.
    pending: Option<Pending>,
    /// The open file of the current result: its index and handle. Files
    /// are opened one at a time, when their data starts, so a name repeated
    /// within one result appends after the earlier part.
    file: Option<(usize, File)>,
}

struct Pending {
    json: JsonMap,
    name: Option<String>,
    files: Vec<String>,
}

impl<S: Sink> Handler<'_, S> {
    fn event(&mut self, event: Event<'_>) -> Result<(), StreamError> {
        match event {
            Event::Result(header) => {
                // A scan, not a hashed lookup: results have a handful of keys.
                let name = header.json.iter().find(|(key, _)| *key == "name");
                let name = match name.map(|(_, value)| value) {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(name)) => Some(name.clone()),
                    // The reporter refuses it too; only files need the name now.
                    Some(other) if !header.files.is_empty() => {
                        let message = format!("'name' must be a string, not {other}");
                        return Err(ReportError::BadReportJson(message).into());
                    }
                    Some(_) => None,
                };
                let files = header.files.into_iter().map(|f| f.name).collect();
                self.pending = Some(Pending {
                    json: header.json,
                    name,
                    files,
                });
            }
            Event::FileData { index, data } => {
                self.open(index)?;
                if let Some((_, file)) = &mut self.file
                    && let Err(source) = file.write_all(data)
                {
                    return Err(self.write_error(index, source));
                }
            }
            Event::FileEnd { index } => {
                // Opening creates the file even for `length: 0`.
                self.open(index)?;
                self.file = None;
            }
            Event::ResultEnd => {
                self.file = None;
                if let Some(pending) = self.pending.take() {
                    self.reporter.report(pending.json)?;
                }
            }
            Event::ExitCode(code) => self.exit_code = Some(code),
            Event::Duration(command) => self.deadline.apply(command, Instant::now()),
            Event::Disconnect | Event::Noop => {}
        }
        Ok(())
    }

    /// Make file `index` of the current result the open one.
    fn open(&mut self, index: usize) -> Result<(), StreamError> {
        if self.file.as_ref().is_some_and(|(open, _)| *open == index) {
            return Ok(());
        }
        let (result, file_name) = self.names(index)?;
        let file = self.artifacts.open_append(result, file_name)?;
        self.file = Some((index, file));
        Ok(())
    }

    /// The result name and the name of its file `index`, as bytes.
    fn names(&self, index: usize) -> Result<(Option<&[u8]>, &[u8]), StreamError> {
        let Some(pending) = &self.pending else {
            return Err(ControlError::BadControl("file data outside a result".into()).into());
        };
        let Some(file_name) = pending.files.get(index) else {
            let message = "file data beyond the result's files";
            return Err(ControlError::BadControl(message.into()).into());
        };
        Ok((
            pending.name.as_deref().map(str::as_bytes),
            file_name.as_bytes(),
        ))
    }

    /// The error for a failed write to file `index` (an `OSError` note).
    fn write_error(&self, index: usize, source: io::Error) -> StreamError {
        match self.names(index) {
            Ok((result, file_name)) => match self.artifacts.file_path(result, file_name) {
                Ok(path) => ArtifactsError::Io {
                    action: "write",
                    path,
                    source,
                }
                .into(),
                Err(e) => e.into(),
            },
            Err(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_env() {
        let c = Counters {
            reboot: 2,
            restart: 3,
        };
        assert_eq!(
            c.env(),
            [
                ("TMT_REBOOT_COUNT".to_owned(), "2".to_owned()),
                ("TMT_TEST_RESTART_COUNT".to_owned(), "3".to_owned())
            ]
        );
    }

    #[test]
    fn layout_argv() {
        let layout = RemoteLayout {
            python: "python3".into(),
            wrapper: "/w/wrapper.py".into(),
            env_file: "/w/env".into(),
            test_script: "/w/test.sh".into(),
            workdir: "/w/tests".into(),
            flags: WrapperFlags::default(),
        };
        assert_eq!(
            layout.argv(),
            [
                "python3",
                "-S",
                "/w/wrapper.py",
                "/w/env",
                "/w/test.sh",
                "/w/tests"
            ]
        );
    }
}

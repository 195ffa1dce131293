//! Running atex tools as real, deadline-bounded processes: the
//! `atex-discover ... | atex-exec ...` pipe, and the pieces (waiting with a
//! deadline, killing, collecting stdout and stderr on threads) that tests
//! driving a single tool by hand share.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_shared::records::TestResult;

use crate::{bin_path, parse_records};

/// What a finished `atex-discover | atex-exec` pipe left behind.
#[derive(Debug)]
pub struct PipeOutput {
    /// atex-discover's exit code; `None` if a signal ended it.
    pub discover: Option<i32>,
    /// atex-exec's exit code; `None` if a signal ended it.
    pub code: Option<i32>,
    /// Everything atex-exec wrote on stdout.
    pub stdout: Vec<u8>,
    /// Everything atex-exec wrote on stderr, lossily decoded.
    pub stderr: String,
}

impl PipeOutput {
    /// atex-exec's stdout parsed as result records.
    pub fn results(&self) -> Result<Vec<TestResult>> {
        parse_records(&self.stdout, "atex-exec stdout")
    }
}

/// Run `atex-discover DISCOVER_ARGS | atex-exec EXEC_ARGS`, both ended (by
/// pid) if they outlive `timeout`. atex-discover's stderr passes through to
/// the test's; atex-exec's is collected.
pub fn pipeline(
    discover_args: &[&OsStr],
    exec_args: &[&OsStr],
    timeout: Duration,
) -> Result<PipeOutput> {
    let deadline = Instant::now() + timeout;
    let mut discover = Command::new(bin_path("atex-discover")?)
        .args(discover_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start atex-discover")?;
    let records = discover.stdout.take().context("discover stdout")?;
    let exec = spawn_exec(exec_args, Stdio::from(records));
    let mut exec = match exec {
        Ok(exec) => exec,
        Err(e) => {
            stop(&mut discover);
            return Err(e);
        }
    };
    let collector = Collector::start(&mut exec)?;
    let discover_code = wait_bounded(&mut discover, deadline, "atex-discover");
    let code = wait_bounded(&mut exec, deadline, "atex-exec");
    if code.is_err() {
        stop(&mut discover);
    }
    let (stdout, stderr) = collector.finish();
    Ok(PipeOutput {
        discover: discover_code?,
        code: code?,
        stdout,
        stderr,
    })
}

/// The usual [`pipeline`]: `atex-discover tests --root TREE DISCOVER_EXTRA
/// | atex-exec --machine MACHINE --artifacts DIR`, where `machine` is a
/// Machine record as JSON and `discover_extra` adds options such as
/// `--plan`.
pub fn tests_on(
    tree: &Path,
    discover_extra: &[&OsStr],
    machine: &str,
    artifacts: &Path,
    timeout: Duration,
) -> Result<PipeOutput> {
    let mut discover: Vec<&OsStr> = vec!["tests".as_ref(), "--root".as_ref(), tree.as_os_str()];
    discover.extend_from_slice(discover_extra);
    let exec: [&OsStr; 4] = [
        "--machine".as_ref(),
        machine.as_ref(),
        "--artifacts".as_ref(),
        artifacts.as_os_str(),
    ];
    pipeline(&discover, &exec, timeout)
}

/// Start atex-exec with `args`, reading `stdin`, its stdout and stderr
/// piped (see [`Collector`]).
pub fn spawn_exec(args: &[&OsStr], stdin: Stdio) -> Result<Child> {
    Command::new(bin_path("atex-exec")?)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start atex-exec")
}

/// Start `atex-aggregate --output DIR` reading a pipe the caller writes
/// (stdout to /dev/null, stderr piped).
pub fn spawn_aggregate(dir: &std::path::Path) -> Result<Child> {
    Command::new(bin_path("atex-aggregate")?)
        .arg("--output")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("failed to start atex-aggregate")
}

/// Kill `child` by its pid and reap it.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
}

/// Wait for `child` at most until `deadline`; kill it (by pid) after that.
/// The exit code, `None` if a signal ended it; `what` names it in the error.
pub fn wait_bounded(child: &mut Child, deadline: Instant, what: &str) -> Result<Option<i32>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            stop(child);
            bail!("{what} did not finish by its deadline");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Threads draining a child's stdout and stderr, so a chatty child never
/// blocks on a full pipe while the test waits for it.
#[derive(Debug)]
pub struct Collector {
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<String>,
}

impl Collector {
    /// Take `child`'s piped stdout and stderr and read them on threads.
    pub fn start(child: &mut Child) -> Result<Collector> {
        let mut out = child.stdout.take().context("child stdout is not piped")?;
        let mut err = child.stderr.take().context("child stderr is not piped")?;
        Ok(Collector {
            stdout: std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                buf
            }),
            stderr: std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                String::from_utf8_lossy(&buf).into_owned()
            }),
        })
    }

    /// Everything read, once the child's ends of the pipes are closed:
    /// stdout bytes and lossily decoded stderr.
    pub fn finish(self) -> (Vec<u8>, String) {
        (
            self.stdout.join().unwrap_or_default(),
            self.stderr.join().unwrap_or_default(),
        )
    }
}

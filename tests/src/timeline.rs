//! atex-orchestrate seen from outside, for the pool tests: the real
//! process, each of its stderr lines stamped with the wall-clock time it
//! arrived, and the run's timeline built from those event lines (which
//! session of which machine ran each attempt, from when to when), to be
//! checked against the tests' own start and end marks.
//!
//! Times are seconds since the epoch (`date +%s.%N`), so a test script on
//! a loopback machine and this process read the same clock.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use atex_shared::records::TestResult;

use crate::{bin_path, parse_records};

/// What every event line starts with.
const PREFIX: &str = "atex-orchestrate: ";

/// The time now, in seconds since the epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A shell snippet printing `atex-mark WHAT <time>` on the test's output,
/// read back by [`marks`].
pub fn mark(what: &str) -> String {
    format!("echo \"atex-mark {what} $(date +%s.%N)\"")
}

/// The `atex-mark WHAT TIME` lines ([`mark`]) in the output of the test of
/// `result` (its first file), as `(what, time)`.
pub fn marks(result: &TestResult) -> Result<Vec<(String, f64)>> {
    let name = result
        .files
        .first()
        .with_context(|| format!("{}: the result has no output file", result.test))?;
    let path = result.artifacts.join("files").join(name);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut found = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("atex-mark ") else {
            continue;
        };
        let Some((what, at)) = rest.split_once(' ') else {
            bail!("{}: bad mark line {line:?}", path.display());
        };
        let at: f64 = at
            .parse()
            .with_context(|| format!("{}: bad mark time in {line:?}", path.display()))?;
        found.push((what.to_owned(), at));
    }
    Ok(found)
}

/// One stderr line and when it arrived.
#[derive(Debug, Clone)]
pub struct Line {
    /// Seconds since the epoch.
    pub at: f64,
    /// The line, without its newline.
    pub text: String,
}

/// Lines read so far, and whether stderr ended.
type Lines = Arc<(Mutex<(Vec<Line>, bool)>, Condvar)>;

/// A running atex-orchestrate: its stdin written and closed, stdout
/// collected, stderr lines stamped as they come.
#[derive(Debug)]
pub struct Orchestrate {
    child: Child,
    stdout: JoinHandle<Vec<u8>>,
    stderr: JoinHandle<()>,
    lines: Lines,
}

impl Orchestrate {
    /// Start `atex-orchestrate ARGS` with `envs` added to its environment
    /// and `input` (Test records) on its stdin.
    pub fn start<A: AsRef<OsStr>>(
        args: &[A],
        envs: &[(&str, &OsStr)],
        input: &[u8],
    ) -> Result<Orchestrate> {
        let mut command = Command::new(bin_path("atex-orchestrate")?);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .context("failed to start atex-orchestrate")?;
        let mut stdin = child.stdin.take().context("no stdin")?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let data = input.to_vec();
        // The tool reads its whole input first; a thread all the same, so
        // a large input can never block against its output.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            bytes
        });
        let lines: Lines = Arc::default();
        let shared = lines.clone();
        let stderr = std::thread::spawn(move || {
            let (state, changed) = &*shared;
            for line in BufReader::new(stderr).lines() {
                let Ok(text) = line else { break };
                let at = now();
                let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
                state.0.push(Line { at, text });
                changed.notify_all();
            }
            state.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
            changed.notify_all();
        });
        Ok(Orchestrate {
            child,
            stdout,
            stderr,
            lines,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait up to `timeout` until `count` stderr lines contain `text`;
    /// the lines so far (for messages) in the error.
    pub fn wait_for(&self, text: &str, count: usize, timeout: Duration) -> Result<Vec<Line>> {
        let until = Instant::now() + timeout;
        let (state, changed) = &*self.lines;
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let found: Vec<Line> = state
                .0
                .iter()
                .filter(|l| l.text.contains(text))
                .cloned()
                .collect();
            if found.len() >= count {
                return Ok(found);
            }
            let left = until.saturating_duration_since(Instant::now());
            if state.1 || left.is_zero() {
                let seen: Vec<&str> = state.0.iter().map(|l| l.text.as_str()).collect();
                bail!(
                    "{count} stderr lines with {text:?} did not come: {}",
                    seen.join("\n")
                );
            }
            state = changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Send `signal` to the process.
    pub fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid())?).context("bad pid")?;
        rustix::process::kill_process(pid, signal).context("failed to send the signal")
    }

    /// Wait for the exit, at most `timeout` (then the process is killed
    /// by its pid and this fails), and collect everything.
    pub fn finish(mut self, timeout: Duration) -> Result<Finished> {
        let code = crate::pipe::wait_bounded(
            &mut self.child,
            Instant::now() + timeout,
            "atex-orchestrate",
        )?;
        let stdout = self.stdout.join().unwrap_or_default();
        let _ = self.stderr.join();
        let (state, _) = &*self.lines;
        let lines = std::mem::take(&mut state.lock().unwrap_or_else(PoisonError::into_inner).0);
        Ok(Finished {
            code,
            stdout,
            lines,
        })
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    /// Everything written on stdout.
    pub stdout: Vec<u8>,
    /// stderr, line by line, stamped.
    pub lines: Vec<Line>,
}

impl Finished {
    /// stdout parsed as Result records.
    pub fn results(&self) -> Result<Vec<TestResult>> {
        parse_records(&self.stdout, "atex-orchestrate stdout")
    }

    /// stderr as text, for messages.
    pub fn stderr(&self) -> String {
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(&line.text);
            text.push('\n');
        }
        text
    }

    /// The timeline told by the event lines.
    pub fn timeline(&self) -> Timeline {
        Timeline::from_lines(&self.lines)
    }
}

/// One session of a machine: from its `machine ready` line to its
/// `machine released` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// The machine's id.
    pub machine: String,
    /// When it was ready.
    pub ready: f64,
    /// Why it was destroyed, if it was.
    pub destroyed: Option<String>,
    /// When it was released.
    pub released: Option<f64>,
}

/// One attempt of a test, from its `started` line to its `ended` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The test's name.
    pub test: String,
    /// 0 for the first run.
    pub attempt: u32,
    /// The session (index in [`Timeline::sessions`]) it ran in.
    pub session: usize,
    /// The machine's id.
    pub machine: String,
    /// When it started.
    pub started: f64,
    /// When it ended, and the status the line gave.
    pub ended: Option<(f64, String)>,
}

/// What the event lines of a run tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    /// Sessions in the order their machines became ready.
    pub sessions: Vec<Session>,
    /// Attempts in the order they started.
    pub attempts: Vec<Attempt>,
    /// Machines whose setup failed, in order.
    pub setup_failed: Vec<String>,
}

impl Timeline {
    /// Read the event lines (`atex-orchestrate: MACHINE: ...`); other
    /// lines are passed over.
    pub fn from_lines(lines: &[Line]) -> Timeline {
        let mut timeline = Timeline::default();
        for line in lines {
            if let Some(text) = line.text.strip_prefix(PREFIX) {
                timeline.read(line.at, text);
            }
        }
        timeline
    }

    /// The open session of `machine` (the last one not released).
    fn open(&self, machine: &str) -> Option<usize> {
        self.sessions
            .iter()
            .rposition(|s| s.machine == machine && s.released.is_none())
    }

    fn read(&mut self, at: f64, text: &str) {
        if let Some(failed) = text.strip_prefix("error: ") {
            if let Some((machine, _)) = failed.split_once(": setup failed: ") {
                self.setup_failed.push(machine.to_owned());
            }
            return;
        }
        let Some((machine, what)) = text.split_once(": ") else {
            return;
        };
        let open = self.open(machine);
        if what == "machine ready" {
            self.sessions.push(Session {
                machine: machine.to_owned(),
                ready: at,
                destroyed: None,
                released: None,
            });
        } else if what == "machine released" {
            if let Some(at_session) = open {
                self.sessions[at_session].released = Some(at);
            }
        } else if let Some(why) = what.strip_prefix("machine destroyed (") {
            if let Some(at_session) = open {
                let why = why.strip_suffix(')').unwrap_or(why);
                self.sessions[at_session].destroyed = Some(why.to_owned());
            }
        } else if let Some((test, status)) = what.split_once(" ended: ") {
            let attempt = status
                .rsplit_once(", attempt ")
                .and_then(|(_, n)| n.parse().ok())
                .unwrap_or(0);
            let status = status.split(" (").next().unwrap_or(status);
            if let Some(ended) = self.attempts.iter_mut().rev().find(|a| {
                a.test == test && a.attempt == attempt && a.machine == machine && a.ended.is_none()
            }) {
                ended.ended = Some((at, status.to_owned()));
            }
        } else if let (Some(session), Some((test, attempt))) = (open, started(what)) {
            self.attempts.push(Attempt {
                test: test.to_owned(),
                attempt,
                session,
                machine: machine.to_owned(),
                started: at,
                ended: None,
            });
        }
    }

    /// The attempt `attempt` of `test`.
    pub fn attempt(&self, test: &str, attempt: u32) -> Option<&Attempt> {
        self.attempts
            .iter()
            .find(|a| a.test == test && a.attempt == attempt)
    }

    /// The attempts run in session `session`, in order.
    pub fn in_session(&self, session: usize) -> Vec<&Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.session == session)
            .collect()
    }
}

/// `TEST started` or `TEST started (attempt N)`: the test and attempt.
fn started(what: &str) -> Option<(&str, u32)> {
    if let Some(test) = what.strip_suffix(" started") {
        return Some((test, 0));
    }
    let (test, n) = what.split_once(" started (attempt ")?;
    Some((test, n.strip_suffix(')')?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<Line> {
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| Line {
                at: i as f64,
                text: format!("{PREFIX}{text}"),
            })
            .collect()
    }

    #[test]
    fn sessions_and_attempts_from_the_event_lines() {
        let timeline = Timeline::from_lines(&lines(&[
            "ssh/u@h:1: machine ready",
            "ssh/u@h:1: /a started",
            "ssh/u@h:1: /a ended: fail (0.5 s)",
            "/a: rerun queued (attempt 1)",
            "ssh/u@h:1: machine destroyed (the test exited 1, not one of --reuse-on-exit)",
            "ssh/u@h:1: machine released",
            "error: ssh/u@h:2: setup failed: connect",
            "ssh/u@h:1: machine ready",
            "ssh/u@h:1: /a started (attempt 1)",
            "ssh/u@h:1: /a ended: pass (0.2 s), attempt 1",
        ]));
        assert_eq!(timeline.sessions.len(), 2);
        assert_eq!(
            timeline.sessions[0].destroyed.as_deref(),
            Some("the test exited 1, not one of --reuse-on-exit")
        );
        assert_eq!(timeline.sessions[0].released, Some(5.0));
        assert_eq!(timeline.setup_failed, ["ssh/u@h:2"]);
        let first = timeline
            .attempt("/a", 0)
            .map(|a| (a.session, a.ended.clone()));
        assert_eq!(first, Some((0, Some((2.0, "fail".to_owned())))));
        let rerun = timeline
            .attempt("/a", 1)
            .map(|a| (a.session, a.ended.clone()));
        assert_eq!(rerun, Some((1, Some((9.0, "pass".to_owned())))));
        assert_eq!(timeline.in_session(1).len(), 1);
    }
}

//! atex-orchestrate's live view (issue 12), read from a real terminal:
//! tmux runs the command in a pane of its own server and the test reads
//! the screen with `capture-pane` while the run goes on and after it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use atex_tests::{Fixture, bin_path};
use serde_json::json;

/// A tmux server of this test's own (its socket named after the test's
/// pid), stopped when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Start `command` in a detached 160x40 session.
    fn start(command: &str) -> Result<Tmux> {
        let socket = format!("atex-live-view-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "160", "-y", "40", "sh", "-c", command])
            .status()
            .context("failed to start tmux (apt-get install tmux; scripts/install-deps.sh does)")?;
        ensure!(status.success(), "tmux new-session failed: {status}");
        Ok(Tmux { socket })
    }

    /// The screen now, as text.
    fn screen(&self) -> Result<String> {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .context("tmux capture-pane")?;
        ensure!(out.status.success(), "tmux capture-pane failed");
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Wait until the screen satisfies `ready`; the screens seen in the
    /// error.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> Result<String> {
        let until = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < until {
            last = self.screen()?;
            if ready(&last) {
                return Ok(last);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the screen never showed {what}; last screen:\n{last}")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// Test records: `/slow` (expected 1 s from the history, runs 5 s), `/bad`
/// (fails with a note), and four quick ones.
fn write_input(dir: &Path) -> Result<()> {
    let root = dir.join("tree");
    std::fs::create_dir_all(&root)?;
    let mut input = String::new();
    let mut add = |name: &str, script: &str| {
        let record =
            json!({"name": name, "root": root, "path": "", "test": script, "duration": 60});
        input.push_str(&format!("{record}\n"));
    };
    add("/slow", "sleep 5");
    add(
        "/bad",
        r#"sleep 1; export LC_ALL=C; r='{"status": "fail", "note": "the disk is full"}'; printf 'result %d\n%s' "${#r}" "$r" >&"$ATEX_TEST_CONTROL""#,
    );
    for i in 1..=4 {
        add(&format!("/quick{i}"), "sleep 1");
    }
    std::fs::write(dir.join("input.jsonl"), input)?;
    let history = dir.join("history");
    std::fs::create_dir_all(&history)?;
    std::fs::write(
        history.join("durations.jsonl"),
        "{\"test\":\"/slow\",\"duration\":1.0}\n",
    )?;
    Ok(())
}

/// The view shows the progress with an ETA, the machines by state and
/// each running test with its machine, elapsed and expected time, `SLOW`
/// past the expected one; a failure stays on the screen with its note;
/// at the end the view is gone and the last line is the totals.
#[test]
fn the_live_view_in_a_terminal() -> Result<()> {
    let work = Fixture::new()?;
    let dir = work.path();
    write_input(&dir)?;
    let command = format!(
        "'{}' --provision 'local --max 2' --history '{}' --artifacts '{}' < '{}' > /dev/null; \
         echo EXIT=$?; sleep 600",
        bin_path("atex-orchestrate")?.display(),
        dir.join("history").display(),
        dir.join("artifacts").display(),
        dir.join("input.jsonl").display(),
    );
    let tmux = Tmux::start(&command)?;
    let running = tmux.wait_for("the running tests and the machines", |s| {
        s.contains("machines: 0 reserving, 0 setting up, 2 busy")
            && s.contains("/slow")
            && s.contains("/6 ")
            && s.contains("ETA")
    })?;
    ensure!(
        running
            .lines()
            .any(|l| l.contains("local/") && l.contains("/slow") && l.contains("/ ~1s")),
        "a running test's line names its machine and expected time:\n{running}"
    );
    tmux.wait_for("the slow test marked", |s| {
        s.lines().any(|l| l.contains("/slow") && l.contains("SLOW"))
    })?;
    let end = tmux.wait_for("the end", |s| s.contains("EXIT="))?;
    ensure!(end.contains("EXIT=1"), "{end}");
    ensure!(
        end.lines()
            .any(|l| l.contains("/bad ended: fail") && l.contains("the disk is full")),
        "the failure stays, with its note:\n{end}"
    );
    ensure!(
        end.contains("atex-orchestrate: 5 passed, 1 failed, 0 infra"),
        "{end}"
    );
    ensure!(
        !end.contains("machines:") && !end.contains("SLOW"),
        "the view is cleared at the end:\n{end}"
    );
    Ok(())
}

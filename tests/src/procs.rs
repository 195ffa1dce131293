//! Processes a test leaves behind: the test process becomes a child
//! subreaper, so whatever the tool under test left running (an ssh master
//! daemonizes itself, conmon double-forks) is re-parented to it, where it
//! is found after the tool exited.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Become the subreaper of everything this test starts.
pub fn adopt_orphans() -> Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .context("failed to become a child subreaper")
}

/// Live processes whose parent is this test process (zombies excluded), as
/// `pid cmdline` lines; after a waited-for child exited, these are what it
/// left behind.
pub fn leftover_processes() -> Result<Vec<String>> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parens.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(me) && state != "Z" {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("{pid} {cmdline}"));
        }
    }
    Ok(found)
}

/// The test's own children before atex-provision starts (its sshd
/// servers): they are not leftovers.
pub fn own_processes() -> Result<Vec<String>> {
    leftover_processes()
}

/// Wait up to a few seconds for processes left behind to go away (an ssh
/// master told to exit takes a moment), then report those still there
/// that are not among the test's `own` processes.
pub fn assert_no_leftover_processes(own: &[String]) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let mut left = leftover_processes()?;
        // By pid: a process may change its title (sshd shows its load).
        let pid = |p: &String| p.split(' ').next().map(str::to_owned);
        left.retain(|p| !own.iter().any(|o| pid(o) == pid(p)));
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            bail!("processes left behind: {left:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The live processes under `pid` (its children, theirs, ...), from
/// `/proc/PID/task/PID/children`; zombies (dead, not yet reaped: a
/// subreaper's adopted orphans) are left out.
pub fn descendants(pid: u32) -> Vec<u32> {
    let zombie = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let (_, rest) = stat.rsplit_once(')')?;
                rest.split_whitespace().next().map(|state| state == "Z")
            })
            .unwrap_or(true)
    };
    let mut found = Vec::new();
    let mut next = vec![pid];
    while let Some(parent) = next.pop() {
        let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"))
            .unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            if !zombie(child) {
                found.push(child);
                next.push(child);
            }
        }
    }
    found
}

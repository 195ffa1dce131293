//! atex-aggregate with the other tools and under stress: the results of
//! `atex-discover | atex-exec` on this machine stored, files moved; a kill
//! -9 in the middle of a 100,000-result ingest, then `--append` of the
//! rest; SIGINT/SIGTERM while the producer still writes (read on until the
//! input ends, a second signal or 5 s); the HTML page in headless Chromium
//! (screenshot, a filter click); a full store file system, then `--append`
//! (a small tmpfs); a line over the length cap under `ulimit -v`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atex_aggregate::store::{self, Compression};
use atex_tests::webdriver::{Browser, file_url};
use atex_tests::{Fixture, bin_path, pipe, run};

const LOCAL: &str = r#"{"id":"local","provisioner":"local","platform":"local@x86_64","connection":{"kind":"local"}}"#;

#[test]
fn exec_results_and_files_go_into_the_store() -> Result<()> {
    let tree = Fixture::fmf_tree(&[
        ("good/main.fmf", "test: echo good-output\n"),
        ("bad/main.fmf", "test: echo bad-output; exit 1\n"),
    ])?;
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts");
    let exec = pipe::tests_on(
        &tree.path(),
        &[],
        LOCAL,
        &artifacts,
        Duration::from_secs(120),
    )?;
    assert_eq!(exec.code, Some(1), "{}", exec.stderr);
    let store = work.path().join("store");
    let out = run(
        "atex-aggregate",
        ["--output".as_ref(), store.as_os_str()],
        Some(&exec.stdout),
    )?;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let lines = std::fs::read_to_string(store.join("results.jsonl"))?;
    assert_eq!(
        lines,
        "[\"local@x86_64\", \"fail\", \"/bad\", null, [\"output.txt\"], null]\n\
         [\"local@x86_64\", \"pass\", \"/good\", null, [\"output.txt\"], null]\n"
    );
    let output = std::fs::read_to_string(store.join("files/local@x86_64/bad/output.txt"))?;
    assert!(output.contains("bad-output"), "{output}");
    assert!(!artifacts.join("bad/files/output.txt").exists(), "moved");
    // The failure's output is in JUnit.
    let junit = std::fs::read_to_string(store.join("junit.xml"))?;
    assert!(
        junit.contains("<failure type=\"fail\"") && junit.contains("bad-output"),
        "{junit}"
    );
    let summary = run(
        "atex-aggregate",
        ["summary".as_ref(), store.as_os_str()],
        None,
    )?;
    assert_eq!(summary.code, Some(1));
    assert!(
        summary.stdout_text().contains("2 results: 1 fail, 1 pass"),
        "{}",
        summary.stdout_text()
    );
    Ok(())
}

fn record(i: usize) -> String {
    let status = if i % 10 == 3 { "fail" } else { "pass" };
    format!(
        "{{\"test\":\"/tests/area/{i}\",\"name\":null,\"status\":\"{status}\",\"note\":null,\"files\":[],\"platform\":\"p\",\"machine\":\"m\",\"artifacts\":\"/nowhere/{i}\",\"exit_code\":0,\"started\":\"S\",\"duration\":0.5,\"attempt\":0}}\n"
    )
}

fn expected(i: usize) -> String {
    let status = if i % 10 == 3 { "fail" } else { "pass" };
    format!("[\"p\", \"{status}\", \"/tests/area/{i}\", null, [], null]")
}

/// Every complete line of the store, read as a reader after a crash would.
fn stored_lines(dir: &Path, c: Compression) -> Result<Vec<String>> {
    let path = dir.join(c.results_name());
    let mut lines = Vec::new();
    store::read_lines::<std::io::Error>(&path, c, |l| {
        lines.push(String::from_utf8_lossy(l).into_owned());
        Ok(())
    })
    .with_context(|| format!("failed to read {}", path.display()))?;
    Ok(lines)
}

const TOTAL: usize = 100_000;

fn kill_during_ingest_then_append(c: Compression) -> Result<()> {
    let work = Fixture::new()?;
    let dir = work.path().join("store");
    let bin = bin_path("atex-aggregate")?;
    let compress = match c {
        Compression::None => "none",
        Compression::Gz => "gz",
        Compression::Xz => "xz",
    };
    let mut child = Command::new(&bin)
        .args(["--compress", compress, "--output"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    // Fed in chunks with pauses, so the kill lands in the middle.
    let feeder = std::thread::spawn(move || {
        for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(500) {
            let text: String = chunk.iter().map(|&i| record(i)).collect();
            if stdin.write_all(text.as_bytes()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        // Keep the pipe open: the ingest must not end on its own.
        std::thread::sleep(Duration::from_secs(60));
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let n = if dir.join(c.results_name()).exists() {
            stored_lines(&dir, c)?.len()
        } else {
            0
        };
        if n >= 20_000 {
            break n;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the store did not reach 20,000 results in 60 s ({n})");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill()?; // SIGKILL
    child.wait()?;
    drop(feeder);
    // Reads back without error, in order, holding every record seen
    // written before the kill.
    let lines = stored_lines(&dir, c)?;
    assert!(
        lines.len() >= seen && lines.len() < TOTAL,
        "{c:?}: {} lines, {seen} seen",
        lines.len()
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line, &expected(i), "{c:?} line {}", i + 1);
    }
    let summary = run(
        "atex-aggregate",
        ["summary".as_ref(), dir.as_os_str()],
        None,
    )?;
    assert_eq!(summary.code, Some(1), "{}", summary.stderr);
    // Resume: --append the records after the last stored one.
    let rest: String = (lines.len()..TOTAL).map(record).collect();
    let out = run(
        "atex-aggregate",
        ["--append".as_ref(), "--output".as_ref(), dir.as_os_str()],
        Some(rest.as_bytes()),
    )?;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let all = stored_lines(&dir, c)?;
    assert_eq!(all.len(), TOTAL, "{c:?}");
    assert!(
        all.iter().enumerate().all(|(i, l)| *l == expected(i)),
        "{c:?}"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml"))?;
    assert_eq!(junit.matches("<testcase ").count(), TOTAL, "{c:?}");
    assert!(junit.contains(&format!("tests=\"{TOTAL}\" failures=\"{}\"", TOTAL / 10)));
    Ok(())
}

#[test]
fn kill_9_during_ingest_leaves_a_readable_store() -> Result<()> {
    kill_during_ingest_then_append(Compression::None)
}

#[test]
fn kill_9_during_gzip_ingest_leaves_a_readable_store() -> Result<()> {
    kill_during_ingest_then_append(Compression::Gz)
}

#[test]
fn kill_9_during_xz_ingest_leaves_a_readable_store() -> Result<()> {
    kill_during_ingest_then_append(Compression::Xz)
}

#[test]
fn html_page_in_headless_chromium() -> Result<()> {
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts/t");
    std::fs::create_dir_all(artifacts.join("files/sub2"))?;
    std::fs::write(artifacts.join("files/sub2/output.txt"), "the output\n")?;
    let mut input = String::new();
    for (i, status) in [
        "pass", "pass", "fail", "pass", "infra", "pass", "fail", "pass", "skip", "pass",
    ]
    .iter()
    .enumerate()
    {
        let files = if i == 2 { "[\"output.txt\"]" } else { "[]" };
        input.push_str(&format!(
            "{{\"test\":\"/t\",\"name\":\"sub{i}\",\"status\":\"{status}\",\"note\":\"note <{i}>\",\"files\":{files},\"platform\":\"f41\",\"artifacts\":{:?},\"started\":\"S\"}}\n",
            artifacts.display().to_string()
        ));
    }
    let store = work.path().join("store");
    let out = run(
        "atex-aggregate",
        ["--output".as_ref(), store.as_os_str()],
        Some(input.as_bytes()),
    )?;
    assert_eq!(out.code, Some(3), "{}", out.stderr);

    let browser = Browser::start()?;
    browser.goto(&file_url(&store.join("index.html")))?;
    let rows = || -> Result<u64> {
        browser
            .execute(
                "return document.querySelectorAll('#results tbody tr').length;",
                serde_json::json!([]),
            )?
            .as_u64()
            .context("row count is not a number")
    };
    assert_eq!(rows()?, 10);
    let png = browser.screenshot(&work.path().join("index.png"))?;
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG"
    );
    // Keep a copy for people to look at when asked to.
    if let Some(dir) = std::env::var_os("ATEX_SCREENSHOT_DIR") {
        std::fs::write(Path::new(&dir).join("aggregate-index.png"), &png)?;
    }
    // Unticking "pass" hides the 6 passes.
    browser.click(&browser.find("#status-filter input[value=\"pass\"]")?)?;
    assert_eq!(rows()?, 4);
    let statuses = browser.execute(
        "return Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.dataset.status);",
        serde_json::json!([]),
    )?;
    assert_eq!(
        statuses,
        serde_json::json!(["fail", "infra", "fail", "skip"])
    );
    // The failed result's file link points at the moved file.
    let href = browser.execute(
        "return document.querySelector('#results td.files a').href;",
        serde_json::json!([]),
    )?;
    let href = href.as_str().context("no link")?;
    assert!(href.ends_with("/files/f41/t/sub2/output.txt"), "{href}");
    assert!(store.join("files/f41/t/sub2/output.txt").is_file());
    // The name filter.
    browser.execute(
        "const n = document.getElementById('name'); n.value = 'sub6'; n.dispatchEvent(new Event('input'));",
        serde_json::json!([]),
    )?;
    assert_eq!(rows()?, 1);
    Ok(())
}

/// atex-aggregate ingesting from a pipe the test holds (so the test
/// decides when the input ends), stderr collected; killed if dropped
/// running.
struct Ingest {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    stderr: Option<std::thread::JoinHandle<String>>,
    dir: std::path::PathBuf,
}

impl Ingest {
    fn start(dir: &Path) -> Result<Ingest> {
        let mut child = atex_tests::pipe::spawn_aggregate(dir)?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut err = child.stderr.take().context("stderr")?;
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        Ok(Ingest {
            child,
            stdin: Some(stdin),
            stderr: Some(stderr),
            dir: dir.to_path_buf(),
        })
    }

    /// Write `text` to the ingest's stdin (an ended ingest is an error).
    fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin is closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    fn signal(&self, signal: rustix::process::Signal) -> Result<()> {
        let pid =
            rustix::process::Pid::from_raw(i32::try_from(self.child.id())?).context("bad pid")?;
        rustix::process::kill_process(pid, signal).context("failed to send the signal")
    }

    fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// Wait until the store's results file holds `n` lines.
    fn stored(&self, n: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let path = self.dir.join("results.jsonl");
            let have = std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if have >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the store holds {have} results after 30 s, not {n}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Close stdin when `close`, wait (at most `limit`) for the exit:
    /// the exit code and stderr.
    fn finish(mut self, close: bool, limit: Duration) -> Result<(Option<i32>, String)> {
        if close {
            self.stdin = None;
        }
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("atex-aggregate still runs after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stdin = None;
        let stderr = self
            .stderr
            .take()
            .context("stderr")?
            .join()
            .map_err(|_| anyhow::anyhow!("the stderr reader panicked"))?;
        Ok((status.code(), stderr))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// atex-exec's last record after an interrupt: the test it stopped.
const INTERRUPTED: &str = "{\"test\":\"/tests/slow\",\"name\":null,\"status\":\"infra\",\"note\":\"Interrupted(SIGINT)\",\"files\":[],\"platform\":\"p\",\"machine\":\"m\",\"artifacts\":\"/nowhere/slow\",\"exit_code\":null,\"started\":\"S\",\"duration\":7.5,\"attempt\":0}\n";

/// One line on stderr, and nothing else.
fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    lines[0]
}

/// Ctrl-C reaches every process of `atex-exec | atex-aggregate`: the
/// record atex-exec writes after it (the interrupted test) must still be
/// stored, and the store finished (issue 9, item 5).
#[test]
fn sigint_reads_on_until_the_input_ends() -> Result<()> {
    let work = Fixture::new()?;
    let dir = work.path().join("store");
    let mut ingest = Ingest::start(&dir)?;
    ingest.send(&(0..3).map(record).collect::<String>())?;
    ingest.stored(3)?;
    ingest.signal(rustix::process::Signal::INT)?;
    // atex-exec takes a moment to stop the test and report it.
    std::thread::sleep(Duration::from_millis(500));
    assert!(ingest.running()?, "atex-aggregate ended at the signal");
    ingest.send(INTERRUPTED)?;
    let (code, stderr) = ingest.finish(true, Duration::from_secs(10))?;
    assert_eq!(code, Some(130), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with("atex-aggregate: interrupted (SIGINT): read on until the input ended; stored 4 results in "),
        "{line}"
    );
    let lines = stored_lines(&dir, Compression::None)?;
    assert_eq!(lines.len(), 4);
    assert_eq!(
        lines[3],
        "[\"p\", \"infra\", \"/tests/slow\", null, [], \"Interrupted(SIGINT)\"]"
    );
    // The reports are finished and count it.
    let junit = std::fs::read_to_string(dir.join("junit.xml"))?;
    assert_eq!(junit.matches("<testcase ").count(), 4, "{junit}");
    assert!(junit.contains("<error type=\"infra\""), "{junit}");
    assert!(std::fs::read_to_string(dir.join("index.html"))?.contains("/tests/slow"));
    Ok(())
}

/// A producer that never ends: a second Ctrl-C stops the reading at once.
#[test]
fn a_second_sigint_stops_reading() -> Result<()> {
    let work = Fixture::new()?;
    let dir = work.path().join("store");
    let mut ingest = Ingest::start(&dir)?;
    ingest.send(&(0..2).map(record).collect::<String>())?;
    ingest.stored(2)?;
    let first = Instant::now();
    ingest.signal(rustix::process::Signal::INT)?;
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        ingest.running()?,
        "atex-aggregate ended at the first signal"
    );
    ingest.signal(rustix::process::Signal::INT)?;
    // Well before the 5 s bound of the first signal.
    let (code, stderr) = ingest.finish(false, Duration::from_secs(3))?;
    assert!(
        first.elapsed() < Duration::from_millis(4500),
        "{:?}",
        first.elapsed()
    );
    assert_eq!(code, Some(130), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with("atex-aggregate: interrupted (SIGINT), then a second signal: stopped reading; stored 2 results in "),
        "{line}"
    );
    assert_eq!(stored_lines(&dir, Compression::None)?.len(), 2);
    assert!(dir.join("junit.xml").is_file() && dir.join("index.html").is_file());
    Ok(())
}

/// A producer that never ends, and no second signal: the reading goes on
/// (records still arriving are stored) for 5 s after the signal, then
/// stops.
#[test]
fn the_reading_after_a_signal_is_bounded() -> Result<()> {
    let work = Fixture::new()?;
    let dir = work.path().join("store");
    let mut ingest = Ingest::start(&dir)?;
    ingest.send(&record(0))?;
    ingest.stored(1)?;
    let signalled = Instant::now();
    ingest.signal(rustix::process::Signal::TERM)?;
    std::thread::sleep(Duration::from_millis(1000));
    ingest.send(INTERRUPTED)?;
    ingest.stored(2)?;
    let (code, stderr) = ingest.finish(false, Duration::from_secs(20))?;
    let waited = signalled.elapsed();
    assert!(
        waited >= Duration::from_millis(4900) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert_eq!(code, Some(143), "{stderr}");
    let line = one_line(&stderr);
    assert!(
        line.starts_with("atex-aggregate: interrupted (SIGTERM): the input was still open 5 s later, stopped reading; stored 2 results in "),
        "{line}"
    );
    assert_eq!(stored_lines(&dir, Compression::None)?.len(), 2);
    Ok(())
}

/// Unmounts a tmpfs when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mount a tmpfs of `size` (mount's syntax: `20k`) on `dir`; an error
    /// saying why when that is impossible (this test needs it).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs> {
        std::fs::create_dir_all(dir)?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        if !mounted.is_ok_and(|s| s.success()) {
            bail!(
                "this test needs a full file system: it mounts a {size} tmpfs \
                 (`mount -t tmpfs -o size={size} tmpfs DIR`), which needs root or CAP_SYS_ADMIN"
            );
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Give it `size` instead.
    fn resize(&self, size: &str) -> Result<()> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()?;
        if !status.success() {
            bail!("failed to remount {} with size={size}", self.0.display());
        }
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Every regular file under `dir`, with its length.
fn files_under(dir: &Path) -> Result<Vec<(std::path::PathBuf, u64)>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            out.extend(files_under(&entry.path())?);
        } else {
            out.push((entry.path(), meta.len()));
        }
    }
    Ok(out)
}

/// Issue 10 item 8: the store is on a full file system (a 20 KB tmpfs),
/// the artifacts elsewhere, so a result's 50,000-byte file is copied.
/// The copy stopped at 20,480 bytes and stayed in the store, and the
/// `--append` after space was made appended the whole file to it (70,480
/// bytes). Now the copy goes to a temporary name, the failure is reported
/// at once with the OS reason (exit 3), nothing partial is left, and the
/// retry stores the file whole.
#[test]
fn a_full_store_then_append_stores_each_file_whole() -> Result<()> {
    let work = Fixture::new()?;
    let artifacts = work.path().join("artifacts/t");
    std::fs::create_dir_all(artifacts.join("files"))?;
    let content: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let src = artifacts.join("files/out.bin");
    std::fs::write(&src, &content)?;
    let disk = work.path().join("disk");
    let tmpfs = Tmpfs::mount(&disk, "20k")?;
    let dir = disk.join("store");
    let record = serde_json::json!({
        "test": "/t", "status": "pass", "platform": "p", "files": ["out.bin"],
        "artifacts": artifacts, "started": "S", "machine": "m"
    })
    .to_string()
        + "\n";
    let out = run(
        "atex-aggregate",
        ["--output".as_ref(), dir.as_os_str()],
        Some(record.as_bytes()),
    )?;
    // Nothing partial anywhere in the store; the source is still there.
    let partial: Vec<_> = files_under(&dir)?
        .into_iter()
        .filter(|(p, _)| {
            p.to_string_lossy().contains("out.bin") || p.starts_with(dir.join("files"))
        })
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
    assert_eq!(std::fs::read(&src)?, content);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert!(
        out.stderr.starts_with("atex-aggregate: error: ")
            && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("out.bin"),
        "names the file: {}",
        out.stderr
    );

    tmpfs.resize("1m")?;
    let out = run(
        "atex-aggregate",
        ["--output".as_ref(), dir.as_os_str(), "--append".as_ref()],
        Some(record.as_bytes()),
    )?;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let stored = dir.join("files/p/t/out.bin");
    assert_eq!(std::fs::read(&stored)?.len(), 50_000);
    assert_eq!(std::fs::read(&stored)?, content);
    assert!(!src.exists(), "moved");
    assert_eq!(
        std::fs::read_to_string(dir.join("results.jsonl"))?,
        "[\"p\", \"pass\", \"/t\", null, [\"out.bin\"], null]\n"
    );
    Ok(())
}

/// The default longest input line (`--max-line-size`), 64 MiB.
const MAX_LINE: usize = 64 << 20;

/// Address space for atex-aggregate with lines at the cap: a few times
/// the cap (it holds about two copies of a line), far below what the
/// unbounded reading took (the old code needed over 400 MB for a 64 MiB
/// line and aborted under this limit).
const LINE_ULIMIT_KB: u64 = 400_000;

/// Run atex-aggregate `args` under [`LINE_ULIMIT_KB`] with `input` written
/// to its stdin by `feed` (a thread: the input is large).
fn aggregate_limited(
    args: &[&std::ffi::OsStr],
    feed: impl FnOnce(&mut dyn Write) + Send + 'static,
) -> Result<(Option<i32>, String)> {
    let bin = bin_path("atex-aggregate")?;
    let mut child = Command::new("timeout")
        .args(["120", "bash", "-c"])
        .arg(format!("ulimit -v {LINE_ULIMIT_KB} && exec \"$0\" \"$@\""))
        .arg(&bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let feeder = std::thread::spawn(move || feed(&mut stdin));
    let out = child.wait_with_output()?;
    let _ = feeder.join();
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A Result record of exactly `len` bytes (without its newline) whose
/// note makes up the length.
fn record_of_len(len: usize) -> String {
    let head = "{\"test\": \"/long\", \"status\": \"pass\", \"platform\": \"p\", \"note\": \"";
    let tail = "\"}";
    format!("{head}{}{tail}", "n".repeat(len - head.len() - tail.len()))
}

/// Issue 10 item 11: a line was read in time quadratic in its length and
/// taken whatever its size. Now a line of the default cap (64 MiB) is
/// stored under a memory limit of a few times the cap, and one byte more
/// is refused as bad input for that line: exit 2 with its
/// `<stdin>:LINE:COL`, what came before stored, the rest not read; a line
/// that never ends is refused once it passes the cap, in the same memory.
#[test]
fn a_line_over_the_length_cap_is_refused_in_bounded_memory() -> Result<()> {
    let work = Fixture::new()?;
    let before = "{\"test\": \"/before\", \"status\": \"fail\", \"platform\": \"p\"}\n";
    let after = "{\"test\": \"/after\", \"status\": \"fail\", \"platform\": \"p\"}\n";
    for (name, len, code) in [("at", MAX_LINE, 1), ("over", MAX_LINE + 1, 2)] {
        let dir = work.path().join(name);
        let input = format!("{before}{}\n{after}", record_of_len(len));
        let (got, stderr) = aggregate_limited(&["--output".as_ref(), dir.as_os_str()], move |w| {
            let _ = w.write_all(input.as_bytes());
        })?;
        assert_eq!(got, Some(code), "{name}: {stderr}");
        let lines = stored_lines(&dir, Compression::None)?;
        if code == 1 {
            assert_eq!(stderr, "", "{name}");
            assert_eq!(lines.len(), 3, "{name}");
        } else {
            assert_eq!(
                stderr,
                format!(
                    "atex-aggregate: error: <stdin>:2:{}: the line is longer than {MAX_LINE} bytes (64 MiB; --max-line-size)\n",
                    MAX_LINE + 1
                ),
                "{name}"
            );
            assert_eq!(
                lines,
                ["[\"p\", \"fail\", \"/before\", null, [], null]"],
                "{name}"
            );
        }
    }
    // A line that never ends (256 MiB without a newline, and more).
    let dir = work.path().join("endless");
    let (got, stderr) = aggregate_limited(&["--output".as_ref(), dir.as_os_str()], move |w| {
        let _ = w.write_all(before.as_bytes());
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    })?;
    assert_eq!(got, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "<stdin>:2:{}: the line is longer than",
            MAX_LINE + 1
        )),
        "{stderr}"
    );
    assert_eq!(stored_lines(&dir, Compression::None)?.len(), 1);
    Ok(())
}

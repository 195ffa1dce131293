//! The store atex-orchestrate writes, read in headless Chromium (issue 12):
//! the timeline (a row per machine, a bar per test attempt coloured by
//! status, the failed first attempt of a rerun test among them) and the
//! flaky marks (the mark on the test's row, the "flaky only" filter).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use atex_shared::records::TestResult;
use atex_tests::webdriver::{Browser, file_url};
use atex_tests::{Fixture, run};
use serde_json::json;

#[test]
fn the_timeline_and_the_flaky_marks_in_headless_chromium() -> Result<()> {
    let work = Fixture::new()?;
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree)?;
    let mut input = String::new();
    for (name, script) in [
        ("/a", "sleep 0.3"),
        ("/b", "sleep 0.2"),
        ("/flaky", r#"sleep 0.2; [ "$ATEX_ATTEMPT" != 0 ]"#),
        ("/c", "sleep 0.1"),
    ] {
        let record = json!({"name": name, "root": tree, "path": "", "test": script});
        input.push_str(&format!("{record}\n"));
    }
    let store = work.path().join("store");
    let artifacts = work.path().join("artifacts");
    let out = run(
        "atex-orchestrate",
        [
            "--provision".as_ref(),
            "local --max 2".as_ref(),
            "--reruns".as_ref(),
            "1".as_ref(),
            "--output".as_ref(),
            store.as_os_str(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(input.as_bytes()),
    )?;
    ensure!(out.code == Some(0), "{}", out.stderr);
    let results: Vec<TestResult> = {
        // With --output and no terminal, the records are on stdout too.
        out.records()?
    };
    ensure!(results.len() == 5, "{results:?}");
    let mut machines: Vec<&str> = results.iter().map(|r| r.machine.as_str()).collect();
    machines.sort_unstable();
    machines.dedup();

    let browser = Browser::start()?;
    browser.goto(&file_url(&store.join("index.html")))?;
    browser.execute(
        "document.getElementById('timeline').open = true;",
        json!([]),
    )?;
    let until = Instant::now() + Duration::from_secs(20);
    let bars = loop {
        let bars = browser.execute(
            "return Array.from(document.querySelectorAll('#timeline .tl-bar')).map(b => [b.dataset.test, Number(b.dataset.attempt), b.className]);",
            json!([]),
        )?;
        if bars.as_array().is_some_and(|b| !b.is_empty()) {
            break bars;
        }
        ensure!(Instant::now() < until, "no timeline bars");
        std::thread::sleep(Duration::from_millis(100));
    };
    let bars = bars.as_array().context("bars")?;
    ensure!(bars.len() == 5, "a bar per attempt: {bars:?}");
    ensure!(
        bars.contains(&json!(["/flaky", 0, "tl-bar st-fail"]))
            && bars.contains(&json!(["/flaky", 1, "tl-bar st-pass"])),
        "the failed first attempt and the passing rerun: {bars:?}"
    );
    let rows = browser.execute(
        "return Array.from(document.querySelectorAll('#timeline .tl-machine')).map(m => m.textContent);",
        json!([]),
    )?;
    let mut rows: Vec<String> = serde_json::from_value(rows)?;
    rows.sort_unstable();
    ensure!(
        rows == machines,
        "a row per machine: {rows:?} vs {machines:?}"
    );
    // A bar sits inside its lane.
    let inside = browser.execute(
        "return Array.from(document.querySelectorAll('#timeline .tl-bar')).every(b => {\
           const l = parseFloat(b.style.left), w = parseFloat(b.style.width);\
           return l >= 0 && w >= 0 && l + w <= 100.0001; });",
        json!([]),
    )?;
    ensure!(inside == json!(true), "bars outside their lane");

    // The flaky marks.
    let marked = browser.execute(
        "return Array.from(document.querySelectorAll('#results tbody tr[data-flaky]')).map(r => r.children[2].textContent);",
        json!([]),
    )?;
    ensure!(marked == json!(["/flaky"]), "{marked}");
    browser.click(&browser.find("#flaky-only")?)?;
    let shown = browser.execute(
        "return Array.from(document.querySelectorAll('#results tbody tr')).map(r => r.children[2].textContent);",
        json!([]),
    )?;
    ensure!(shown == json!(["/flaky"]), "flaky only: {shown}");
    Ok(())
}

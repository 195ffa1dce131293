//! The report's timeline in headless Chromium (issue 12), on a store the
//! real tools wrote: two atex-exec runs on two local machines at once
//! (pass, fail, a timeout, a `tmt-abort`), an earlier failed attempt of
//! the test that passed on its rerun in the store's `attempts/` sub-store
//! (as atex-orchestrate keeps it), and a record without machine or start
//! added with `--append`. Checks a row per machine, a bar per attempt with
//! its status's class and colour and its title, the earlier attempt among
//! them, and the flaky mark and "flaky only" filter of the result rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use atex_shared::records::TestResult;
use atex_tests::webdriver::{Browser, file_url};
use atex_tests::{Fixture, bin_path, parse_records, run};
use serde_json::{Value, json};

/// Test records for `tests`, `(name, script, duration)`, rooted in `tree`.
fn records(tree: &Path, tests: &[(&str, &str, u64)]) -> String {
    let mut input = String::new();
    for (name, script, duration) in tests {
        let record =
            json!({"name": name, "root": tree, "path": "", "test": script, "duration": duration});
        input.push_str(&format!("{record}\n"));
    }
    input
}

/// Start `atex-exec` on the local machine called `machine`, reading
/// `input` and writing its Result records to `machine.jsonl` in `work`.
fn exec(work: &Path, machine: &str, input: &str) -> Result<std::process::Child> {
    let tests = work.join(format!("{machine}-tests.jsonl"));
    std::fs::write(&tests, input)?;
    let spec = json!({"id": machine, "provisioner": "local", "connection": {"kind": "local"}});
    Command::new(bin_path("atex-exec")?)
        .arg("--machine")
        .arg(spec.to_string())
        .arg("--artifacts")
        .arg(work.join(format!("{machine}-artifacts")))
        .stdin(std::fs::File::open(&tests)?)
        .stdout(std::fs::File::create(
            work.join(format!("{machine}.jsonl")),
        )?)
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to start atex-exec")
}

fn wait(mut child: std::process::Child, what: &str) -> Result<()> {
    let status = child.wait()?;
    // Failed tests make exit 1, the timeout and the abort 3.
    ensure!(status.code().is_some(), "{what}: {status}");
    Ok(())
}

/// Aggregate the Result records of `inputs` (files in `work`) into
/// `store`; atex-aggregate's exit code.
fn aggregate(work: &Path, inputs: &[&str], store: &Path, append: bool) -> Result<Option<i32>> {
    let mut text = Vec::new();
    for input in inputs {
        text.extend(std::fs::read(work.join(input))?);
    }
    let mut args = vec!["--output".as_ref(), store.as_os_str()];
    if append {
        args.push("--append".as_ref());
    }
    let out = run("atex-aggregate", args, Some(&text))?;
    // 0, 1 or 3 by the results; 2 is bad input.
    ensure!(
        matches!(out.code, Some(0 | 1 | 3)),
        "atex-aggregate: {:?}: {}",
        out.code,
        out.stderr
    );
    Ok(out.code)
}

/// What the page's script returns, once it is not `null` (20 s at most).
fn poll(browser: &Browser, script: &str) -> Result<Value> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let value = browser.execute(script, json!([]))?;
        if !value.is_null() {
            return Ok(value);
        }
        ensure!(Instant::now() < until, "no answer from: {script}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_timeline_of_two_machines_and_a_rerun_in_headless_chromium() -> Result<()> {
    let work = Fixture::new()?;
    let tree = work.path().join("tree");
    std::fs::create_dir_all(&tree)?;
    let marker = work.path().join("flaky-ran");
    // Fails the first time, passes after.
    let flaky = format!(
        "sleep 0.2; [ -e '{0}' ] && exit 0; touch '{0}'; exit 1",
        marker.display()
    );
    let store = work.path().join("store");

    // The first attempt of /flaky, on m2, where atex-orchestrate keeps it.
    wait(
        exec(
            &work.path(),
            "m2",
            &records(&tree, &[("/flaky", &flaky, 60)]),
        )?,
        "the first attempt",
    )?;
    std::fs::rename(
        work.path().join("m2.jsonl"),
        work.path().join("earlier.jsonl"),
    )?;
    std::fs::rename(
        work.path().join("m2-artifacts"),
        work.path().join("earlier-artifacts"),
    )?;
    aggregate(
        &work.path(),
        &["earlier.jsonl"],
        &store.join("attempts"),
        false,
    )?;

    // The run: both machines at once.
    let m1 = exec(
        &work.path(),
        "m1",
        &records(
            &tree,
            &[
                ("/pass-a", "sleep 0.3", 60),
                ("/fail", "sleep 0.2; exit 1", 60),
                ("/timeout", "sleep 30", 1),
            ],
        ),
    )?;
    let m2 = exec(
        &work.path(),
        "m2",
        &records(
            &tree,
            &[
                ("/flaky", &flaky, 60),
                ("/abort", "sleep 0.2; tmt-abort", 60),
                ("/pass-b", "sleep 0.2", 60),
            ],
        ),
    )?;
    wait(m1, "atex-exec on m1")?;
    wait(m2, "atex-exec on m2")?;
    aggregate(&work.path(), &["m1.jsonl", "m2.jsonl"], &store, false)?;

    // What the tools said: each test's own result, by machine.
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    for (file, earlier) in [
        ("earlier.jsonl", "earlier "),
        ("m1.jsonl", ""),
        ("m2.jsonl", ""),
    ] {
        let results: Vec<TestResult> =
            parse_records(&std::fs::read(work.path().join(file))?, file)?;
        for r in results.iter().filter(|r| r.name.is_none()) {
            let status = r.status.clone().unwrap_or_default();
            expected.insert((r.machine.clone(), format!("{earlier}{}", r.test)), status);
        }
    }
    let want = |machine: &str, test: &str| expected.get(&(machine.to_owned(), test.to_owned()));
    ensure!(
        want("m1", "/pass-a").is_some_and(|s| s == "pass")
            && want("m1", "/fail").is_some_and(|s| s == "fail")
            && want("m1", "/timeout").is_some_and(|s| s == "infra")
            && want("m2", "/abort").is_some_and(|s| s == "error")
            && want("m2", "/flaky").is_some_and(|s| s == "pass")
            && want("m2", "earlier /flaky").is_some_and(|s| s == "fail"),
        "the tools' results are not the ones this test is about: {expected:?}"
    );
    let platform = {
        let results: Vec<TestResult> =
            parse_records(&std::fs::read(work.path().join("m1.jsonl"))?, "m1.jsonl")?;
        results.first().context("no result on m1")?.platform.clone()
    };
    // A record that says neither where nor when it ran: a row, no bar.
    std::fs::write(
        work.path().join("nowhere.jsonl"),
        format!(
            "{}\n",
            json!({"test": "/nowhere", "status": "pass", "platform": platform})
        ),
    )?;
    aggregate(&work.path(), &["nowhere.jsonl"], &store, true)?;

    let browser = Browser::start()?;
    browser.goto(&file_url(&store.join("index.html")))?;
    ensure!(
        browser.execute(
            "return document.getElementById('timeline') !== null && !document.getElementById('timeline').open;",
            json!([])
        )? == json!(true),
        "the timeline is there, closed"
    );
    browser.click(&browser.find("#timeline summary")?)?;
    let bars = poll(
        &browser,
        "const bars = document.querySelectorAll('#timeline .tl-bar');\
         if (bars.length === 0) return null;\
         return Array.from(bars).map(b => ({\
           machine: b.closest('.tl-row').querySelector('.tl-machine').textContent,\
           test: b.dataset.test, earlier: b.dataset.earlier !== undefined,\
           class: b.className, title: b.title,\
           colour: getComputedStyle(b).backgroundColor,\
           left: parseFloat(b.style.left), width: parseFloat(b.style.width)}));",
    )?;
    let bars = bars.as_array().context("bars")?;
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut colours: BTreeMap<String, String> = BTreeMap::new();
    for bar in bars {
        let text = |key: &str| bar[key].as_str().unwrap_or_default().to_owned();
        let test = text("test");
        let name = if bar["earlier"] == json!(true) {
            format!("earlier {test}")
        } else {
            test.clone()
        };
        let class = text("class");
        let status = class
            .strip_prefix("tl-bar st-")
            .with_context(|| format!("{name}: class {class:?}"))?
            .to_owned();
        let title = text("title");
        ensure!(
            title.starts_with(&format!("{test}: {status}, ")) && title.contains(" s, on "),
            "{name}: title {title:?}"
        );
        let (left, width) = (
            bar["left"].as_f64().unwrap_or(-1.0),
            bar["width"].as_f64().unwrap_or(-1.0),
        );
        ensure!(
            left >= 0.0 && width >= 0.0 && left + width <= 100.0001,
            "{name}: outside its lane: {bar}"
        );
        colours.insert(status.clone(), text("colour"));
        ensure!(
            seen.insert((text("machine"), name.clone()), status)
                .is_none(),
            "{name}: two bars"
        );
    }
    ensure!(
        seen == expected,
        "a bar per attempt, on its machine, with its status:\n{seen:?}\nvs\n{expected:?}"
    );
    // Each status of these has a colour of its own.
    let mut distinct: Vec<&String> = colours.values().collect();
    distinct.sort_unstable();
    distinct.dedup();
    ensure!(
        colours.len() == 4 && distinct.len() == 4,
        "pass, fail, error and infra in four colours: {colours:?}"
    );
    let machines = browser.execute(
        "return Array.from(document.querySelectorAll('#timeline .tl-row')).map(r => r.querySelector('.tl-machine').textContent);",
        json!([]),
    )?;
    let mut machines: Vec<String> = serde_json::from_value(machines)?;
    machines.sort_unstable();
    ensure!(machines == ["m1", "m2"], "a row per machine: {machines:?}");
    // The /timeout bar is about as long as its duration (1 s) and the
    // timeline's note counts what it drew.
    let note = browser.execute(
        "return document.querySelector('#timeline-view p').textContent;",
        json!([]),
    )?;
    ensure!(
        note.as_str()
            .is_some_and(|n| n.starts_with("7 attempts on 2 machines")),
        "{note}"
    );

    // The flaky marks of the result rows.
    let rows = "return Array.from(document.querySelectorAll('#results tbody tr')).map(r => [r.children[2].textContent, r.dataset.flaky !== undefined, r.children[1].textContent]);";
    let all = browser.execute(rows, json!([]))?;
    let all = all.as_array().context("rows")?;
    ensure!(all.len() == 7, "7 results: {all:?}");
    let flaky: Vec<&Value> = all.iter().filter(|r| r[1] == json!(true)).collect();
    ensure!(
        flaky.len() == 1
            && flaky[0][0] == json!("/flaky")
            && flaky[0][2]
                .as_str()
                .is_some_and(|s| s.contains("flaky") && s.contains("2 attempts")),
        "the flaky mark on /flaky only: {all:?}"
    );
    browser.click(&browser.find("#flaky-only")?)?;
    let shown = browser.execute(rows, json!([]))?;
    ensure!(
        shown.as_array().is_some_and(|s| s.len() == 1) && shown[0][0] == json!("/flaky"),
        "flaky only: {shown}"
    );
    browser.click(&browser.find("#flaky-only")?)?;
    let back = browser.execute(rows, json!([]))?;
    ensure!(
        back.as_array().is_some_and(|s| s.len() == 7),
        "all again: {back}"
    );
    if let Some(dir) = std::env::var_os("ATEX_SCREENSHOT_DIR") {
        let png = browser.screenshot(&Path::new(&dir).join("aggregate-timeline.png"))?;
        ensure!(png.starts_with(b"\x89PNG"), "not a PNG");
    }
    Ok(())
}

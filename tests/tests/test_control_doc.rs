//! Every example of docs/test-control.md runs as a test through the real
//! `atex-exec --machine local`, and its result records must match the
//! results the doc shows under it (each key shown, in order): a doc that
//! drifts from the code fails here.
//!
//! An example is marked in the doc's source as
//!
//! ```text
//! <!-- example: NAME[; duration: SECONDS] -->
//! ```bash            (or ```python)
//! ...
//! ```
//! <!-- results:
//! [{"name": null, "status": "pass", ...}, ...]
//! -->
//! ```

use anyhow::{Context, Result, bail, ensure};
use atex_tests::{Fixture, project_root, run};
use serde_json::{Value, json};

/// One example of the doc.
#[derive(Debug)]
struct Example {
    name: String,
    duration: u64,
    language: String,
    code: String,
    results: Vec<Value>,
}

/// The examples of `text`, in order; an example marker without its code
/// block or its results is an error (the doc is broken).
fn examples(text: &str) -> Result<Vec<Example>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("<!-- example: ") {
        rest = &rest[at + "<!-- example: ".len()..];
        let (marker, after) = rest
            .split_once(" -->\n")
            .context("unclosed example marker")?;
        let mut parts = marker.split("; ");
        let name = parts.next().unwrap_or_default().to_owned();
        let duration = match parts.next() {
            Some(d) => d
                .strip_prefix("duration: ")
                .and_then(|d| d.parse().ok())
                .with_context(|| format!("{name}: bad marker option {d:?}"))?,
            None => 300,
        };
        let after = after
            .strip_prefix("```")
            .with_context(|| format!("{name}: no code block after the marker"))?;
        let (language, after) = after.split_once('\n').context("code block")?;
        let (code, after) = after
            .split_once("```\n")
            .with_context(|| format!("{name}: unclosed code block"))?;
        let after = after
            .strip_prefix("<!-- results:\n")
            .with_context(|| format!("{name}: no results after the code block"))?;
        let (results, after) = after
            .split_once("\n-->")
            .with_context(|| format!("{name}: unclosed results"))?;
        let results: Vec<Value> = serde_json::from_str(results)
            .with_context(|| format!("{name}: the results are not a JSON list"))?;
        found.push(Example {
            name,
            duration,
            language: language.to_owned(),
            code: code.to_owned(),
            results,
        });
        rest = after;
    }
    Ok(found)
}

/// Run `example` as a one-test tree; the problems found, if any.
fn check(example: &Example) -> Result<()> {
    let work = Fixture::new()?;
    let (file, command) = match example.language.as_str() {
        "bash" => ("test.sh", "bash ./test.sh"),
        "python" => ("test.py", "python3 ./test.py"),
        other => bail!("{}: unknown language {other}", example.name),
    };
    work.write(file, &example.code)?;
    let test = json!({
        "name": format!("/{}", example.name),
        "root": work.path(),
        "path": "",
        "test": command,
        "duration": example.duration,
    });
    let artifacts = work.path().join("artifacts");
    let out = run(
        "atex-exec",
        [
            "--machine".as_ref(),
            "local".as_ref(),
            "--artifacts".as_ref(),
            artifacts.as_os_str(),
        ],
        Some(format!("{test}\n").as_bytes()),
    )?;
    let got: Vec<Value> = out.records()?;
    ensure!(
        got.len() == example.results.len(),
        "{}: {} results, the doc shows {}: {got:#?}\n{}",
        example.name,
        got.len(),
        example.results.len(),
        out.stderr
    );
    for (shown, result) in example.results.iter().zip(&got) {
        let Value::Object(shown) = shown else {
            bail!("{}: a shown result is not an object", example.name);
        };
        for (key, value) in shown {
            let actual = result.get(key).unwrap_or(&Value::Null);
            ensure!(
                actual == value,
                "{}: {key} is {actual}, the doc shows {value}: {result:#}",
                example.name
            );
        }
        // Every file listed is there.
        let dir = result["artifacts"].as_str().unwrap_or_default();
        let name = result["name"].as_str().unwrap_or_default();
        for file in result["files"].as_array().into_iter().flatten() {
            let path = std::path::Path::new(dir)
                .join("files")
                .join(name)
                .join(file.as_str().unwrap_or_default());
            ensure!(
                path.is_file(),
                "{}: {} is missing",
                example.name,
                path.display()
            );
        }
    }
    Ok(())
}

#[test]
fn every_example_of_the_test_control_doc_gives_what_it_shows() -> Result<()> {
    let doc = project_root().join("docs/test-control.md");
    let text = std::fs::read_to_string(&doc).with_context(|| doc.display().to_string())?;
    let examples = examples(&text)?;
    ensure!(
        examples.len() >= 6,
        "only {} examples found",
        examples.len()
    );
    let problems: Vec<String> = examples
        .iter()
        .filter_map(|example| check(example).err().map(|e| format!("{e:#}")))
        .collect();
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}

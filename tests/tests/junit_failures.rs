//! The JUnit a person's CI reads (issue 15): a failure's text has no
//! leading blank lines, and a `tmt-report-result -o LOG ... FAIL` carries
//! the end of that log in its `<failure>`. Real atex-exec on the local
//! machine, piped into real atex-aggregate; the XML parsed back.

use anyhow::{Context, Result, ensure};
use atex_tests::{Fixture, exec_into_store};
use quick_xml::Reader;
use quick_xml::events::Event;

/// The text inside each `<failure>`/`<error>` of `xml`, by testcase name.
fn failures(xml: &str) -> Result<Vec<(String, String)>> {
    let mut reader = Reader::from_str(xml);
    let mut found = Vec::new();
    let mut case = String::new();
    let mut inside = false;
    loop {
        match reader.read_event()? {
            Event::Start(e) | Event::Empty(e) if e.name().as_ref() == b"testcase" => {
                for attr in e.attributes() {
                    let attr = attr?;
                    if attr.key.as_ref() == b"name" {
                        case = attr.unescape_value()?.into_owned();
                    }
                }
            }
            Event::Start(e) if matches!(e.name().as_ref(), b"failure" | b"error") => {
                inside = true;
                found.push((case.clone(), String::new()));
            }
            Event::Text(t) if inside => {
                if let Some(last) = found.last_mut() {
                    last.1.push_str(&quick_xml::escape::unescape(&t.decode()?)?);
                }
            }
            // `&#10;` and the like come as references of their own.
            Event::GeneralRef(r) if inside => {
                if let (Some(last), Some(c)) = (found.last_mut(), r.resolve_char_ref()?) {
                    last.1.push(c);
                } else if let Some(last) = found.last_mut() {
                    let name = r.decode()?;
                    last.1
                        .push_str(&quick_xml::escape::unescape(&format!("&{name};"))?);
                }
            }
            Event::End(e) if matches!(e.name().as_ref(), b"failure" | b"error") => inside = false,
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(found)
}

#[test]
fn failures_carry_their_log_and_start_with_text() -> Result<()> {
    let work = Fixture::new()?;
    work.write(
        "test.sh",
        "printf 'first line\\nthe last line of the log\\n' > my.log\n\
         tmt-report-result -o my.log compare FAIL\n\
         echo 'the output of the test'\n\
         exit 1\n",
    )?;
    let test = serde_json::json!({
        "name": "/t", "root": work.path(), "path": "", "test": "bash ./test.sh",
    });
    work.write("tests.jsonl", &format!("{test}\n"))?;
    let code = exec_into_store(&work.path())?;
    ensure!(code == Some(1), "pipeline: exit {code:?}");
    let xml = std::fs::read_to_string(work.path().join("store/junit.xml")).context("junit.xml")?;
    let found = failures(&xml)?;
    let text = |name: &str| {
        found
            .iter()
            .find(|(case, _)| case == name)
            .map(|(_, text)| text.clone())
            .with_context(|| format!("no failure of {name}: {found:?}"))
    };
    let compare = text("compare")?;
    ensure!(compare.contains("the last line of the log"), "{compare:?}");
    let own = text("/t")?;
    ensure!(own.starts_with("the output of the test"), "{own:?}");
    for (case, text) in &found {
        ensure!(
            !text.starts_with('\n'),
            "{case}: leading blank line: {text:?}"
        );
    }
    Ok(())
}

//! `atex-aggregate convert`: between ATEX's result lines, our Result
//! records and tmt's `results.yaml` (read only), so users can move between
//! the tools.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use atex_shared::records::TestResult;

use crate::record::{Line, write_atex_line};
use crate::store::Compression;

/// A format `convert` reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// ATEX's line `[platform, status, test, subtest, files, note]`.
    Atex,
    /// Our Result records.
    Records,
    /// tmt's `results.yaml` (reading only).
    Tmt,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A line of the input is not in the format it was said to be.
    #[error("{source_name}:{line}: {message}")]
    Input {
        /// The input's name.
        source_name: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The tmt document as a whole is not a list of results.
    #[error("{source_name}: {message}")]
    Document {
        /// The input's name.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The tmt document is not YAML: `file:line:col: problem`, one line.
    #[error("{0}")]
    Yaml(String),
    /// tmt's format is only read.
    #[error("tmt's results.yaml can only be read (--to atex or --to records)")]
    TmtOutput,
    /// Reading or writing failed.
    #[error("failed to convert: {0}")]
    Io(#[from] io::Error),
}

/// Detect gzip and xz input by their magic bytes.
fn decompressed<'a>(mut input: Box<dyn BufRead + 'a>) -> io::Result<Box<dyn BufRead + 'a>> {
    let head = input.fill_buf()?;
    let c = if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gz
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Compression::Xz
    } else {
        return Ok(input);
    };
    Ok(Box::new(BufReader::new(c.decoder(input))))
}

fn write_line(out: &mut dyn Write, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.push(b'\n');
    out.write_all(buf)?;
    buf.clear();
    Ok(())
}

fn emit(line: &Line, to: Kind, buf: &mut Vec<u8>) -> Result<(), Error> {
    match to {
        Kind::Atex => write_atex_line(
            buf,
            &line.platform,
            line.status.as_deref(),
            &line.test,
            line.subtest.as_deref(),
            &line.files,
            line.note.as_deref(),
            false,
        ),
        Kind::Records => {
            let record = TestResult {
                test: line.test.clone(),
                name: line.subtest.clone(),
                status: line.status.clone(),
                note: line.note.clone(),
                files: line.files.clone(),
                platform: line.platform.clone(),
                machine: String::new(),
                artifacts: Default::default(),
                exit_code: None,
                started: String::new(),
                duration: line.duration,
                attempt: 0,
                extra: Default::default(),
            };
            serde_json::to_writer(&mut *buf, &record).map_err(io::Error::other)?;
        }
        Kind::Tmt => return Err(Error::TmtOutput),
    }
    Ok(())
}

/// Convert `input` (named `source_name`; gzip and xz are decompressed) from
/// `from` to `to` on `out`. `platform` fills in tmt's missing platform.
pub fn run(
    input: Box<dyn BufRead + '_>,
    source_name: &str,
    from: Kind,
    to: Kind,
    platform: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if to == Kind::Tmt {
        return Err(Error::TmtOutput);
    }
    let mut input = decompressed(input)?;
    let mut buf = Vec::new();
    if from == Kind::Tmt {
        let mut text = String::new();
        input.read_to_string(&mut text)?;
        for line in from_tmt(&text, source_name, platform)? {
            emit(&line, to, &mut buf)?;
            write_line(out, &mut buf)?;
        }
        return Ok(out.flush()?);
    }
    let mut raw = Vec::new();
    let mut n = 0u64;
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            break;
        }
        n += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let bad = |message: String| Error::Input {
            source_name: source_name.to_owned(),
            line: n,
            message,
        };
        let text = std::str::from_utf8(&raw)
            .map_err(|e| bad(e.to_string()))?
            .trim_end();
        let is_array = text.starts_with('[');
        if (from == Kind::Atex) != is_array {
            return Err(bad(format!(
                "not {}",
                if from == Kind::Atex {
                    "an ATEX line (a JSON array)"
                } else {
                    "a Result record (a JSON object)"
                }
            )));
        }
        if from == Kind::Records && to == Kind::Records {
            // Custom keys and every field kept, verbatim.
            let _: TestResult = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            buf.extend_from_slice(text.as_bytes());
        } else {
            let line = Line::parse(text).map_err(|e| bad(e.to_string()))?;
            emit(&line, to, &mut buf)?;
        }
        write_line(out, &mut buf)?;
    }
    Ok(out.flush()?)
}

/// The results of tmt's `results.yaml` (a list of results, each with its
/// `subresult`s) as lines: a test's own result first, then its
/// subresults as subtests; `note` lists are joined with `; `, `log` paths
/// become the files, `duration` (`hh:mm:ss`) seconds.
pub fn from_tmt(text: &str, source_name: &str, platform: Option<&str>) -> Result<Vec<Line>, Error> {
    let bad = |message: String| Error::Document {
        source_name: source_name.to_owned(),
        message,
    };
    // The loader's one-line form: the problem at its file:line:col,
    // without ruamel's excerpt lines.
    let value = atex_discover::yaml::parse(text, Path::new(source_name))
        .map_err(|e| Error::Yaml(e.one_line()))?;
    let json = value.to_json();
    let list = match &json {
        serde_json::Value::Array(list) => list.as_slice(),
        serde_json::Value::Null => &[],
        _ => return Err(bad("not a list of results".to_owned())),
    };
    let mut lines = Vec::new();
    for item in list {
        let test = item
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad("a result has no name".to_owned()))?;
        let guest = item
            .get("guest")
            .and_then(|g| g.get("name"))
            .and_then(|v| v.as_str());
        let platform = platform.or(guest).unwrap_or("").to_owned();
        lines.push(tmt_line(item, &platform, test, None));
        for sub in item
            .get("subresult")
            .and_then(|v| v.as_array())
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let name = sub.get("name").and_then(|v| v.as_str()).unwrap_or("");
            let name = name.trim_start_matches('/');
            lines.push(tmt_line(sub, &platform, test, Some(name.to_owned())));
        }
    }
    Ok(lines)
}

fn tmt_line(item: &serde_json::Value, platform: &str, test: &str, subtest: Option<String>) -> Line {
    let note = match item.get("note") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Array(a)) if !a.is_empty() => Some(
            a.iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string())
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        _ => None,
    };
    let files = match item.get("log") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    let duration = item
        .get("duration")
        .and_then(|v| v.as_str())
        .map(|d| {
            d.split(':')
                .filter_map(|p| p.parse::<f64>().ok())
                .fold(0.0, |acc, x| acc * 60.0 + x)
        })
        .unwrap_or(0.0);
    Line {
        platform: platform.to_owned(),
        status: item
            .get("result")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        test: test.to_owned(),
        subtest,
        files,
        note,
        duration,
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    fn convert(input: &str, from: Kind, to: Kind) -> String {
        let mut out = Vec::new();
        run(
            Box::new(input.as_bytes()),
            "in",
            from,
            to,
            Some("f41"),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tmt_results_yaml_to_atex_lines() {
        let yaml = "- name: /tests/a\n  result: fail\n  note:\n  - 'original test result: fail'\n  log:\n  - data/output.txt\n  duration: '00:01:05'\n  subresult:\n  - name: /good\n    result: pass\n- name: /tests/b\n  result: pass\n  note: old style\n";
        assert_eq!(
            convert(yaml, Kind::Tmt, Kind::Atex),
            "[\"f41\", \"fail\", \"/tests/a\", null, [\"data/output.txt\"], \"original test result: fail\"]\n\
             [\"f41\", \"pass\", \"/tests/a\", \"good\", [], null]\n\
             [\"f41\", \"pass\", \"/tests/b\", null, [], \"old style\"]\n"
        );
        let records = convert(yaml, Kind::Tmt, Kind::Records);
        let first: TestResult = serde_json::from_str(records.lines().next().unwrap()).unwrap();
        assert_eq!((first.duration, first.platform.as_str()), (65.0, "f41"));
    }

    #[test]
    fn atex_and_records_round_trip() {
        let atex = "[\"p\", \"pass\", \"/t\", \"s\", [\"a\"], null]\n[\"p\", null, \"/u\", null, [], \"n\"]\n";
        let records = convert(atex, Kind::Atex, Kind::Records);
        assert_eq!(convert(&records, Kind::Records, Kind::Atex), atex);
        let custom = "{\"test\":\"/t\",\"status\":\"pass\",\"rerun\":3}\n";
        assert_eq!(convert(custom, Kind::Records, Kind::Records), custom);
        let mut out = Vec::new();
        let err = run(
            Box::new(&b"{}\n"[..]),
            "in",
            Kind::Atex,
            Kind::Records,
            None,
            &mut out,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("in:1: "), "{err}");
    }

    #[test]
    fn compressed_input_is_read() {
        let atex = "[\"p\", \"pass\", \"/t\", null, [], null]\n";
        for c in [Compression::Gz, Compression::Xz] {
            let data = c.compress(atex.as_bytes()).unwrap();
            let mut out = Vec::new();
            run(
                Box::new(&data[..]),
                "in",
                Kind::Atex,
                Kind::Atex,
                None,
                &mut out,
            )
            .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), atex);
        }
    }
}

//! The report's timeline: one row per machine, one bar per test attempt
//! (a test's own result) placed by its start and length and coloured by
//! its status, so idle gaps, reruns and destroyed machines show at a
//! glance.
//!
//! The results file (ATEX's lines) has no machine or start time, so each
//! ingested result adds a line to the part file [`PART`]: for a test's
//! own result with a machine and a start,
//! `[machine, started, seconds, status, test, attempt],`, else `0,`; one
//! line per result, like the rows part, so a crash's cut trims both alike.
//! [`write()`] copies the store's part, and the part of its `attempts/`
//! sub-store (the earlier attempts of rerun tests), into chunk files in
//! [`DIR`] beside index.html, which the page reads only when its timeline
//! is opened (a big store's page stays small; a chunk already written is
//! not written again).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use crate::record::{Incoming, push_json_str};
use crate::report::Chunks;

/// The part file, in the store's parts directory.
pub const PART: &str = "timeline.js";

/// The directory of chunk files beside index.html: `000001.js`, ... from
/// the store's part, `earlier-000001.js`, ... from its `attempts/`
/// sub-store's; each calls `ATEX_TIMELINE(kind, n, [...])` with kind 0
/// for the store's and 1 for the earlier attempts.
pub const DIR: &str = "timeline";

/// Lines of a part file in each chunk file.
pub const CHUNK_LINES: usize = 50_000;

/// How many chunk files [`write()`] left, for the page to load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// The store's own.
    pub chunks: usize,
    /// The earlier attempts'.
    pub earlier: usize,
}

/// Append the timeline line of result `r` (with its stored `status`).
pub fn push_entry(out: &mut Vec<u8>, r: &Incoming<'_>, status: Option<&str>) {
    if r.name.is_some() || r.machine.is_empty() || r.started.is_empty() {
        push_unknown(out);
        return;
    }
    out.push(b'[');
    push_json_str(out, &r.machine, true);
    out.push(b',');
    push_json_str(out, &r.started, true);
    // A number JavaScript reads (never `inf`).
    let seconds = if r.duration.is_finite() {
        (r.duration.max(0.0) * 1000.0).round() / 1000.0
    } else {
        0.0
    };
    let _ = write!(out, ",{seconds},");
    match status {
        Some(status) => push_json_str(out, status, true),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    push_json_str(out, &r.test, true);
    let _ = writeln!(out, ",{}],", r.attempt);
}

/// The line of a result whose machine and start are not known.
pub fn push_unknown(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0,\n");
}

/// The line of a stored results line `text` that a crash kept in the
/// results but not in the part: a Result record still says where and
/// when it ran, ATEX's line does not.
pub fn push_recovered(out: &mut Vec<u8>, text: &str) {
    match serde_json::from_str::<Incoming<'_>>(text) {
        Ok(r) if text.trim_start().starts_with('{') => {
            let status = r.status.as_deref();
            push_entry(out, &r, status);
        }
        _ => push_unknown(out),
    }
}

/// Write the chunk files of the store in `dir` from its part `part` and
/// the part `earlier` of its `attempts/` sub-store (a missing one gives
/// none; a line still being written there is left for the next time).
pub fn write(dir: &Path, part: &Path, earlier: &Path) -> io::Result<Written> {
    let dir = dir.join(DIR);
    let series = |prefix, call| Chunks {
        dir: &dir,
        prefix,
        call,
        lines: CHUNK_LINES,
    };
    Ok(Written {
        chunks: write_series(&series("", "ATEX_TIMELINE(0, "), part)?,
        earlier: write_series(&series("earlier-", "ATEX_TIMELINE(1, "), earlier)?,
    })
}

fn write_series(series: &Chunks<'_>, part: &Path) -> io::Result<usize> {
    match File::open(part) {
        Ok(file) => series.write(&mut io::BufReader::with_capacity(1 << 16, file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            series.clear(0)?;
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use crate::ingest::{Aggregator, Config, Format, PARTS_DIR};

    const OWN: &str = r#"{"test":"/a","name":null,"status":"fail","platform":"p","machine":"m<1>","started":"2026-12-04T03:33:46.770Z","duration":1.5,"attempt":1}"#;

    #[test]
    fn a_test_s_own_result_gets_a_bar_the_others_a_placeholder() {
        let own: Incoming<'_> = serde_json::from_str(OWN).unwrap();
        let sub: Incoming<'_> = serde_json::from_str(
            r#"{"test":"/a","name":"s","status":"pass","platform":"p","machine":"m","started":"2026-12-04T03:33:46.770Z"}"#,
        )
        .unwrap();
        let nowhere: Incoming<'_> =
            serde_json::from_str(r#"{"test":"/b","status":"pass","started":"S"}"#).unwrap();
        let mut out = Vec::new();
        push_entry(&mut out, &own, Some("fail"));
        push_entry(&mut out, &sub, Some("pass"));
        push_entry(&mut out, &nowhere, Some("pass"));
        push_unknown(&mut out);
        push_recovered(&mut out, OWN);
        push_recovered(&mut out, r#"["p","pass","/a",null,[],null]"#);
        let text = String::from_utf8(out).unwrap();
        let bar = "[\"m\\u003c1\\u003e\",\"2026-12-04T03:33:46.770Z\",1.5,\"fail\",\"/a\",1],\n";
        assert_eq!(text, format!("{bar}0,\n0,\n0,\n{bar}0,\n"));
    }

    #[test]
    fn chunks_hold_whole_lines_and_are_rewritten_only_when_they_grow() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part");
        let earlier = dir.path().join("earlier");
        let line = "[\"m\",\"2026-12-04T03:33:46Z\",1,\"pass\",\"/t\",0],\n";
        let lines = CHUNK_LINES + 2;
        std::fs::write(&part, line.repeat(lines)).unwrap();
        // A line of the sub-store still being written is not copied.
        std::fs::write(&earlier, format!("{line}[\"m\",\"2026")).unwrap();
        let written = write(dir.path(), &part, &earlier).unwrap();
        assert_eq!(
            written,
            Written {
                chunks: 2,
                earlier: 1
            }
        );
        let chunk = |name: &str| std::fs::read_to_string(dir.path().join(DIR).join(name));
        assert_eq!(
            chunk("000002.js").unwrap(),
            format!("ATEX_TIMELINE(0, 2, [\n{line}{line}]);\n")
        );
        assert_eq!(
            chunk("earlier-000001.js").unwrap(),
            format!("ATEX_TIMELINE(1, 1, [\n{line}]);\n")
        );
        let first = dir.path().join(DIR).join("000001.js");
        let modified = std::fs::metadata(&first).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Without a sub-store, its chunks go; a full chunk stays as it was.
        std::fs::write(&part, line.repeat(CHUNK_LINES)).unwrap();
        let written = write(dir.path(), &part, &dir.path().join("missing")).unwrap();
        assert_eq!(
            written,
            Written {
                chunks: 1,
                earlier: 0
            }
        );
        assert_eq!(
            std::fs::metadata(&first).unwrap().modified().unwrap(),
            modified
        );
        assert!(chunk("000002.js").is_err() && chunk("earlier-000001.js").is_err());
    }

    fn record(test: &str, machine: &str, status: &str) -> String {
        format!(
            r#"{{"test":"{test}","name":null,"status":"{status}","platform":"p","machine":"{machine}","started":"2026-12-04T03:33:46Z","duration":2,"attempt":0}}"#
        )
    }

    fn part_of(store: &Path) -> String {
        std::fs::read_to_string(store.join(PARTS_DIR).join(PART)).unwrap()
    }

    fn ingest(config: &Config, lines: &[String]) {
        let mut agg = Aggregator::open(config).unwrap();
        for (i, line) in lines.iter().enumerate() {
            agg.ingest_line(line.as_bytes(), "-", i + 1).unwrap();
        }
        agg.render().unwrap();
    }

    /// The part after a crash: lines past the results' (flushed before
    /// the results were cut) are cut; lines the results have and the part
    /// lost come back (from a Result record, else as placeholders).
    #[test]
    fn recovery_brings_the_part_in_line_with_the_results() {
        for format in [Format::Atex, Format::Records] {
            let dir = tempfile::tempdir().unwrap();
            let store = dir.path().join("store");
            let mut config = Config::new(&store);
            config.format = format;
            ingest(
                &config,
                &[record("/a", "m1", "pass"), record("/b", "m2", "fail")],
            );
            let both = part_of(&store);
            assert_eq!(both.lines().count(), 2, "{both}");
            assert!(both.contains("\"m2\""), "{both}");
            let results = store.join("results.jsonl");
            let full = std::fs::read_to_string(&results).unwrap();
            let first = full.lines().next().unwrap();

            // The results lost their second line; the part kept it, with
            // half a third.
            std::fs::write(&results, format!("{first}\n")).unwrap();
            let part = store.join(PARTS_DIR).join(PART);
            std::fs::write(&part, format!("{both}[\"m3\",")).unwrap();
            config.append = true;
            ingest(&config, &[]);
            let kept = part_of(&store);
            assert_eq!(kept, both.lines().next().unwrap().to_owned() + "\n");

            // The part lost its lines; the results have both.
            std::fs::write(&results, &full).unwrap();
            std::fs::write(&part, "").unwrap();
            ingest(&config, &[record("/c", "m1", "error")]);
            let again = part_of(&store);
            let expected = match format {
                Format::Records => both.clone(),
                Format::Atex => "0,\n0,\n".to_owned(),
            };
            assert!(again.starts_with(&expected), "{format:?}: {again}");
            assert_eq!(again.lines().count(), 3, "{again}");
            assert!(again.lines().nth(2).unwrap().contains("\"error\""));
            // The page's chunk holds the same lines.
            let chunk = std::fs::read_to_string(store.join(DIR).join("000001.js")).unwrap();
            assert_eq!(chunk, format!("ATEX_TIMELINE(0, 1, [\n{again}]);\n"));
            let page = std::fs::read_to_string(store.join("index.html")).unwrap();
            assert!(
                page.contains("const TIMELINE = {dir: 'timeline', chunks: 1, earlier: 0};"),
                "{page}"
            );
        }
    }
}

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
//! [`write`] gathers the store's part and its `attempts/` sub-store's
//! (the earlier attempts of rerun tests) into `timeline.js` beside
//! index.html, which the page reads when the timeline is opened (a big
//! store's page stays small).

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use crate::record::{Incoming, push_json_str};

/// The part file, in the store's parts directory.
pub const PART: &str = "timeline.js";

/// The file the page reads, beside index.html.
pub const FILE: &str = "timeline.js";

/// Append the timeline line of result `r` (with its stored `status`).
pub fn push_entry(out: &mut Vec<u8>, r: &Incoming<'_>, status: Option<&str>) {
    if r.name.is_some() || r.machine.is_empty() || r.started.is_empty() {
        out.extend_from_slice(b"0,\n");
        return;
    }
    out.push(b'[');
    push_json_str(out, &r.machine, true);
    out.push(b',');
    push_json_str(out, &r.started, true);
    let seconds = (r.duration.max(0.0) * 1000.0).round() / 1000.0;
    let _ = write!(out, ",{seconds},");
    match status {
        Some(status) => push_json_str(out, status, true),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b',');
    push_json_str(out, &r.test, true);
    let _ = writeln!(out, ",{}],", r.attempt);
}

/// The line of a result whose machine and start are not known (one read
/// back from ATEX's lines after a crash).
pub fn push_unknown(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0,\n");
}

/// Write `dir/timeline.js` (`ATEX_TIMELINE([...]);`) from the part files
/// `parts` (the store's, then its sub-stores'; a missing one adds
/// nothing).
pub fn write(dir: &Path, parts: &[&Path]) -> io::Result<()> {
    crate::report::write_atomically(&dir.join(FILE), |out| {
        out.write_all(b"ATEX_TIMELINE([\n")?;
        for part in parts {
            match File::open(part) {
                Ok(mut file) => {
                    io::copy(&mut file, out)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        out.write_all(b"]);\n")
    })
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;

    #[test]
    fn a_test_s_own_result_gets_a_bar_the_others_a_placeholder() {
        let own: Incoming<'_> = serde_json::from_str(
            r#"{"test":"/a","name":null,"status":"fail","platform":"p","machine":"m<1>","started":"2026-12-04T03:33:46.770Z","duration":1.5,"attempt":1}"#,
        )
        .unwrap();
        let sub: Incoming<'_> = serde_json::from_str(
            r#"{"test":"/a","name":"s","status":"pass","platform":"p","machine":"m","started":"2026-12-04T03:33:46.770Z"}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        push_entry(&mut out, &own, Some("fail"));
        push_entry(&mut out, &sub, Some("pass"));
        push_unknown(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "[\"m\\u003c1\\u003e\",\"2026-12-04T03:33:46.770Z\",1.5,\"fail\",\"/a\",1],\n0,\n0,\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("part");
        std::fs::write(&part, &text).unwrap();
        write(dir.path(), &[&part, &dir.path().join("missing")]).unwrap();
        let js = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert_eq!(js, format!("ATEX_TIMELINE([\n{text}]);\n"));
    }
}

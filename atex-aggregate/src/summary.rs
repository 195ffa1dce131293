//! `atex-aggregate summary DIR`: totals of a store for people, and the exit
//! code its results call for.

use std::io::{self, Write};
use std::path::Path;

use crate::record::Line;
use crate::report::Totals;
use crate::store;

/// Why a store could not be summarised.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no results file.
    #[error("{0} holds no results store (no results.jsonl, .jsonl.gz or .jsonl.xz)")]
    NoStore(String),
    /// A line of the results file is not a result.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The results file.
        path: String,
        /// 1-based line.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Reading failed.
    #[error("failed to read the store: {0}")]
    Io(#[from] io::Error),
}

/// Totals per platform, in first-seen order, of the store in `dir`; a
/// crash's cut-off tail is ignored.
pub fn totals(dir: &Path) -> Result<Vec<(String, Totals)>, Error> {
    let (path, compression) =
        store::find_results(dir).ok_or_else(|| Error::NoStore(dir.display().to_string()))?;
    let mut platforms: Vec<(String, Totals)> = Vec::new();
    let mut n = 0u64;
    store::read_lines::<Error>(&path, compression, |bytes| {
        n += 1;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let bad = |message: String| Error::Line {
            path: path.display().to_string(),
            line: n,
            message,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| bad(e.to_string()))?;
        let line = Line::parse(text).map_err(|e| bad(e.to_string()))?;
        let i = match platforms.iter().position(|(p, _)| *p == line.platform) {
            Some(i) => i,
            None => {
                platforms.push((line.platform.clone(), Totals::default()));
                platforms.len() - 1
            }
        };
        platforms[i].1.add(line.status_str(), line.duration);
        Ok(())
    })?;
    Ok(platforms)
}

fn describe(t: &Totals) -> String {
    let parts: Vec<String> = t
        .statuses
        .iter()
        .map(|(s, n)| format!("{n} {}", if s.is_empty() { "(no status)" } else { s }))
        .collect();
    format!(
        "{} results: {}",
        t.tests,
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    )
}

/// Print the totals of the store in `dir` on `out`; returns the exit code
/// (0 all passed, 1 some failed, 3 some infra).
pub fn run(dir: &Path, out: &mut dyn Write) -> Result<u8, Error> {
    let platforms = totals(dir)?;
    let mut all = Totals::default();
    let mut text = String::new();
    for (name, t) in &platforms {
        all.merge(t);
        text.push_str(&format!(
            "{}: {}\n",
            if name.is_empty() {
                "(no platform)"
            } else {
                name
            },
            describe(t)
        ));
    }
    if platforms.len() != 1 {
        text.push_str(&format!("all: {}\n", describe(&all)));
    }
    let code = all.exit_code();
    let verdict = match code {
        0 => "passed",
        1 => "some failed",
        _ => "infrastructure failures",
    };
    text.push_str(&format!("verdict: {verdict} (exit {code})\n"));
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    Ok(code)
}

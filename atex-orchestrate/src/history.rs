//! Expected durations: what each attempt of a test took, kept in a file of
//! the results store that atex-orchestrate owns (`durations.jsonl`, one
//! JSON object per attempt: `{"test", "platform", "attempt", "duration"}`
//! in seconds), and read back by `--history` as the median per test. The
//! store's results file (ATEX's lines, which carry no duration) is not
//! touched.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The file in a store directory.
pub const FILE: &str = "durations.jsonl";

/// One attempt's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    test: String,
    #[serde(default)]
    platform: String,
    #[serde(default)]
    attempt: u32,
    duration: f64,
}

/// Appends each attempt's duration to a store's [`FILE`].
#[derive(Debug)]
pub struct Recorder {
    file: File,
    path: PathBuf,
}

impl Recorder {
    /// Append to `dir/durations.jsonl` (made when missing), cutting off
    /// a last line a killed run left without its newline.
    pub fn open(dir: &Path) -> io::Result<Recorder> {
        let path = dir.join(FILE);
        atex_aggregate::store::trim_lines(&path, None)?;
        let file = File::options().create(true).append(true).open(&path)?;
        Ok(Recorder { file, path })
    }

    /// Record the attempt whose Result records are `results`: the duration
    /// and platform of the test's own result (the one without a `name`),
    /// else of its last one. Nothing when no result carries a duration.
    pub fn record(&mut self, test: &str, attempt: u32, results: &[Vec<u8>]) -> io::Result<()> {
        #[derive(Deserialize)]
        struct Result {
            name: Option<String>,
            #[serde(default)]
            platform: String,
            duration: Option<f64>,
        }
        let parsed: Vec<Result> = results
            .iter()
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect();
        let own = parsed.iter().find(|r| r.name.is_none()).or(parsed.last());
        let Some((platform, Some(duration))) = own.map(|r| (&r.platform, r.duration)) else {
            return Ok(());
        };
        let entry = Entry {
            test: test.to_owned(),
            platform: platform.clone(),
            attempt,
            duration,
        };
        let mut line = serde_json::to_vec(&entry).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The expected duration of each test, in seconds: the median of its
/// recorded attempts in the stores read, on each platform and on all.
#[derive(Debug, Clone, Default)]
pub struct Expected(Arc<Medians>);

/// What [`Expected`] holds.
#[derive(Debug, Default)]
struct Medians {
    /// Per test, over every platform.
    all: HashMap<String, f64>,
    /// Per platform and test.
    on: HashMap<(String, String), f64>,
}

/// The median of `durations` (not empty).
fn median(mut durations: Vec<f64>) -> f64 {
    durations.sort_by(f64::total_cmp);
    let mid = durations.len() / 2;
    if durations.len() % 2 == 1 {
        durations[mid]
    } else {
        (durations[mid - 1] + durations[mid]) / 2.0
    }
}

impl Expected {
    /// Read `dirs`' [`FILE`]s; a store without one adds nothing. The error
    /// names the file and line.
    pub fn load(dirs: &[PathBuf]) -> Result<Expected, String> {
        let mut seen: HashMap<String, Vec<f64>> = HashMap::new();
        let mut seen_on: HashMap<(String, String), Vec<f64>> = HashMap::new();
        for dir in dirs {
            let path = dir.join(FILE);
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if !dir.is_dir() {
                        return Err(format!("{}: no such store directory", dir.display()));
                    }
                    continue;
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            for n in 0.. {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                }
                // A killed run's cut-off last line is not a record.
                if buf.pop() != Some(b'\n') {
                    break;
                }
                let line = String::from_utf8_lossy(&buf);
                if line.trim().is_empty() {
                    continue;
                }
                let entry: Entry = serde_json::from_str(&line)
                    .map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
                if entry.duration.is_finite() && entry.duration >= 0.0 {
                    seen.entry(entry.test.clone())
                        .or_default()
                        .push(entry.duration);
                    seen_on
                        .entry((entry.platform, entry.test))
                        .or_default()
                        .push(entry.duration);
                }
            }
        }
        let medians = Medians {
            all: seen.into_iter().map(|(k, d)| (k, median(d))).collect(),
            on: seen_on.into_iter().map(|(k, d)| (k, median(d))).collect(),
        };
        Ok(Expected(Arc::new(medians)))
    }

    /// The expected seconds of `test` over every platform, if it was
    /// recorded.
    pub fn of(&self, test: &str) -> Option<f64> {
        self.0.all.get(test).copied()
    }

    /// The expected seconds of `test` on `platform` when it was recorded
    /// there, else over every platform ([`Expected::of`]).
    pub fn on(&self, platform: Option<&str>, test: &str) -> Option<f64> {
        platform
            .and_then(|p| self.0.on.get(&(p.to_owned(), test.to_owned())).copied())
            .or_else(|| self.of(test))
    }

    /// How long `test` is expected to take on `platform`: its median
    /// ([`Expected::on`]) and `true`, else its `duration` (a limit) and
    /// `false`.
    pub fn or_duration(
        &self,
        platform: Option<&str>,
        test: &atex_shared::records::Test,
    ) -> (std::time::Duration, bool) {
        match self
            .on(platform, &test.name)
            .and_then(|seconds| std::time::Duration::try_from_secs_f64(seconds).ok())
        {
            Some(measured) => (measured, true),
            None => (std::time::Duration::from_secs(test.duration), false),
        }
    }

    /// How many tests have an expected duration.
    pub fn len(&self) -> usize {
        self.0.all.len()
    }

    /// Whether no test has one.
    pub fn is_empty(&self) -> bool {
        self.0.all.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn medians_of_recorded_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::open(dir.path()).unwrap();
        let own =
            |d: f64| vec![format!(r#"{{"name":null,"platform":"p","duration":{d}}}"#).into_bytes()];
        recorder.record("/a", 0, &own(1.0)).unwrap();
        recorder.record("/a", 1, &own(5.0)).unwrap();
        recorder.record("/a", 0, &own(2.0)).unwrap();
        recorder.record("/b", 0, &own(4.0)).unwrap();
        recorder.record("/b", 0, &own(6.0)).unwrap();
        // A subtest's result first: the test's own one counts.
        let mixed = vec![
            br#"{"name":"sub","duration":99}"#.to_vec(),
            br#"{"name":null,"duration":3}"#.to_vec(),
        ];
        recorder.record("/c", 0, &mixed).unwrap();
        let on_q =
            |d: f64| vec![format!(r#"{{"name":null,"platform":"q","duration":{d}}}"#).into_bytes()];
        recorder.record("/b", 0, &on_q(100.0)).unwrap();
        let expected = Expected::load(&[dir.path().to_owned()]).unwrap();
        assert_eq!(expected.on(Some("q"), "/b"), Some(100.0));
        assert_eq!(expected.on(Some("p"), "/b"), Some(5.0));
        assert_eq!(expected.on(Some("q"), "/a"), Some(2.0));
        assert_eq!(expected.on(None, "/b"), Some(6.0));
        assert_eq!(expected.of("/a"), Some(2.0));
        assert_eq!(expected.of("/b"), Some(6.0));
        assert_eq!(expected.of("/c"), Some(3.0));
        assert_eq!(expected.of("/d"), None);
    }

    #[test]
    fn a_bad_line_is_located_and_a_missing_store_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "{\"test\":\"/a\",\"duration\":1}\nnope\n",
        )
        .unwrap();
        let cut = tempfile::tempdir().unwrap();
        std::fs::write(
            cut.path().join(FILE),
            "{\"test\":\"/a\",\"duration\":1}\n{\"test\":\"/b\",\"dur",
        )
        .unwrap();
        let expected = Expected::load(&[cut.path().to_owned()]).unwrap();
        assert_eq!((expected.of("/a"), expected.len()), (Some(1.0), 1));
        drop(Recorder::open(cut.path()).unwrap());
        assert_eq!(
            std::fs::read_to_string(cut.path().join(FILE)).unwrap(),
            "{\"test\":\"/a\",\"duration\":1}\n"
        );
        let err = Expected::load(&[dir.path().to_owned()]).unwrap_err();
        assert!(
            err.ends_with(&format!("{FILE}:2: expected ident at line 1 column 2")),
            "{err}"
        );
        let err = Expected::load(&[dir.path().join("nowhere")]).unwrap_err();
        assert!(err.contains("no such store directory"), "{err}");
    }
}

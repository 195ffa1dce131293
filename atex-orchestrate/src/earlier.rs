//! What earlier stores decide about a run's tests: `--rerun-failed STORE`
//! keeps the tests that did not pass there, `--resume` leaves out the
//! tests that the killed run's store holds a final result of (after
//! cutting off the results of an attempt the kill interrupted).
//!
//! A store names platforms as the results do. The tests of a platform
//! group with a `--platform` are looked up under that name; those of the
//! group without one under every platform of the store that no other
//! group names.

use std::collections::HashSet;
use std::path::Path;

use atex_aggregate::summary::{self, Stored, TestKey};
use atex_shared::records::Test;
use indexmap::IndexMap;

/// The tests of one store, and which platforms stand for which group.
#[derive(Debug)]
pub struct Earlier {
    tests: IndexMap<TestKey, Stored>,
    /// The platforms of the store, in first-seen order.
    platforms: Vec<String>,
    /// The groups' `--platform`s.
    labels: HashSet<String>,
}

/// How the tests a resumed run leaves out ended in the killed run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Finished {
    /// Every result passed (or was skipped).
    pub passed: usize,
    /// The final result was infra.
    pub infra: usize,
    /// Some other result did not pass.
    pub failed: usize,
}

impl Finished {
    /// How many tests.
    pub fn total(&self) -> usize {
        self.passed + self.infra + self.failed
    }
}

impl Earlier {
    /// Read the store in `dir`; `labels` are the run's groups' `--platform`s.
    pub fn read(dir: &Path, labels: &[Option<String>]) -> Result<Earlier, summary::Error> {
        let tests = summary::stored_tests(dir)?;
        let mut platforms: Vec<String> = Vec::new();
        for (platform, _) in tests.keys() {
            if platforms.last() != Some(platform) && !platforms.contains(platform) {
                platforms.push(platform.clone());
            }
        }
        Ok(Earlier {
            tests,
            platforms,
            labels: labels.iter().flatten().cloned().collect(),
        })
    }

    /// A store that holds nothing.
    pub fn empty() -> Earlier {
        Earlier {
            tests: IndexMap::new(),
            platforms: Vec::new(),
            labels: HashSet::new(),
        }
    }

    /// What the store holds of `test` in the group of `label`.
    fn of<'a>(
        &'a self,
        label: Option<&'a str>,
        test: &'a str,
    ) -> impl Iterator<Item = Stored> + 'a {
        self.platforms
            .iter()
            .filter(move |p| match label {
                Some(label) => p.as_str() == label,
                None => !self.labels.contains(p.as_str()),
            })
            .filter_map(move |p| self.tests.get(&(p.clone(), test.to_owned())).copied())
    }

    /// `--rerun-failed`: keep the `tests` of the group of `label` that have
    /// a result there that did not pass.
    pub fn keep_failed(&self, label: Option<&str>, tests: &mut Vec<Test>) {
        tests.retain(|test| self.of(label, &test.name).any(|s| !s.passed));
    }

    /// `--resume`: leave out the `tests` of the group of `label` that have
    /// a final result; how those ended is added to `finished`.
    pub fn drop_finished(
        &self,
        label: Option<&str>,
        tests: &mut Vec<Test>,
        finished: &mut Finished,
    ) {
        tests.retain(|test| {
            let mut done = self.of(label, &test.name).filter(|s| s.finished).peekable();
            if done.peek().is_none() {
                return true;
            }
            let (mut passed, mut infra) = (true, false);
            for s in done {
                passed &= s.passed;
                infra |= s.infra;
            }
            match (passed, infra) {
                (_, true) => finished.infra += 1,
                (true, false) => finished.passed += 1,
                (false, false) => finished.failed += 1,
            }
            false
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn test(name: &str) -> Test {
        serde_json::from_value(
            serde_json::json!({"name": name, "test": "true", "root": "/r", "path": ""}),
        )
        .unwrap()
    }

    fn names(tests: &[Test]) -> Vec<&str> {
        tests.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn groups_read_their_own_platforms() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("results.jsonl"),
            concat!(
                "[\"f41\",\"fail\",\"/a\",null,[],null]\n",
                "[\"f41\",\"pass\",\"/b\",null,[],null]\n",
                "[\"f42\",\"pass\",\"/a\",null,[],null]\n",
                "[\"ssh\",\"infra\",\"/c\",null,[],null]\n",
                "[\"ssh\",\"pass\",\"/d\",\"sub\",[],null]\n",
            ),
        )
        .unwrap();
        let labels = [Some("f41".to_owned()), Some("f42".to_owned()), None];
        let earlier = Earlier::read(dir.path(), &labels).unwrap();
        let all = || ["/a", "/b", "/c", "/d", "/e"].map(test).to_vec();
        let mut f41 = all();
        earlier.keep_failed(Some("f41"), &mut f41);
        assert_eq!(names(&f41), ["/a"]);
        let mut f42 = all();
        earlier.keep_failed(Some("f42"), &mut f42);
        assert!(f42.is_empty());
        let mut other = all();
        earlier.keep_failed(None, &mut other);
        assert_eq!(names(&other), ["/c"]);
        let mut finished = Finished::default();
        let mut f41 = all();
        earlier.drop_finished(Some("f41"), &mut f41, &mut finished);
        assert_eq!(names(&f41), ["/c", "/d", "/e"]);
        let mut other = all();
        earlier.drop_finished(None, &mut other, &mut finished);
        // /d has a subtest's result only: its attempt did not end.
        assert_eq!(names(&other), ["/a", "/b", "/d", "/e"]);
        assert_eq!(
            finished,
            Finished {
                passed: 1,
                infra: 1,
                failed: 1
            }
        );
    }
}

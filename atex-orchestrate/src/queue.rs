//! The tests left to run and the default policy picking the next one for
//! a free machine: `extra-priority` higher first (ATEX's mixin: negative
//! runs last), then the longest `duration` first, then input order. A
//! rerun never goes back to a machine that already ran the test (ATEX
//! "preferably on a different machine"; atex-exec's artifacts are one
//! directory per test name and session, so it also keeps attempts apart).

use atex_shared::records::Test;

/// One test waiting to run.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The test.
    pub test: Test,
    /// Its attempt number: 0 for the first run.
    pub attempt: u32,
    /// Its position in the input, for ties.
    index: usize,
    /// Machines (ids) it ran on already.
    ran_on: Vec<String>,
}

impl Queued {
    /// Machines it ran on, the last one last.
    pub fn ran_on(&self) -> &[String] {
        &self.ran_on
    }
}

/// The tests waiting to run.
#[derive(Debug, Default)]
pub struct Queue {
    waiting: Vec<Queued>,
}

/// A test's `extra-priority` (fmf key, integer; 0 when absent or not one).
pub fn priority(test: &Test) -> i64 {
    test.data
        .get("extra-priority")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0)
}

impl Queue {
    /// A queue of `tests`, each on its first attempt.
    pub fn new(tests: Vec<Test>) -> Queue {
        let waiting = tests
            .into_iter()
            .enumerate()
            .map(|(index, test)| Queued {
                test,
                attempt: 0,
                index,
                ran_on: Vec::new(),
            })
            .collect();
        Queue { waiting }
    }

    /// How many tests wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether no test waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Take the next test for machine `machine`: the best one it has not
    /// run yet, or `None`.
    pub fn pick(&mut self, machine: &str) -> Option<Queued> {
        let best = self
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.ran_on.iter().any(|m| m == machine))
            .max_by(|(_, a), (_, b)| {
                (priority(&a.test), a.test.duration)
                    .cmp(&(priority(&b.test), b.test.duration))
                    // Earlier input first on ties: max_by keeps the last
                    // maximum, so the later index must compare smaller.
                    .then(b.index.cmp(&a.index))
            })
            .map(|(at, _)| at)?;
        Some(self.waiting.remove(best))
    }

    /// Put `queued` back for its next attempt, after it ran on `machine`.
    pub fn rerun(&mut self, mut queued: Queued, machine: &str) {
        queued.attempt += 1;
        queued.ran_on.push(machine.to_owned());
        self.waiting.push(queued);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn test(name: &str, duration: u64, priority: Option<i64>) -> Test {
        let mut data = serde_json::json!({});
        if let Some(p) = priority {
            data["extra-priority"] = p.into();
        }
        serde_json::from_value(serde_json::json!({
            "name": name, "root": "/r", "path": "", "test": "true",
            "duration": duration, "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn priority_then_duration_then_input_order() {
        let mut queue = Queue::new(vec![
            test("/a", 10, None),
            test("/b", 50, None),
            test("/c", 10, Some(-1)),
            test("/d", 5, Some(2)),
            test("/e", 50, None),
        ]);
        let order: Vec<String> = std::iter::from_fn(|| queue.pick("m"))
            .map(|q| q.test.name)
            .collect();
        assert_eq!(order, ["/d", "/b", "/e", "/a", "/c"]);
    }

    #[test]
    fn a_rerun_goes_to_another_machine() {
        let mut queue = Queue::new(vec![test("/a", 10, None)]);
        let first = queue.pick("m1").unwrap();
        queue.rerun(first, "m1");
        assert!(queue.pick("m1").is_none());
        let again = queue.pick("m2").unwrap();
        assert_eq!((again.attempt, again.ran_on()), (1, &["m1".to_owned()][..]));
    }
}

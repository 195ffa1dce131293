//! The tests left to run, and the [`Policy`] a library user may replace:
//! which test a free machine takes, whether a finished test destroys its
//! machine, whether it runs again. [`DefaultPolicy`]: `extra-priority`
//! higher first (ATEX's mixin: negative runs last), then the longest
//! `duration` first, then input order; a rerun never goes back to a
//! machine that already ran the test (ATEX "preferably on a different
//! machine"; atex-exec's artifacts are one directory per test name and
//! session, so it also keeps attempts apart). With
//! [`DefaultPolicy::group_by_tag`], a machine whose last test had one of
//! those tags takes another test with the same tag first (ATEX's users
//! keep VM-snapshot tests together this way); [`Order::Input`] drops the
//! longest-first step.

use std::sync::PoisonError;

use atex_exec::session::TestOutcome;
use atex_shared::records::Test;

/// The decisions of the ad-hoc pool. Called from the machines' tasks, so
/// `Send + Sync`.
pub trait Policy: Send + Sync + std::fmt::Debug {
    /// The index in `waiting` of the test the free machine `machine` takes
    /// next, or `None`: then the machine is released (nothing fits it)
    /// and a fresh one is asked for while tests wait. `machine` is
    /// `<n> <machine id>`, `n` numbering the run's sessions (as
    /// [`Queued::ran_on`] records them): the same host given again after
    /// a release is a new session.
    fn pick(&self, waiting: &[Queued], machine: &str) -> Option<usize>;

    /// Why `test`'s machine must not run another test after `outcome`
    /// (it is released and replaced), or `None` to keep it. An outcome
    /// that is not [`TestOutcome::reusable`] destroys it whatever this says.
    fn destroys(&self, test: &Test, outcome: &TestOutcome) -> Option<String>;

    /// Whether `queued`, which just ended with `outcome` (`passed`: every
    /// result of it passed), runs again (attempt + 1).
    fn rerun(&self, queued: &Queued, outcome: &TestOutcome, passed: bool) -> bool;
}

/// The base order of the queue, after `extra-priority`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// The longest `duration` first (ATEX's default).
    #[default]
    Longest,
    /// Input order.
    Input,
}

/// ATEX's behaviour with its mixins (see the module's doc).
#[derive(Debug, Clone)]
pub struct DefaultPolicy {
    /// How many more times a test that did not pass runs.
    pub reruns: u32,
    /// The exit codes after which a machine is kept (ATEX: only 0).
    pub reuse_on_exit: Vec<i32>,
    /// Tags that keep tests together: a machine whose last test had one
    /// takes a waiting test with that tag first (then the base order).
    pub group_by_tag: Vec<String>,
    /// The base order after `extra-priority`.
    pub order: Order,
    /// Expected durations from earlier runs (`--history`): with
    /// [`Order::Longest`], a test's expected duration stands for its
    /// `duration` key when it has one.
    pub expected: crate::history::Expected,
    /// The policy's memory of each machine's last test (leave it
    /// `Default`; clones share it).
    pub last: LastGroups,
}

/// Per machine, the grouping tags of the last test it took: the state of
/// [`DefaultPolicy::group_by_tag`].
#[derive(Debug, Clone, Default)]
pub struct LastGroups(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>>,
);

impl Default for DefaultPolicy {
    fn default() -> Self {
        DefaultPolicy {
            reruns: 0,
            reuse_on_exit: vec![0],
            group_by_tag: Vec::new(),
            order: Order::Longest,
            expected: Default::default(),
            last: Default::default(),
        }
    }
}

impl DefaultPolicy {
    /// ATEX's policy with `reruns` and `reuse_on_exit`, no grouping,
    /// longest first.
    pub fn new(reruns: u32, reuse_on_exit: Vec<i32>) -> Self {
        DefaultPolicy {
            reruns,
            reuse_on_exit,
            ..DefaultPolicy::default()
        }
    }

    /// The grouping tags `test` has.
    fn groups(&self, test: &Test) -> Vec<String> {
        self.group_by_tag
            .iter()
            .filter(|tag| test.tag.contains(tag))
            .cloned()
            .collect()
    }
}

impl Policy for DefaultPolicy {
    fn pick(&self, waiting: &[Queued], machine: &str) -> Option<usize> {
        let mut last = self.last.0.lock().unwrap_or_else(PoisonError::into_inner);
        let groups = last.get(machine).cloned().unwrap_or_default();
        let grouped = |q: &Queued| q.test.tag.iter().any(|tag| groups.contains(tag));
        let at = waiting
            .iter()
            .enumerate()
            .filter(|(_, q)| !q.ran_on.iter().any(|m| m == machine))
            .max_by(|(_, a), (_, b)| {
                // Milliseconds: expected durations have fractions.
                let length = |q: &Queued| match self.order {
                    Order::Longest => match self.expected.on(q.platform.as_deref(), &q.test.name) {
                        Some(seconds) => (seconds * 1000.0) as u64,
                        None => q.test.duration.saturating_mul(1000),
                    },
                    Order::Input => 0,
                };
                (grouped(a), priority(&a.test), length(a))
                    .cmp(&(grouped(b), priority(&b.test), length(b)))
                    // Earlier input first on ties: max_by keeps the last
                    // maximum, so the later index must compare smaller.
                    .then(b.index.cmp(&a.index))
            })
            .map(|(at, _)| at)?;
        if !self.group_by_tag.is_empty() {
            last.insert(machine.to_owned(), self.groups(&waiting[at].test));
        }
        Some(at)
    }

    fn destroys(&self, test: &Test, outcome: &TestOutcome) -> Option<String> {
        if test.tag.iter().any(|tag| tag == "destructive") {
            return Some("the test is destructive".to_owned());
        }
        outcome
            .exit_code
            .filter(|code| !self.reuse_on_exit.contains(code))
            .map(|code| format!("the test exited {code}, not one of --reuse-on-exit"))
    }

    fn rerun(&self, queued: &Queued, _outcome: &TestOutcome, passed: bool) -> bool {
        !passed && queued.attempt < self.reruns
    }
}

/// One test waiting to run.
#[derive(Debug, Clone)]
pub struct Queued {
    /// The test.
    pub test: Test,
    /// Its attempt number: 0 for the first run.
    pub attempt: u32,
    /// The `--platform` it runs on (`None`: the run's machines have none),
    /// for its expected duration there.
    pub platform: Option<std::sync::Arc<str>>,
    /// Its position in the input, for ties.
    index: usize,
    /// Machines (ids) it ran on already.
    ran_on: Vec<String>,
}

impl Queued {
    /// Its position in the input (0 for the first test read).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The sessions it ran in (`<n> <machine id>`, see [`Policy::pick`]),
    /// the last one last.
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
        Queue::on_platform(tests, None)
    }

    /// A queue of `tests` to run on `platform` (see [`Queued::platform`]).
    pub fn on_platform(tests: Vec<Test>, platform: Option<&str>) -> Queue {
        let platform: Option<std::sync::Arc<str>> = platform.map(Into::into);
        let waiting = tests
            .into_iter()
            .enumerate()
            .map(|(index, test)| Queued {
                test,
                attempt: 0,
                platform: platform.clone(),
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

    /// The tests waiting, in the order they were queued.
    pub fn waiting(&self) -> &[Queued] {
        &self.waiting
    }

    /// Take the test `policy` picks for machine `machine`, or `None`.
    pub fn pick(&mut self, policy: &dyn Policy, machine: &str) -> Option<Queued> {
        let at = policy.pick(&self.waiting, machine)?;
        (at < self.waiting.len()).then(|| self.waiting.remove(at))
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
        let order: Vec<String> = std::iter::from_fn(|| queue.pick(&DefaultPolicy::default(), "m"))
            .map(|q| q.test.name)
            .collect();
        assert_eq!(order, ["/d", "/b", "/e", "/a", "/c"]);
    }

    #[test]
    fn a_rerun_goes_to_another_machine() {
        let mut queue = Queue::new(vec![test("/a", 10, None)]);
        let policy = DefaultPolicy::default();
        let first = queue.pick(&policy, "m1").unwrap();
        queue.rerun(first, "m1");
        assert!(queue.pick(&policy, "m1").is_none());
        let again = queue.pick(&policy, "m2").unwrap();
        assert_eq!((again.attempt, again.ran_on()), (1, &["m1".to_owned()][..]));
    }

    fn tagged(name: &str, duration: u64, tags: &[&str]) -> Test {
        let mut test = test(name, duration, None);
        test.tag = tags.iter().map(|t| (*t).to_owned()).collect();
        test
    }

    #[test]
    fn input_order_drops_longest_first() {
        let mut queue = Queue::new(vec![
            test("/a", 10, None),
            test("/b", 50, None),
            test("/c", 10, Some(1)),
        ]);
        let policy = DefaultPolicy {
            order: Order::Input,
            ..DefaultPolicy::default()
        };
        let order: Vec<String> = std::iter::from_fn(|| queue.pick(&policy, "m"))
            .map(|q| q.test.name)
            .collect();
        assert_eq!(order, ["/c", "/a", "/b"]);
    }

    /// After a `snapshot` test, a machine takes the next `snapshot` test
    /// even when a longer one waits; another machine keeps the base
    /// order, and groups and longest first work together.
    #[test]
    fn a_machine_keeps_to_its_group() {
        let mut queue = Queue::new(vec![
            tagged("/long", 100, &[]),
            tagged("/snap1", 60, &["snapshot"]),
            tagged("/snap2", 10, &["snapshot"]),
            tagged("/mid", 50, &[]),
            tagged("/snap3", 20, &["snapshot"]),
        ]);
        let policy = DefaultPolicy {
            group_by_tag: vec!["snapshot".to_owned()],
            ..DefaultPolicy::default()
        };
        let mut take = |machine: &str| queue.pick(&policy, machine).unwrap().test.name;
        assert_eq!(take("m1"), "/long");
        assert_eq!(take("m2"), "/snap1");
        // m2 keeps to the snapshot tests, longest first among them.
        assert_eq!(take("m2"), "/snap3");
        assert_eq!(take("m1"), "/mid");
        assert_eq!(take("m2"), "/snap2");
    }
}

//! A whole custom runner: its own policy (after a test tagged `snapshot`, another `snapshot`
//! test on the same machine) and its own provisioner (this machine, numbered ids). Usage:
//! `atex-discover tests --root examples | custom_runner DIR [MACHINES]` (results on stdout).
use std::sync::{Arc, Mutex, PoisonError, atomic::AtomicUsize, atomic::Ordering::Relaxed};
use std::{collections::HashMap, io::Write, process::ExitCode};

use atex_exec::session::TestOutcome;
use atex_orchestrate::queue::{DefaultPolicy, Policy, Queued};
use atex_orchestrate::{run::Output, run::RunConfig, run::run, spec::Spec};
use atex_provision::{BoxFuture, CancellationToken, ProvisionError, Provisioner};
use atex_shared::{jsonl, records::Connection, records::Machine, records::Test};

/// ATEX's order, and per machine whether its last test was a snapshot one.
#[derive(Debug, Default)]
struct SnapshotsTogether(DefaultPolicy, Mutex<HashMap<String, bool>>);

impl Policy for SnapshotsTogether {
    fn pick(&self, waiting: &[Queued], machine: &str) -> Option<usize> {
        let snapshot = |q: &Queued| q.test.tag.iter().any(|tag| tag == "snapshot");
        let mut after_snapshot = self.1.lock().unwrap_or_else(PoisonError::into_inner);
        let last = after_snapshot.get(machine) == Some(&true);
        let next = |q: &Queued| last && snapshot(q) && q.ran_on().is_empty();
        let together = waiting.iter().position(next);
        let at = together.or_else(|| self.0.pick(waiting, machine))?;
        after_snapshot.insert(machine.to_owned(), snapshot(&waiting[at]));
        Some(at)
    }
    fn destroys(&self, test: &Test, outcome: &TestOutcome) -> Option<String> {
        self.0.destroys(test, outcome)
    }
    fn rerun(&self, queued: &Queued, outcome: &TestOutcome, passed: bool) -> bool {
        self.0.rerun(queued, outcome, passed)
    }
}

/// This machine, under a new id each time; releases are logged.
struct Numbered(AtomicUsize);

impl Provisioner for Numbered {
    fn kind(&self) -> &str {
        "numbered"
    }
    fn reserve(&self, _: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        let machine = Machine {
            id: format!("numbered/{}", self.0.fetch_add(1, Relaxed)),
            provisioner: "numbered".to_owned(),
            connection: Connection::Local,
            platform: "custom".to_owned(),
            context: Default::default(),
            release: serde_json::Value::Null,
        };
        Box::pin(async move { Ok(machine) })
    }
    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        eprintln!("custom_runner: released {}", machine.id);
        Box::pin(async { Ok(()) })
    }
}

struct Print;
impl Output for Print {
    fn result(&mut self, line: &[u8]) {
        let _ = std::io::stdout().write_all(&[line, b"\n"].concat());
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let artifacts = args.next().ok_or("usage: custom_runner DIR [MACHINES]")?;
    let machines = args.next().map_or(Ok(1), |n| n.parse())?;
    let input = jsonl::Reader::new(std::io::stdin().lock(), "<stdin>");
    let tests = input.collect::<Result<Vec<Test>, _>>()?;
    let spec = Spec::new(Arc::new(Numbered(AtomicUsize::new(0))), machines);
    std::fs::create_dir(&artifacts)?; // a new one: no test's files mix with an earlier run's
    let config = RunConfig::new(vec![spec], artifacts, Arc::<SnapshotsTogether>::default());
    let totals = run(config, tests, &mut Print).await;
    Ok(ExitCode::from(totals.exit_code()))
}

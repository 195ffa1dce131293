//! The per-test run loop (`atex_exec::run`) with the real remote wrapper,
//! run on this machine through `LocalLauncher` and the system's python3.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use atex_exec::artifacts::Artifacts;
use atex_exec::reporter::{Outcome, Reporter, ResultContext, Sink};
use atex_exec::run::{Counters, Finished, LocalLauncher, RemoteLayout, RunEnd, TestRun, run_test};
use atex_exec::wrapper::{WRAPPER_PY, WrapperFlags, test_script};
use atex_shared::records::TestResult;
use tempfile::TempDir;

/// Every test gives up after this long.
const LIMIT: Duration = Duration::from_secs(20);

/// The spec's bash helper (`LC_ALL=C` makes `${#x}` a byte count).
const REPORT: &str = "export LC_ALL=C\n\
    report() { local what=$1; printf 'result %d\\n%s' \"${#what}\" \"$what\" >&$ATEX_TEST_CONTROL; }\n";

fn require_python() {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "python3 is needed to run the remote wrapper: install it (e.g. `apt-get install python3` or `dnf install python3`)"
    );
}

/// A temp dir holding the "remote" side (wrapper, env file, script,
/// workdir) and the artifacts.
struct Fixture {
    tmp: TempDir,
    layout: RemoteLayout,
}

impl Fixture {
    fn new(snippet: &str) -> Self {
        Self::with_flags(snippet, WrapperFlags::default())
    }

    fn with_flags(snippet: &str, flags: WrapperFlags) -> Self {
        require_python();
        let tmp = tempfile::tempdir().unwrap();
        let remote = tmp.path().join("remote");
        std::fs::create_dir_all(remote.join("work")).unwrap();
        let p = |name: &str| remote.join(name).to_str().unwrap().to_owned();
        std::fs::write(p("wrapper.py"), WRAPPER_PY).unwrap();
        std::fs::write(
            p("test.sh"),
            test_script(snippet, &p("plan_env"), &p("bin")),
        )
        .unwrap();
        let layout = RemoteLayout {
            python: "python3".into(),
            wrapper: p("wrapper.py"),
            env_file: p("env"),
            test_script: p("test.sh"),
            workdir: p("work"),
            flags,
        };
        Self { tmp, layout }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.tmp.path().join(relative)
    }

    fn artifacts(&self) -> Artifacts {
        Artifacts::for_test(&self.tmp.path().join("out"), "/t").unwrap()
    }

    fn reporter<S: Sink>(&self, sink: S) -> Reporter<S> {
        let context = ResultContext {
            test: "/t".into(),
            ..Default::default()
        };
        Reporter::new(self.artifacts(), context, sink)
    }

    /// A stored artifact of the test, e.g. `files/output.txt`.
    fn artifact(&self, relative: &str) -> Vec<u8> {
        std::fs::read(self.artifacts().dir().join(relative)).unwrap()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("DATA".into(), self.path("").to_str().unwrap().to_owned())]
    }

    /// Run the test once to its end, collecting results.
    async fn run(&self, duration: u64) -> Finished<Vec<TestResult>> {
        let end = run_test(
            &LocalLauncher,
            &self.layout,
            &self.env(),
            Duration::from_secs(duration),
            Counters::default(),
            self.reporter(Vec::new()),
        )
        .await;
        match end {
            RunEnd::Finished(finished) => finished,
            RunEnd::NeedsReconnect(_) => panic!("unexpected reconnect"),
        }
    }
}

/// Run `future` on a runtime, failing the test after [`LIMIT`].
fn bounded<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, future)
            .await
            .expect("the test finished in time")
    })
}

/// `(name, status, note, files)` of one result.
type Summary<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Vec<&'a str>);

/// [`Summary`] of each result.
fn summary(results: &[TestResult]) -> Vec<Summary<'_>> {
    results
        .iter()
        .map(|r| {
            (
                r.name.as_deref(),
                r.status.as_deref().unwrap_or(""),
                r.note.as_deref(),
                r.files.iter().map(String::as_str).collect(),
            )
        })
        .collect()
}

fn output_only(status: &str) -> Vec<Summary<'_>> {
    vec![(None, status, None, vec!["output.txt"])]
}

#[test]
fn passing_test_links_its_output() {
    let fx = Fixture::new("echo hello; echo to stderr >&2");
    let done = bounded(fx.run(60));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
    assert!(!done.is_infra());
    assert_eq!(summary(&done.sink), output_only("pass"));
    assert_eq!(done.sink[0].exit_code, Some(0));
    assert_eq!(fx.artifact("files/output.txt"), b"hello\nto stderr\n");
    assert!(!fx.artifacts().testout_path().exists());
}

#[test]
fn failing_test() {
    let fx = Fixture::new("echo nope; exit 1");
    let done = bounded(fx.run(60));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 1 });
    assert_eq!(done.exit_code(), Some(1));
    assert_eq!(summary(&done.sink), output_only("fail"));
    assert_eq!(fx.artifact("files/output.txt"), b"nope\n");
}

#[test]
fn reported_results_with_files_and_partials() {
    let snippet = format!(
        "{REPORT}\
         report '{{\"status\": \"pass\", \"name\": \"sub/a\", \"partial\": true}}'\n\
         json='{{\"name\": \"sub/a\", \"note\": \"done\", \"files\": [{{\"name\": \"log\", \"length\": 6}}]}}'\n\
         printf 'result %d\\n%s%s' \"${{#json}}\" \"$json\" $'hello\\n' >&$ATEX_TEST_CONTROL\n\
         json='{{\"partial\": true, \"files\": [{{\"name\": \"custom.txt\", \"length\": 3}}, {{\"name\": \"custom.txt\", \"length\": 2}}]}}'\n\
         printf 'result %d\\n%s%s' \"${{#json}}\" \"$json\" abcde >&$ATEX_TEST_CONTROL\n\
         report '{{\"name\": \"empty\", \"status\": \"info\", \"files\": [{{\"name\": \"zero\", \"length\": 0}}]}}'\n\
         echo output\n"
    );
    let fx = Fixture::new(&snippet);
    let done = bounded(fx.run(60));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
    assert_eq!(
        summary(&done.sink),
        [
            (Some("sub/a"), "pass", Some("done"), vec!["log"]),
            (Some("empty"), "info", None, vec!["zero"]),
            (None, "pass", None, vec!["output.txt", "custom.txt"]),
        ]
    );
    assert_eq!(fx.artifact("files/sub/a/log"), b"hello\n");
    // The same name twice in one result appends.
    assert_eq!(fx.artifact("files/custom.txt"), b"abcde");
    assert_eq!(fx.artifact("files/empty/zero"), b"");
    assert_eq!(fx.artifact("files/output.txt"), b"output\n");
}

#[test]
fn duration_timeout_is_infra_and_quick() {
    let fx = Fixture::new("echo started; sleep 30");
    let start = Instant::now();
    let done = bounded(fx.run(1));
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(took >= Duration::from_secs(1), "took {took:?}");
    assert!(done.is_infra());
    assert_eq!(
        summary(&done.sink),
        [(
            None,
            "infra",
            Some("TestAbortedError(test duration timeout reached)"),
            vec!["output.txt"]
        )]
    );
    assert_eq!(fx.artifact("files/output.txt"), b"started\n");
}

#[test]
fn duration_extension_outlives_the_initial_duration() {
    let fx = Fixture::new("echo 'duration +3' >&$ATEX_TEST_CONTROL; sleep 2; echo survived");
    let done = bounded(fx.run(1));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
    assert_eq!(summary(&done.sink), output_only("pass"));
    assert_eq!(fx.artifact("files/output.txt"), b"survived\n");
}

#[test]
fn protocol_error_is_infra() {
    let fx = Fixture::new("echo bogus >&$ATEX_TEST_CONTROL; sleep 30");
    let start = Instant::now();
    let done = bounded(fx.run(60));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        summary(&done.sink),
        [(
            None,
            "infra",
            Some("BadControlError(unknown control word: bogus)"),
            vec!["output.txt"]
        )]
    );
}

/// As ATEX: a file name climbing out of the test's directory is stored
/// inside it and the result stands; a NUL byte still makes the test infra.
#[test]
fn climbing_file_names_are_confined_and_nul_is_infra() {
    let snippet = format!(
        "{REPORT}report '{{\"name\": \"s\", \"status\": \"pass\", \"files\": [{{\"name\": \"../../../escape\", \"length\": 1}}]}}'; printf x >&$ATEX_TEST_CONTROL"
    );
    let fx = Fixture::new(&snippet);
    let done = bounded(fx.run(60));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
    assert_eq!(
        summary(&done.sink),
        [
            (Some("s"), "pass", None, vec!["escape"]),
            (None, "pass", None, vec!["output.txt"])
        ]
    );
    assert_eq!(fx.artifact("files/s/escape"), b"x");
    for outside in ["escape", "out/escape", "out/t/escape", "out/t/files/escape"] {
        assert!(!fx.path(outside).exists(), "{outside}");
    }

    let snippet = format!(
        "{REPORT}report '{{\"files\": [{{\"name\": \"a\\u0000b\", \"length\": 1}}]}}'; printf x >&$ATEX_TEST_CONTROL; sleep 30"
    );
    let fx = Fixture::new(&snippet);
    let done = bounded(fx.run(60));
    assert!(done.is_infra());
    let note = done.sink[0].note.as_deref().unwrap();
    assert!(note.starts_with("BadReportJSONError("), "{note}");
}

#[test]
fn binary_output_and_files_are_byte_exact() {
    let blob: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let fx = Fixture::new(
        "LC_ALL=C\ncat \"$DATA/blob\"\n\
         json=\"{\\\"files\\\": [{\\\"name\\\": \\\"blob\\\", \\\"length\\\": $(stat -c %s \"$DATA/blob\")}], \\\"partial\\\": true}\"\n\
         { printf 'result %d\\n%s' \"${#json}\" \"$json\"; cat \"$DATA/blob\"; } >&$ATEX_TEST_CONTROL\n",
    );
    std::fs::write(fx.path("blob"), &blob).unwrap();
    let done = bounded(fx.run(60));
    assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
    assert_eq!(
        summary(&done.sink),
        [(None, "pass", None, vec!["output.txt", "blob"])]
    );
    assert!(fx.artifact("files/output.txt") == blob);
    assert!(fx.artifact("files/blob") == blob);
}

#[test]
fn results_reach_the_sink_while_the_test_runs() {
    /// Forwards results to a channel as they come.
    struct Channel(tokio::sync::mpsc::UnboundedSender<TestResult>);
    impl Sink for Channel {
        fn result(&mut self, result: TestResult) {
            let _ = self.0.send(result);
        }
    }
    let snippet = format!(
        "{REPORT}report '{{\"name\": \"early\", \"status\": \"pass\"}}'\n\
         while [[ ! -e \"$DATA/go\" ]]; do sleep 0.05; done\n"
    );
    let fx = Fixture::new(&snippet);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = fx.reporter(Channel(tx));
    bounded(async {
        let env = fx.env();
        let run = run_test(
            &LocalLauncher,
            &fx.layout,
            &env,
            Duration::from_secs(60),
            Counters::default(),
            reporter,
        );
        tokio::pin!(run);
        let early = tokio::select! {
            r = rx.recv() => r.unwrap(),
            _ = &mut run => panic!("the run ended before its result was streamed"),
        };
        assert_eq!(early.name.as_deref(), Some("early"));
        // The test is still waiting for this file.
        std::fs::write(fx.path("go"), b"").unwrap();
        let RunEnd::Finished(done) = run.await else {
            panic!("unexpected reconnect")
        };
        assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
        let last = rx.recv().await.unwrap();
        assert_eq!(
            (last.name, last.status.as_deref().unwrap_or("")),
            (None, "pass")
        );
    });
}

#[test]
fn wrapper_failure_without_disconnect_is_infra() {
    let mut fx = Fixture::new("true");
    fx.layout.workdir = fx.path("missing").to_str().unwrap().to_owned();
    let done = bounded(fx.run(60));
    assert_eq!(
        done.sink[0].note.as_deref(),
        Some(
            "TestAbortedError(test wrapper unexpectedly exited with 2 and disconnect was not sent via test control)"
        )
    );
    let output = String::from_utf8(fx.artifact("files/output.txt")).unwrap();
    assert!(output.contains("cannot change directory"), "{output}");
}

#[test]
fn missing_exitcode_is_infra() {
    let flags = WrapperFlags {
        no_exitcode: true,
        ..Default::default()
    };
    let fx = Fixture::with_flags("true", flags);
    let done = bounded(fx.run(60));
    assert_eq!(
        summary(&done.sink),
        [(
            None,
            "infra",
            Some("TestAbortedError(exitcode not reported, wrapper bug?)"),
            vec!["output.txt"]
        )]
    );
}

#[test]
fn disconnect_asks_for_a_reconnect_and_the_run_resumes() {
    let snippet = format!(
        "{REPORT}\
         echo \"run $TMT_REBOOT_COUNT $TMT_TEST_RESTART_COUNT\"\n\
         if [[ $TMT_REBOOT_COUNT == 0 ]]; then\n\
           report '{{\"name\": \"before\", \"status\": \"pass\", \"partial\": true}}'\n\
           echo disconnect >&$ATEX_TEST_CONTROL\n\
           trap '' PIPE\n\
           while echo noop >&$ATEX_TEST_CONTROL; do sleep 0.05; done 2>/dev/null\n\
           exit 0\n\
         fi\n\
         report '{{\"name\": \"before\", \"note\": \"after\", \"partial\": true}}'\n"
    );
    let fx = Fixture::new(&snippet);
    bounded(async {
        let env = fx.env();
        let run = TestRun::new(fx.reporter(Vec::new()), Duration::from_secs(60));
        let end = run
            .run(&LocalLauncher, &fx.layout, &env, Counters::default())
            .await;
        let RunEnd::NeedsReconnect(run) = end else {
            panic!("expected a reconnect: {end:?}")
        };
        let again = Counters {
            reboot: 1,
            restart: 1,
        };
        let RunEnd::Finished(done) = run.run(&LocalLauncher, &fx.layout, &env, again).await else {
            panic!("unexpected second reconnect")
        };
        assert_eq!(done.outcome, Outcome::Exited { exit_code: 0 });
        assert_eq!(
            summary(&done.sink),
            [
                (Some("before"), "pass", Some("after"), vec![]),
                (None, "pass", None, vec!["output.txt"]),
            ]
        );
    });
    // Output accumulates across restarts; the wrapper of the first run
    // could not write `exitcode` on the closed channel, and says so.
    let output = String::from_utf8(fx.artifact("files/output.txt")).unwrap();
    assert!(output.starts_with("run 0 0\n"), "{output}");
    assert!(
        output.contains("cannot write to the control channel"),
        "{output}"
    );
    assert!(output.ends_with("\nrun 1 1\n"), "{output}");
}

#[test]
fn abort_after_reconnect_failure() {
    let fx = Fixture::new("true");
    let run = TestRun::new(fx.reporter(Vec::new()), Duration::from_secs(60));
    let done = run.abort(atex_exec::reporter::Failure::new("ConnectionError", "gone"));
    assert!(done.is_infra());
    assert_eq!(done.sink[0].note.as_deref(), Some("ConnectionError(gone)"));
}

//! The warm test runner ([`atex_exec::runner`]) on the local machine: it
//! dies with its connection and takes its tests' process groups along
//! (its stdin closed, or its parent killed), a session starts a new one
//! after a reboot, and no test outlives a session that is dropped mid-test.
//! A plain test is spawned by the runner itself (decision 40): its control
//! stream arrives whole before the exit code, and a stop kills its group.
#![expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use atex_exec::remote::{SetupFile, TestFiles, TestSetup};
use atex_exec::runner::{RUNNER_PY, Runner};
use atex_exec::session::{Interrupt, Session, SessionConfig};
use atex_exec::wrapper::WRAPPER_PY;
use atex_shared::connection;
use atex_shared::records::{Connection, Machine, Plan, Test, TestResult};
use serde_json::json;

/// How long anything here may take.
const BOUND: Duration = Duration::from_secs(30);

fn python() -> &'static str {
    let found = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "python3 is needed on PATH (Debian: apt-get install python3)"
    );
    "python3"
}

/// A directory with the runner and the wrapper in it, as a layout has.
fn runner_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("runner.py"), RUNNER_PY).unwrap();
    std::fs::write(dir.path().join("wrapper.py"), WRAPPER_PY).unwrap();
    dir
}

/// A test script that writes its pid and a background child's pid (in its
/// process group) to `pids`, then sleeps.
fn sleeper(dir: &Path, pids: &Path) -> PathBuf {
    let script = dir.join("test.sh");
    let tmp = pids.with_extension("tmp");
    std::fs::write(
        &script,
        format!(
            "sleep 300 &\necho \"$$ $!\" > {tmp}\nmv {tmp} {pids}\nsleep 300\n",
            tmp = tmp.display(),
            pids = pids.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("env"), b"").unwrap();
    script
}

/// The pids `sleeper` wrote, once it wrote them.
fn wait_for_pids(pids: &Path) -> Vec<u32> {
    let until = Instant::now() + BOUND;
    while !pids.exists() {
        assert!(Instant::now() < until, "the test never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::read_to_string(pids)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie has ended: only its parent has not reaped it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Wait until none of `pids` is alive (fails after [`BOUND`]).
async fn assert_all_end(pids: &[u32], what: &str) {
    let until = Instant::now() + BOUND;
    while pids.iter().any(|p| alive(*p)) {
        assert!(Instant::now() < until, "{what}: {pids:?} still run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status();
}

/// The runner of `dir` (see [`runner_dir`]) started on this machine.
async fn local_runner(dir: &Path) -> Runner {
    let mut conn = connection::Connection::new(&Connection::Local);
    conn.connect().await.unwrap();
    let runner_py = dir.join("runner.py");
    Runner::start(&conn, python(), runner_py.to_str().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_runner_ends_its_tests_when_its_channel_closes() {
    let dir = runner_dir();
    let pids = dir.path().join("pids");
    let script = sleeper(dir.path(), &pids);
    let runner = local_runner(dir.path()).await;
    assert!(runner.is_alive());
    let output = std::fs::File::create(dir.path().join("output")).unwrap();
    let args = [dir.path().join("env"), script, dir.path().to_path_buf()]
        .map(|p| p.to_str().unwrap().to_owned());
    let process = runner.start_wrapper(&args, output).unwrap();
    let pids = tokio::task::spawn_blocking(move || wait_for_pids(&pids))
        .await
        .unwrap();
    // The connection goes: the runner's stdin closes.
    drop(process);
    drop(runner);
    assert_all_end(&pids, "the test and its background child").await;
}

/// The runner records the boot identity (decision 43): the machine's boot
/// id and a new marker, the previous marker removed; and it removes trees
/// as `rm -rf` does, without following links out of them.
#[tokio::test]
async fn the_runner_records_the_boot_identity_and_removes_trees() {
    let dir = runner_dir();
    let runner = local_runner(dir.path()).await;
    let (boot_id, first) = runner.boot_identity(None).await.unwrap();
    let expected = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(boot_id, expected.trim());
    assert!(
        first.starts_with("/run/atex-boot-") || first.starts_with("/dev/shm/atex-boot-"),
        "{first}"
    );
    assert!(Path::new(&first).is_file(), "{first}");
    let (_, second) = runner.boot_identity(Some(&first)).await.unwrap();
    assert_ne!(first, second);
    assert!(
        !Path::new(&first).exists(),
        "the previous marker {first} stays"
    );
    assert!(Path::new(&second).is_file(), "{second}");

    let tree = dir.path().join("tree");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(tree.join("a/b/file"), "x").unwrap();
    std::fs::write(tree.join("top"), "x").unwrap();
    std::fs::write(outside.join("kept"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
    let missing = dir.path().join("missing");
    let paths = [&tree, &missing].map(|p| p.to_str().unwrap().to_owned());
    runner
        .remove(&[&paths[0], &second, &paths[1]])
        .await
        .unwrap();
    assert!(!tree.exists(), "the tree stays");
    assert!(!Path::new(&second).exists(), "the marker {second} stays");
    assert!(outside.join("kept").is_file(), "a link was followed");
}

/// A test's setup rewrites its files in place (no new inode per file and
/// test) but never through what a test left there: a link is replaced,
/// not followed; a file with a second name is replaced, the other name
/// keeps its contents; a directory in a file's place is removed, and so is
/// anything else in the test directory. The plan environment file gets the
/// same care.
#[tokio::test]
async fn a_test_setup_rewrites_its_files_but_never_through_links() {
    let dir = runner_dir();
    let runner = local_runner(dir.path()).await;
    let root = dir.path();
    let test_dir = root.join("test");
    let outside = root.join("outside");
    std::fs::create_dir(&test_dir).unwrap();
    std::fs::write(&outside, "outside").unwrap();
    let partner = root.join("partner");
    std::fs::write(&partner, "partner").unwrap();
    // What a previous test may leave behind.
    std::os::unix::fs::symlink(&outside, test_dir.join("env")).unwrap();
    std::fs::hard_link(&partner, test_dir.join("test.sh")).unwrap();
    std::fs::create_dir_all(test_dir.join("metadata.yaml/sub")).unwrap();
    std::fs::write(test_dir.join("leftover"), "x").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("plan_env")).unwrap();
    let kept = test_dir.join("kept");
    std::fs::write(&kept, "a file rewritten in place, longer than the next").unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let file = |name: &str, mode: u32, contents: &str| SetupFile {
        path: path(&test_dir.join(name)),
        mode,
        contents: contents.into(),
    };
    let setup = |writes: Vec<SetupFile>| TestSetup {
        files: TestFiles {
            argv: Vec::new(),
            env_file: path(&test_dir.join("env")),
            script: path(&test_dir.join("test.sh")),
            metadata: path(&test_dir.join("metadata.yaml")),
            workdir: path(root),
        },
        test_dir: path(&test_dir),
        plan_env_base: path(&root.join("plan_env.base")),
        plan_env: path(&root.join("plan_env")),
        writes,
        install: None,
    };
    runner
        .prepare_test(&setup(vec![
            file("env", 0o644, "A=1\0"),
            file("test.sh", 0o755, "true\n"),
            file("metadata.yaml", 0o644, "{}\n"),
            file("kept", 0o644, "short"),
        ]))
        .await
        .unwrap();
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside");
    assert_eq!(std::fs::read_to_string(&partner).unwrap(), "partner");
    for (name, contents) in [
        ("env", "A=1\0"),
        ("test.sh", "true\n"),
        ("metadata.yaml", "{}\n"),
        ("kept", "short"),
    ] {
        let p = test_dir.join(name);
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert!(meta.is_file() && meta.nlink() == 1, "{name}: {meta:?}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), contents, "{name}");
    }
    let mode = std::fs::metadata(test_dir.join("test.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert!(!test_dir.join("leftover").exists(), "a leftover stays");
    let plan_env = std::fs::symlink_metadata(root.join("plan_env")).unwrap();
    assert!(plan_env.is_file() && plan_env.len() == 0, "{plan_env:?}");

    // The next test's setup overwrites the same inodes.
    let inode = |name: &str| std::fs::metadata(test_dir.join(name)).unwrap().ino();
    let before = [inode("env"), inode("test.sh"), inode("metadata.yaml")];
    runner
        .prepare_test(&setup(vec![
            file("env", 0o644, "B=2\0"),
            file("test.sh", 0o755, "false\n"),
            file("metadata.yaml", 0o644, "{\"a\": 1}\n"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        before,
        [inode("env"), inode("test.sh"), inode("metadata.yaml")]
    );
    assert_eq!(
        std::fs::read_to_string(test_dir.join("test.sh")).unwrap(),
        "false\n"
    );
    assert!(!kept.exists(), "a file the setup no longer writes stays");
}

/// Start the runner of `dir` as a session does (`runner_argv`), with the
/// cache directory `cache` and stdin closed (it says hello and ends): its
/// stdout. PYTHONDONTWRITEBYTECODE as `no_bytecode` says.
fn boot(dir: &Path, cache: &Path, no_bytecode: bool) -> Vec<u8> {
    let script = dir.join("runner.py");
    let argv = atex_exec::runner::runner_argv(python(), script.to_str().unwrap());
    let mut command = Command::new(argv[0]);
    command
        .args(&argv[1..])
        .env("XDG_CACHE_HOME", cache)
        .env_remove("PYTHONDONTWRITEBYTECODE")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    if no_bytecode {
        command.env("PYTHONDONTWRITEBYTECODE", "1");
    }
    let out = command.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out.stdout
}

/// Replace the cache entry `entry` by one for the sources of `dir` whose
/// runner prints `marker` instead of being the runner: what a start that
/// used the entry prints.
fn plant(dir: &Path, entry: &Path, marker: &str) {
    let status = Command::new(python())
        .args(["-S", "-c"])
        .arg(
            "import marshal, os, sys\n\
             d, f, m = sys.argv[1:]\n\
             src = [open(os.path.join(d, n), 'rb').read() for n in ('runner.py', 'wrapper.py')]\n\
             code = compile('import os\\nos.write(1, %r)\\n' % m.encode(), 'planted', 'exec')\n\
             open(f, 'wb').write(marshal.dumps((src[0], src[1], code, compile('', 'w', 'exec'))))\n",
        )
        .arg(dir)
        .arg(entry)
        .arg(marker)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Decision 45: the runner's code is compiled once per machine, login and
/// Python and kept in the login's cache directory; a start uses it only
/// when both sources are the same bytes and the entry is the login's own,
/// and writes none when bytecode writing is off.
#[test]
fn the_runner_starts_from_code_compiled_once_and_kept() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = runner_dir();
    let cache = dir.path().join("cache");
    let hello = frame(b'H', 0, atex_exec::runner::VERSION);

    // Bytecode writing off: the runner starts, nothing is kept.
    assert_eq!(boot(dir.path(), &cache, true), hello);
    assert!(!cache.exists(), "written with PYTHONDONTWRITEBYTECODE");

    // The first start compiles and keeps the code, for this login only.
    assert_eq!(boot(dir.path(), &cache, false), hello);
    let entries: Vec<_> = std::fs::read_dir(cache.join("atex"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let name = entries[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with("runner-") && name.ends_with(".bin"),
        "{name}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&entries[0]), 0o600);
    assert_eq!(mode(&cache.join("atex")), 0o700);

    // A start uses the kept code (here a planted one) for the same sources...
    plant(dir.path(), &entries[0], "planted");
    assert_eq!(boot(dir.path(), &cache, false), b"planted");
    // ...not when a source differs (and keeps the new code)...
    let runner = dir.path().join("runner.py");
    std::fs::write(&runner, format!("{RUNNER_PY}\n# changed\n")).unwrap();
    assert_eq!(boot(dir.path(), &cache, false), hello);
    assert_eq!(boot(dir.path(), &cache, false), hello);
    // ...nor when others may write the cache directory.
    plant(dir.path(), &entries[0], "planted");
    std::fs::set_permissions(cache.join("atex"), std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(boot(dir.path(), &cache, false), hello);
    // A damaged entry is compiled anew.
    std::fs::set_permissions(cache.join("atex"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(&entries[0], b"damaged").unwrap();
    assert_eq!(boot(dir.path(), &cache, false), hello);
    assert_eq!(boot(dir.path(), &cache, false), hello);
    assert!(std::fs::metadata(&entries[0]).unwrap().len() > 1000);
}

/// Requests the runner understands, for a driver of its own.
fn frame(kind: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn the_runner_ends_its_tests_when_its_parent_dies() {
    let dir = runner_dir();
    let runner = format!("{} -S {}", python(), dir.path().join("runner.py").display());
    ends_its_tests_when_its_parent_dies(&dir, &runner).await;
}

/// As above, with a Python that has no `os.pidfd_open` (before 3.9): the
/// runner then looks at its parent pid every second.
#[tokio::test]
async fn the_runner_ends_its_tests_when_its_parent_dies_without_a_pidfd() {
    let dir = runner_dir();
    let runner = format!(
        "{} -S -c 'import os, runpy, sys; del os.pidfd_open; \
         sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], run_name=\"__main__\")' {}",
        python(),
        dir.path().join("runner.py").display()
    );
    ends_its_tests_when_its_parent_dies(&dir, &runner).await;
}

async fn ends_its_tests_when_its_parent_dies(dir: &tempfile::TempDir, runner: &str) {
    let pids = dir.path().join("pids");
    let script = sleeper(dir.path(), &pids);
    // The runner's parent is a shell standing for sshd's session; its
    // stdin stays open (held by this test), so only the parent's death
    // can end it.
    let mut parent = Command::new("sh")
        .arg("-c")
        .arg(format!(
            // An asynchronous command's stdin is /dev/null unless redirected.
            "exec 3<&0; {runner} <&3 & wait"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = parent.stdin.take().unwrap();
    let mut args = Vec::new();
    for arg in [dir.path().join("env"), script, dir.path().to_path_buf()] {
        args.extend_from_slice(arg.to_str().unwrap().as_bytes());
        args.push(0);
    }
    stdin.write_all(&frame(b'S', 1, &args)).unwrap();
    stdin.flush().unwrap();
    let pids = tokio::task::spawn_blocking(move || wait_for_pids(&pids))
        .await
        .unwrap();
    kill(parent.id(), "KILL");
    let _ = parent.wait();
    assert_all_end(&pids, "the test and its background child").await;
    drop(stdin);
}

fn machine() -> Machine {
    Machine {
        context: Default::default(),
        id: "local/0".into(),
        provisioner: "local".into(),
        connection: Connection::Local,
        platform: String::new(),
        release: serde_json::Value::Null,
    }
}

fn test(root: &Path, script: &str, duration: u64) -> Test {
    serde_json::from_value(json!({
        "name": "/t",
        "root": root,
        "path": "",
        "test": script,
        "duration": duration,
        "plan": Plan::default(),
    }))
    .unwrap()
}

/// The pid of the runner that started the test: the nearest ancestor
/// running runner.py (the test's parent, or its wrapper's parent).
const RUNNER_PID: &str = "p=$PPID; while [ \"${p:-0}\" -gt 1 ] && ! tr '\\0' ' ' < /proc/$p/cmdline | grep -q runner.py; do \
     p=$(ps -o ppid= -p $p | tr -d ' '); done; echo $p";

#[test]
fn a_new_runner_starts_after_a_reboot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    // The first run emulates a reboot (the boot marker is what a reboot
    // wipes); the second says which runner it got.
    let script = format!(
        "echo \"runner=$({RUNNER_PID}) reboot=$TMT_REBOOT_COUNT\"\n\
         if [ \"$TMT_REBOOT_COUNT\" = 0 ]; then\n\
           printf 'disconnect\\n' >&\"$ATEX_TEST_CONTROL\"\n\
           rm -f \"$ATEX_BOOT_MARKER\"\n\
           while (printf 'noop\\n' >&\"$ATEX_TEST_CONTROL\") 2>/dev/null; do sleep 0.05; done\n\
         fi\n"
    );
    let test = test(&root, &script, 60);
    let artifacts = tmp.path().join("artifacts");
    let config = SessionConfig::new(machine(), "here", &artifacts);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let results = runtime.block_on(async move {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut results: Vec<TestResult> = Vec::new();
        let mut session = Session::open(config, &mut interrupt).await.unwrap();
        let outcome = tokio::time::timeout(
            BOUND,
            session.run_test(&test, 0, &mut results, &mut interrupt),
        )
        .await
        .unwrap();
        assert!(outcome.reusable(), "{outcome:?}");
        session.close(&mut results, &mut interrupt).await;
        results
    });
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("pass"), "{results:?}");
    let output = std::fs::read_to_string(results[0].artifacts.join("files/output.txt")).unwrap();
    let runners: Vec<(u32, &str)> = output
        .lines()
        .filter_map(|line| {
            let (runner, reboot) = line.strip_prefix("runner=")?.split_once(' ')?;
            Some((runner.parse().ok()?, reboot))
        })
        .collect();
    assert_eq!(runners.len(), 2, "{output}");
    assert_eq!((runners[0].1, runners[1].1), ("reboot=0", "reboot=1"));
    assert_ne!(runners[0].0, runners[1].0, "the same runner: {output}");
    // Both are gone once the session is closed.
    assert!(!alive(runners[0].0) && !alive(runners[1].0), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_test_outlives_a_session_dropped_mid_test() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let pids = tmp.path().join("pids");
    let tmp_pids = pids.with_extension("tmp");
    let work_dir = tmp.path().join("work_dir");
    let script = format!(
        "dirname \"$TMT_TREE\" > {work_dir}\nsleep 300 &\n\
         echo \"$$ $! $({RUNNER_PID})\" > {tmp}\nmv {tmp} {pids}\nsleep 300\n",
        work_dir = work_dir.display(),
        tmp = tmp_pids.display(),
        pids = pids.display()
    );
    let test = test(&root, &script, 600);
    let config = SessionConfig::new(machine(), "here", tmp.path().join("artifacts"));
    let run = tokio::spawn(async move {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut results: Vec<TestResult> = Vec::new();
        let mut session = Session::open(config, &mut interrupt).await.unwrap();
        session
            .run_test(&test, 0, &mut results, &mut interrupt)
            .await
    });
    let pids = tokio::task::spawn_blocking(move || wait_for_pids(&pids))
        .await
        .unwrap();
    assert_eq!(pids.len(), 3, "{pids:?}");
    // An orchestrator cancels: the session goes without being closed.
    run.abort();
    let _ = run.await;
    assert_all_end(&pids, "the test, its background child and the runner").await;
    // A session dropped unclosed leaves its work dir, as ever.
    let work_dir = std::fs::read_to_string(&work_dir).unwrap();
    assert!(work_dir.trim().contains("/atex-"), "{work_dir}");
    std::fs::remove_dir_all(work_dir.trim()).unwrap();
}

/// Run `tests` in one session on the local machine; the results.
fn run_session(root: &Path, tests: Vec<Test>) -> Vec<TestResult> {
    let config = SessionConfig::new(machine(), "here", root.join("artifacts"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut interrupt: Interrupt<'static> = Box::pin(std::future::pending());
        let mut results: Vec<TestResult> = Vec::new();
        let mut session = Session::open(config, &mut interrupt).await.unwrap();
        for test in &tests {
            tokio::time::timeout(
                BOUND,
                session.run_test(test, 0, &mut results, &mut interrupt),
            )
            .await
            .unwrap();
        }
        session.close(&mut results, &mut interrupt).await;
        results
    })
}

/// The output a result's test wrote.
fn output_of(result: &TestResult) -> String {
    std::fs::read_to_string(result.artifacts.join("files/output.txt")).unwrap()
}

/// What the test's parent and grandparent run (their command lines): a
/// wrapper forked by the runner has the runner's.
const PARENT: &str = "echo \"parent: $(tr '\\0' ' ' < /proc/$PPID/cmdline)\"\n\
     echo \"grandparent: $(tr '\\0' ' ' < /proc/$(ps -o ppid= -p $PPID | tr -d ' ')/cmdline)\"\n";

#[test]
fn the_runner_spawns_a_plain_test_itself_and_forks_a_wrapper_for_a_tty_test() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    // 500 sub-results written right before the exit: every one reaches the
    // controller before the exit code the runner adds after them.
    let plain = format!(
        "{PARENT}export LC_ALL=C\n\
         for i in $(seq 500); do r='{{\"status\": \"pass\", \"name\": \"r'$i'\"}}'; \
         printf 'result %d\\n%s' \"${{#r}}\" \"$r\" >&\"$ATEX_TEST_CONTROL\"; done\n\
         echo \"control fd $ATEX_TEST_CONTROL\"\nexit 7\n"
    );
    let mut tty = test(&root, &format!("{PARENT}[ -t 1 ] && echo terminal\n"), 60);
    tty.tty = true;
    let mut plain = test(&root, &plain, 60);
    plain.name = "/plain".into();
    tty.name = "/tty".into();
    let results = run_session(tmp.path(), vec![plain, tty]);
    let own: Vec<&TestResult> = results.iter().filter(|r| r.name.is_none()).collect();
    assert_eq!(own.len(), 2, "{results:?}");
    assert_eq!(results.len(), 502, "{:?}", &results[..3]);
    assert_eq!(own[0].status.as_deref(), Some("fail"), "{:?}", own[0]);
    assert_eq!(own[0].exit_code, Some(7), "{:?}", own[0]);
    // The runner is the test's parent.
    let output = output_of(own[0]);
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines[0].starts_with("parent: ") && lines[0].contains("runner.py"),
        "{output}"
    );
    assert!(!lines[1].contains("runner.py"), "{output}");
    assert!(output.contains("control fd 3"), "{output}");
    assert_eq!(own[1].status.as_deref(), Some("pass"), "{:?}", own[1]);
    // A wrapper forked from the runner is the test's parent.
    let output = output_of(own[1]);
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines[0].contains("runner.py") && lines[1].contains("runner.py"),
        "{output}"
    );
    assert!(output.contains("terminal"), "{output}");
}

#[test]
fn a_spawned_test_ignoring_sighup_is_killed_at_its_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    std::fs::create_dir(&root).unwrap();
    let pids = tmp.path().join("pids");
    let script = format!(
        "trap '' HUP\nsleep 300 &\necho \"$$ $!\" > {tmp}\nmv {tmp} {pids}\nwhile :; do sleep 1; done\n",
        tmp = pids.with_extension("tmp").display(),
        pids = pids.display()
    );
    let started = Instant::now();
    let results = run_session(tmp.path(), vec![test(&root, &script, 1)]);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].status.as_deref(), Some("infra"), "{results:?}");
    assert!(
        results[0]
            .note
            .as_deref()
            .is_some_and(|n| n.contains("duration timeout")),
        "{results:?}"
    );
    // The duration (1 s), the hangup's grace (1 s), and some slack.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pids = wait_for_pids(&pids);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(assert_all_end(&pids, "the test and its background child"));
}

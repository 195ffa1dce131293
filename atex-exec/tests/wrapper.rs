//! Integration tests of the remote test wrapper: runs the real `wrapper.py`
//! locally with python3 (stdout = control channel, stderr = output file) and
//! checks exit codes, output routing, environment, cleanup and signals.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use atex_exec::control::{ControlError, Decoder, Event};
use atex_exec::wrapper::{self, WRAPPER_PY};

/// Long enough for a loaded 2-core machine, short enough to fail fast.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The interpreter: `ATEX_TEST_PYTHON` (e.g. an old python3.6) or `python3`.
fn python() -> String {
    let python = std::env::var("ATEX_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let ok = Command::new(&python)
        .arg("--version")
        .stdout(Stdio::null())
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{python} is needed to run the remote wrapper tests; install it \
         (dnf install python3 / apt-get install python3) or set ATEX_TEST_PYTHON"
    );
    python
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("wrapper.py"), WRAPPER_PY).expect("write wrapper");
        fs::create_dir(dir.path().join("work")).expect("work dir");
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn workdir(&self) -> PathBuf {
        self.path("work")
    }

    /// Writes the test script (through [`wrapper::test_script`]) and the
    /// environment file; returns the wrapper's argv after `python`.
    fn prepare(
        &self,
        flags: &[&str],
        env: &[(String, String)],
        body: &str,
        workdir: &Path,
    ) -> Vec<String> {
        let script = wrapper::test_script(
            body,
            &self.path("plan_env").to_string_lossy(),
            &self.path("bin").to_string_lossy(),
        );
        fs::write(self.path("test.sh"), script).expect("write test");
        fs::write(self.path("env"), wrapper::env_file(env).expect("valid env")).expect("write env");
        let mut argv = vec![self.path("wrapper.py").to_string_lossy().into_owned()];
        argv.extend(flags.iter().map(|f| (*f).to_owned()));
        argv.extend(
            [self.path("env"), self.path("test.sh"), workdir.to_owned()]
                .map(|p| p.to_string_lossy().into_owned()),
        );
        argv
    }

    fn start(&self, flags: &[&str], env: &[(String, String)], body: &str) -> Running {
        let argv = self.prepare(flags, env, body, &self.workdir());
        self.spawn(Command::new(python()).args(argv))
    }

    fn spawn(&self, command: &mut Command) -> Running {
        let _ = fs::remove_file(self.path("output"));
        // Append mode, as the controller opens it: output accumulates
        // across reconnects.
        let output = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("output"))
            .expect("output file");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(output)
            .spawn()
            .expect("spawn the wrapper");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut control = Vec::new();
            let _ = stdout.read_to_end(&mut control);
            let _ = tx.send(control);
        });
        Running {
            child,
            control: rx,
            output: self.path("output"),
        }
    }

    fn run(&self, flags: &[&str], env: &[(String, String)], body: &str) -> Finished {
        self.start(flags, env, body).finish()
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// Waits for a file the test writes (e.g. a pid) and returns its content.
    fn wait_for(&self, name: &str) -> String {
        let path = self.path(name);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(text) = fs::read_to_string(&path)
                && text.ends_with('\n')
            {
                return text.trim().to_owned();
            }
            assert!(Instant::now() < deadline, "the test never wrote {name}");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

struct Running {
    child: Child,
    control: Receiver<Vec<u8>>,
    output: PathBuf,
}

struct Finished {
    status: ExitStatus,
    control: Vec<u8>,
    output: Vec<u8>,
}

impl Finished {
    fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("wrapper killed: {:?}", self.status))
    }

    fn control(&self) -> String {
        String::from_utf8_lossy(&self.control).into_owned()
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

impl Running {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (bounded) for the wrapper to exit and its control channel to
    /// close.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the wrapper did not exit within {TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(10));
        };
        let control = self
            .control
            .recv_timeout(TIMEOUT)
            .expect("the control channel stays open after the wrapper exited");
        let output = fs::read(&self.output).expect("read output");
        Finished {
            status,
            control,
            output,
        }
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Whether a process exists and is not a zombie (leftovers are reparented
/// to an init that may be slow to reap them).
fn alive(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

fn assert_dies(pid: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) is still running"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn kill(signal: &str, pid: &str) {
    let status = Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

#[test]
fn reports_the_exit_code_of_the_test() {
    let fx = Fixture::new();
    for (body, rc) in [
        ("exit 0", 0),
        ("true", 0),
        ("exit 1", 1),
        ("exit 7", 7),
        ("kill -9 $$", 137),
    ] {
        let run = fx.run(&[], &[], body);
        assert_eq!(run.code(), 0, "{body}: {}", run.output());
        assert_eq!(run.control(), format!("exitcode {rc}\n"), "{body}");
    }
}

#[test]
fn test_script_stops_on_errors_and_failed_pipes() {
    let fx = Fixture::new();
    let run = fx.run(&[], &[], "false\necho unreachable\n");
    assert_eq!(
        (run.control(), run.output()),
        ("exitcode 1\n".to_owned(), String::new())
    );
    let run = fx.run(&[], &[], "false | true\necho unreachable\n");
    assert_eq!(
        (run.control(), run.output()),
        ("exitcode 1\n".to_owned(), String::new())
    );
}

#[test]
fn missing_test_script_is_exit_code_127() {
    let fx = Fixture::new();
    let argv = fx.prepare(&[], &[], "true", &fx.workdir());
    fs::remove_file(fx.path("test.sh")).expect("remove");
    let run = fx.spawn(Command::new(python()).args(argv)).finish();
    assert_eq!(run.code(), 0);
    assert_eq!(run.control(), "exitcode 127\n");
}

#[test]
fn test_output_goes_to_the_output_file_not_the_control_stream() {
    let fx = Fixture::new();
    let run = fx.run(
        &[],
        &[],
        "echo to-stdout\necho to-stderr >&2\nprintf tail >>/dev/stdout\n",
    );
    assert_eq!(run.output(), "to-stdout\nto-stderr\ntail");
    assert_eq!(run.control(), "exitcode 0\n");
}

#[test]
fn binary_output_is_byte_exact() {
    let fx = Fixture::new();
    let blob: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    fs::write(fx.path("blob"), &blob).expect("blob");
    let run = fx.run(
        &[],
        &[],
        &format!("cat {0}\ncat {0} >&2\n", fx.path("blob").display()),
    );
    assert_eq!(run.output.len(), 2 * blob.len());
    assert!(run.output == [blob.clone(), blob].concat());
    assert_eq!(run.control(), "exitcode 0\n");
}

#[test]
fn results_written_to_the_control_fd_decode() {
    let fx = Fixture::new();
    let body = r#"json='{"status": "pass", "name": "/sub", "files": [{"name": "log", "length": 6}]}'
printf 'result %d\n%s' "${#json}" "$json" >&"$ATEX_TEST_CONTROL"
printf 'hello\n' >&"$ATEX_TEST_CONTROL"
echo "fd=$ATEX_TEST_CONTROL"
"#;
    let run = fx.run(&[], &[], body);
    assert_eq!(run.code(), 0, "{}", run.output());
    let fd = run
        .output()
        .trim()
        .strip_prefix("fd=")
        .expect("fd printed")
        .to_owned();
    assert!(fd.parse::<u32>().expect("a number") > 2);

    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    decoder
        .feed(&run.control, |event| {
            events.push(match event {
                Event::Result(header) => {
                    format!("result {} {}", header.json["name"], header.files[0].name)
                }
                Event::FileData { index, data } => {
                    format!("data {index} {}", String::from_utf8_lossy(data))
                }
                other => format!("{other:?}"),
            });
            Ok::<(), ControlError>(())
        })
        .expect("valid control stream");
    decoder.finish().expect("complete stream");
    assert_eq!(
        events,
        [
            "result \"/sub\" log",
            "data 0 hello\n",
            "FileEnd { index: 0 }",
            "ResultEnd",
            "ExitCode(0)"
        ]
    );
}

#[test]
fn environment_arrives_intact_and_not_on_the_command_line() {
    let fx = Fixture::new();
    let tricky = [
        ("V_NEWLINE", "first line\nsecond line\n"),
        ("V_PERCENT", "100% %d %s %%n"),
        ("V_QUOTES", "it's \"quoted\" `id` $(id) $HOME \\"),
        ("V_EQUALS", "a=b=c"),
        ("V_EMPTY", ""),
    ];
    fs::write(fx.path("plan_env"), "V_PLAN='from plan'\n").expect("plan env");
    fs::create_dir(fx.path("bin")).expect("bin");
    fs::write(fx.path("bin/atex-tool"), "#!/bin/sh\necho tool-ran\n").expect("tool");
    let chmod = Command::new("chmod")
        .arg("755")
        .arg(fx.path("bin/atex-tool"))
        .status();
    assert!(chmod.expect("chmod").success());

    let mut body = String::new();
    for (name, _) in tricky {
        body.push_str(&format!(
            "printf '%s' \"${name}\" > {}\n",
            fx.path(name).display()
        ));
    }
    body.push_str(&format!(
        "bash -c 'printf %s \"$V_PLAN\"' > {plan}\ntr '\\0' ' ' < /proc/$PPID/cmdline > {cmdline}\npwd > {pwd}\natex-tool\n",
        plan = fx.path("plan_seen").display(),
        cmdline = fx.path("cmdline").display(),
        pwd = fx.path("pwd").display(),
    ));
    let run = fx.run(&[], &vars(&tricky), &body);
    assert_eq!(run.control(), "exitcode 0\n", "{}", run.output());
    assert_eq!(run.output(), "tool-ran\n");

    for (name, value) in tricky {
        assert_eq!(fx.read(name), value, "{name}");
    }
    assert_eq!(fx.read("plan_seen"), "from plan");
    assert_eq!(fx.read("pwd").trim_end(), fx.workdir().to_string_lossy());
    let cmdline = fx.read("cmdline");
    assert!(cmdline.contains("wrapper.py"), "{cmdline}");
    for (name, value) in tricky.iter().filter(|(_, v)| !v.is_empty()) {
        assert!(
            !cmdline.contains(name) && !cmdline.contains(value),
            "{name} in {cmdline}"
        );
    }
}

#[test]
fn background_processes_are_killed_when_the_test_ends() {
    let fx = Fixture::new();
    let body = format!("sleep 300 &\necho $! > {}\n", fx.path("bgpid").display());
    let run = fx.run(&[], &[], &body);
    assert_eq!(run.control(), "exitcode 0\n");
    assert_dies(fx.read("bgpid").trim(), "the background sleep");
}

#[test]
fn no_kill_leaves_background_processes_running() {
    let fx = Fixture::new();
    // The leftover closes the control fd, or the channel would stay open.
    let body = format!(
        "( eval \"exec $ATEX_TEST_CONTROL>&-\"; exec sleep 300 ) >/dev/null 2>&1 &\necho $! > {}\n",
        fx.path("bgpid").display()
    );
    let run = fx.run(&["--no-kill"], &[], &body);
    assert_eq!(run.control(), "exitcode 0\n");
    let pid = fx.read("bgpid").trim().to_owned();
    assert!(alive(&pid), "--no-kill killed the background sleep");
    kill("-KILL", &pid);
    assert_dies(&pid, "the background sleep");
}

#[test]
fn no_exitcode_exits_with_the_test_status() {
    let fx = Fixture::new();
    let run = fx.run(&["--no-exitcode"], &[], "exit 9");
    assert_eq!(run.code(), 9);
    assert_eq!(run.control(), "");
}

fn pids_body(fx: &Fixture, trap: &str) -> String {
    format!(
        "{trap}\nsleep 300 &\necho $! > {bg}\necho $$ > {test}\nwait\n",
        bg = fx.path("bgpid").display(),
        test = fx.path("testpid").display()
    )
}

#[test]
fn sigterm_kills_the_test_group_and_exits_143() {
    let fx = Fixture::new();
    let running = fx.start(&[], &[], &pids_body(&fx, ""));
    let (bg, test) = (fx.wait_for("bgpid"), fx.wait_for("testpid"));
    kill("-TERM", &running.pid().to_string());
    let run = running.finish();
    assert_eq!(run.code(), 143);
    assert_eq!(run.control(), "");
    assert_dies(&test, "the test");
    assert_dies(&bg, "the background sleep");
}

#[test]
fn a_test_ignoring_sighup_is_killed_after_the_grace() {
    let fx = Fixture::new();
    let running = fx.start(&[], &[], &pids_body(&fx, "trap '' HUP"));
    let (bg, test) = (fx.wait_for("bgpid"), fx.wait_for("testpid"));
    kill("-INT", &running.pid().to_string());
    let run = running.finish();
    assert_eq!(run.code(), 130);
    assert_dies(&test, "the test");
    assert_dies(&bg, "the background sleep");
}

#[test]
fn the_test_dies_with_the_wrappers_parent() {
    let fx = Fixture::new();
    let argv = fx.prepare(&[], &[], &pids_body(&fx, ""), &fx.workdir());
    // A stand-in for sshd: a parent whose death must stop the test.
    let mut parent = Command::new("bash");
    parent
        .arg("-c")
        .arg("\"$@\" & wait")
        .arg("parent")
        .arg(python())
        .args(argv);
    let running = fx.spawn(&mut parent);
    let (bg, test) = (fx.wait_for("bgpid"), fx.wait_for("testpid"));
    kill("-KILL", &running.pid().to_string());
    let run = running.finish();
    assert_eq!(run.control(), "");
    assert_dies(&test, "the test");
    assert_dies(&bg, "the background sleep");
}

#[test]
fn workdir_chdir_failure_exits_2() {
    let fx = Fixture::new();
    let argv = fx.prepare(&[], &[], "true", &fx.path("no-such-dir"));
    let run = fx.spawn(Command::new(python()).args(argv)).finish();
    assert_eq!(run.code(), wrapper::EXIT_SETUP);
    assert_eq!(run.control(), "");
    assert!(
        run.output().contains("cannot change directory"),
        "{}",
        run.output()
    );
}

#[test]
fn bad_usage_exits_2() {
    let fx = Fixture::new();
    let mut command = Command::new(python());
    command.arg(fx.path("wrapper.py")).arg("only-one-arg");
    let run = fx.spawn(&mut command).finish();
    assert_eq!(run.code(), wrapper::EXIT_SETUP);
    assert!(run.output().contains("usage:"), "{}", run.output());
}

#[test]
fn pty_mode_gives_the_test_a_terminal() {
    let fx = Fixture::new();
    let body = "test -t 0 && test -t 1 && test -t 2 && echo TTY-YES\necho \"TERM=$TERM\"\nstty size\n\
                echo side >&\"$ATEX_TEST_CONTROL\"\n";
    let run = fx.run(&["--pty"], &[], body);
    let output = run.output().replace("\r\n", "\n");
    assert_eq!(output, "TTY-YES\nTERM=vt100\n24 80\n");
    assert_eq!(run.control(), "side\nexitcode 0\n");

    let run = fx.run(&[], &[], "test -t 1 || echo NO-TTY\n");
    assert_eq!(run.output(), "NO-TTY\n");
}

#[test]
fn pty_mode_reports_exit_codes_and_kills_leftovers() {
    let fx = Fixture::new();
    let body = format!(
        "sleep 300 &\necho $! > {}\necho bye\nexit 3\n",
        fx.path("bgpid").display()
    );
    let run = fx.run(&["--pty"], &[], &body);
    assert_eq!(run.control(), "exitcode 3\n");
    assert_eq!(run.output().replace("\r\n", "\n"), "bye\n");
    assert_dies(fx.read("bgpid").trim(), "the background sleep");
}

//! The remote test wrapper: the script atex-exec installs on a machine to
//! run one test (control fd, own session, cleanup, exit code), and the files
//! it reads there (the environment file and the test script).
//!
//! # Contract of `wrapper.py`
//!
//! `python3 wrapper.py [--pty] [--no-exitcode] [--no-kill] ENV_FILE TEST_SCRIPT WORKDIR`
//! (build it with [`wrapper_argv`]), started with stdin from `/dev/null`,
//! stdout a pipe to the controller (the control channel) and stderr the test
//! output file:
//!
//! - ENV_FILE ([`env_file`]) is applied on top of the wrapper's environment.
//!   Unlike ATEX, which puts `env K=V ...` on the remote command line, values
//!   never appear in any argv (no `ps` exposure, no argv limit, no ssh `%`
//!   expansion; spec section 9 gap 3).
//! - The wrapper duplicates its stdout to a new inheritable fd, exports its
//!   number as `ATEX_TEST_CONTROL`, and points fd 1 at its stderr, so the
//!   test's stdout and stderr both land in the output file.
//! - TEST_SCRIPT ([`test_script`]) runs as `bash TEST_SCRIPT` in a new
//!   session from WORKDIR, with SIGPIPE and SIGXFSZ at their defaults; a
//!   relative TEST_SCRIPT is taken from where the wrapper started. Bash is
//!   looked up on the wrapper's own `PATH`, before ENV_FILE applies.
//! - The wrapper asks for SIGTERM when its parent (ssh, the container
//!   runtime) dies. On SIGHUP, SIGTERM or SIGINT it sends SIGHUP to the
//!   test's process group, SIGKILL after a one-second grace, reaps the test
//!   and exits `128 + signal`, writing no `exitcode`.
//! - When the test exits, the wrapper SIGKILLs what is left of its process
//!   group (unless `--no-kill`; daemons that called `setsid` escape, as in
//!   ATEX), writes `exitcode RC` (RC = exit status, or 128 + signal) and
//!   exits 0. With `--no-exitcode` it writes nothing and exits RC instead.
//! - `--pty` (test `tty: true`): the test's stdio is a new pty (controlling
//!   terminal, 80x24, `TERM=vt100`) whose output the wrapper copies to its
//!   stderr. Deviation: unlike ATEX, the wrapper's stdin is not relayed to the
//!   pty (the controller gives it `/dev/null` anyway), so a test reading its
//!   terminal waits for input that never comes, until its duration ends.
//! - Other exit statuses are the wrapper's own failures: see
//!   [`EXIT_SETUP`], [`EXIT_CONTROL_WRITE`], [`EXIT_WAITPID`],
//!   [`EXIT_UNKNOWN_STATUS`] and [`describe_exit`].

use std::fmt::Write as _;

/// The wrapper's source (Python 3.6+, standard library only), to be written
/// to the machine and run with its `python3`.
pub const WRAPPER_PY: &str = include_str!("../remote/wrapper.py");

/// Wrapper exit status: bad usage, unreadable or malformed environment file,
/// WORKDIR chdir failure, or pty/fork failure. The test did not run.
pub const EXIT_SETUP: i32 = 2;
/// Wrapper exit status: writing `exitcode` to the control channel failed
/// (other than EINTR, which is retried).
pub const EXIT_CONTROL_WRITE: i32 = 3;
/// Wrapper exit status: waiting for the test failed.
pub const EXIT_WAITPID: i32 = 4;
/// Wrapper exit status: the test's wait status was neither an exit nor a
/// signal.
pub const EXIT_UNKNOWN_STATUS: i32 = 5;

/// The wrapper's optional flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WrapperFlags {
    /// Run the test on a pty (`--pty`; the test's `tty: true`).
    pub pty: bool,
    /// Exit with the test's status instead of writing `exitcode`
    /// (`--no-exitcode`).
    pub no_exitcode: bool,
    /// Leave the test's background processes running (`--no-kill`; ATEX's
    /// `ATEX_DEBUG_NO_BG_KILL`).
    pub no_kill: bool,
}

/// The argv that runs the wrapper on the machine: `python`, the path the
/// [`WRAPPER_PY`] source was written to, the flags, then the environment
/// file, the test script and the work directory (all remote paths).
///
/// The environment is deliberately not part of it; see the [module
/// docs](self). Join it with [`shell_join`] where a transport wants one
/// command string; keep that string a single simple command (or prefix it
/// with `exec`), so that the remote shell execs the wrapper and its parent
/// is sshd itself, whose death the wrapper notices.
pub fn wrapper_argv(
    python: &str,
    wrapper: &str,
    flags: WrapperFlags,
    env_file: &str,
    test_script: &str,
    workdir: &str,
) -> Vec<String> {
    // `-S`: the wrapper needs the standard library only; skipping the
    // `site` import saves a few milliseconds per test start.
    let mut argv = vec![python.to_owned(), "-S".to_owned(), wrapper.to_owned()];
    argv.extend(wrapper_args(flags, env_file, test_script, workdir));
    argv
}

/// The wrapper's arguments without the interpreter: the flags, then the
/// environment file, the test script and the work directory (what the
/// runner, `remote/runner.py`, hands to the wrapper it forks).
pub fn wrapper_args(
    flags: WrapperFlags,
    env_file: &str,
    test_script: &str,
    workdir: &str,
) -> Vec<String> {
    let mut args = Vec::with_capacity(6);
    for (on, flag) in [
        (flags.pty, "--pty"),
        (flags.no_exitcode, "--no-exitcode"),
        (flags.no_kill, "--no-kill"),
    ] {
        if on {
            args.push(flag.to_owned());
        }
    }
    // Paths starting with "-" would read as flags; "./-x" would not, but
    // remote paths are absolute in practice, so they pass unchanged.
    args.extend([env_file, test_script, workdir].map(str::to_owned));
    args
}

/// What a wrapper exit status means, for the `note` of an `infra` result;
/// `128 + N` is "killed by signal N" (the wrapper was told to stop).
pub fn describe_exit(code: i32) -> String {
    match code {
        0 => "the wrapper finished".to_owned(),
        EXIT_SETUP => "the wrapper could not start the test (bad arguments, environment file, work directory, pty or fork)".to_owned(),
        EXIT_CONTROL_WRITE => "the wrapper could not write the exit code to the control channel".to_owned(),
        EXIT_WAITPID => "the wrapper could not wait for the test".to_owned(),
        EXIT_UNKNOWN_STATUS => "the wrapper got an unknown wait status for the test".to_owned(),
        129..=192 => format!("the wrapper was stopped by signal {}", code - 128),
        other => format!("the wrapper exited with unexpected status {other}"),
    }
}

/// Why an environment cannot be written to an environment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    /// A variable name is empty.
    #[error("environment variable name is empty")]
    EmptyKey,
    /// A variable name contains `=`, which would split it.
    #[error("environment variable name {0:?} contains '='")]
    KeyWithEquals(String),
    /// A variable name contains NUL, the entry separator.
    #[error("environment variable name {0:?} contains NUL")]
    KeyWithNul(String),
    /// A value contains NUL, the entry separator (no process environment
    /// can hold it either).
    #[error("value of environment variable {0:?} contains NUL")]
    ValueWithNul(String),
}

/// The wrapper's ENV_FILE: `KEY=VALUE` entries, each followed by NUL, in
/// order (a later duplicate key wins). Values may hold any byte but NUL,
/// newlines and `%` included.
pub fn env_file(vars: &[(String, String)]) -> Result<Vec<u8>, EnvFileError> {
    let mut out = Vec::with_capacity(vars.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (key, value) in vars {
        if key.is_empty() {
            return Err(EnvFileError::EmptyKey);
        }
        if key.contains('\0') {
            return Err(EnvFileError::KeyWithNul(key.clone()));
        }
        if key.contains('=') {
            return Err(EnvFileError::KeyWithEquals(key.clone()));
        }
        if value.contains('\0') {
            return Err(EnvFileError::ValueWithNul(key.clone()));
        }
        out.extend_from_slice(key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    Ok(out)
}

/// The bash test script of spec section 4 step 4.6: export the variables of
/// the plan environment file if it exists, put `bin_dir` first on `PATH` if
/// it exists, `set -e -o pipefail` (as tmt), then the test's `test` snippet.
///
/// Sourcing the file last means its variables override every other source
/// of the environment, as in ATEX.
pub fn test_script(test_snippet: &str, plan_env_file: &str, bin_dir: &str) -> String {
    let env = shell_quote(plan_env_file);
    let bin = shell_quote(bin_dir);
    let mut script = String::with_capacity(test_snippet.len() + 256);
    script.push_str("#!/bin/bash\n");
    // `writeln!` into a String cannot fail.
    let _ = writeln!(
        script,
        "if [[ -f {env} ]]; then set -o allexport; . {env}; set +o allexport; fi"
    );
    let _ = writeln!(
        script,
        "if [[ -d {bin} ]]; then export PATH={bin}:\"$PATH\"; fi"
    );
    script.push_str("set -e -o pipefail\n");
    script.push_str(test_snippet);
    if !test_snippet.ends_with('\n') {
        script.push('\n');
    }
    script
}

/// Quotes `word` for bash (and any POSIX shell) so that it reads back as
/// exactly one word with exactly these characters.
///
/// Words made only of characters no shell treats specially stay as they
/// are; everything else is put in single quotes, with each `'` written as
/// `'\''`.
pub fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:@+,=%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Joins `argv` into one shell command line, each word [quoted](shell_quote).
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|word| shell_quote(word.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What bash makes of `printf '%s\0' WORDS...`: the words it sees.
    fn bash_words(command_tail: &str) -> Vec<String> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf '%s\\0' {command_tail}"))
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).expect("utf-8");
        let mut words: Vec<String> = text.split('\0').map(str::to_owned).collect();
        assert_eq!(words.pop().as_deref(), Some(""));
        words
    }

    const TRICKY: &[&str] = &[
        "",
        "plain",
        "/var/lib/atex/x.sh",
        "it's",
        "'",
        "''",
        "two words",
        "line\nbreak",
        "100%",
        "%d %s %%",
        "$HOME `id` $(id) \\ \" ! * ? [a] {a,b} ~ # ; & | < > ( )",
        "-n",
        "tab\there",
        "ünïcödé ✓",
    ];

    #[test]
    fn shell_quote_reads_back_exactly_in_bash() {
        for word in TRICKY {
            assert_eq!(bash_words(&shell_quote(word)), [*word], "word {word:?}");
        }
        assert_eq!(bash_words(&shell_join(TRICKY)), TRICKY);
    }

    #[test]
    fn shell_quote_forms() {
        assert_eq!(shell_quote("abc/d-e_f.g"), "abc/d-e_f.g");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        assert_eq!(shell_quote("50%"), "50%");
        assert_eq!(shell_quote("~"), "'~'");
    }

    #[test]
    fn env_file_layout() {
        let vars = [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "x=y\n%z 'q'".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        assert_eq!(
            env_file(&vars).expect("valid"),
            b"A=1\0B=x=y\n%z 'q'\0EMPTY=\0".to_vec()
        );
        assert_eq!(env_file(&[]).expect("valid"), Vec::<u8>::new());
    }

    #[test]
    fn env_file_rejects_what_cannot_round_trip() {
        let one = |k: &str, v: &str| env_file(&[(k.to_owned(), v.to_owned())]);
        assert_eq!(one("", "v"), Err(EnvFileError::EmptyKey));
        assert_eq!(
            one("A=B", "v"),
            Err(EnvFileError::KeyWithEquals("A=B".into()))
        );
        assert_eq!(one("A\0", "v"), Err(EnvFileError::KeyWithNul("A\0".into())));
        assert_eq!(
            one("A", "v\0w"),
            Err(EnvFileError::ValueWithNul("A".into()))
        );
    }

    #[test]
    fn test_script_layout() {
        let script = test_script("make check", "/w/plan env", "/w/bin");
        assert_eq!(
            script,
            "#!/bin/bash\n\
             if [[ -f '/w/plan env' ]]; then set -o allexport; . '/w/plan env'; set +o allexport; fi\n\
             if [[ -d /w/bin ]]; then export PATH=/w/bin:\"$PATH\"; fi\n\
             set -e -o pipefail\n\
             make check\n"
        );
        assert!(test_script("x\n", "e", "b").ends_with("\nx\n"));
    }

    #[test]
    fn test_script_is_valid_bash_with_hostile_paths() {
        let script = test_script("true", "/tmp/it's a\nplan%env", "/tmp/$(id) `x`");
        let status = Command::new("bash")
            .args(["-n", "-c", &script])
            .status()
            .expect("bash runs");
        assert!(status.success());
    }

    #[test]
    fn argv_has_flags_before_paths_and_no_environment() {
        let flags = WrapperFlags {
            pty: true,
            no_exitcode: false,
            no_kill: true,
        };
        assert_eq!(
            wrapper_argv(
                "python3",
                "/w/wrapper.py",
                flags,
                "/w/env",
                "/w/test.sh",
                "/w/tests/a"
            ),
            [
                "python3",
                "-S",
                "/w/wrapper.py",
                "--pty",
                "--no-kill",
                "/w/env",
                "/w/test.sh",
                "/w/tests/a"
            ]
        );
        assert_eq!(
            wrapper_argv("py", "w", WrapperFlags::default(), "e", "t", "d").len(),
            6
        );
    }

    #[test]
    fn exit_descriptions() {
        assert!(describe_exit(EXIT_SETUP).contains("could not start"));
        assert_eq!(describe_exit(143), "the wrapper was stopped by signal 15");
        assert!(describe_exit(77).contains("unexpected status 77"));
    }
}

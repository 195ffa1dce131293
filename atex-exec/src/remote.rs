//! The remote layout on one machine: the work dir, the uploaded tree, the
//! wrapper, per-test setup, plan prepare/finish (spec/atex-reference.md
//! section 4 "Remote layout and start()").
//!
//! # Layout
//!
//! ```text
//! W/                  the work dir (see below for where it is made)
//! W/tests/            the fmf tree, uploaded without `.git` (TMT_TREE)
//! W/plan_env          TMT_PLAN_ENVIRONMENT_FILE
//! W/plan_env.base     what the prepare phases left in plan_env (none
//!                     without prepare phases: then taken as empty)
//! W/bin/              first on the test's PATH: the tmt helpers
//!                     (crate::helpers), 0755, under each of their names
//! W/wrapper.py        the test wrapper (crate::wrapper::WRAPPER_PY), 0755
//! W/runner.py         the warm runner (crate::runner::RUNNER_PY), which
//!                     imports the wrapper beside it
//! W/phase.sh, W/phase_env   the last prepare/finish shell phase and its environment
//! W/test/env          the wrapper's environment file (NUL-separated)
//! W/test/test.sh      the test script (crate::wrapper::test_script), 0755
//! W/test/metadata.yaml  the test's `data` (TMT_TEST_METADATA)
//! ```
//!
//! # Where `W` is made
//!
//! ATEX runs `mktemp -d -p /var atex-XXXXXXXXXX` (not `/var/tmp`, which bootc
//! cleans). That fails for a login that cannot write `/var`, so the first of
//! these where `mktemp` succeeds is used: `/var`, then
//! `${XDG_STATE_HOME:-$HOME/.local/state}` (created if missing), `/var/tmp`,
//! `${TMPDIR:-/tmp}`. A root login therefore gets ATEX's layout.
//!
//! # Deviations from ATEX
//!
//! - Every file is written by a script fed on stdin (file contents as
//!   single-quoted `printf` arguments of the bash builtin, so they show in
//!   no `ps` and meet no argv limit); the tree is uploaded with
//!   [`Connection::upload`].
//! - The plan environment file no longer leaks between tests (spec section
//!   9 item 7): after the prepare phases its content is kept in
//!   `W/plan_env.base`, and every test (and the finish phases) starts from
//!   that copy, so what a test appends is seen by that test only (also
//!   across its reboots, as long as [`RemoteLayout::setup_test`] is not run
//!   again).
//! - `W/test/metadata.yaml` holds the test's `data` as JSON, which is a
//!   YAML document too, so YAML readers load it.
//! - Beyond ATEX, `REBOOTCOUNT` and `RSTRNT_REBOOTCOUNT` are set with
//!   `TMT_REBOOT_COUNT`, as tmt does (spec/fmf-tmt.md D.1).
//! - Package installs do nothing for packages already present, use `sudo -n`
//!   for a non-root login when sudo exists, and also work with apt-get
//!   (recommended packages are then installed one by one, skipping those
//!   that fail). Requirements that are not strings (`type: library`,
//!   `type: file`) are left out here.
//! - A `prepare`/`finish` shell phase is written to `W/phase.sh` and run with
//!   stdin from `/dev/null`, so a command reading stdin cannot eat the rest
//!   of the script as it could when fed to bash on stdin.

use std::fmt::Write as _;
use std::path::Path;

use atex_shared::connection::{Connection, ConnectionError, Output};
use atex_shared::records::Test;
use indexmap::IndexMap;
use serde_json::Value;

use crate::helpers;
use crate::wrapper::{self, EnvFileError, WrapperFlags, shell_quote};

/// The prefix of the work dir's name, as ATEX (`mktemp` adds ten characters).
pub const WORK_DIR_TEMPLATE: &str = "atex-XXXXXXXXXX";

/// Python interpreters tried, in order (the runner and the wrapper need 3.6
/// or newer). A `python3` is taken by its name, without being run (the
/// runner checks its own version when it starts and says what it found);
/// the others are asked their version.
pub const PYTHONS: &[&str] = &["python3", "python", "/usr/libexec/platform-python"];

/// A failure to lay out the machine or to set a test up; messages read
/// after "failed to".
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The connection failed (lost machine, timeout, upload).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// No candidate directory accepted the work dir.
    #[error("create the work directory on the machine: {output}")]
    NoWorkDir {
        /// What the script said.
        output: String,
    },
    /// None of [`PYTHONS`] is a Python 3.6 or newer.
    #[error(
        "find a python 3.6+ on the machine (tried python3, python, /usr/libexec/platform-python)"
    )]
    NoPython,
    /// The machine gave back a path or an answer that is not as expected.
    #[error("{action}: unexpected answer {answer:?}")]
    Unexpected {
        /// What was attempted.
        action: String,
        /// What came back.
        answer: String,
    },
    /// A script that lays out the machine (work dir files, cleanup) failed.
    #[error("{action}: exit code {code:?}: {output}")]
    Script {
        /// What was attempted.
        action: String,
        /// Its exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its stdout and stderr.
        output: String,
    },
    /// The per-test setup (files, packages) failed: the test cannot run
    /// (ATEX's `TestSetupError`; the caller reports an `infra` result).
    #[error("set up test {test}: exit code {code:?}: {output}")]
    Setup {
        /// The test's name.
        test: String,
        /// The setup script's exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its stdout and stderr.
        output: String,
    },
    /// The environment cannot be written for the wrapper.
    #[error("write the test environment: {0}")]
    Environment(#[from] EnvFileError),
    /// A variable name cannot be exported by a shell script.
    #[error("export environment variable {0:?}: not a shell variable name")]
    VariableName(String),
    /// A `prepare`/`finish` phase has a `how` that is not supported.
    #[error("run {step} phase {index}: unsupported 'how: {how}' (supported: install, shell)")]
    UnknownHow {
        /// `prepare` or `finish`.
        step: String,
        /// The phase's index in the step, from 0.
        index: usize,
        /// The unsupported value.
        how: String,
    },
    /// A `prepare`/`finish` phase is malformed (e.g. a `script` that is
    /// not a string or a list of strings).
    #[error("run {step} phase {index}: {message}")]
    BadPhase {
        /// `prepare` or `finish`.
        step: String,
        /// The phase's index in the step, from 0.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A `prepare`/`finish` phase ran and failed.
    #[error("run {step} phase {index} (how: {how}): exit code {code:?}: {output}")]
    PhaseFailed {
        /// `prepare` or `finish`.
        step: String,
        /// The phase's index in the step, from 0.
        index: usize,
        /// `install` or `shell`.
        how: String,
        /// The exit code (`None`: killed by a signal).
        code: Option<i32>,
        /// Its stdout and stderr.
        output: String,
    },
}

/// The remote files of one test and the argv that launches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFiles {
    /// The wrapper's argv ([`wrapper::wrapper_argv`]), for
    /// [`Connection::spawn`] with stdin [`atex_shared::connection::Input::Null`].
    pub argv: Vec<String>,
    /// `W/test/env`.
    pub env_file: String,
    /// `W/test/test.sh`.
    pub script: String,
    /// `W/test/metadata.yaml`.
    pub metadata: String,
    /// The test's working directory, `W/tests/<path>`.
    pub workdir: String,
}

/// One file a test's setup writes ([`TestSetup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupFile {
    /// Where (a remote path).
    pub path: String,
    /// Its permission bits (before the login's umask for 0644 files).
    pub mode: u32,
    /// What it holds.
    pub contents: String,
}

/// What setting up one test does on the machine, as data, for the runner
/// ([`crate::runner::Runner::prepare_test`]): `test_dir` made anew,
/// `plan_env` reset to `plan_env_base` (emptied without one), `writes`
/// written in order, then `install` run (a shell script; `None` when the
/// test requires no package).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestSetup {
    /// The test's files and its launch argv.
    pub files: TestFiles,
    /// `W/test`.
    pub test_dir: String,
    /// `W/plan_env.base`.
    pub plan_env_base: String,
    /// `W/plan_env`.
    pub plan_env: String,
    /// The environment file, the test script (0755) and the metadata.
    pub writes: Vec<SetupFile>,
    /// The package install script, when the test requires packages.
    pub install: Option<String>,
}

/// The work dir of one machine and the Python that runs the wrapper there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLayout {
    work_dir: String,
    python: String,
}

impl RemoteLayout {
    /// A layout that already exists (e.g. to carry on after a reconnect).
    ///
    /// ```
    /// let layout = atex_exec::remote::RemoteLayout::new("/var/atex-x", "/usr/bin/python3");
    /// assert_eq!(layout.tests_dir(), "/var/atex-x/tests");
    /// ```
    pub fn new(work_dir: impl Into<String>, python: impl Into<String>) -> Self {
        Self {
            work_dir: work_dir.into(),
            python: python.into(),
        }
    }

    /// Make the work dir `W` (see the [module docs](self) for where), find a
    /// Python, write `W/wrapper.py`, an empty `W/plan_env` and `W/bin/`, and
    /// upload `tree_root` to `W/tests` (without `.git`).
    ///
    /// When the upload fails, the work dir is removed (best effort) before
    /// the error is returned.
    pub async fn prepare(conn: &Connection, tree_root: &Path) -> Result<RemoteLayout, RemoteError> {
        let layout = RemoteLayout::create(conn).await?;
        if let Err(e) = layout.upload_tree(conn, tree_root).await {
            let _ = layout.cleanup(conn).await;
            return Err(e);
        }
        Ok(layout)
    }

    /// The first half of [`RemoteLayout::prepare`]: make `W` and its
    /// files, without the tree. One script, which is short: a caller that
    /// must stop meanwhile can wait for it to learn what to remove.
    pub async fn create(conn: &Connection) -> Result<RemoteLayout, RemoteError> {
        let out = conn.run_script(PREPARE_SCRIPT.as_bytes()).await?;
        match out.code {
            Some(0) => {}
            Some(10) => {
                return Err(RemoteError::NoWorkDir {
                    output: output_text(&out),
                });
            }
            Some(11) => return Err(RemoteError::NoPython),
            code => {
                return Err(RemoteError::Script {
                    action: "lay out the work directory".into(),
                    code,
                    output: output_text(&out),
                });
            }
        }
        let answer = String::from_utf8(out.stdout).map_err(|e| RemoteError::Unexpected {
            action: "read the work directory's path".into(),
            answer: String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })?;
        let mut parts = answer.split('\0');
        let (Some(work_dir), Some(python), Some(""), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(RemoteError::Unexpected {
                action: "read the work directory's path".into(),
                answer,
            });
        };
        if !work_dir.starts_with('/') || !python.starts_with('/') {
            return Err(RemoteError::Unexpected {
                action: "read the work directory's path".into(),
                answer,
            });
        }
        Ok(RemoteLayout::new(work_dir, python))
    }

    /// The second half of [`RemoteLayout::prepare`]: upload `tree_root` to
    /// `W/tests` (without `.git`); the work dir stays on failure.
    pub async fn upload_tree(
        &self,
        conn: &Connection,
        tree_root: &Path,
    ) -> Result<(), RemoteError> {
        conn.upload(tree_root, &self.tests_dir()).await?;
        Ok(())
    }

    /// The work dir `W` (absolute).
    pub fn work_dir(&self) -> &str {
        &self.work_dir
    }

    /// The absolute path of the Python that runs the wrapper.
    pub fn python(&self) -> &str {
        &self.python
    }

    /// `W/tests`, the uploaded tree (`TMT_TREE`).
    pub fn tests_dir(&self) -> String {
        format!("{}/tests", self.work_dir)
    }

    /// `W/plan_env` (`TMT_PLAN_ENVIRONMENT_FILE`).
    pub fn plan_env(&self) -> String {
        format!("{}/plan_env", self.work_dir)
    }

    /// `W/bin`, put first on the test's `PATH`.
    pub fn bin_dir(&self) -> String {
        format!("{}/bin", self.work_dir)
    }

    /// `W/wrapper.py`.
    pub fn wrapper(&self) -> String {
        format!("{}/wrapper.py", self.work_dir)
    }

    /// `W/runner.py`.
    pub fn runner(&self) -> String {
        format!("{}/runner.py", self.work_dir)
    }

    /// `W/test`, the directory of the current test's files.
    pub fn test_dir(&self) -> String {
        format!("{}/test", self.work_dir)
    }

    /// The environment of `test`, lowest precedence first, each name once
    /// (where a later source sets a name again, its value replaces the
    /// earlier one in place), following ATEX (spec section 4 `run_test`
    /// step 1):
    ///
    /// 1. the plan's `environment`;
    /// 2. `TMT_PLAN_ENVIRONMENT_FILE`, `TMT_TEST_NAME`, `TMT_TEST_METADATA`;
    /// 3. the test's `environment`;
    /// 4. `TMT_TREE`;
    /// 5. `extra` (the caller's variables);
    /// 6. `TMT_REBOOT_COUNT` (and tmt's `REBOOTCOUNT`, `RSTRNT_REBOOTCOUNT`)
    ///    and `TMT_TEST_RESTART_COUNT`.
    ///
    /// A [`Test`] record's `environment` already has the plan's environment
    /// applied on top (atex-discover resolves a name set by both the way
    /// tmt does: the plan wins). ATEX's order (plan < test) therefore only
    /// shows for names the test sets and the plan does not, and for the
    /// step 2 names, which a test's `environment` may override. The test
    /// script finally sources `TMT_PLAN_ENVIRONMENT_FILE`, whose variables
    /// override all of these. `TMT_TEST_DATA` is deliberately not set:
    /// Contest relies on it being absent outside tmt.
    ///
    /// ```
    /// use atex_exec::remote::RemoteLayout;
    /// let test: atex_shared::records::Test = serde_json::from_str(
    ///     r#"{"name": "/t", "root": "/r", "path": "t", "test": "true",
    ///         "environment": {"A": "test", "TMT_TREE": "no"},
    ///         "plan": {"environment": {"A": "plan"}}}"#).unwrap();
    /// let env = RemoteLayout::new("/w", "/py").test_environment(&test, &[], 1, 2);
    /// assert_eq!(env[0], ("A".to_string(), "test".to_string()));
    /// assert!(env.contains(&("TMT_TREE".into(), "/w/tests".into())));
    /// assert!(env.contains(&("TMT_TEST_RESTART_COUNT".into(), "2".into())));
    /// ```
    pub fn test_environment(
        &self,
        test: &Test,
        extra: &[(String, String)],
        reboot_count: u32,
        restart_count: u32,
    ) -> Vec<(String, String)> {
        let mut env: IndexMap<String, String> = IndexMap::new();
        let mut set = |k: &str, v: &str| {
            env.insert(k.to_owned(), v.to_owned());
        };
        for (k, v) in &test.plan.environment {
            set(k, v);
        }
        set("TMT_PLAN_ENVIRONMENT_FILE", &self.plan_env());
        set("TMT_TEST_NAME", &test.name);
        set(
            "TMT_TEST_METADATA",
            &format!("{}/metadata.yaml", self.test_dir()),
        );
        for (k, v) in &test.environment {
            set(k, v);
        }
        set("TMT_TREE", &self.tests_dir());
        for (k, v) in extra {
            set(k, v);
        }
        let reboots = reboot_count.to_string();
        set("TMT_REBOOT_COUNT", &reboots);
        set("REBOOTCOUNT", &reboots);
        set("RSTRNT_REBOOTCOUNT", &reboots);
        set("TMT_TEST_RESTART_COUNT", &restart_count.to_string());
        env.into_iter().collect()
    }

    /// Set `test` up (spec section 4 `run_test` step 4): recreate `W/test`,
    /// reset `W/plan_env` to what the prepare phases left, write the
    /// environment file ([`RemoteLayout::test_environment`] with `extra`),
    /// the test script and the metadata, install the test's string
    /// `require` and `recommend` packages that are missing, and return the
    /// argv that launches it.
    ///
    /// On a reboot or restart, only [`RemoteLayout::write_test_env`] (with
    /// new counts) is needed before launching the same argv again.
    pub async fn setup_test(
        &self,
        conn: &Connection,
        test: &Test,
        extra: &[(String, String)],
        reboot_count: u32,
        restart_count: u32,
    ) -> Result<TestFiles, RemoteError> {
        let setup = self.test_setup(test, extra, reboot_count, restart_count)?;
        let mut script = String::from("set -e\n");
        let _ = writeln!(
            script,
            "rm -rf -- {0}\nmkdir -- {0}",
            shell_quote(&setup.test_dir)
        );
        script.push_str(&self.restore_plan_env());
        for file in &setup.writes {
            if file.path == setup.files.env_file {
                // NUL-separated: a NUL cannot be a shell word.
                script.push_str(&write_env_file(&file.path, &file.contents));
            } else {
                script.push_str(&write_file(&file.path, &file.contents));
            }
            if file.mode & 0o111 != 0 {
                let _ = writeln!(
                    script,
                    "chmod {:o} -- {}",
                    file.mode,
                    shell_quote(&file.path)
                );
            }
        }
        if let Some(install) = &setup.install {
            let _ = writeln!(script, "{{\n{install}}} </dev/null");
        }
        run_setup_script(conn, test, &script).await?;
        Ok(setup.files)
    }

    /// What [`RemoteLayout::setup_test`] does, as data (no I/O), for the
    /// runner, which does it without a shell; the package install is left
    /// to [`RemoteLayout::install_packages`].
    pub fn test_setup(
        &self,
        test: &Test,
        extra: &[(String, String)],
        reboot_count: u32,
        restart_count: u32,
    ) -> Result<TestSetup, RemoteError> {
        let files = self.test_files(test);
        let env = self.test_environment(test, extra, reboot_count, restart_count);
        let env = String::from_utf8_lossy(&wrapper::env_file(&env)?).into_owned();
        let body = wrapper::test_script(&test.test, &self.plan_env(), &self.bin_dir());
        let metadata = serde_json::to_string(&test.data).unwrap_or_else(|_| "null".into());
        let writes = vec![
            SetupFile {
                path: files.env_file.clone(),
                mode: 0o644,
                contents: env,
            },
            SetupFile {
                path: files.script.clone(),
                mode: 0o755,
                contents: body,
            },
            SetupFile {
                path: files.metadata.clone(),
                mode: 0o644,
                contents: format!("{metadata}\n"),
            },
        ];
        let strings = |list: &[Value]| -> Vec<String> {
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let install = package_install_script(&strings(&test.require), &strings(&test.recommend));
        Ok(TestSetup {
            files,
            test_dir: self.test_dir(),
            plan_env_base: format!("{}.base", self.plan_env()),
            plan_env: self.plan_env(),
            writes,
            install,
        })
    }

    /// Run the package install script of a [`TestSetup`] (stdin from
    /// `/dev/null`); a failure is [`RemoteError::Setup`] of `test`.
    pub async fn install_packages(
        &self,
        conn: &Connection,
        test: &Test,
        install: &str,
    ) -> Result<(), RemoteError> {
        let script = format!("set -e\n{{\n{install}}} </dev/null\n");
        run_setup_script(conn, test, &script).await
    }

    /// Rewrite `W/test/env` only (for a relaunch after a reboot or restart,
    /// with the new counts).
    pub async fn write_test_env(
        &self,
        conn: &Connection,
        test: &Test,
        extra: &[(String, String)],
        reboot_count: u32,
        restart_count: u32,
    ) -> Result<(), RemoteError> {
        let env = self.test_environment(test, extra, reboot_count, restart_count);
        let env = String::from_utf8_lossy(&wrapper::env_file(&env)?).into_owned();
        let path = format!("{}/env", self.test_dir());
        let script = format!("set -e\n{}", write_env_file(&path, &env));
        let out = conn.run_script(script.as_bytes()).await?;
        if !out.success() {
            return Err(RemoteError::Script {
                action: format!("write {path}"),
                code: out.code,
                output: output_text(&out),
            });
        }
        Ok(())
    }

    /// The paths of `test`'s files and its launch argv (no I/O).
    pub fn test_files(&self, test: &Test) -> TestFiles {
        let test_dir = self.test_dir();
        let env_file = format!("{test_dir}/env");
        let script = format!("{test_dir}/test.sh");
        let metadata = format!("{test_dir}/metadata.yaml");
        let path = test.path.trim_matches('/');
        let workdir = if path.is_empty() {
            self.tests_dir()
        } else {
            format!("{}/{path}", self.tests_dir())
        };
        let flags = WrapperFlags {
            pty: test.tty,
            ..WrapperFlags::default()
        };
        let argv = wrapper::wrapper_argv(
            &self.python,
            &self.wrapper(),
            flags,
            &env_file,
            &script,
            &workdir,
        );
        TestFiles {
            argv,
            env_file,
            script,
            metadata,
            workdir,
        }
    }

    /// Run the plan's `prepare` phases (see [`RemoteLayout::run_plan_phases`]).
    pub async fn run_prepare(
        &self,
        conn: &Connection,
        plan: &atex_shared::records::Plan,
    ) -> Result<Vec<Output>, RemoteError> {
        self.run_plan_step(conn, "prepare", &plan.prepare, plan)
            .await
    }

    /// Run the plan's `finish` phases (see [`RemoteLayout::run_plan_phases`]).
    pub async fn run_finish(
        &self,
        conn: &Connection,
        plan: &atex_shared::records::Plan,
    ) -> Result<Vec<Output>, RemoteError> {
        self.run_plan_step(conn, "finish", &plan.finish, plan).await
    }

    /// One step's phases with the plan's environment.
    async fn run_plan_step(
        &self,
        conn: &Connection,
        step: &str,
        phases: &[Value],
        plan: &atex_shared::records::Plan,
    ) -> Result<Vec<Output>, RemoteError> {
        let env: Vec<(String, String)> = plan
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.run_plan_phases(conn, step, phases, &env).await
    }

    /// Run `phases` of `step` (`prepare` or `finish`) in order, stopping at
    /// the first failure, and return what each ran script printed.
    ///
    /// - `how: install`: the `package` (string or list) are installed
    ///   ([`package_install_script`]); with `missing: skip` as recommended
    ///   packages.
    /// - `how: shell` (also when `how` is absent): each `script` (string or
    ///   list) runs with bash in `W/tests`, with `plan_environment`, then
    ///   `TMT_TREE` and `TMT_PLAN_ENVIRONMENT_FILE` exported from
    ///   `W/phase_env`, then the plan environment file sourced with
    ///   allexport, then `set -e -o pipefail` (spec section 4).
    /// - any other `how` is [`RemoteError::UnknownHow`].
    ///
    /// `W/plan_env` starts from what the prepare phases left (empty before
    /// them) and is kept as that base afterwards. Without phases nothing
    /// runs on the machine (a test's setup takes a missing base as empty).
    pub async fn run_plan_phases(
        &self,
        conn: &Connection,
        step: &str,
        phases: &[Value],
        plan_environment: &[(String, String)],
    ) -> Result<Vec<Output>, RemoteError> {
        let mut outputs = Vec::new();
        if phases.is_empty() {
            // Resetting the file and keeping it again would change nothing
            // anyone reads, at two ssh sessions per step.
            return Ok(outputs);
        }
        let mut env: IndexMap<String, String> = plan_environment.iter().cloned().collect();
        env.insert("TMT_TREE".into(), self.tests_dir());
        env.insert("TMT_PLAN_ENVIRONMENT_FILE".into(), self.plan_env());
        let exports = export_lines(&env)?;
        let base = format!("{}.base", self.plan_env());
        let start = format!("set -e\n{}", self.restore_plan_env());
        self.script_ok(conn, "reset the plan environment file", &start)
            .await?;
        for (index, phase) in phases.iter().enumerate() {
            let bad = |message: String| RemoteError::BadPhase {
                step: step.to_owned(),
                index,
                message,
            };
            let how = match phase.get("how") {
                None => "shell",
                Some(Value::String(how)) => how.as_str(),
                Some(other) => return Err(bad(format!("'how' must be a string, not {other}"))),
            };
            let scripts: Vec<String> = match how {
                "install" => {
                    let packages = string_list(phase.get("package")).ok_or_else(|| {
                        bad("'package' must be a string or a list of strings".into())
                    })?;
                    let skip = phase.get("missing").and_then(Value::as_str) == Some("skip");
                    let (required, recommended) = if skip {
                        (Vec::new(), packages)
                    } else {
                        (packages, Vec::new())
                    };
                    package_install_script(&required, &recommended)
                        .map(|s| format!("set -e\n{{\n{s}}} </dev/null\n"))
                        .into_iter()
                        .collect()
                }
                "shell" => string_list(phase.get("script"))
                    .ok_or_else(|| bad("'script' must be a string or a list of strings".into()))?
                    .iter()
                    .map(|s| self.shell_phase_script(&exports, s))
                    .collect(),
                other => {
                    return Err(RemoteError::UnknownHow {
                        step: step.to_owned(),
                        index,
                        how: other.to_owned(),
                    });
                }
            };
            for script in scripts {
                let out = conn.run_script(script.as_bytes()).await?;
                if !out.success() {
                    return Err(RemoteError::PhaseFailed {
                        step: step.to_owned(),
                        index,
                        how: how.to_owned(),
                        code: out.code,
                        output: output_text(&out),
                    });
                }
                outputs.push(out);
            }
        }
        let keep = format!(
            "cp -- {} {}\n",
            shell_quote(&self.plan_env()),
            shell_quote(&base)
        );
        self.script_ok(conn, "keep the plan environment file", &keep)
            .await?;
        Ok(outputs)
    }

    /// Remove the work dir (`rm -rf W`).
    pub async fn cleanup(&self, conn: &Connection) -> Result<(), RemoteError> {
        self.cleanup_and_forget(conn, None).await
    }

    /// Remove the work dir and, in the same script, the file `marker` (a
    /// boot marker, [`crate::reboot::BootIdentity`]) when given.
    pub async fn cleanup_and_forget(
        &self,
        conn: &Connection,
        marker: Option<&str>,
    ) -> Result<(), RemoteError> {
        let mut script = format!("rm -rf -- {}\n", shell_quote(&self.work_dir));
        if let Some(marker) = marker {
            let _ = writeln!(script, "rm -f -- {}", shell_quote(marker));
        }
        self.script_ok(conn, "remove the work directory", &script)
            .await
    }

    async fn script_ok(
        &self,
        conn: &Connection,
        action: &str,
        script: &str,
    ) -> Result<(), RemoteError> {
        let out = conn.run_script(script.as_bytes()).await?;
        if out.success() {
            Ok(())
        } else {
            Err(RemoteError::Script {
                action: action.to_owned(),
                code: out.code,
                output: output_text(&out),
            })
        }
    }

    /// Shell lines that set `W/plan_env` to `W/plan_env.base` (empty when
    /// there is none).
    fn restore_plan_env(&self) -> String {
        let env = shell_quote(&self.plan_env());
        let base = shell_quote(&format!("{}.base", self.plan_env()));
        format!("if [ -f {base} ]; then cp -- {base} {env}; else : > {env}; fi\n")
    }

    /// The script that writes one shell phase and its environment, then runs
    /// it with stdin from `/dev/null`.
    fn shell_phase_script(&self, exports: &str, body: &str) -> String {
        let phase_env = format!("{}/phase_env", self.work_dir);
        let phase = format!("{}/phase.sh", self.work_dir);
        let mut file = String::from("#!/bin/bash\n");
        let _ = writeln!(file, ". {}", shell_quote(&phase_env));
        let _ = writeln!(file, "cd {} || exit 1", shell_quote(&self.tests_dir()));
        file.push_str(
            "if [[ -f $TMT_PLAN_ENVIRONMENT_FILE ]]; then set -o allexport; \
             . \"$TMT_PLAN_ENVIRONMENT_FILE\"; set +o allexport; fi\n",
        );
        file.push_str("set -e -o pipefail\n");
        file.push_str(body);
        if !body.ends_with('\n') {
            file.push('\n');
        }
        let mut script = String::from("set -e\n");
        script.push_str(&write_file(&phase_env, exports));
        script.push_str(&write_file(&phase, &file));
        let _ = writeln!(script, "exec bash {} </dev/null", shell_quote(&phase));
        script
    }
}

/// Run a setup script of `test`; a failure is [`RemoteError::Setup`].
async fn run_setup_script(conn: &Connection, test: &Test, script: &str) -> Result<(), RemoteError> {
    let out = conn.run_script(script.as_bytes()).await?;
    if !out.success() {
        return Err(RemoteError::Setup {
            test: test.name.clone(),
            code: out.code,
            output: output_text(&out),
        });
    }
    Ok(())
}

/// [`prepare_script`], made once: every session sends the same 50 KB.
static PREPARE_SCRIPT: std::sync::LazyLock<String> = std::sync::LazyLock::new(prepare_script);

/// The script that makes `W`, finds Python and writes the fixed files; it
/// prints `W` and the Python path, each followed by NUL. Exit 10: no work
/// dir; 11: no Python.
fn prepare_script() -> String {
    let pythons = PYTHONS
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ");
    let mut script = String::from(
        r#"set -e
umask 022
W=
for d in /var "${XDG_STATE_HOME:-$HOME/.local/state}" /var/tmp "${TMPDIR:-/tmp}"; do
    case $d in /*) ;; *) continue ;; esac
    [ -d "$d" ] || mkdir -p -- "$d" 2>/dev/null || continue
"#,
    );
    let _ = writeln!(
        script,
        "    if [ -w \"$d\" ] && W=$(mktemp -d -p \"$d\" {WORK_DIR_TEMPLATE} 2>/dev/null); then break; fi"
    );
    script.push_str(
        r#"    W=
done
if [ -z "$W" ]; then
    echo "no writable directory among /var, \${XDG_STATE_HOME:-\$HOME/.local/state}, /var/tmp, \${TMPDIR:-/tmp}" >&2
    exit 10
fi
PY=
"#,
    );
    let _ = writeln!(script, "for p in {pythons}; do");
    // A `python3` is taken as found (the runner checks its own version
    // when it starts, and says so): running it here cost a Python start
    // per session. `python` may be Python 2, so it is asked.
    script.push_str(
        r#"    c=$(command -v "$p" 2>/dev/null) || continue
    case $c in /*) ;; *) continue ;; esac
    if [ "$p" = python3 ]; then PY=$c; break; fi
    if "$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 6) else 1)' </dev/null >/dev/null 2>&1; then PY=$c; break; fi
done
if [ -z "$PY" ]; then rm -rf -- "$W"; exit 11; fi
mkdir -- "$W/bin" "$W/tests"
: > "$W/plan_env"
"#,
    );
    script.push_str(&write_file_var("$W/wrapper.py", wrapper::WRAPPER_PY));
    script.push_str(&write_file_var("$W/runner.py", crate::runner::RUNNER_PY));
    // The helper script under each of its names, written by the printf
    // builtin: no process per name (an `ln -s` each cost 13 processes per
    // session), and one chmod for all.
    let _ = writeln!(script, "H={}", shell_quote(helpers::HELPERS_SCRIPT));
    let names: Vec<&str> = std::iter::once(helpers::HELPERS_FILE)
        .chain(helpers::HELPER_NAMES.iter().copied())
        .collect();
    let _ = writeln!(
        script,
        "for n in {}; do printf '%s' \"$H\" > \"$W/bin/$n\"; done",
        names.join(" ")
    );
    script.push_str("chmod 0755 -- \"$W/wrapper.py\" \"$W\"/bin/*\n");
    script.push_str("printf '%s\\0%s\\0' \"$W\" \"$PY\"\n");
    script
}

/// A shell line writing `content` exactly to `path` (quoted).
fn write_file(path: &str, content: &str) -> String {
    format!(
        "printf '%s' {} > {}\n",
        shell_quote(content),
        shell_quote(path)
    )
}

/// Like [`write_file`], with `path` a double-quoted shell word (may expand
/// variables).
fn write_file_var(path: &str, content: &str) -> String {
    format!("printf '%s' {} > \"{path}\"\n", shell_quote(content))
}

/// A shell line writing the NUL-separated environment file
/// ([`wrapper::env_file`]) whose `contents` are given: each entry is one
/// argument of the `printf` builtin (never an exec'd argv).
fn write_env_file(path: &str, contents: &str) -> String {
    let mut line = String::from("printf '%s\\0'");
    let mut entries = 0;
    for entry in contents.split_terminator('\0') {
        line.push(' ');
        line.push_str(&shell_quote(entry));
        entries += 1;
    }
    if entries == 0 {
        // `printf '%s\0'` with no argument would still print one NUL.
        line = String::from(":");
    }
    let _ = writeln!(line, " > {}", shell_quote(path));
    line
}

/// `export K='V'` lines for a script to source.
fn export_lines(env: &IndexMap<String, String>) -> Result<String, RemoteError> {
    let mut out = String::new();
    for (key, value) in env {
        let valid = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RemoteError::VariableName(key.clone()));
        }
        if value.contains('\0') {
            return Err(RemoteError::Environment(EnvFileError::ValueWithNul(
                key.clone(),
            )));
        }
        let _ = writeln!(out, "export {key}={}", shell_quote(value));
    }
    Ok(out)
}

/// A string or a list of strings (`None` for anything else; absent is an
/// empty list).
fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    match value {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(_) => None,
    }
}

fn output_text(out: &Output) -> String {
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    if !text.is_empty() && !err.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&err);
    text.trim_end().to_owned()
}

/// A bash fragment that installs the `required` packages and the
/// `recommended` ones that are available, skipping those already present;
/// `None` when both lists are empty.
///
/// The package manager is the first of dnf5, dnf, yum and apt-get found;
/// rpm-based systems use ATEX's commands (spec section 4
/// `make_pkg_install`): `-q -y --setopt=install_weak_deps=False`
/// (yum: `-q -y`), and for recommended packages the "skip bad" flags
/// (`--skip-broken --skip-unavailable` for dnf5, `--skip-broken` for dnf,
/// `--skip-broken filesystem` for yum). Presence is checked with
/// `rpm -q --whatprovides` (or `dpkg-query`). A non-root login goes through
/// `sudo -n` when sudo exists. The fragment exits non-zero when a required
/// package cannot be installed.
///
/// ```
/// let script = atex_exec::remote::package_install_script(&["make".into()], &[]).unwrap();
/// assert!(script.contains("required=(make)"));
/// assert!(atex_exec::remote::package_install_script(&[], &[]).is_none());
/// ```
pub fn package_install_script(required: &[String], recommended: &[String]) -> Option<String> {
    if required.is_empty() && recommended.is_empty() {
        return None;
    }
    let list = |items: &[String]| {
        items
            .iter()
            .map(|p| shell_quote(p))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut script = String::new();
    let _ = writeln!(script, "required=({})", list(required));
    let _ = writeln!(script, "recommended=({})", list(recommended));
    script.push_str(PKG_INSTALL_BODY);
    Some(script)
}

/// The body of [`package_install_script`], after the two arrays.
const PKG_INSTALL_BODY: &str = r#"sudo=()
if [[ $EUID -ne 0 ]] && command -v sudo >/dev/null 2>&1; then sudo=(sudo -n); fi
if command -v dnf5 >/dev/null 2>&1; then
    kind=rpm; pm=(dnf5 -q -y --setopt=install_weak_deps=False install); skip=(--skip-broken --skip-unavailable)
elif command -v dnf >/dev/null 2>&1; then
    kind=rpm; pm=(dnf -q -y --setopt=install_weak_deps=False install); skip=(--skip-broken)
elif command -v yum >/dev/null 2>&1; then
    kind=rpm; pm=(yum -q -y install); skip=(--skip-broken filesystem)
elif command -v apt-get >/dev/null 2>&1; then
    kind=deb; pm=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends install); skip=()
else
    echo "atex: no package manager found (dnf5, dnf, yum, apt-get)" >&2
    exit 1
fi
atex_installed() {
    if [[ $kind == rpm ]]; then
        rpm -q --quiet --whatprovides "$1" >/dev/null 2>&1
    else
        [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == *" ok installed" ]]
    fi
}
missing=()
for p in "${required[@]}"; do atex_installed "$p" || missing+=("$p"); done
if (( ${#missing[@]} )); then
    if ! "${sudo[@]}" "${pm[@]}" "${missing[@]}"; then
        # A fresh Debian-like system has no package lists yet.
        [[ $kind == deb ]] || exit 1
        "${sudo[@]}" apt-get -q update
        "${sudo[@]}" "${pm[@]}" "${missing[@]}"
    fi
fi
missing=()
for p in "${recommended[@]}"; do atex_installed "$p" || missing+=("$p"); done
if (( ${#missing[@]} )); then
    if [[ $kind == rpm ]]; then
        "${sudo[@]}" "${pm[@]}" "${skip[@]}" "${missing[@]}"
    else
        for p in "${missing[@]}"; do
            "${sudo[@]}" "${pm[@]}" "$p" || echo "atex: skipping unavailable recommended package $p" >&2
        done
    fi
fi
"#;

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use std::process::Command;

    fn bash_syntax_ok(script: &str) -> bool {
        Command::new("bash")
            .args(["-n", "-c", script])
            .status()
            .unwrap()
            .success()
    }

    fn test_record(json: &str) -> Test {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn environment_order_follows_atex() {
        let test = test_record(
            r#"{"name": "/s/t", "root": "/r", "path": "t", "test": "true",
                "environment": {"P": "plan", "T": "test", "TMT_TEST_NAME": "mine", "TMT_TREE": "x"},
                "plan": {"environment": {"P": "plan", "Z": "z"}}}"#,
        );
        let layout = RemoteLayout::new("/w", "/py");
        let extra = [("TMT_REBOOT_COUNT".to_owned(), "9".to_owned())];
        let env = layout.test_environment(&test, &extra, 1, 2);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(env[0].0, "P");
        assert_eq!(get("Z"), Some("z"));
        assert_eq!(get("T"), Some("test"));
        // The test's environment overrides the step 2 variables ...
        assert_eq!(get("TMT_TEST_NAME"), Some("mine"));
        // ... but not TMT_TREE or the counts.
        assert_eq!(get("TMT_TREE"), Some("/w/tests"));
        assert_eq!(get("TMT_REBOOT_COUNT"), Some("1"));
        assert_eq!(get("RSTRNT_REBOOTCOUNT"), Some("1"));
        assert_eq!(get("TMT_TEST_RESTART_COUNT"), Some("2"));
        assert_eq!(get("TMT_PLAN_ENVIRONMENT_FILE"), Some("/w/plan_env"));
        assert_eq!(get("TMT_TEST_METADATA"), Some("/w/test/metadata.yaml"));
        assert_eq!(get("TMT_TEST_DATA"), None);
        let names: std::collections::HashSet<_> = env.iter().map(|(k, _)| k).collect();
        assert_eq!(names.len(), env.len(), "each name once");
    }

    #[test]
    fn launch_argv_and_workdir() {
        let layout = RemoteLayout::new("/w", "/usr/bin/python3");
        let mut test =
            test_record(r#"{"name": "/t", "root": "/r", "path": "a/b", "test": "true"}"#);
        let files = layout.test_files(&test);
        assert_eq!(
            files.argv,
            [
                "/usr/bin/python3",
                "-S",
                "/w/wrapper.py",
                "/w/test/env",
                "/w/test/test.sh",
                "/w/tests/a/b"
            ]
        );
        test.path = String::new();
        test.tty = true;
        let files = layout.test_files(&test);
        assert_eq!(files.workdir, "/w/tests");
        assert_eq!(files.argv[3], "--pty");
    }

    #[test]
    fn generated_scripts_are_valid_bash() {
        assert!(bash_syntax_ok(&prepare_script()));
        let install =
            package_install_script(&["a b".into(), "it's".into()], &["/usr/bin/x".into()]).unwrap();
        assert!(bash_syntax_ok(&install));
        let layout = RemoteLayout::new("/tmp/w x", "/py");
        let env: IndexMap<String, String> = [("A".to_owned(), "1\n%2".to_owned())].into();
        let exports = export_lines(&env).unwrap();
        assert!(bash_syntax_ok(
            &layout.shell_phase_script(&exports, "echo 'hi'")
        ));
    }

    #[test]
    fn install_script_text() {
        let script = package_install_script(&["make".into()], &["it's".into()]).unwrap();
        assert!(script.starts_with("required=(make)\nrecommended=('it'\\''s')\n"));
        assert!(script.contains("dnf5 -q -y --setopt=install_weak_deps=False install"));
        assert!(script.contains("skip=(--skip-broken --skip-unavailable)"));
        assert!(script.contains("skip=(--skip-broken filesystem)"));
        assert!(script.contains("rpm -q --quiet --whatprovides"));
    }

    /// Runs the install fragment against fake `dnf` and `rpm` commands
    /// (only they are on PATH): only missing packages are installed,
    /// recommended ones with the skip flags.
    #[test]
    fn install_script_installs_only_missing_packages() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let fake = |name: &str, body: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // rpm: packages named have-* are installed.
        fake("rpm", r#"[[ ${@: -1} == have-* ]]"#);
        fake(
            "dnf",
            &format!("printf '%s|' \"$@\" >> {}; echo >> {0}", log.display()),
        );
        let script = package_install_script(
            &["have-a".into(), "need b".into()],
            &["have-c".into(), "want-d".into()],
        )
        .unwrap();
        let bash = Command::new("bash")
            .args(["-c", "command -v bash"])
            .output()
            .unwrap();
        let bash = String::from_utf8(bash.stdout).unwrap();
        // Only the fakes on PATH: no sudo, no dnf5, so plain dnf is used.
        let status = Command::new(bash.trim())
            .args(["-e", "-c", &script])
            .env("PATH", dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "-q|-y|--setopt=install_weak_deps=False|install|need b|\n\
             -q|-y|--setopt=install_weak_deps=False|install|--skip-broken|want-d|\n"
        );
    }

    #[test]
    fn env_file_line_round_trips_in_bash() {
        let vars = [
            ("A".to_owned(), "x\ny %s 'q'".to_owned()),
            ("B".to_owned(), String::new()),
        ];
        let bytes = wrapper::env_file(&vars).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        let text = String::from_utf8(bytes.clone()).unwrap();
        let line = write_env_file(path.to_str().unwrap(), &text);
        assert!(
            Command::new("bash")
                .args(["-c", &line])
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let empty = write_env_file(path.to_str().unwrap(), "");
        assert!(
            Command::new("bash")
                .args(["-c", &empty])
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn export_lines_reject_bad_names() {
        let env: IndexMap<String, String> = [("1A".to_owned(), "v".to_owned())].into();
        assert!(matches!(
            export_lines(&env),
            Err(RemoteError::VariableName(_))
        ));
        let env: IndexMap<String, String> = [("A-B".to_owned(), "v".to_owned())].into();
        assert!(matches!(
            export_lines(&env),
            Err(RemoteError::VariableName(_))
        ));
    }

    #[test]
    fn phase_lists() {
        assert_eq!(string_list(None), Some(vec![]));
        assert_eq!(
            string_list(Some(&serde_json::json!("a"))),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(string_list(Some(&serde_json::json!(["a", 1]))), None);
        assert_eq!(string_list(Some(&serde_json::json!({"a": 1}))), None);
    }
}

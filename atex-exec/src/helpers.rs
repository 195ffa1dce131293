//! The tmt/restraint/rhts helper commands a test finds on its `PATH`
//! (`W/bin`), speaking the ATEX test-control protocol (spec/fmf-tmt.md
//! D.2, spec/atex-reference.md section 2).
//!
//! One multi-call bash script, [`HELPERS_SCRIPT`], is installed as
//! `W/bin/atex-tmt-helpers` and under every name of [`HELPER_NAMES`] (as
//! copies, which the setup script writes without starting a process per
//! name); it acts on the name it is called by. Every write to
//! the channel is made under `flock` on `W/control.lock`, so helpers started
//! at the same time by background jobs never interleave their bytes.
//! ATEX's helpers lock `/run/lock/atex-test-control` instead, which a
//! non-root login may not create and which every test on the machine
//! shares (a stuck holder, e.g. a reboot helper whose reboot failed, would
//! block later tests); a test that takes that lock itself around its own
//! writes can set `ATEX_TEST_CONTROL_LOCK=/run/lock/atex-test-control` to
//! make the helpers use it too. Outside a test (`ATEX_TEST_CONTROL` unset) every
//! helper exits 1 with "not running inside an atex test".
//!
//! # What each helper sends, and deviations from tmt
//!
//! - `tmt-report-result [-o FILE] [-t TEXT] NAME RESULT [SCORE]`: one
//!   `result` named NAME (tmt's normalisation: a trailing `:` is dropped;
//!   leading and trailing `/` are dropped because ATEX names are relative to
//!   the test) with `status` = RESULT lowercased (no other mapping: ATEX
//!   accepts any status), `note` = TEXT and `score` (a number when SCORE is
//!   an integer). The file `-o` (or `$OUTPUTFILE`) is uploaded as
//!   `<basename>.txt` (`.txt` not doubled; characters outside
//!   `[a-zA-Z0-9 _.,:+=%@-]` become `_`, as ATEX's beakerlib helper), so it
//!   lands in `files/<NAME>/`. Each named call is its own result, like tmt's
//!   `result: restraint`: tmt's default reduction of the reports to the
//!   test's own result (worst of skip < pass < warn < fail) is not done;
//!   the test's own result still comes from its exit code. Called as
//!   `rhts-report-result`, the arguments are RHTS's `NAME RESULT LOGFILE
//!   [METRIC]` (LOGFILE `-` or empty: none), as restraint's compatibility
//!   mode for that name. NAME `/` reports
//!   the test itself as a `partial` result, so the exit-code fallback and
//!   `output.txt` merge into it (its status then wins over the exit code).
//! - `tmt-file-submit [-l FILE | --filename FILE | FILE]` (also
//!   `rhts-report-log`, an alias tmt installs): a nameless
//!   `partial` result carrying the file under its basename (`files/`), as
//!   ATEX's `atex-file-submit`.
//! - `tmt-reboot [-c CMD] [-t TIMEOUT] [-s]`: ATEX's reboot sequence instead
//!   of tmt's reboot-request file: with `-t`, `duration +TIMEOUT` first
//!   (the reboot's time is added to the test's deadline, where tmt would
//!   use it as the wait for the new boot); then `disconnect`, `noop` every
//!   0.1 s until the write fails (`trap '' PIPE HUP`), `sync`, and `CMD`,
//!   `systemctl soft-reboot` (`-s`) or a reboot (as root without `-c`,
//!   `sshd` is stopped first, as ATEX does); then it sleeps forever. `-e` is
//!   ignored; EFI `BootNext` is not handled.
//! - `tmt-abort`: a nameless partial `{"status": "error", "note": "aborted
//!   by tmt-abort"}`, then SIGTERM (SIGKILL a second later) to the test's
//!   process group (the wrapper starts the test as a session leader). tmt
//!   stops the whole plan on abort; atex-exec goes on with the next test.
//!
//! Names and notes must be UTF-8 (they are sent as JSON strings).

/// The multi-call helper script (bash).
pub const HELPERS_SCRIPT: &str = include_str!("../remote/bin/atex-tmt-helpers");

/// The file name of [`HELPERS_SCRIPT`] in `W/bin`.
pub const HELPERS_FILE: &str = "atex-tmt-helpers";

/// Every name the helpers answer to, each a copy of [`HELPERS_FILE`].
pub const HELPER_NAMES: &[&str] = &[
    "tmt-report-result",
    "rstrnt-report-result",
    "rhts-report-result",
    "tmt-file-submit",
    "rstrnt-report-log",
    "rhts-report-log",
    "rhts-submit-log",
    "rhts_submit_log",
    "tmt-reboot",
    "rstrnt-reboot",
    "rhts-reboot",
    "tmt-abort",
    "rstrnt-abort",
    "rhts-abort",
];

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A `W/bin` with the script under each of its names.
    fn install(dir: &Path) -> PathBuf {
        let bin = dir.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let script = bin.join(HELPERS_FILE);
        std::fs::write(&script, HELPERS_SCRIPT).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in HELPER_NAMES {
            std::fs::copy(&script, bin.join(name)).unwrap();
        }
        bin
    }

    /// Runs helper `name` with the control channel on its stdout.
    fn run(dir: &Path, name: &str, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
        let bin = install_once(dir);
        let out = Command::new(bin.join(name))
            .args(args)
            .current_dir(dir)
            .env("ATEX_TEST_CONTROL", "1")
            .env("ATEX_TEST_CONTROL_LOCK", dir.join("lock"))
            .env_remove("OUTPUTFILE")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn install_once(dir: &Path) -> PathBuf {
        let bin = dir.join("bin");
        if bin.exists() { bin } else { install(dir) }
    }

    /// Splits `result N\nJSON` + payloads (lengths from the JSON).
    fn parse(mut bytes: &[u8]) -> Vec<(serde_json::Value, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let nl = bytes.iter().position(|&b| b == b'\n').unwrap();
            let line = std::str::from_utf8(&bytes[..nl]).unwrap();
            let len: usize = line.strip_prefix("result ").unwrap().parse().unwrap();
            bytes = &bytes[nl + 1..];
            let json: serde_json::Value = serde_json::from_slice(&bytes[..len]).unwrap();
            bytes = &bytes[len..];
            let mut files = Vec::new();
            for f in json["files"].as_array().cloned().unwrap_or_default() {
                let n = f["length"].as_u64().unwrap() as usize;
                files.push(bytes[..n].to_vec());
                bytes = &bytes[n..];
            }
            out.push((json, files));
        }
        out
    }

    #[test]
    fn report_result_names_status_note_and_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("my log"), "héllo\n").unwrap();
        let (code, out, err) = run(
            dir.path(),
            "rstrnt-report-result",
            &[
                "-o",
                "my log",
                "-t",
                "a \"b\"\n",
                "--server",
                "x",
                "/sub/t:",
                "FAIL",
                "7",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        let results = parse(&out);
        assert_eq!(
            results[0].0,
            serde_json::json!({"status": "fail", "name": "sub/t", "note": "a \"b\"\n",
                "score": 7, "files": [{"name": "my log.txt", "length": 7}]})
        );
        assert_eq!(results[0].1, [b"h\xc3\xa9llo\n".to_vec()]);

        let (code, out, _) = run(dir.path(), "tmt-report-result", &["/", "Pass"]);
        assert_eq!(code, Some(0));
        assert_eq!(
            parse(&out)[0].0,
            serde_json::json!({"status": "pass", "partial": true})
        );
    }

    #[test]
    fn rhts_report_result_takes_a_log_file_third() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.log"), "o").unwrap();
        let (code, out, err) = run(
            dir.path(),
            "rhts-report-result",
            &["t", "SKIP", "out.log", "66"],
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            parse(&out)[0].0,
            serde_json::json!({"status": "skip", "name": "t", "score": 66,
                "files": [{"name": "out.log.txt", "length": 1}]})
        );
        let (code, out, err) = run(dir.path(), "rhts-report-result", &["t", "WARN", "-"]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            parse(&out)[0].0,
            serde_json::json!({"status": "warn", "name": "t"})
        );
    }

    #[test]
    fn file_submit_sends_a_nameless_partial_result() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/f.log"), "data").unwrap();
        for (name, args) in [
            ("tmt-file-submit", &["-l", "d/f.log"][..]),
            ("rhts_submit_log", &["--filename=d/f.log"][..]),
            ("rstrnt-report-log", &["d/f.log"][..]),
        ] {
            let (code, out, err) = run(dir.path(), name, args);
            assert_eq!(code, Some(0), "{name}: {err}");
            let results = parse(&out);
            assert_eq!(
                results[0].0,
                serde_json::json!({"partial": true, "files": [{"name": "f.log", "length": 4}]})
            );
            assert_eq!(results[0].1, [b"data".to_vec()]);
        }
        let (code, _, err) = run(dir.path(), "tmt-file-submit", &["missing"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("cannot read missing"), "{err}");
    }

    #[test]
    fn outside_a_test_every_helper_exits_1() {
        let dir = tempfile::tempdir().unwrap();
        let bin = install(dir.path());
        for name in HELPER_NAMES {
            let out = Command::new(bin.join(name))
                .args(["x", "pass"])
                .env_remove("ATEX_TEST_CONTROL")
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{name}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                format!("{name}: not running inside an atex test\n")
            );
        }
    }

    /// tmt-reboot: `duration`, `disconnect`, then `noop` until the runner
    /// closes its end; then the command runs (here instead of a reboot).
    #[test]
    fn reboot_disconnects_and_probes_until_the_channel_closes() {
        let dir = tempfile::tempdir().unwrap();
        let bin = install(dir.path());
        let marker = dir.path().join("rebooted");
        let mut child = Command::new(bin.join("rhts-reboot"))
            .args(["-t", "60", "-c", &format!("touch '{}'", marker.display())])
            .env("ATEX_TEST_CONTROL", "1")
            .env("ATEX_TEST_CONTROL_LOCK", dir.path().join("lock"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 64];
        while !seen.ends_with(b"noop\nnoop\n") {
            let n = stdout.read(&mut buf).unwrap();
            assert!(n > 0, "{seen:?}");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(seen.starts_with(b"duration +60\ndisconnect\nnoop\n"));
        assert!(!marker.exists(), "no reboot before the channel closes");
        drop(stdout);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !marker.exists() {
            assert!(Instant::now() < deadline, "the reboot command never ran");
            std::thread::sleep(Duration::from_millis(20));
        }
        // It then sleeps until the reboot takes it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none());
        let _ = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

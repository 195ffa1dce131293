//! Reboots during a test: the machine's boot identity, recorded before each
//! launch, and the wait after `disconnect` until the machine is back from a
//! reboot that really happened (spec/atex-reference.md section 2
//! `disconnect`, section 4 "Reboot handling").
//!
//! # How a reboot is told from a reconnect
//!
//! Before the first launch of a test on a boot, [`BootIdentity::record_by`]
//! (the session's runner; [`BootIdentity::record`] by a script) reads
//! `/proc/sys/kernel/random/boot_id` and creates an empty marker file with a
//! random name in `/run` (`mktemp -p /run atex-boot-XXXXXXXXXX`), or in
//! `/dev/shm` when the login cannot write `/run` (an ordinary user). Both
//! are tmpfs on a real machine, so a reboot removes the marker. Containers
//! keep the host's boot id; for them the marker, in the container's own
//! `/run` tmpfs, is what a restart wipes. After reconnecting, the machine
//! counts as rebooted when its boot id changed **or** the marker is gone.
//! A reconnect to the same boot is not a reboot: the machine may still be
//! going down, so it is polled again until the deadline.
//!
//! Caveat: a non-root login's marker in `/dev/shm` is removed by
//! systemd-logind when that user's last session ends and `RemoveIPC=yes`
//! (the default); a reconnect after such a logout would look like a
//! reboot. The work dir check below still stops a run that lost its files.
//!
//! Deviations from ATEX 1.x, on purpose:
//! - ATEX takes any successful reconnect for a reboot and restarts the
//!   test; here a reconnect to the same boot is not one, and the test ends
//!   `infra` with `RebootError(machine did not reboot)` once its duration
//!   is over (so a test that sends `disconnect` and just exits is not
//!   restarted forever).
//! - The reconnect loop backs off from [`BACKOFF_START`] to [`BACKOFF_MAX`]
//!   (ATEX: 0.1 s or 0.5 s fixed) and is bounded by the test's remaining
//!   duration and by [`REBOOT_TIMEOUT`] (tmt's `TMT_REBOOT_TIMEOUT`
//!   default); ATEX retries until the duration ends.
//! - The marker path is given to the test as `ATEX_BOOT_MARKER`
//!   ([`MARKER_VAR`]), so that a test (or a harness) can emulate a reboot.

use std::time::{Duration, Instant};

use atex_shared::connection::{Connection, ConnectionError};

/// The first pause between reconnect attempts.
pub const BACKOFF_START: Duration = Duration::from_millis(100);

/// The longest pause between reconnect attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The longest wait for a machine to come back from a reboot, whatever
/// the test's remaining duration (tmt's default `TMT_REBOOT_TIMEOUT`).
pub const REBOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The variable that tells the test where its boot marker is.
pub const MARKER_VAR: &str = "ATEX_BOOT_MARKER";

/// Why the machine is not back from a reboot.
#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    /// Reconnects succeeded, but always to the same boot.
    #[error("machine did not reboot")]
    NotRebooted,
    /// No reconnect succeeded before the deadline.
    #[error("machine did not come back: {0}")]
    NotBack(String),
    /// The machine rebooted, but the work dir is gone (it was on a tmpfs?).
    #[error("the work dir {0} is gone after the reboot (was it on a tmpfs?)")]
    WorkDirGone(String),
    /// The boot identity could not be read or the marker not created.
    #[error("record the boot identity: {0}")]
    Record(String),
}

/// What identifies one boot of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootIdentity {
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// The marker file in `/run` or `/dev/shm`.
    pub marker: String,
}

impl BootIdentity {
    /// Read the boot id and create a fresh marker, removing `previous`'s
    /// marker (best effort) so that markers do not pile up.
    pub async fn record(
        conn: &Connection,
        previous: Option<&BootIdentity>,
    ) -> Result<Self, RebootError> {
        let mut script = String::new();
        if let Some(previous) = previous {
            script.push_str(&format!("rm -f -- {}\n", quote(&previous.marker)));
        }
        script.push_str(concat!(
            "cat /proc/sys/kernel/random/boot_id || exit 1\n",
            "mktemp -p /run atex-boot-XXXXXXXXXX 2>/dev/null",
            " || mktemp -p /dev/shm atex-boot-XXXXXXXXXX\n",
        ));
        let out = conn
            .run_script(script.as_bytes())
            .await
            .map_err(|e| RebootError::Record(e.to_string()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        match (out.success(), lines.next(), lines.next()) {
            (true, Some(boot_id), Some(marker)) if !boot_id.is_empty() && !marker.is_empty() => {
                Ok(Self {
                    boot_id: boot_id.trim().to_owned(),
                    marker: marker.trim().to_owned(),
                })
            }
            _ => Err(RebootError::Record(format!(
                "exit code {:?}: {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    /// [`BootIdentity::record`] through the session's runner: the same
    /// boot id and marker (`/run`, else `/dev/shm`), made by the runner
    /// over its channel instead of by a script in a session of its own.
    pub async fn record_by(
        runner: &crate::runner::Runner,
        previous: Option<&BootIdentity>,
    ) -> Result<Self, RebootError> {
        let previous = previous.map(|p| p.marker.as_str());
        let (boot_id, marker) = runner
            .boot_identity(previous)
            .await
            .map_err(|e| RebootError::Record(e.to_string()))?;
        Ok(Self { boot_id, marker })
    }

    /// Whether the machine booted since `self` was recorded: its boot id
    /// differs or the marker is gone.
    pub async fn rebooted(&self, conn: &Connection) -> Result<bool, ConnectionError> {
        let script = format!(
            "cat /proc/sys/kernel/random/boot_id\ntest -e {} && echo present || echo gone\n",
            quote(&self.marker)
        );
        let out = conn.run_script(script.as_bytes()).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let boot_id = lines.next().unwrap_or_default().trim();
        let marker = lines.next().unwrap_or_default().trim();
        if boot_id.is_empty() || marker.is_empty() {
            return Err(ConnectionError::Io {
                action: "read the boot identity".into(),
                source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            });
        }
        Ok(boot_id != self.boot_id || marker == "gone")
    }

    /// Remove the marker (best effort; for the end of a session).
    pub async fn forget(&self, conn: &Connection) {
        let script = format!("rm -f -- {}\n", quote(&self.marker));
        let _ = conn.run_script(script.as_bytes()).await;
    }
}

/// After `disconnect`: drop the connection, then reconnect with backoff
/// until the machine is back from a reboot that really happened (see the
/// [module docs](self)) and `work_dir` still exists, or until `until`
/// (capped at [`REBOOT_TIMEOUT`] from now).
pub async fn wait_for_reboot(
    conn: &mut Connection,
    before: &BootIdentity,
    work_dir: &str,
    until: Instant,
) -> Result<(), RebootError> {
    let until = until.min(Instant::now() + REBOOT_TIMEOUT);
    let _ = conn.disconnect().await;
    let mut backoff = BACKOFF_START;
    let mut same_boot = false;
    let mut last_error = String::from("no reconnect attempted");
    loop {
        let now = Instant::now();
        if now >= until {
            return Err(if same_boot {
                RebootError::NotRebooted
            } else {
                RebootError::NotBack(last_error)
            });
        }
        let attempt = async {
            conn.connect().await?;
            before.rebooted(conn).await
        };
        match tokio::time::timeout(until - now, attempt).await {
            Ok(Ok(true)) => {
                let script = format!("test -d {}\n", quote(work_dir));
                return match conn.run_script(script.as_bytes()).await {
                    Ok(out) if out.success() => Ok(()),
                    Ok(_) => Err(RebootError::WorkDirGone(work_dir.to_owned())),
                    Err(e) => Err(RebootError::NotBack(e.to_string())),
                };
            }
            Ok(Ok(false)) => {
                same_boot = true;
                let _ = conn.disconnect().await;
            }
            Ok(Err(e)) => {
                last_error = e.to_string();
                let _ = conn.disconnect().await;
            }
            Err(_) => last_error = "timed out reconnecting".into(),
        }
        let pause = backoff.min(until.saturating_duration_since(Instant::now()));
        tokio::time::sleep(pause).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// `s` single-quoted for bash.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a failing unwrap is a failing test")]
mod tests {
    use super::*;
    use atex_shared::records;

    #[test]
    fn quoting() {
        assert_eq!(quote("/run/a'b"), r"'/run/a'\''b'");
    }

    #[tokio::test]
    async fn same_boot_is_not_a_reboot_locally() {
        let mut conn = Connection::new(&records::Connection::Local);
        conn.connect().await.unwrap();
        let boot = BootIdentity::record(&conn, None).await.unwrap();
        assert!(!boot.rebooted(&conn).await.unwrap());
        let until = Instant::now() + Duration::from_millis(400);
        let err = wait_for_reboot(&mut conn, &boot, "/", until)
            .await
            .unwrap_err();
        assert!(matches!(err, RebootError::NotRebooted), "{err}");
        // A wiped marker is a reboot (a container restart).
        std::fs::remove_file(&boot.marker).unwrap();
        assert!(boot.rebooted(&conn).await.unwrap());
        let until = Instant::now() + Duration::from_secs(5);
        wait_for_reboot(&mut conn, &boot, "/", until).await.unwrap();
        let err = wait_for_reboot(&mut conn, &boot, "/nonexistent/w", until)
            .await
            .unwrap_err();
        assert!(matches!(err, RebootError::WorkDirGone(_)), "{err}");
        let next = BootIdentity::record(&conn, Some(&boot)).await.unwrap();
        assert_ne!(next.marker, boot.marker);
        next.forget(&conn).await;
        assert!(!std::path::Path::new(&next.marker).exists());
    }
}

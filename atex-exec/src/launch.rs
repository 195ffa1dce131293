//! The per-test loop's process seam ([`crate::run::Launcher`],
//! [`crate::run::TestProcess`]) over an [`atex_shared::connection::Connection`]:
//! the wrapper is spawned on the machine with stderr to the test's output
//! file, and files are written by a `cat` fed on stdin. Stopping a wrapper
//! sends it SIGTERM (through a script on the connection, so it hangs up its
//! test's session) and SIGKILL only after [`TERM_GRACE`].

use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use atex_shared::connection::{BoxRead, Connection, ConnectionError, Input, Killer, Process};
use tokio::io::AsyncWriteExt as _;

use crate::run::{Launcher, TestProcess};

/// How long a killed wrapper is waited for before giving up on reaping it.
pub const KILL_WAIT: Duration = Duration::from_secs(10);

/// How long the wrapper has to stop its test after SIGTERM before it gets
/// SIGKILL (the wrapper gives the test one second).
pub const TERM_GRACE: Duration = Duration::from_secs(3);

/// The exit code given to a wrapper that a signal ended: the ssh mux
/// protocol does not say which signal, so SIGKILL's `128 + 9` is assumed
/// (any non-zero code makes the loop treat the run as failed).
pub const SIGNALLED_EXIT: i32 = 128 + 9;

/// Starts wrappers over one connection and remembers how to kill the last
/// one started (so that an interrupt can stop the test from outside the
/// loop, see [`ConnectionLauncher::kill_running`]).
#[derive(Debug)]
pub struct ConnectionLauncher<'a> {
    conn: &'a Connection,
    running: Mutex<Option<Killer>>,
}

impl<'a> ConnectionLauncher<'a> {
    /// A launcher on `conn` (which must be connected).
    pub fn new(conn: &'a Connection) -> Self {
        Self {
            conn,
            running: Mutex::new(None),
        }
    }

    /// Stop the last wrapper started, if any, as [`TestProcess::kill`]
    /// does, but without its [`Process`] (held by the dropped run): the
    /// end is seen by polling the pid.
    pub async fn kill_running(&self) -> Result<(), ConnectionError> {
        let killer = self.running.lock().ok().and_then(|mut k| k.take());
        let Some(killer) = killer else {
            return Ok(());
        };
        terminate(self.conn, &killer).await;
        let pid = killer.pid();
        let gone = async {
            loop {
                let probe = format!("kill -0 {pid} 2>/dev/null\n");
                match self.conn.run_script(probe.as_bytes()).await {
                    Ok(out) if out.success() => {}
                    _ => return,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        if tokio::time::timeout(TERM_GRACE, gone).await.is_err() {
            killer.kill().await?;
        }
        Ok(())
    }
}

/// Send the wrapper SIGTERM (best effort): it then hangs up the test's
/// session, which lives on after a SIGKILL of the wrapper alone.
async fn terminate(conn: &Connection, killer: &Killer) {
    let script = format!("kill -TERM {} 2>/dev/null || true\n", killer.pid());
    let _ = conn.run_script(script.as_bytes()).await;
}

fn io_error(e: ConnectionError) -> io::Error {
    io::Error::other(e)
}

impl<'a> Launcher for ConnectionLauncher<'a> {
    type Process = ConnectionProcess<'a>;

    async fn write_file(&self, path: &str, contents: Vec<u8>) -> io::Result<()> {
        // The path is an argument, the contents go on stdin (they may hold
        // secrets and NUL bytes).
        let argv = ["sh", "-c", "cat > \"$1\"", "sh", path];
        let stderr = File::options().write(true).open("/dev/null")?;
        let mut process = self
            .conn
            .spawn(&argv, Input::Piped, stderr)
            .await
            .map_err(io_error)?;
        if let Some(mut stdin) = process.take_stdin() {
            stdin.write_all(&contents).await?;
            stdin.shutdown().await?;
        }
        match process.wait().await.map_err(io_error)? {
            Some(0) => Ok(()),
            code => Err(io::Error::other(format!(
                "writing {path} on the machine exited with {code:?}"
            ))),
        }
    }

    async fn launch(&self, argv: Vec<String>, stderr: File) -> io::Result<ConnectionProcess<'a>> {
        let mut process = self
            .conn
            .spawn(&argv, Input::Null, stderr)
            .await
            .map_err(io_error)?;
        if let Ok(mut running) = self.running.lock() {
            *running = process.killer();
        }
        let control = process.take_stdout();
        Ok(ConnectionProcess {
            conn: self.conn,
            process,
            control,
        })
    }
}

/// A wrapper started by [`ConnectionLauncher`].
pub struct ConnectionProcess<'a> {
    conn: &'a Connection,
    process: Process,
    control: Option<BoxRead>,
}

impl std::fmt::Debug for ConnectionProcess<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionProcess")
            .field("process", &self.process)
            .finish_non_exhaustive()
    }
}

impl TestProcess for ConnectionProcess<'_> {
    type Control = BoxRead;

    fn take_control(&mut self) -> Option<BoxRead> {
        self.control.take()
    }

    async fn wait(&mut self) -> io::Result<i32> {
        let code = self.process.wait().await.map_err(io_error)?;
        Ok(code.unwrap_or(SIGNALLED_EXIT))
    }

    async fn kill(&mut self) -> io::Result<()> {
        // Through a cloned killer: `Process` is not `Sync`, so it cannot be
        // borrowed across the await.
        if let Some(killer) = self.process.killer() {
            terminate(self.conn, &killer).await;
            if tokio::time::timeout(TERM_GRACE, self.process.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
            killer.kill().await.map_err(io_error)?;
        }
        // A lost connection may never report the end; do not hang on it.
        let _ = tokio::time::timeout(KILL_WAIT, self.process.wait()).await;
        Ok(())
    }
}

//! The [`Provisioner`] interface every machine source implements, and the
//! error type they share.
//!
//! A provisioner only knows how to reserve one machine and give one back;
//! counting, concurrency, retries, staggering and the cleanup on stop live
//! in [`crate::Pool`], once for every provisioner.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use atex_shared::connection::ConnectionError;
use atex_shared::records::Machine;
pub use tokio_util::sync::CancellationToken;

/// A boxed, sendable future: what the [`Provisioner`] methods return, so
/// that the trait stays object-safe (`Arc<dyn Provisioner>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A source of machines: local, ssh hosts, podman containers, Testing
/// Farm, or one written outside this crate.
///
/// [`crate::Pool`] calls [`Provisioner::reserve`] once per wanted machine,
/// concurrently, and [`Provisioner::release`] once per machine it got.
///
/// # Contract
///
/// - `reserve` returns a machine that is ready: reachable with its
///   [`Machine::connection`]. Whatever it needs to give the machine back
///   goes into [`Machine::release`], so that [`Provisioner::release`] (and
///   `atex-provision release`, in another process) works from the record
///   alone. Secrets (API tokens) never go into the record.
/// - When `cancel` fires, `reserve` stops waiting as soon as it can, gives
///   back whatever it already holds (a container being created, a Testing
///   Farm request), and returns [`ProvisionError::Cancelled`]. The pool
///   waits for that instead of dropping the future, so nothing leaks.
/// - `release` is idempotent: releasing a machine that is already gone is
///   not an error.
///
/// # Example
///
/// A provisioner of a fixed list of hosts, written outside this crate:
///
/// ```
/// use std::sync::Mutex;
/// use atex_provision::{BoxFuture, CancellationToken, ProvisionError, Provisioner};
/// use atex_shared::records::{Connection, Machine};
///
/// struct Hosts(Mutex<Vec<String>>);
///
/// impl Provisioner for Hosts {
///     fn kind(&self) -> &str {
///         "my-hosts"
///     }
///     fn reserve(&self, _cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
///         Box::pin(async move {
///             let host = self.0.lock().unwrap().pop().ok_or_else(|| {
///                 ProvisionError::Failed("no host left".into())
///             })?;
///             Ok(Machine {
///                 id: format!("my-hosts/{host}"),
///                 provisioner: "my-hosts".into(),
///                 connection: Connection::Ssh {
///                     host: host.clone(),
///                     port: 22,
///                     user: "root".into(),
///                     identity_file: None,
///                     options: Default::default(),
///                 },
///                 platform: "fedora-41@x86_64".into(),
///                 context: Default::default(),
///                 release: serde_json::json!({"host": host}),
///             })
///         })
///     }
///     fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
///         Box::pin(async move {
///             let host = machine.release["host"].as_str().unwrap_or_default().to_owned();
///             self.0.lock().unwrap().push(host);
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Provisioner: Send + Sync + 'static {
    /// The provisioner's name, written into [`Machine::provisioner`]
    /// (`local`, `ssh`, `podman`, `testing-farm`, ...).
    fn kind(&self) -> &str;

    /// How many machines may be held or being reserved at once; the pool
    /// never asks for more. Unlimited by default.
    fn max_machines(&self) -> usize {
        usize::MAX
    }

    /// How long to wait before starting reservation `index` (from 0) of
    /// `batch` started together. Services that dislike bursts (Testing
    /// Farm) spread them out; no wait by default.
    fn stagger(&self, index: usize, batch: usize) -> Duration {
        let _ = (index, batch);
        Duration::ZERO
    }

    /// Reserve one machine and return it once it is ready to use; see the
    /// trait's contract for `cancel`.
    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>>;

    /// Give `machine` back. Idempotent.
    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>>;
}

/// Why a reservation or a release failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The reservation was cancelled (stop, Ctrl-C) and undone.
    #[error("cancelled")]
    Cancelled,
    /// Bad options or input: nothing was reserved (exit 2).
    #[error("{0}")]
    Invalid(String),
    /// A command the provisioner ran (podman, ssh) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for people.
        command: String,
        /// How it ended, e.g. `exit status: 125`.
        status: String,
        /// The last lines of its stderr.
        stderr: String,
    },
    /// A local I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The machine could not be reached.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// An HTTP API (Testing Farm) answered with an error or nonsense.
    #[error("{method} {url}: {message}")]
    Api {
        /// HTTP method.
        method: String,
        /// The URL, without credentials.
        url: String,
        /// The status and the service's message.
        message: String,
    },
    /// Waiting for the machine took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// Any other failure, with its cause for people.
    #[error("{0}")]
    Failed(String),
}

impl ProvisionError {
    /// An [`ProvisionError::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProvisionError::Io {
            context: context.into(),
            source,
        }
    }

    /// True for [`ProvisionError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ProvisionError::Cancelled)
    }

    /// Whether trying again may help: false for cancellation and bad input.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ProvisionError::Cancelled | ProvisionError::Invalid(_))
    }

    /// The same error with every occurrence of `secret` (a token) in its
    /// text replaced by `***`: services may echo what they were sent (an
    /// error body reflecting the `Authorization` header), and no message
    /// may show it. The kind of error is kept (it decides the exit code);
    /// an error whose text holds the secret only in a part that cannot be
    /// rewritten (an I/O or connection error's cause) becomes
    /// [`ProvisionError::Failed`] with the redacted text.
    ///
    /// ```
    /// use atex_provision::ProvisionError;
    /// let err = ProvisionError::Invalid("HTTP 400: Bearer s3cret".into()).redacted("s3cret");
    /// assert_eq!(err.to_string(), "HTTP 400: Bearer ***");
    /// assert!(matches!(err, ProvisionError::Invalid(_)));
    /// ```
    pub fn redacted(self, secret: &str) -> ProvisionError {
        if secret.is_empty() || !self.to_string().contains(secret) {
            return self;
        }
        let r = |text: String| redact(&text, secret);
        match self {
            ProvisionError::Invalid(text) => ProvisionError::Invalid(r(text)),
            ProvisionError::Timeout(text) => ProvisionError::Timeout(r(text)),
            ProvisionError::Failed(text) => ProvisionError::Failed(r(text)),
            ProvisionError::Command {
                command,
                status,
                stderr,
            } => ProvisionError::Command {
                command: r(command),
                status: r(status),
                stderr: r(stderr),
            },
            ProvisionError::Api {
                method,
                url,
                message,
            } => ProvisionError::Api {
                method: r(method),
                url: r(url),
                message: r(message),
            },
            other => ProvisionError::Failed(r(other.to_string())),
        }
    }
}

/// `text` with every occurrence of `secret` replaced by `***` (nothing
/// replaced for an empty secret).
pub(crate) fn redact(text: &str, secret: &str) -> String {
    match secret.is_empty() {
        true => text.to_owned(),
        false => text.replace(secret, "***"),
    }
}

/// Run `future` unless `cancel` fires first, in which case the result is
/// [`ProvisionError::Cancelled`] and `future` is dropped. Use it around
/// waits that hold nothing that needs undoing (sleeps, polls).
pub async fn or_cancel<T>(
    cancel: &CancellationToken,
    future: impl Future<Output = Result<T, ProvisionError>>,
) -> Result<T, ProvisionError> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(ProvisionError::Cancelled),
        out = future => out,
    }
}

/// A provisioner whose machines carry a fixed fmf context (`-c DIM=VALUE`
/// on the command line or in an orchestrator SPEC): each reserved
/// [`Machine`] gets `context`; everything else is `inner`'s.
pub struct WithContext {
    inner: std::sync::Arc<dyn Provisioner>,
    context: indexmap::IndexMap<String, Vec<String>>,
}

impl WithContext {
    /// `inner`, its machines given `context`; `inner` itself when the
    /// context is empty.
    pub fn wrap(
        inner: std::sync::Arc<dyn Provisioner>,
        context: indexmap::IndexMap<String, Vec<String>>,
    ) -> std::sync::Arc<dyn Provisioner> {
        if context.is_empty() {
            inner
        } else {
            std::sync::Arc::new(WithContext { inner, context })
        }
    }
}

impl std::fmt::Debug for WithContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithContext")
            .field("kind", &self.inner.kind())
            .field("context", &self.context)
            .finish()
    }
}

impl Provisioner for WithContext {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    fn max_machines(&self) -> usize {
        self.inner.max_machines()
    }

    fn stagger(&self, index: usize, batch: usize) -> Duration {
        self.inner.stagger(index, batch)
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move {
            let mut machine = self.inner.reserve(cancel).await?;
            machine.context = self.context.clone();
            Ok(machine)
        })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        self.inner.release(machine)
    }
}

//! [`Pool`]: drives one [`Provisioner`] the way the orchestrator and the
//! command need it: ask for N, get each machine as soon as it is ready,
//! release one, stop all, with retries, staggering, a concurrency cap and
//! no leak on cancellation.

use std::sync::Arc;
use std::time::Duration;

use atex_shared::records::Machine;
use indexmap::IndexMap;
use tokio::task::JoinSet;

use crate::provisioner::{CancellationToken, ProvisionError, Provisioner};

/// A callback for progress lines meant for people (stderr in the command).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How a [`Pool`] treats failed reservations.
#[derive(Clone)]
pub struct PoolOptions {
    /// How many times a failed reservation is tried again before
    /// [`Pool::next`] reports its error.
    pub retries: u32,
    /// The wait before the first retry; it doubles on every further retry
    /// of the same reservation, up to [`PoolOptions::max_retry_delay`].
    pub retry_delay: Duration,
    /// The longest wait between two tries.
    pub max_retry_delay: Duration,
    /// Where progress lines go; nowhere when `None`.
    pub log: Option<Log>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            retries: 2,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(60),
            log: None,
        }
    }
}

impl std::fmt::Debug for PoolOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolOptions")
            .field("retries", &self.retries)
            .field("retry_delay", &self.retry_delay)
            .field("max_retry_delay", &self.max_retry_delay)
            .field("log", &self.log.is_some())
            .finish()
    }
}

/// What one reservation task ends with: its try number (0 for the first)
/// and the machine or the error.
type Outcome = (u32, Result<Machine, ProvisionError>);

/// Machines from one [`Provisioner`], reserved concurrently.
///
/// Must be used inside a tokio runtime. Call [`Pool::stop`] before
/// dropping it: a dropped pool cancels the reservations in flight (they
/// undo themselves while the runtime lives) but cannot release the
/// machines it holds.
///
/// ```
/// # async fn demo() -> Result<(), atex_provision::ProvisionError> {
/// use std::sync::Arc;
/// use atex_provision::{Pool, PoolOptions, local::Local};
///
/// let mut pool = Pool::new(Arc::new(Local::default()), PoolOptions::default());
/// pool.provision(1);
/// while let Some(machine) = pool.next().await {
///     let machine = machine?;
///     println!("{}", machine.id);
///     pool.release(&machine.id).await?;
/// }
/// pool.stop().await;
/// # Ok(())
/// # }
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
/// ```
pub struct Pool {
    provisioner: Arc<dyn Provisioner>,
    options: PoolOptions,
    /// Parent of every reservation's token; replaced after
    /// [`Pool::cancel_pending`].
    cancel: CancellationToken,
    /// Machines asked for whose reservation has not started yet.
    wanted: usize,
    tasks: JoinSet<Outcome>,
    held: IndexMap<String, Machine>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("provisioner", &self.provisioner.kind())
            .field("wanted", &self.wanted)
            .field("reserving", &self.tasks.len())
            .field("held", &self.held.len())
            .finish()
    }
}

impl Pool {
    /// A pool that reserves nothing until [`Pool::provision`] is called.
    pub fn new(provisioner: Arc<dyn Provisioner>, options: PoolOptions) -> Self {
        Pool {
            provisioner,
            options,
            cancel: CancellationToken::new(),
            wanted: 0,
            tasks: JoinSet::new(),
            held: IndexMap::new(),
        }
    }

    /// The provisioner this pool drives.
    pub fn provisioner(&self) -> &Arc<dyn Provisioner> {
        &self.provisioner
    }

    /// Ask for `n` more machines. Reservations start at the next
    /// [`Pool::next`], as many at once as
    /// [`Provisioner::max_machines`] allows.
    pub fn provision(&mut self, n: usize) {
        self.wanted = self.wanted.saturating_add(n);
    }

    /// Machines asked for and not yet returned by [`Pool::next`] (waiting
    /// or being reserved).
    pub fn pending(&self) -> usize {
        self.wanted + self.tasks.len()
    }

    /// The machines handed out and not released, in the order they came.
    pub fn held(&self) -> impl Iterator<Item = &Machine> {
        self.held.values()
    }

    /// The next machine that is ready, or the error of a reservation that
    /// failed all its tries; `None` when nothing is in flight and nothing
    /// more can start: none is asked for, or the ones asked for wait for
    /// room under [`Provisioner::max_machines`] ([`Pool::pending`] counts
    /// them; they start at the next call after a [`Pool::release`]).
    /// Cancel-safe: dropping the future loses no machine.
    pub async fn next(&mut self) -> Option<Result<Machine, ProvisionError>> {
        loop {
            self.start_wanted();
            let joined = self.tasks.join_next().await?;
            match joined {
                Ok((_, Ok(machine))) => {
                    self.held.insert(machine.id.clone(), machine.clone());
                    return Some(Ok(machine));
                }
                Ok((_, Err(err))) if err.is_cancelled() => continue,
                Ok((attempt, Err(err))) if err.is_retryable() && attempt < self.options.retries => {
                    let delay = self.retry_delay(attempt);
                    self.log(&format!(
                        "{}: reservation failed (try {} of {}), retrying in {:.0?}: {err}",
                        self.provisioner.kind(),
                        attempt + 1,
                        self.options.retries + 1,
                        delay
                    ));
                    self.spawn(attempt + 1, delay);
                }
                Ok((_, Err(err))) => return Some(Err(err)),
                Err(join) => {
                    return Some(Err(ProvisionError::Failed(format!(
                        "{}: reservation task failed: {join}",
                        self.provisioner.kind()
                    ))));
                }
            }
        }
    }

    /// Give back the held machine `id`. Unknown ids are an error; the
    /// machine is forgotten even when the provisioner fails to release it.
    pub async fn release(&mut self, id: &str) -> Result<(), ProvisionError> {
        let machine = self
            .held
            .shift_remove(id)
            .ok_or_else(|| ProvisionError::Invalid(format!("no held machine has the id {id}")))?;
        self.provisioner.release(machine).await
    }

    /// Stop asking for machines: forget the ones not started and cancel
    /// the reservations in flight (each undoes what it holds). Held
    /// machines stay held. This is what ATEX's `clear()` lacked.
    pub fn cancel_pending(&mut self) {
        self.wanted = 0;
        self.cancel.cancel();
        self.cancel = CancellationToken::new();
    }

    /// Cancel everything in flight, wait for it to be undone, then release
    /// every held machine concurrently. Returns the errors of releases
    /// that failed (empty when all went well).
    pub async fn stop(&mut self) -> Vec<ProvisionError> {
        self.wanted = 0;
        self.cancel.cancel();
        let mut errors = Vec::new();
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok((_, Ok(machine))) => {
                    self.held.insert(machine.id.clone(), machine);
                }
                Ok((_, Err(_))) => {}
                Err(join) => errors.push(ProvisionError::Failed(format!(
                    "{}: reservation task failed: {join}",
                    self.provisioner.kind()
                ))),
            }
        }
        let mut releases = JoinSet::new();
        for (_, machine) in self.held.drain(..) {
            let provisioner = Arc::clone(&self.provisioner);
            releases.spawn(async move {
                let id = machine.id.clone();
                provisioner.release(machine).await.map_err(|err| (id, err))
            });
        }
        while let Some(joined) = releases.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err((id, err))) => {
                    self.log(&format!("{id}: release failed: {err}"));
                    errors.push(err);
                }
                Err(join) => errors.push(ProvisionError::Failed(format!(
                    "release task failed: {join}"
                ))),
            }
        }
        errors
    }

    fn log(&self, line: &str) {
        if let Some(log) = &self.options.log {
            log(line);
        }
    }

    fn retry_delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.options
            .retry_delay
            .saturating_mul(factor)
            .min(self.options.max_retry_delay)
    }

    /// Start as many wanted reservations as the cap allows, staggered as
    /// the provisioner asks.
    fn start_wanted(&mut self) {
        let max = self.provisioner.max_machines();
        let room = max.saturating_sub(self.tasks.len() + self.held.len());
        let batch = room.min(self.wanted);
        for index in 0..batch {
            self.wanted -= 1;
            let delay = self.provisioner.stagger(index, batch);
            self.spawn(0, delay);
        }
    }

    fn spawn(&mut self, attempt: u32, delay: Duration) {
        let provisioner = Arc::clone(&self.provisioner);
        let cancel = self.cancel.child_token();
        self.tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = cancel.cancelled() => return (attempt, Err(ProvisionError::Cancelled)),
                    () = tokio::time::sleep(delay) => {}
                }
            }
            if cancel.is_cancelled() {
                return (attempt, Err(ProvisionError::Cancelled));
            }
            let result = provisioner.reserve(cancel.clone()).await;
            match result {
                // Cancelled while the machine came up: it is not wanted.
                Ok(machine) if cancel.is_cancelled() => {
                    let _ = provisioner.release(machine).await;
                    (attempt, Err(ProvisionError::Cancelled))
                }
                other => (attempt, other),
            }
        });
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Let reservations in flight undo themselves instead of being
        // aborted half-way (an aborted `podman run` leaks its container).
        self.cancel.cancel();
        self.tasks.detach_all();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use atex_shared::records::Connection;

    use super::*;
    use crate::provisioner::BoxFuture;

    /// Fails its first `fail` reservations, then hands out numbered local
    /// machines after `wait`; records what is held.
    #[derive(Default)]
    struct Fake {
        fail: AtomicUsize,
        wait: Duration,
        max: Option<usize>,
        next: AtomicUsize,
        live: Mutex<Vec<String>>,
        peak: AtomicUsize,
    }

    impl Provisioner for Fake {
        fn kind(&self) -> &str {
            "fake"
        }
        fn max_machines(&self) -> usize {
            self.max.unwrap_or(usize::MAX)
        }
        fn reserve(
            &self,
            cancel: CancellationToken,
        ) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
            Box::pin(async move {
                let id = format!("fake/{}", self.next.fetch_add(1, Ordering::SeqCst));
                {
                    let mut live = self.live.lock().unwrap();
                    live.push(id.clone());
                    self.peak.fetch_max(live.len(), Ordering::SeqCst);
                }
                let undo = |id: &str| self.live.lock().unwrap().retain(|x| x != id);
                tokio::select! {
                    () = cancel.cancelled() => {
                        undo(&id);
                        return Err(ProvisionError::Cancelled);
                    }
                    () = tokio::time::sleep(self.wait) => {}
                }
                if self
                    .fail
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                {
                    undo(&id);
                    return Err(ProvisionError::Failed("boom".into()));
                }
                Ok(Machine {
                    context: Default::default(),
                    id,
                    provisioner: "fake".into(),
                    connection: Connection::Local,
                    platform: String::new(),
                    release: serde_json::Value::Null,
                })
            })
        }
        fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
            Box::pin(async move {
                self.live.lock().unwrap().retain(|x| *x != machine.id);
                Ok(())
            })
        }
    }

    fn options(retries: u32) -> PoolOptions {
        PoolOptions {
            retries,
            retry_delay: Duration::from_millis(1),
            ..PoolOptions::default()
        }
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn hands_out_what_was_asked_and_releases_all_on_stop() {
        let fake = Arc::new(Fake::default());
        block_on(async {
            let mut pool = Pool::new(fake.clone(), options(0));
            pool.provision(3);
            let mut got = Vec::new();
            while let Some(machine) = pool.next().await {
                got.push(machine.unwrap().id);
            }
            assert_eq!(got.len(), 3);
            assert_eq!(pool.held().count(), 3);
            pool.release(&got[0]).await.unwrap();
            assert!(pool.release(&got[0]).await.is_err(), "released twice");
            assert!(pool.stop().await.is_empty());
        });
        assert!(fake.live.lock().unwrap().is_empty());
    }

    #[test]
    fn retries_then_reports_the_cause() {
        let fake = Arc::new(Fake {
            fail: AtomicUsize::new(2),
            ..Fake::default()
        });
        block_on(async {
            let mut pool = Pool::new(fake.clone(), options(2));
            pool.provision(1);
            assert!(pool.next().await.unwrap().is_ok(), "third try works");
            fake.fail.store(5, Ordering::SeqCst);
            pool.provision(1);
            let err = pool.next().await.unwrap().unwrap_err();
            assert_eq!(err.to_string(), "boom");
            assert!(pool.next().await.is_none());
            pool.stop().await;
        });
    }

    #[test]
    fn respects_the_cap_and_refills_after_release() {
        let fake = Arc::new(Fake {
            max: Some(2),
            wait: Duration::from_millis(5),
            ..Fake::default()
        });
        block_on(async {
            let mut pool = Pool::new(fake.clone(), options(0));
            pool.provision(4);
            let a = pool.next().await.unwrap().unwrap();
            let _b = pool.next().await.unwrap().unwrap();
            assert_eq!(pool.pending(), 2);
            pool.release(&a.id).await.unwrap();
            let _c = pool.next().await.unwrap().unwrap();
            pool.stop().await;
        });
        assert_eq!(fake.peak.load(Ordering::SeqCst), 2);
        assert!(fake.live.lock().unwrap().is_empty());
    }

    #[test]
    fn stop_undoes_reservations_in_flight() {
        let fake = Arc::new(Fake {
            wait: Duration::from_secs(3600),
            ..Fake::default()
        });
        block_on(async {
            let mut pool = Pool::new(fake.clone(), options(0));
            pool.provision(4);
            // Start them, then give up waiting.
            let next = tokio::time::timeout(Duration::from_millis(20), pool.next()).await;
            assert!(next.is_err());
            assert_eq!(fake.live.lock().unwrap().len(), 4);
            assert!(pool.stop().await.is_empty());
        });
        assert!(fake.live.lock().unwrap().is_empty());
    }

    #[test]
    fn cancel_pending_keeps_held_machines() {
        let fake = Arc::new(Fake::default());
        block_on(async {
            let mut pool = Pool::new(fake.clone(), options(0));
            pool.provision(1);
            let held = pool.next().await.unwrap().unwrap();
            pool.provision(5);
            pool.cancel_pending();
            assert!(pool.next().await.is_none());
            assert_eq!(pool.held().next().map(|m| &m.id), Some(&held.id));
            pool.stop().await;
        });
    }
}

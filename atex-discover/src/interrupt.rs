//! SIGINT and SIGTERM: atex-discover says on stderr what it wrote, in one
//! line, and exits 130 or 143.
//!
//! A thread waits for the signals. While the tool computes (nothing is on
//! stdout yet) the thread reports and exits at once. Once test records are
//! being written, it only raises a flag the writing loop checks between
//! records, so no record is cut in half: the loop stops, flushes what it
//! wrote and reports. If the loop does not get there within [`GRACE`]
//! (stdout is not read) or a second signal comes, the thread reports and
//! exits itself.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use atex_shared::cli::Interrupt;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// How long the writing loop has to stop by itself after a signal.
pub const GRACE: Duration = Duration::from_secs(2);

/// What the process is doing, as the signal thread sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet.
    Computing,
    /// Test records are being written; the loop checks the flag.
    Writing,
    /// The main thread has reported (or finished): the thread stays quiet.
    Done,
}

/// The state shared by the signal thread and the writing loop.
#[derive(Debug)]
pub struct Interrupts {
    phase: Mutex<Phase>,
    /// The signal received while writing: 0, or the signal number.
    signal: AtomicU8,
    /// Test records handed to stdout so far.
    written: AtomicUsize,
    /// What a record is called in the report ("test record"; an `s` is
    /// added for any count but 1).
    what: &'static str,
    /// What the report says before writing started.
    before: &'static str,
}

static INTERRUPTS: OnceLock<Interrupts> = OnceLock::new();

/// Handle SIGINT and SIGTERM from now on. `what` names a record the
/// command writes, for the report once writing started; `before` is what
/// the report says before (for example "no test records written"). When
/// the handlers cannot be installed, the default action (death) stays.
pub fn install(what: &'static str, before: &'static str) {
    let interrupts = INTERRUPTS.get_or_init(|| Interrupts {
        phase: Mutex::new(Phase::Computing),
        signal: AtomicU8::new(0),
        written: AtomicUsize::new(0),
        what,
        before,
    });
    // The thread registers the handlers itself, so that they exist only
    // with a thread acting on them; the caller waits until they do.
    let (ready, registered) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
                let _ = ready.send(());
                return;
            };
            let _ = ready.send(());
            while let Some(number) = signals.forever().next() {
                interrupts.on_signal(to_interrupt(number), &mut signals);
            }
        });
    if spawned.is_ok() {
        let _ = registered.recv();
    }
}

/// The state, when [`install`] ran (not in library use).
pub fn global() -> Option<&'static Interrupts> {
    INTERRUPTS.get()
}

fn to_interrupt(number: i32) -> Interrupt {
    if number == SIGTERM {
        Interrupt::Term
    } else {
        Interrupt::Int
    }
}

fn to_number(interrupt: Interrupt) -> u8 {
    match interrupt {
        Interrupt::Int => 2,
        Interrupt::Term => 15,
    }
}

impl Interrupts {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // A panic elsewhere must not stop the report.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records are about to be written: from now on a signal only raises
    /// the flag. (If a signal came just before, the thread is exiting.)
    pub fn start_writing(&self) {
        let mut phase = self.phase();
        if *phase == Phase::Computing {
            *phase = Phase::Writing;
        }
    }

    /// The signal received while writing, if any (checked between
    /// records: one relaxed load).
    pub fn pending(&self) -> Option<Interrupt> {
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            15 => Some(Interrupt::Term),
            _ => Some(Interrupt::Int),
        }
    }

    /// `count` records are written so far.
    pub fn set_written(&self, count: usize) {
        self.written.store(count, Ordering::Relaxed);
    }

    /// Writing is over and its output flushed: the signal that came, if
    /// any, for the caller to report; the thread stays quiet from now on.
    pub fn finish(&self) -> Option<Interrupt> {
        let mut phase = self.phase();
        *phase = Phase::Done;
        match self.signal.load(Ordering::Relaxed) {
            0 => None,
            number => Some(to_interrupt(i32::from(number))),
        }
    }

    /// The report line, without the tool's prefix.
    pub fn report(&self, interrupt: Interrupt, written: usize) -> String {
        format!(
            "interrupted ({}), {}",
            interrupt.name(),
            self.count(written)
        )
    }

    /// "N test records written".
    fn count(&self, written: usize) -> String {
        let plural = if written == 1 { "" } else { "s" };
        format!("{written} {}{plural} written", self.what)
    }

    fn on_signal(&self, interrupt: Interrupt, signals: &mut Signals) {
        let mut phase = self.phase();
        match *phase {
            Phase::Done => return,
            Phase::Computing => {
                eprintln!(
                    "atex-discover: interrupted ({}), {}",
                    interrupt.name(),
                    self.before
                );
                std::process::exit(i32::from(interrupt.exit_code()));
            }
            Phase::Writing => {
                self.signal.store(to_number(interrupt), Ordering::Relaxed);
            }
        }
        drop(phase);
        // The writing loop should stop at its next record; a second signal
        // or a blocked stdout ends the wait.
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            if signals.pending().next().is_some() {
                break;
            }
            if *self.phase() == Phase::Done {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        phase = self.phase();
        if *phase == Phase::Writing {
            let written = self.written.load(Ordering::Relaxed);
            eprintln!(
                "atex-discover: interrupted ({}), stdout blocked: at most {}",
                interrupt.name(),
                self.count(written)
            );
            std::process::exit(i32::from(interrupt.exit_code()));
        }
    }
}

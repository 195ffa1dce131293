//! The live view the command shows when stderr is a terminal (indicatif):
//! a progress line (tests done out of all, by status, the ETA), the
//! machines by state, one line per running test (its machine, elapsed and
//! expected time, `SLOW` past the expected one), redrawn a few times a
//! second from the [`Monitor`]'s snapshot; above it, the lines that stay:
//! failures as they happen (name and note), machines lost, warnings, and
//! with `--verbose` every event line. It is one more subscriber of the
//! run's events, like the plain event lines (`print_events` in the crate root).

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{Event, Monitor, Snapshot, Verdict, human};

/// How often the view is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// At most this many running tests get a line; the rest are counted.
const RUNNING_LINES: usize = 20;

/// Which event lines a person sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Failures, lost machines, warnings and errors.
    Important,
    /// Every event line.
    All,
}

/// Whether `event` is worth a line of its own outside `--verbose`: what
/// went wrong, as it happens.
pub fn important(event: &Event) -> bool {
    match event {
        Event::TestEnded { verdict, .. } => {
            matches!(verdict, Some(Verdict::Fail | Verdict::Infra))
        }
        Event::ReservationFailed { .. }
        | Event::SetupFailed { .. }
        | Event::MachineDestroyed { .. }
        | Event::Warning { .. }
        | Event::Interrupted { .. }
        | Event::Stopped { .. } => true,
        _ => false,
    }
}

/// The line of `event` for people, with a failed test's note.
pub fn line_with_note(event: &Event) -> Option<String> {
    let mut line = event.line()?;
    if let Event::TestEnded {
        note: Some(note),
        verdict: Some(Verdict::Fail | Verdict::Infra),
        ..
    } = event
    {
        let note = note.split_whitespace().collect::<Vec<_>>().join(" ");
        let note: String = note.chars().take(160).collect();
        if !note.is_empty() {
            line.push_str(": ");
            line.push_str(&note);
        }
    }
    Some(line)
}

/// The view's bars.
struct View {
    multi: MultiProgress,
    progress: ProgressBar,
    machines: ProgressBar,
    running: Vec<ProgressBar>,
}

impl View {
    fn new() -> View {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let progress = multi.add(ProgressBar::new(0));
        progress.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let machines = multi.add(ProgressBar::new(0));
        machines.set_style(plain());
        View {
            multi,
            progress,
            machines,
            running: Vec::new(),
        }
    }

    /// Redraw from `snapshot`.
    fn update(&mut self, snapshot: &Snapshot) {
        let d = &snapshot.done;
        let total = d.total() + snapshot.queued + snapshot.running.len();
        self.progress.set_length(total as u64);
        self.progress.set_position(d.total() as u64);
        let mut msg = format!(
            "{} passed, {} failed, {} infra",
            d.passed, d.failed, d.infra
        );
        if d.flaky > 0 {
            msg.push_str(&format!(", {} flaky", d.flaky));
        }
        if let Some(eta) = snapshot.eta {
            let bound = if snapshot.eta_bound { "≤" } else { "" };
            msg.push_str(&format!(" · ETA {bound}{}", human(eta)));
        }
        self.progress.set_message(msg);
        let m = &snapshot.machines;
        let mut machines = format!(
            "machines: {} reserving, {} setting up, {} busy, {} idle",
            m.reserving, m.setting_up, m.busy, m.idle
        );
        if m.closing > 0 {
            machines.push_str(&format!(", {} closing", m.closing));
        }
        machines.push_str(&format!("; {} queued", snapshot.queued));
        self.machines.set_message(machines);
        let shown = snapshot.running.len().min(RUNNING_LINES);
        let more = snapshot.running.len() - shown;
        let lines = shown + usize::from(more > 0);
        while self.running.len() < lines {
            let bar = self.multi.add(ProgressBar::new(0));
            bar.set_style(plain());
            self.running.push(bar);
        }
        for bar in self.running.drain(lines..) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        let width = snapshot.running[..shown]
            .iter()
            .map(|r| r.machine.chars().count())
            .max()
            .unwrap_or(0);
        for (bar, r) in self.running.iter().zip(&snapshot.running[..shown]) {
            let mut line = format!(
                "  {:<width$}  {}  {}",
                r.machine,
                r.test,
                human(r.started.elapsed())
            );
            // A measured expectation, or the `duration` limit.
            match (r.measured, r.expected.is_zero()) {
                (true, _) => line.push_str(&format!(" / ~{}", human(r.expected))),
                (false, false) => line.push_str(&format!(" / ≤{}", human(r.expected))),
                (false, true) => {}
            }
            if r.attempt > 0 {
                line.push_str(&format!(" (attempt {})", r.attempt));
            }
            if r.slow() {
                line.push_str("  SLOW");
            }
            bar.set_message(line);
        }
        if more > 0
            && let Some(bar) = self.running.last()
        {
            bar.set_message(format!("  ... and {more} more running"));
        }
    }

    /// A line that stays, above the view.
    fn println(&self, line: &str) {
        let line = format!("atex-orchestrate: {line}");
        if self.multi.println(&line).is_err() {
            eprintln!("{line}");
        }
    }

    /// The run ended: the view goes, the lines printed above it stay.
    fn finish(self) {
        for bar in self.running {
            bar.finish_and_clear();
        }
        self.machines.finish_and_clear();
        self.progress.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// A bar that is only its message.
fn plain() -> ProgressStyle {
    ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner())
}

/// Show the live view of the run `monitor` watches until its events end.
pub async fn live_view(mut events: UnboundedReceiver<Event>, monitor: Monitor, lines: Lines) {
    let mut view = View::new();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => {
                    if (lines == Lines::All || important(&event))
                        && let Some(line) = line_with_note(&event)
                    {
                        view.println(&line);
                    }
                }
                None => break,
            },
            _ = ticks.tick() => view.update(&monitor.snapshot()),
        }
    }
    view.finish();
}

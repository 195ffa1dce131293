//! The engine: replay the corpus, then mutate its seeds with proptest for a
//! time budget, with a watchdog for hangs and runaway memory, and keep every
//! failing input as an artifact.
//!
//! Why proptest and not cargo-fuzz: cargo-fuzz (libFuzzer) needs a nightly
//! compiler and this project builds on stable only. Proptest brings a
//! seeded, reproducible generator and shrinking; the mutations below give it
//! the reach of a byte-level fuzzer over the corpus seeds (no coverage
//! feedback, so the seeds and the dictionary carry the structure).
//!
//! Settings come from the environment:
//! - `ATEX_FUZZ_SECONDS`: how long each target mutates after the replay
//!   (default 15; `0` replays the corpus only).
//! - `ATEX_FUZZ_SEED`: the run's seed, a number or `random` (from the
//!   clock); default [`DEFAULT_SEED`]. It is printed, and the same seed runs
//!   the same cases in the same order.
//! - `ATEX_FUZZ_CASE_TIMEOUT`: seconds one case may take before it counts
//!   as a hang (default 10).
//! - `ATEX_FUZZ_MAX_RSS_MIB`: the resident memory the process may reach
//!   before the case counts as a memory bomb (default 1024).
//! - `ATEX_FUZZ_TRACE=1`: write each input to `artifacts/<target>/last-input`
//!   before running it, to find the input of a crash that kills the process
//!   (a stack overflow) when replaying a seed.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// A property check: `Err` (or a panic) is a finding, with what was wrong.
pub type Check = fn(&[u8]) -> Result<(), String>;

/// One fuzz target: a decoder of outside bytes and what must hold for it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The name of the corpus (`fuzz/corpus/<name>/`) and artifacts
    /// (`fuzz/artifacts/<name>/`) directories.
    pub name: &'static str,
    /// The properties, run on every input.
    pub check: Check,
    /// Tokens of the input's language that mutations insert (control
    /// words, JSON keys, YAML indicators).
    pub dictionary: &'static [&'static [u8]],
    /// The longest input a mutation may build; longer ones are cut.
    pub max_len: usize,
}

/// What a run did, for the test's output.
#[derive(Debug, Clone)]
pub struct Report {
    /// Corpus files replayed.
    pub replayed: usize,
    /// Mutated cases run after the replay.
    pub cases: u64,
    /// The run's seed (`ATEX_FUZZ_SEED` repeats it).
    pub seed: u64,
    /// Time taken by the replay and the mutation.
    pub elapsed: Duration,
}

/// The run's settings (see the module docs for the variables).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long to mutate after the replay.
    pub budget: Duration,
    /// The run's seed.
    pub seed: u64,
    /// How long one case may take.
    pub case_timeout: Duration,
    /// The resident memory (bytes) the process may reach.
    pub max_rss: u64,
    /// Whether each input is written to `last-input` before it runs.
    pub trace: bool,
    /// The harness's directory (holds `corpus/` and `artifacts/`).
    pub root: PathBuf,
}

impl Settings {
    /// The settings from the environment, with the defaults of the module
    /// docs.
    pub fn from_env() -> Result<Settings, String> {
        fn number(name: &str, default: f64) -> Result<f64, String> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(text) => match text.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                    _ => Err(format!("{name}={text:?} is not a number of seconds")),
                },
            }
        }
        let seed = match std::env::var("ATEX_FUZZ_SEED") {
            // Fixed by default: a test run (CI's included) is reproducible
            // and cannot turn red by the luck of its seed; `make fuzz`
            // explores with new seeds.
            Err(_) => DEFAULT_SEED,
            Ok(text) if text.trim() == "random" => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|e| format!("ATEX_FUZZ_SEED={text:?}: {e}"))?,
        };
        let max_rss_mib = number("ATEX_FUZZ_MAX_RSS_MIB", 1024.0)?;
        Ok(Settings {
            budget: Duration::from_secs_f64(number("ATEX_FUZZ_SECONDS", 15.0)?),
            seed,
            case_timeout: Duration::from_secs_f64(number("ATEX_FUZZ_CASE_TIMEOUT", 10.0)?),
            max_rss: (max_rss_mib * 1024.0 * 1024.0) as u64,
            trace: std::env::var_os("ATEX_FUZZ_TRACE").is_some_and(|v| v == "1"),
            root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        })
    }
}

/// The seed of a run that names none.
pub const DEFAULT_SEED: u64 = 0x00a7_e5f0_22ed;

/// The stack the cases run on: std's default for a spawned thread, which is
/// what atex-discover's parsing workers get, so a recursion that overflows
/// here overflows there.
const CASE_STACK: usize = 2 << 20;

/// Cases per proptest runner; the time budget is checked between runners,
/// and a fixed number keeps a seeded run identical case for case.
const ROUND_CASES: u32 = 32;

/// Run `target` with the settings of the environment: replay its corpus,
/// then mutate for the time budget. `Err` says what failed and where the
/// input was saved.
pub fn run(target: &Target) -> Result<Report, String> {
    let settings = Settings::from_env()?;
    run_with(target, &settings)
}

/// [`run`] with explicit settings.
pub fn run_with(target: &Target, settings: &Settings) -> Result<Report, String> {
    let corpus = load_corpus(&settings.root.join("corpus").join(target.name))?;
    let watch = Arc::new(Watch::new(target.name, settings));
    let watchdog = spawn_watchdog(Arc::clone(&watch), settings.clone())?;
    let worker = {
        let target = *target;
        let settings = settings.clone();
        let watch = Arc::clone(&watch);
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .stack_size(CASE_STACK)
            .spawn(move || fuzz(&target, &settings, &corpus, &watch))
            .map_err(|e| format!("cannot start the fuzz thread: {e}"))?
    };
    let result = worker
        .join()
        .unwrap_or_else(|_| Err("the fuzz thread panicked outside a case".into()));
    watch.stop.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    result
}

fn fuzz(
    target: &Target,
    settings: &Settings,
    corpus: &[(String, Vec<u8>)],
    watch: &Watch,
) -> Result<Report, String> {
    install_panic_hook();
    let started = Instant::now();
    println!(
        "atex-fuzz {}: seed {} (ATEX_FUZZ_SEED={} repeats this run), {} s budget",
        target.name,
        settings.seed,
        settings.seed,
        settings.budget.as_secs_f64()
    );

    // The corpus first: every seed is a regression input.
    let mut failures = String::new();
    for (name, bytes) in corpus {
        if let Err(why) = execute(target, bytes, watch) {
            let _ = writeln!(
                failures,
                "corpus/{}/{name}: {why}\n  input: {}",
                target.name,
                escape(bytes)
            );
        }
    }
    if !failures.is_empty() {
        return Err(format!("corpus replay failed:\n{failures}"));
    }

    let seeds: Vec<&[u8]> = corpus.iter().map(|(_, b)| b.as_slice()).collect();
    let strategy = (any::<Index>(), vec(mutation(), 1..=6));
    let cases = AtomicU64::new(0);
    let deadline = Instant::now() + settings.budget;
    let mut round: u64 = 0;
    while Instant::now() < deadline {
        let config = Config {
            cases: ROUND_CASES,
            failure_persistence: None,
            max_shrink_iters: 2048,
            max_shrink_time: 30_000,
            fork: false,
            timeout: 0,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &round_seed(settings.seed, round));
        let mut runner = TestRunner::new_with_rng(config, rng);
        let outcome = runner.run(&strategy, |(seed, mutations)| {
            cases.fetch_add(1, Ordering::Relaxed);
            let input = mutate(&seeds, target, seed, &mutations);
            execute(target, &input, watch).map_err(TestCaseError::fail)
        });
        match outcome {
            Ok(()) => {}
            Err(TestError::Abort(why)) => return Err(format!("proptest gave up: {why}")),
            Err(TestError::Fail(why, (seed, mutations))) => {
                // The shrunk case: as few mutations of as early a seed as
                // proptest could find.
                let input = mutate(&seeds, target, seed, &mutations);
                let saved = save_artifact(&settings.root, target.name, "crash", &input);
                return Err(format!(
                    "{} failed after {} cases (seed {}, round {round}): {why}\n  input ({} bytes): {}\n  saved as {}\n  mutations: {mutations:?}",
                    target.name,
                    cases.load(Ordering::Relaxed),
                    settings.seed,
                    input.len(),
                    escape(&input),
                    saved
                ));
            }
        }
        round += 1;
    }
    let report = Report {
        replayed: corpus.len(),
        cases: cases.load(Ordering::Relaxed),
        seed: settings.seed,
        elapsed: started.elapsed(),
    };
    println!(
        "atex-fuzz {}: {} corpus files replayed, {} mutated cases in {:.1} s, no failure",
        target.name,
        report.replayed,
        report.cases,
        report.elapsed.as_secs_f64()
    );
    Ok(report)
}

/// The 32-byte ChaCha seed of one round, from the run's seed (splitmix64).
fn round_seed(seed: u64, round: u64) -> [u8; 32] {
    let mut state = seed ^ round.wrapping_mul(0xA076_1D64_78BD_642F);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// Every file of a corpus directory, by name, skipping dot files.
fn load_corpus(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut corpus = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(entry.path())
            .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
        corpus.push((name, bytes));
    }
    if corpus.is_empty() {
        return Err(format!("{} holds no seeds", dir.display()));
    }
    corpus.sort();
    Ok(corpus)
}

thread_local! {
    /// Whether this thread is inside a case (its panics are findings).
    static IN_CASE: Cell<bool> = const { Cell::new(false) };
    /// The last panic of a case, with its location.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that keeps a case's panic (message and location) for the
/// report instead of printing it, and leaves every other panic to the
/// previous hook: proptest's shrinking would otherwise print hundreds.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Run the target's check on one input under the watchdog, a panic turned
/// into an `Err` that says where it happened.
fn execute(target: &Target, input: &[u8], watch: &Watch) -> Result<(), String> {
    watch.begin(input);
    IN_CASE.with(|c| c.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.check)(input)));
    IN_CASE.with(|c| c.set(false));
    watch.end();
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| {
                    payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "<panic>".into())
                });
            Err(format!("panic: {message}"))
        }
    }
}

/// What the watchdog sees of the running case.
#[derive(Debug)]
struct Watch {
    target: &'static str,
    state: Mutex<CaseState>,
    stop: AtomicBool,
    trace: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct CaseState {
    input: Vec<u8>,
    started: Option<Instant>,
}

impl Watch {
    fn new(target: &'static str, settings: &Settings) -> Watch {
        Watch {
            target,
            state: Mutex::new(CaseState::default()),
            stop: AtomicBool::new(false),
            trace: settings
                .trace
                .then(|| settings.root.join("artifacts").join(target)),
        }
    }

    fn begin(&self, input: &[u8]) {
        if let Some(dir) = &self.trace {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::write(dir.join("last-input"), input);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.input.clear();
        state.input.extend_from_slice(input);
        state.started = Some(Instant::now());
    }

    fn end(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .started = None;
    }
}

/// A thread that ends the process when a case runs past the case timeout
/// or the resident memory passes the cap, after saving the case's input:
/// neither a hang nor a memory bomb can be caught in the case's own thread.
fn spawn_watchdog(
    watch: Arc<Watch>,
    settings: Settings,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("fuzz-watchdog".into())
        .spawn(move || {
            while !watch.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
                let rss = resident_bytes();
                let state = watch.state.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(started) = state.started else {
                    continue;
                };
                let why = if started.elapsed() > settings.case_timeout {
                    (
                        "hang",
                        format!("a case ran for over {:?}", settings.case_timeout),
                    )
                } else if rss.is_some_and(|rss| rss > settings.max_rss) {
                    (
                        "memory",
                        format!(
                            "the process reached {} MiB resident (cap {} MiB)",
                            rss.unwrap_or(0) >> 20,
                            settings.max_rss >> 20
                        ),
                    )
                } else {
                    continue;
                };
                let saved = save_artifact(&settings.root, watch.target, why.0, &state.input);
                eprintln!(
                    "atex-fuzz {}: {} (seed {})\n  input ({} bytes): {}\n  saved as {saved}",
                    watch.target,
                    why.1,
                    settings.seed,
                    state.input.len(),
                    escape(&state.input)
                );
                std::process::exit(1);
            }
        })
        .map_err(|e| format!("cannot start the watchdog: {e}"))
}

/// The process's resident memory, from `/proc/self/status` (Linux only;
/// `None` elsewhere, and the memory check is then off).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Save a failing input under `artifacts/<target>/<kind>-<hash>` and say
/// where (or why it could not be saved).
fn save_artifact(root: &Path, target: &str, kind: &str, input: &[u8]) -> String {
    let dir = root.join("artifacts").join(target);
    let path = dir.join(format!("{kind}-{:016x}", fnv1a(input)));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {}: {e})", path.display()),
    }
}

/// FNV-1a, 64 bits: a stable name for an input.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The bytes as a Rust byte-string literal (`b"..."`), cut after 4 KiB.
pub fn escape(bytes: &[u8]) -> String {
    const SHOWN: usize = 4096;
    let mut out = String::from("b\"");
    for &b in bytes.iter().take(SHOWN) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    if bytes.len() > SHOWN {
        let _ = write!(out, " ... ({} more bytes)", bytes.len() - SHOWN);
    }
    out
}

/// One edit of a seed. Positions are [`Index`]es, resolved against the
/// input as it is when the edit applies, so any list of edits is valid for
/// any seed (and proptest can shrink them freely).
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit(Index, u8),
    /// Overwrite one byte.
    SetByte(Index, u8),
    /// Insert a token of the target's dictionary.
    InsertToken(Index, Index),
    /// Insert random bytes.
    InsertBytes(Index, Vec<u8>),
    /// Remove up to this many bytes.
    Delete(Index, u16),
    /// Cut the input.
    Truncate(Index),
    /// Copy a stretch of the input elsewhere in it.
    Duplicate {
        /// Where the stretch starts.
        from: Index,
        /// Its length, at most.
        len: u16,
        /// Where the copy goes.
        to: Index,
    },
    /// Repeat a short stretch many times in place (deep nesting, long
    /// lines, many keys).
    Repeat {
        /// Where the stretch starts.
        at: Index,
        /// Its length, at most.
        len: u8,
        /// How many extra copies.
        times: u16,
    },
    /// Insert a stretch of another seed.
    Splice {
        /// Which seed.
        seed: Index,
        /// Where the stretch starts in it.
        from: Index,
        /// Its length, at most.
        len: u16,
        /// Where it goes.
        to: Index,
    },
    /// Replace the run of digits at or after a position (or insert) with a
    /// number at a boundary: lengths, exit codes, ports, durations.
    Number(Index, Index),
}

/// Bytes that break parsers more often than random ones.
const INTERESTING_BYTES: &[u8] = &[
    0x00, b'\n', b'\r', b'\t', b' ', b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'-', b'#',
    b'&', b'*', b'!', b'|', b'>', b'\'', b'%', b'@', b'`', b'?', 0x7f, 0x80, 0xc3, 0xe2, 0xef,
    0xf0, 0xff,
];

/// Numbers at the edges: signs, `_`, overflow of i32/u32/i64/u64, the
/// control line's 4096, the 4 MiB JSON cap, floats JSON cannot hold.
const INTERESTING_NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"+1",
    b"00",
    b"1_0",
    b"1__0",
    b" 7 ",
    b"255",
    b"256",
    b"4095",
    b"4096",
    b"4097",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"-2147483649",
    b"4194304",
    b"4194305",
    b"3000000000",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"18446744073709551615",
    b"18446744073709551616",
    b"68719476736",
    b"68719476737",
    b"99999999999999999999999999",
    b"1e400",
    b"-0",
    b"0.5",
    b"1.0e-400",
    b"0x10",
    b"NaN",
    b"",
];

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![any::<u8>(), select(INTERESTING_BYTES)];
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        3 => (any::<Index>(), byte).prop_map(|(at, b)| Mutation::SetByte(at, b)),
        4 => (any::<Index>(), any::<Index>()).prop_map(|(at, t)| Mutation::InsertToken(at, t)),
        2 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Mutation::InsertBytes(at, b)),
        3 => (any::<Index>(), 1u16..64).prop_map(|(at, n)| Mutation::Delete(at, n)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 1u16..256, any::<Index>())
            .prop_map(|(from, len, to)| Mutation::Duplicate { from, len, to }),
        1 => (any::<Index>(), 1u8..16, 1u16..1024)
            .prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
        2 => (any::<Index>(), any::<Index>(), 1u16..512, any::<Index>())
            .prop_map(|(seed, from, len, to)| Mutation::Splice { seed, from, len, to }),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(at, n)| Mutation::Number(at, n)),
    ]
}

/// A position in `0..=len` (an insertion point).
fn point(index: &Index, len: usize) -> usize {
    index.index(len + 1)
}

/// The stretch `[start, start+len)` of `input`, clipped.
fn stretch(input: &[u8], from: &Index, len: usize) -> Vec<u8> {
    if input.is_empty() {
        return Vec::new();
    }
    let start = from.index(input.len());
    input[start..(start + len).min(input.len())].to_vec()
}

/// Build the input of a case: the chosen seed with the mutations applied,
/// cut to the target's `max_len` after each one.
pub fn mutate(seeds: &[&[u8]], target: &Target, seed: Index, mutations: &[Mutation]) -> Vec<u8> {
    let mut input = if seeds.is_empty() {
        Vec::new()
    } else {
        seed.get(seeds).to_vec()
    };
    for m in mutations {
        apply(&mut input, seeds, target.dictionary, m);
        input.truncate(target.max_len);
    }
    input
}

fn apply(input: &mut Vec<u8>, seeds: &[&[u8]], dictionary: &[&[u8]], m: &Mutation) {
    match m {
        Mutation::FlipBit(at, bit) => {
            if !input.is_empty() {
                let i = at.index(input.len());
                input[i] ^= 1 << (bit & 7);
            }
        }
        Mutation::SetByte(at, b) => {
            if !input.is_empty() {
                let i = at.index(input.len());
                input[i] = *b;
            }
        }
        Mutation::InsertToken(at, token) => {
            if !dictionary.is_empty() {
                let at = point(at, input.len());
                input.splice(at..at, token.get(dictionary).iter().copied());
            }
        }
        Mutation::InsertBytes(at, bytes) => {
            let at = point(at, input.len());
            input.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete(at, n) => {
            if !input.is_empty() {
                let start = at.index(input.len());
                let end = (start + usize::from(*n)).min(input.len());
                input.drain(start..end);
            }
        }
        Mutation::Truncate(at) => {
            let at = at.index(input.len() + 1);
            input.truncate(at);
        }
        Mutation::Duplicate { from, len, to } => {
            let piece = stretch(input, from, usize::from(*len));
            let to = point(to, input.len());
            input.splice(to..to, piece);
        }
        Mutation::Repeat { at, len, times } => {
            let piece = stretch(input, at, usize::from(*len));
            if !piece.is_empty() {
                let start = at.index(input.len());
                let copies = piece.repeat(usize::from(*times));
                input.splice(start..start, copies);
            }
        }
        Mutation::Splice {
            seed,
            from,
            len,
            to,
        } => {
            if !seeds.is_empty() {
                let other: &[u8] = seeds[seed.index(seeds.len())];
                let piece = stretch(other, from, usize::from(*len));
                let to = point(to, input.len());
                input.splice(to..to, piece);
            }
        }
        Mutation::Number(at, number) => {
            let number = number.get(INTERESTING_NUMBERS);
            let start = point(at, input.len());
            match input[start..].iter().position(u8::is_ascii_digit) {
                Some(offset) => {
                    let begin = start + offset;
                    let end = input[begin..]
                        .iter()
                        .position(|b| !b.is_ascii_digit())
                        .map_or(input.len(), |n| begin + n);
                    input.splice(begin..end, number.iter().copied());
                }
                None => {
                    input.splice(start..start, number.iter().copied());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_shows_bytes_as_a_literal() {
        assert_eq!(escape(b"a\"\\\n\x00\xff"), r#"b"a\"\\\n\x00\xff""#);
    }

    #[test]
    fn mutations_apply_to_any_input_without_panicking() {
        fn nothing(_: &[u8]) -> Result<(), String> {
            Ok(())
        }
        let target = Target {
            name: "t",
            check: nothing,
            dictionary: &[b"tok"],
            max_len: 64,
        };
        let mut runner = TestRunner::new_with_rng(
            Config {
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        );
        let seeds: Vec<&[u8]> = vec![b"", b"result 12\n", b"x"];
        let outcome = runner.run(&(any::<Index>(), vec(mutation(), 0..8)), |(seed, ms)| {
            let out = mutate(&seeds, &target, seed, &ms);
            prop_assert!(out.len() <= 64);
            Ok(())
        });
        assert!(outcome.is_ok(), "{outcome:?}");
    }
}

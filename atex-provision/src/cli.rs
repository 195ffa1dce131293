//! The `atex-provision` command: reserve machines and print their records,
//! hold them while the caller needs them, release them (now or later, from
//! the records), with signals and exit codes as DESIGN.md says.

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use atex_shared::exit;
use atex_shared::jsonl;
use atex_shared::records::Machine;
use clap::{Args, Parser, Subcommand};
use tokio::sync::oneshot;

use crate::libvirt::{self, Libvirt};
use crate::local::{self, Local};
use crate::podman::{self, Podman};
use crate::pool::{Pool, PoolOptions};
use crate::provisioner::{ProvisionError, Provisioner};
use crate::ssh::{self, Ssh};
use crate::testing_farm::{self, TestingFarm};

/// Reserve test machines, print one Machine record per line, release them.
///
/// `atex-provision KIND [OPTIONS] --count N` reserves N machines and prints
/// each Machine record on stdout the moment it is ready.
///
/// podman and testing-farm machines are then held, and all released when
/// stdin ends (a pipe's last writer closes it: its data is never read; a
/// terminal gets Ctrl-D), on SIGINT/SIGTERM, or when writing a record
/// finds stdout closed. With stdin from /dev/null or a file, only a signal
/// ends holding. With --detach it prints the records and exits, leaving
/// the machines up; `atex-provision release` gives them back later.
/// local and ssh machines have nothing to release: their records are
/// printed and the process exits, never touching stdin (--detach changes
/// nothing). Progress goes to stderr.
///
/// Exit code: 0 all reserved (and released), 3 some reservation failed after
/// its retries (the others were still handed out), 2 bad options or input
/// (e.g. a podman image that does not exist: nothing is started),
/// 130/143 interrupted by SIGINT/SIGTERM (after releasing everything).
///
/// Examples:
///     atex-discover tests --root . \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/
/// Hold 4 containers while my-runner uses them (Ctrl-D or Ctrl-C releases):
///     atex-provision podman --image localhost/sut --count 4 | my-runner
/// Reserve now, release later:
///     atex-provision ssh root@10.0.0.5 root@10.0.0.6:2222 --detach > machines.jsonl
///     atex-provision release < machines.jsonl
#[derive(Debug, Parser)]
#[command(name = "atex-provision", version, verbatim_doc_comment)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The provisioners, and `release`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The controller itself (prints the records and exits: nothing to hold).
    Local {
        /// Options of the local provisioner.
        #[command(flatten)]
        args: local::Args,
        /// Options every provisioner takes.
        #[command(flatten)]
        common: Common,
    },
    /// Existing hosts reached over ssh, each checked reachable
    /// (--count defaults to the number of hosts; prints the records and
    /// exits: nothing to hold).
    Ssh {
        /// Options of the ssh provisioner.
        #[command(flatten)]
        args: ssh::Args,
        /// Options every provisioner takes.
        #[command(flatten)]
        common: Common,
    },
    /// Podman containers on this machine, from an image or a rootfs.
    Podman {
        /// Options of the podman provisioner.
        #[command(flatten)]
        args: podman::Args,
        /// Options every provisioner takes.
        #[command(flatten)]
        common: Common,
    },
    /// Virtual machines on a libvirt hypervisor (this machine's, or another
    /// host's through qemu+ssh://), each a transient domain on a
    /// copy-on-write overlay of the image, reached over ssh.
    Libvirt {
        /// Options of the libvirt provisioner.
        #[command(flatten)]
        args: libvirt::Args,
        /// Options every provisioner takes.
        #[command(flatten)]
        common: Common,
    },
    /// Machines reserved through the Testing Farm API (token from
    /// TESTING_FARM_API_TOKEN or --token-file).
    TestingFarm {
        /// Options of the Testing Farm provisioner.
        #[command(flatten)]
        args: testing_farm::Args,
        /// Options every provisioner takes.
        #[command(flatten)]
        common: Common,
    },
    /// Release machines from their records (stdin, or FILEs), e.g. the
    /// output of an earlier `--detach`. A record says which machine to
    /// give back, never where a secret is read from or sent to: Testing
    /// Farm machines are cancelled at the configured API with the token
    /// of TESTING_FARM_API_TOKEN or --token-file (a record naming another
    /// API is refused), and only containers labelled atex.provisioner=podman
    /// are removed. Exit 0 all released, 2 a record refused, 3 a release
    /// failed.
    Release {
        /// Files of Machine records, one per line; stdin when none.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Where Testing Farm machines are released, with which token.
        #[command(flatten)]
        testing_farm: testing_farm::ReleaseArgs,
    },
}

/// Options every provisioner takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// How many machines to reserve [default: 1].
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<usize>,
    /// Print the records and exit, leaving the machines up (local and ssh
    /// always do).
    #[arg(long)]
    pub detach: bool,
    /// How many times a failed reservation is tried again.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
    /// The fmf context of the machines' platform, `DIM=VALUE[,VALUE...]`
    /// (e.g. `-c distro=fedora-41 -c arch=x86_64`), written into every
    /// Machine record. Repeatable.
    #[arg(short = 'c', long = "context", value_name = "DIM=VAL")]
    pub context: Vec<String>,
}

impl Common {
    /// `provisioner`, its machines given the `-c` context; the error names
    /// an argument without `=`.
    pub fn with_context(
        &self,
        provisioner: Arc<dyn Provisioner>,
    ) -> Result<Arc<dyn Provisioner>, String> {
        let context = atex_shared::records::parse_context(&self.context)
            .map_err(|arg| format!("invalid context '{arg}', use -c DIM=VALUE"))?;
        Ok(crate::WithContext::wrap(provisioner, context))
    }
}

/// A bad option or input: `atex-provision: error: ...`, exit 2.
fn invalid(message: impl std::fmt::Display) -> u8 {
    log(&format!("error: {message}"));
    exit::INVALID
}

/// Print `atex-provision: LINE` on stderr, with the token of
/// TESTING_FARM_API_TOKEN replaced by `***` wherever it shows (the
/// Testing Farm provisioner redacts its own token, from a file too; this
/// covers every other message).
fn log(line: &str) {
    let token = std::env::var(crate::TOKEN_VAR).unwrap_or_default();
    let line = crate::provisioner::redact(line, token.trim());
    eprintln!("atex-provision: {line}");
}

/// How a holding run learns from its stdin that the caller is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StdinEnd {
    /// A pipe or FIFO: its last writer closes (POLLHUP). Seen with poll(2)
    /// asking for no event, so data in the pipe stays for its reader.
    Hangup,
    /// A socket: the peer closes or shuts down its writing side (POLLHUP,
    /// POLLRDHUP), also seen without reading.
    SocketHangup,
    /// A terminal: read until end of file (a person types Ctrl-D); what is
    /// typed meanwhile is consumed.
    Read,
    /// /dev/null, a regular file, anything else, or no stdin at all: it
    /// would end at once, so only a signal ends holding (decision 6).
    Never,
}

impl StdinEnd {
    /// What stdin is.
    fn of_stdin() -> StdinEnd {
        let stdin = io::stdin();
        if rustix::termios::isatty(&stdin) {
            return StdinEnd::Read;
        }
        match rustix::fs::fstat(&stdin).map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode)) {
            Ok(rustix::fs::FileType::Fifo) => StdinEnd::Hangup,
            Ok(rustix::fs::FileType::Socket) => StdinEnd::SocketHangup,
            _ => StdinEnd::Never,
        }
    }
}

/// Block until stdin's writers are gone (POLLHUP/POLLERR, plus `events`),
/// never reading from it.
fn wait_for_hangup(events: rustix::event::PollFlags) -> io::Result<()> {
    let stdin = io::stdin();
    loop {
        let mut fds = [rustix::event::PollFd::new(&stdin, events)];
        match rustix::event::poll(&mut fds, None) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Resolves when a holding run's stdin ends (see [`StdinEnd`]); call it
/// only while holding: no tool reads stdin it does not consume as input,
/// and a pipe's data belongs to whoever reads it next (in
/// `a | b --machine "$(atex-provision local)"`, atex-provision's stdin is
/// `a`'s output).
///
/// The reader of stdout going away is deliberately not a reason to
/// release: a shell hands the records to a consumer that may close its end
/// of the pipe early while it still uses the machines (bash runs the last
/// command of `(read m; a | b)` without the subshell holding the pipe).
/// A write to a closed stdout (EPIPE) still ends the run. The wait is a
/// plain thread: the process exits without joining it, and a tokio
/// blocking task would hold up the runtime's shutdown.
fn stdin_closed() -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let end = StdinEnd::of_stdin();
    if end == StdinEnd::Never {
        // Never resolves: the sender lives forever.
        std::mem::forget(tx);
        return rx;
    }
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            use rustix::event::PollFlags;
            let ended = match end {
                StdinEnd::Hangup => wait_for_hangup(PollFlags::empty()),
                StdinEnd::SocketHangup => wait_for_hangup(PollFlags::RDHUP),
                StdinEnd::Read | StdinEnd::Never => {
                    let mut stdin = io::stdin().lock();
                    // A read error (the terminal hung up) ends it too.
                    while let Ok(buf) = stdin.fill_buf() {
                        let n = buf.len();
                        if n == 0 {
                            break;
                        }
                        stdin.consume(n);
                    }
                    Ok(())
                }
            };
            match ended {
                Ok(()) => {
                    let _ = tx.send(());
                }
                Err(e) => {
                    log(&format!(
                        "warning: cannot watch stdin ({e}); holding until a signal"
                    ));
                    std::mem::forget(tx);
                }
            }
        });
    if let Err(e) = spawned {
        log(&format!(
            "warning: cannot watch stdin ({e}); holding until a signal"
        ));
    }
    rx
}

/// `n thing(s)` in words.
fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        _ => format!("{n} {thing}s"),
    }
}

/// How a run of [`reserve`] ended before every reservation was done.
enum Ended {
    /// SIGINT or SIGTERM.
    Signal(atex_shared::cli::Interrupt),
    /// Stdin ended, or stdout was closed: release, exit 0.
    Released,
    /// A reservation failed on bad input: release what was made, exit 2.
    Invalid,
}

/// Reserve `count` machines from `provisioner`, print them, then hold or
/// detach; returns the exit code. `holds` says whether the provisioner's
/// machines have anything to release: when not (local, ssh hosts), the
/// records are printed and the process exits, never touching stdin, with
/// or without `--detach`.
async fn reserve(
    provisioner: Arc<dyn Provisioner>,
    wanted: usize,
    common: &Common,
    holds: bool,
) -> u8 {
    let provisioner = match common.with_context(provisioner) {
        Ok(provisioner) => provisioner,
        Err(message) => return invalid(message),
    };
    let kind = provisioner.kind().to_owned();
    // Nothing here releases single machines, so more than the provisioner
    // can hold at once would never come: refuse before reserving any.
    let max = provisioner.max_machines();
    if wanted > max {
        return invalid(format!(
            "{kind}: {wanted} machines asked for, but at most {max} can be held at once \
             (--count must not exceed --max or the number of hosts)"
        ));
    }
    let mut pool = Pool::new(
        provisioner,
        PoolOptions {
            retries: common.retries,
            log: Some(Arc::new(log)),
            ..PoolOptions::default()
        },
    );
    let mut out = jsonl::Writer::new(io::stdout());
    let mut signal = std::pin::pin!(atex_shared::cli::interrupted());
    // Only a run that holds watches stdin (and only from here on).
    let hold = holds && !common.detach;
    let mut stdin = match hold {
        true => stdin_closed(),
        false => oneshot::channel().1,
    };
    let (mut ready, mut failed) = (0usize, 0usize);
    log(&format!("{kind}: reserving {}", count(wanted, "machine")));
    pool.provision(wanted);
    let ended: Option<Ended> = loop {
        tokio::select! {
            interrupt = &mut signal => break Some(Ended::Signal(interrupt)),
            _ = &mut stdin, if hold => {
                log("stdin closed: releasing");
                break Some(Ended::Released);
            }
            next = pool.next() => match next {
                None => break None,
                Some(Ok(machine)) => {
                    ready += 1;
                    log(&format!("{}: ready ({ready}/{wanted})", machine.id));
                    if let Err(e) = out.write(&machine) {
                        if !e.is_broken_pipe() {
                            log(&format!("error: {e}"));
                        }
                        log("stdout closed: releasing");
                        break Some(Ended::Released);
                    }
                }
                Some(Err(ProvisionError::Invalid(message))) => {
                    log(&format!("error: {message}"));
                    break Some(Ended::Invalid);
                }
                Some(Err(err)) => {
                    failed += 1;
                    log(&format!("{kind}: reservation failed: {err}"));
                }
            },
        }
    };
    let ended = match ended {
        Some(ended) => ended,
        None if !hold => {
            // Detached, or nothing to release: the machines stay as they
            // are. Dropping the pool releases nothing; it only cancels
            // reservations in flight (none now).
            drop(pool);
            return if failed > 0 {
                exit::INFRA
            } else {
                exit::SUCCESS
            };
        }
        // Nothing to hold: none asked for, or every reservation failed.
        None if ready == 0 => {
            return if failed > 0 {
                exit::INFRA
            } else {
                exit::SUCCESS
            };
        }
        None => {
            log(&format!(
                "holding {}; close stdin or send SIGINT/SIGTERM to release",
                count(ready, "machine")
            ));
            tokio::select! {
                interrupt = &mut signal => Ended::Signal(interrupt),
                _ = &mut stdin => {
                    log("stdin closed: releasing");
                    Ended::Released
                }
            }
        }
    };
    // Everything held or still being reserved goes now.
    let held = pool.held().count();
    let in_flight = pool.pending();
    let errors = pool.stop().await;
    let undone = match in_flight {
        0 => String::new(),
        n => format!(", {} in flight undone", count(n, "reservation")),
    };
    let done = match hold {
        true => format!("released {}{undone}", count(held, "machine")),
        // Nothing to give back: the printed records stay valid.
        false => format!("{} printed{undone}", count(ready, "machine")),
    };
    match ended {
        Ended::Signal(interrupt) => {
            log(&format!("interrupted ({}): {done}", interrupt.name()));
            interrupt.exit_code()
        }
        Ended::Invalid => {
            log(&format!("{kind}: {done}"));
            exit::INVALID
        }
        Ended::Released => {
            log(&format!("{kind}: {done}"));
            if failed > 0 || !errors.is_empty() {
                exit::INFRA
            } else {
                exit::SUCCESS
            }
        }
    }
}

/// Read the Machine records of `files` (stdin when none), all of them or
/// the first error.
fn read_records(files: &[PathBuf]) -> Result<Vec<Machine>, String> {
    let mut machines: Vec<Machine> = Vec::new();
    let mut read = |input: Box<dyn BufRead>, name: String| -> Result<(), String> {
        for record in jsonl::Reader::new(input, name) {
            machines.push(record.map_err(|e| e.to_string())?);
        }
        Ok(())
    };
    if files.is_empty() {
        read(Box::new(io::stdin().lock()), "<stdin>".to_owned())?;
    } else {
        files.iter().try_for_each(|path| {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("{}: failed to open: {e}", path.display()))?;
            read(
                Box::new(io::BufReader::new(file)),
                path.display().to_string(),
            )
        })?;
    }
    Ok(machines)
}

/// Check a record before anything is released: what can be refused
/// without asking anybody (a foreign Testing Farm API, no token, a
/// release field that is not the provisioner's).
fn check_record(machine: &Machine, tf: &testing_farm::ReleaseArgs) -> Result<(), ProvisionError> {
    match machine.provisioner.as_str() {
        "podman" => podman::check_release(machine),
        "libvirt" => libvirt::check_release(machine),
        "testing-farm" => testing_farm::check_release(machine, tf),
        _ => Ok(()),
    }
}

/// Read and check every Machine record first (a bad line or a refused
/// record releases nothing), then release them all concurrently.
async fn release(files: &[PathBuf], tf: &testing_farm::ReleaseArgs) -> u8 {
    let mut signal = std::pin::pin!(atex_shared::cli::interrupted());
    // The records are read on a plain thread, so that a signal while they
    // are still coming (a slow pipe) is answered; the process exits
    // without joining it.
    let (tx, rx) = oneshot::channel();
    let files_owned = files.to_vec();
    let spawned = std::thread::Builder::new()
        .name("read-records".into())
        .spawn(move || {
            let _ = tx.send(read_records(&files_owned));
        });
    if let Err(e) = spawned {
        log(&format!("error: cannot start reading the records: {e}"));
        return exit::INFRA;
    }
    let outcome = tokio::select! {
        interrupt = &mut signal => {
            log(&format!(
                "interrupted ({}): released nothing (the records were still being read)",
                interrupt.name()
            ));
            return interrupt.exit_code();
        }
        outcome = rx => outcome.unwrap_or_else(|_| Err("reading the records failed".to_owned())),
    };
    let machines = match outcome {
        Ok(machines) => machines,
        Err(message) => return invalid(message),
    };
    if let Some(machine) = machines.iter().find(|m| !is_known_kind(&m.provisioner)) {
        return invalid(format!(
            "{}: unknown provisioner '{}' (known: {})",
            machine.id,
            machine.provisioner,
            KINDS.join(", ")
        ));
    }
    for machine in &machines {
        if let Err(err) = check_record(machine, tf) {
            return invalid(format!("{err} (nothing was released)"));
        }
    }
    let total = machines.len();
    let mut tasks = tokio::task::JoinSet::new();
    for machine in machines {
        let tf = tf.clone();
        tasks.spawn(async move {
            let result = release_record(&machine, &tf).await;
            (machine.id, result)
        });
    }
    // A first signal lets the releases already under way finish (they
    // are bounded, and a podman killed half-way leaves processes behind);
    // a second one stops waiting. (`signal` is still the one that
    // watched the reading: its handlers stay in place.)
    let mut interrupt = None;
    let mut code = exit::SUCCESS;
    let mut released = 0usize;
    loop {
        let joined = tokio::select! {
            joined = tasks.join_next() => joined,
            again = &mut signal => {
                if interrupt.is_some() {
                    tasks.abort_all();
                    log(&format!(
                        "interrupted ({}) twice: released {released} of {}; release the \
                         others again from their records",
                        again.name(),
                        count(total, "machine")
                    ));
                    return again.exit_code();
                }
                interrupt = Some(again);
                signal.set(atex_shared::cli::interrupted());
                continue;
            }
        };
        let Some(joined) = joined else { break };
        match joined {
            Ok((id, Ok(()))) => {
                released += 1;
                log(&format!("{id}: released"));
            }
            // A record refused (a container that is not atex's): bad
            // input, and it decides the exit code over a failed release.
            Ok((id, Err(ProvisionError::Invalid(message)))) => {
                log(&format!("error: {id}: refused: {message}"));
                code = exit::INVALID;
            }
            Ok((id, Err(err))) => {
                log(&format!("{id}: release failed: {err}"));
                if code == exit::SUCCESS {
                    code = exit::INFRA;
                }
            }
            Err(join) => {
                log(&format!("release task failed: {join}"));
                if code == exit::SUCCESS {
                    code = exit::INFRA;
                }
            }
        }
    }
    match interrupt {
        Some(interrupt) => {
            log(&format!(
                "interrupted ({}): released {released} of {} (those under way were finished)",
                interrupt.name(),
                count(total, "machine")
            ));
            interrupt.exit_code()
        }
        None => code,
    }
}

/// The provisioner kinds `release` knows.
const KINDS: &[&str] = &["local", "ssh", "podman", "testing-farm"];

fn is_known_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Release one machine from its record (Testing Farm ones where `tf`
/// says).
async fn release_record(
    machine: &Machine,
    tf: &testing_farm::ReleaseArgs,
) -> Result<(), ProvisionError> {
    match machine.provisioner.as_str() {
        "local" => Ok(()),
        "ssh" => ssh::release_record(machine).await,
        "podman" => podman::release_record(machine).await,
        "libvirt" => libvirt::release_record(machine).await,
        "testing-farm" => testing_farm::release_record(machine, tf).await,
        other => Err(ProvisionError::Invalid(format!(
            "unknown provisioner '{other}'"
        ))),
    }
}

/// Reserve from `provisioner`, which holds its machines, once its checks
/// passed (`checked`): a check that refused its input is exit 2, one that
/// could not ask is exit 3; nothing is reserved then.
async fn reserve_checked(
    provisioner: impl Provisioner,
    checked: Result<(), ProvisionError>,
    common: &Common,
) -> u8 {
    match checked {
        Ok(()) => {
            let count = common.count.unwrap_or(1);
            reserve(Arc::new(provisioner), count, common, true).await
        }
        Err(ProvisionError::Invalid(message)) => invalid(message),
        Err(e) => {
            log(&format!("error: {}: {e}", provisioner.kind()));
            exit::INFRA
        }
    }
}

/// Run a parsed command line; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log(&format!("error: failed to start the async runtime: {e}"));
            return exit::INFRA;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Local { args, common } => {
                let count = common.count.unwrap_or(1);
                reserve(Arc::new(Local::new(&args)), count, &common, false).await
            }
            // Existing hosts: nothing to give back, so nothing is held.
            Command::Ssh { args, common } => match Ssh::new(&args) {
                Ok(provisioner) => {
                    let count = common.count.unwrap_or(provisioner.host_count());
                    reserve(Arc::new(provisioner), count, &common, false).await
                }
                Err(e) => invalid(e),
            },
            Command::Podman { args, common } => match Podman::new(&args) {
                Ok(provisioner) => {
                    let checked = provisioner.check().await;
                    reserve_checked(provisioner, checked, &common).await
                }
                Err(e) => invalid(e),
            },
            Command::Libvirt { args, common } => match Libvirt::new(&args) {
                Ok(provisioner) => {
                    let checked = provisioner.check().await;
                    reserve_checked(provisioner, checked, &common).await
                }
                Err(e) => invalid(e),
            },
            Command::TestingFarm { args, common } => match TestingFarm::new(&args) {
                Ok(provisioner) => {
                    let count = common.count.unwrap_or(1);
                    let provisioner = provisioner.with_log(Arc::new(log));
                    reserve(Arc::new(provisioner), count, &common, true).await
                }
                Err(e) => invalid(e),
            },
            Command::Release {
                files,
                testing_farm,
            } => release(&files, &testing_farm).await,
        }
    })
}

/// The process entry point.
pub fn main() -> ExitCode {
    match atex_shared::cli::parse() {
        Ok(cli) => ExitCode::from(run(cli)),
        Err(code) => ExitCode::from(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_has_examples_and_counts_parse() {
        let err = Cli::try_parse_from(["atex-provision", "--help"]).expect_err("help");
        assert!(
            err.to_string()
                .contains("atex-provision release < machines.jsonl")
        );
        let cli = Cli::try_parse_from(["atex-provision", "local", "--count", "3", "--detach"])
            .expect("arguments");
        let Command::Local { common, .. } = cli.command else {
            panic!("not local: {cli:?}")
        };
        assert_eq!(common.count, Some(3));
        assert!(common.detach);
    }

    #[test]
    fn unknown_kinds_are_refused_before_anything_is_released() {
        assert!(is_known_kind("local"));
        assert!(!is_known_kind("cloud"));
    }
}

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

use crate::local::{self, Local};
use crate::pool::{Pool, PoolOptions};
use crate::provisioner::{ProvisionError, Provisioner};

/// Reserve test machines, print one Machine record per line, release them.
///
/// `atex-provision KIND [OPTIONS] --count N` reserves N machines and prints
/// each Machine record on stdout the moment it is ready. It then holds them
/// while its stdin stays open and its stdout has a reader, and releases them
/// all when stdin reaches its end, the reader of stdout goes away, or on
/// SIGINT/SIGTERM. With --detach it prints the records and exits, leaving
/// the machines up; `atex-provision release` gives them back later. Progress
/// goes to stderr.
///
/// Exit code: 0 all reserved (and released), 3 some reservation failed after
/// its retries (the others were still handed out), 2 bad options or input,
/// 130/143 interrupted by SIGINT/SIGTERM (after releasing everything).
///
/// Examples:
///     atex-discover tests --root . \
///       | atex-exec --machine "$(atex-provision local)" --artifacts out/
/// Hold 4 containers for as long as the consumer runs:
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
    /// Release machines from their records (stdin, or FILEs), e.g. the
    /// output of an earlier `--detach`.
    Release {
        /// Files of Machine records, one per line; stdin when none.
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

/// Options every provisioner takes.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// How many machines to reserve [default: 1].
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<usize>,
    /// Print the records and exit, leaving the machines up.
    #[arg(long)]
    pub detach: bool,
    /// How many times a failed reservation is tried again.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub retries: u32,
}

/// A bad option or input: `atex-provision: error: ...`, exit 2.
fn invalid(message: impl std::fmt::Display) -> u8 {
    eprintln!("atex-provision: error: {message}");
    exit::INVALID
}

fn log(line: &str) {
    eprintln!("atex-provision: {line}");
}

/// Resolves at the first SIGINT or SIGTERM with the exit code it means.
async fn signals() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without handlers the default action (death) applies anyway.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => exit::SIGINT,
        _ = term.recv() => exit::SIGTERM,
    }
}

/// Why holding ended without a signal.
#[derive(Debug, Clone, Copy)]
enum Hangup {
    /// stdin reached its end (or failed).
    Stdin,
    /// Nobody reads stdout any more.
    Stdout,
}

/// Resolves when stdin reaches its end or stdout's reader goes away.
///
/// Both are watched by plain threads blocked in `read`/`poll`: the process
/// exits without joining them, and a tokio blocking task would hold up the
/// runtime's shutdown.
fn hangup() -> oneshot::Receiver<Hangup> {
    let (tx, rx) = oneshot::channel();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let send = |tx: &Arc<std::sync::Mutex<Option<oneshot::Sender<Hangup>>>>, why| {
        if let Ok(mut slot) = tx.lock()
            && let Some(tx) = slot.take()
        {
            let _ = tx.send(why);
        }
    };
    let stdin_tx = Arc::clone(&tx);
    let _ = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                match stdin.fill_buf() {
                    Ok([]) | Err(_) => break,
                    Ok(buf) => {
                        let n = buf.len();
                        stdin.consume(n);
                    }
                }
            }
            send(&stdin_tx, Hangup::Stdin);
        });
    let _ = std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(move || {
            if stdout_hung_up() {
                send(&tx, Hangup::Stdout);
            }
        });
    rx
}

/// Block until stdout's reader goes away; false when that cannot be
/// watched (stdout is a file or a terminal: never reported).
fn stdout_hung_up() -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let stdout = io::stdout();
    // No events asked for: poll still reports POLLERR/POLLHUP, which a
    // pipe's write end gets when its last reader closes. Files and
    // terminals never report them, so this blocks forever there.
    let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
    loop {
        match poll(&mut fds, None) {
            Ok(_) => {
                let revents = fds[0].revents();
                if revents.intersects(PollFlags::ERR | PollFlags::HUP) {
                    return true;
                }
                if revents.contains(PollFlags::NVAL) {
                    return false;
                }
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
}

/// Reserve `count` machines from `provisioner`, print them, then hold or
/// detach; returns the exit code.
async fn reserve(
    provisioner: Arc<dyn Provisioner>,
    count: usize,
    common: &Common,
    hold: bool,
) -> u8 {
    let kind = provisioner.kind().to_owned();
    let mut pool = Pool::new(
        provisioner,
        PoolOptions {
            retries: common.retries,
            log: Some(Arc::new(log)),
            ..PoolOptions::default()
        },
    );
    let mut out = jsonl::Writer::new(io::stdout());
    let mut signal = std::pin::pin!(signals());
    // Holding ends on a hangup; a detached run ignores it.
    let mut hangup = hangup();
    let watch_hangup = hold && !common.detach;
    let (mut ready, mut failed) = (0usize, 0usize);
    log(&format!("{kind}: reserving {count} machine(s)"));
    pool.provision(count);
    let ended: Option<u8> = loop {
        tokio::select! {
            code = &mut signal => break Some(code),
            why = &mut hangup, if watch_hangup => {
                log(&format!("{}: releasing", hangup_reason(why.ok())));
                break Some(exit::SUCCESS);
            }
            next = pool.next() => match next {
                None => break None,
                Some(Ok(machine)) => {
                    ready += 1;
                    log(&format!("{}: ready ({ready}/{count})", machine.id));
                    if let Err(e) = out.write(&machine) {
                        if !e.is_broken_pipe() {
                            log(&format!("error: {e}"));
                        }
                        log("stdout closed: releasing");
                        break Some(exit::SUCCESS);
                    }
                }
                Some(Err(err)) => {
                    failed += 1;
                    log(&format!("{kind}: reservation failed: {err}"));
                }
            },
        }
    };
    let code = match ended {
        Some(code) => code,
        None if common.detach || !hold => {
            // Detached: the machines stay up. Dropping the pool releases
            // nothing; it only cancels reservations in flight (none now).
            drop(pool);
            return if failed > 0 {
                exit::INFRA
            } else {
                exit::SUCCESS
            };
        }
        None => {
            log(&format!(
                "holding {ready} machine(s); close stdin or send SIGINT/SIGTERM to release"
            ));
            tokio::select! {
                code = &mut signal => code,
                why = &mut hangup => {
                    log(&format!("{}: releasing", hangup_reason(why.ok())));
                    exit::SUCCESS
                }
            }
        }
    };
    let errors = pool.stop().await;
    log(&format!("{kind}: released"));
    if code != exit::SUCCESS {
        code
    } else if failed > 0 || !errors.is_empty() {
        exit::INFRA
    } else {
        exit::SUCCESS
    }
}

fn hangup_reason(why: Option<Hangup>) -> &'static str {
    match why {
        Some(Hangup::Stdin) | None => "stdin closed",
        Some(Hangup::Stdout) => "stdout closed",
    }
}

/// Read every Machine record first (a bad line releases nothing), then
/// release them all concurrently.
async fn release(files: &[PathBuf]) -> u8 {
    let mut machines: Vec<Machine> = Vec::new();
    let mut read = |input: Box<dyn BufRead>, name: String| -> Result<(), String> {
        for record in jsonl::Reader::new(input, name) {
            machines.push(record.map_err(|e| e.to_string())?);
        }
        Ok(())
    };
    let outcome = if files.is_empty() {
        read(Box::new(io::stdin().lock()), "<stdin>".to_owned())
    } else {
        files.iter().try_for_each(|path| {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("{}: failed to open: {e}", path.display()))?;
            read(
                Box::new(io::BufReader::new(file)),
                path.display().to_string(),
            )
        })
    };
    if let Err(message) = outcome {
        return invalid(message);
    }
    if let Some(machine) = machines.iter().find(|m| !is_known_kind(&m.provisioner)) {
        return invalid(format!(
            "{}: unknown provisioner '{}' (known: {})",
            machine.id,
            machine.provisioner,
            KINDS.join(", ")
        ));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for machine in machines {
        tasks.spawn(async move {
            let result = release_record(&machine).await;
            (machine.id, result)
        });
    }
    let mut code = exit::SUCCESS;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((id, Ok(()))) => log(&format!("{id}: released")),
            Ok((id, Err(err))) => {
                log(&format!("{id}: release failed: {err}"));
                code = exit::INFRA;
            }
            Err(join) => {
                log(&format!("release task failed: {join}"));
                code = exit::INFRA;
            }
        }
    }
    code
}

/// The provisioner kinds `release` knows.
const KINDS: &[&str] = &["local"];

fn is_known_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Release one machine from its record alone.
async fn release_record(machine: &Machine) -> Result<(), ProvisionError> {
    match machine.provisioner.as_str() {
        "local" => Ok(()),
        other => Err(ProvisionError::Invalid(format!(
            "unknown provisioner '{other}'"
        ))),
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
            eprintln!("atex-provision: error: failed to start the async runtime: {e}");
            return exit::INFRA;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Local { args, common } => {
                let count = common.count.unwrap_or(1);
                reserve(Arc::new(Local::new(&args)), count, &common, false).await
            }
            Command::Release { files } => release(&files).await,
        }
    })
}

/// The process entry point.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version print on stdout and exit 0; usage
            // errors exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::INVALID } else { 0 });
        }
    };
    ExitCode::from(run(cli))
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

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
use crate::podman::{self, Podman};
use crate::pool::{Pool, PoolOptions};
use crate::provisioner::{ProvisionError, Provisioner};
use crate::ssh::{self, Ssh};
use crate::testing_farm::{self, TestingFarm};

/// Reserve test machines, print one Machine record per line, release them.
///
/// `atex-provision KIND [OPTIONS] --count N` reserves N machines and prints
/// each Machine record on stdout the moment it is ready. It then holds them
/// while its stdin (a pipe or a terminal) stays open, and releases them all
/// when stdin reaches its end, on SIGINT/SIGTERM, or when writing a record
/// finds stdout closed. With stdin from /dev/null or a file, only a signal
/// ends holding. With --detach it prints the records and exits, leaving
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
    /// Existing hosts reached over ssh, each checked reachable
    /// (--count defaults to the number of hosts).
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

/// Resolves when stdin reaches its end. Stdin counts only when it is a
/// pipe or a terminal: `</dev/null` (CI) or a file would end at once, so
/// then only a signal ends holding.
///
/// The reader of stdout going away is deliberately not a reason to
/// release: a shell hands the records to a consumer that may close its end
/// of the pipe early while it still uses the machines (bash runs the last
/// command of `(read m; a | b)` without the subshell holding the pipe).
/// A write to a closed stdout (EPIPE) still ends the run. stdin is read by
/// a plain thread: the process exits without joining it, and a tokio
/// blocking task would hold up the runtime's shutdown.
fn stdin_closed() -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let stdin = io::stdin();
    let holds = rustix::termios::isatty(&stdin)
        || rustix::fs::fstat(&stdin)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_fifo());
    if !holds {
        // Never resolves: the sender lives forever.
        std::mem::forget(tx);
        return rx;
    }
    let spawned = std::thread::Builder::new()
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
            let _ = tx.send(());
        });
    if let Err(e) = spawned {
        log(&format!(
            "warning: cannot watch stdin ({e}); holding until a signal"
        ));
    }
    rx
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
    // Nothing here releases single machines, so more than the provisioner
    // can hold at once would never come: refuse before reserving any.
    let max = provisioner.max_machines();
    if count > max {
        return invalid(format!(
            "{kind}: {count} machines asked for, but at most {max} can be held at once \
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
    let mut signal = std::pin::pin!(async { atex_shared::cli::interrupted().await.exit_code() });
    // Holding ends when stdin closes; a detached run ignores it.
    let mut stdin = stdin_closed();
    let watch_stdin = hold && !common.detach;
    let (mut ready, mut failed) = (0usize, 0usize);
    log(&format!("{kind}: reserving {count} machine(s)"));
    pool.provision(count);
    let ended: Option<u8> = loop {
        tokio::select! {
            code = &mut signal => break Some(code),
            _ = &mut stdin, if watch_stdin => {
                log("stdin closed: releasing");
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
        // Nothing to hold: every reservation failed.
        None if ready == 0 => exit::SUCCESS,
        None => {
            log(&format!(
                "holding {ready} machine(s); close stdin or send SIGINT/SIGTERM to release"
            ));
            tokio::select! {
                code = &mut signal => code,
                _ = &mut stdin => {
                    log("stdin closed: releasing");
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
const KINDS: &[&str] = &["local", "ssh", "podman", "testing-farm"];

fn is_known_kind(kind: &str) -> bool {
    KINDS.contains(&kind)
}

/// Release one machine from its record alone.
async fn release_record(machine: &Machine) -> Result<(), ProvisionError> {
    match machine.provisioner.as_str() {
        "local" => Ok(()),
        "ssh" => ssh::release_record(machine).await,
        "podman" => podman::release_record(machine).await,
        "testing-farm" => testing_farm::release_record(machine).await,
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
            Command::Ssh { args, common } => match Ssh::new(&args) {
                Ok(provisioner) => {
                    let count = common.count.unwrap_or(provisioner.host_count());
                    reserve(Arc::new(provisioner), count, &common, true).await
                }
                Err(e) => invalid(e),
            },
            Command::Podman { args, common } => match Podman::new(&args) {
                Ok(provisioner) => {
                    let count = common.count.unwrap_or(1);
                    reserve(Arc::new(provisioner), count, &common, true).await
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
            Command::Release { files } => release(&files).await,
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

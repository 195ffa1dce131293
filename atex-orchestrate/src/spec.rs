//! `--provision SPEC`: an `atex-provision` command line without the
//! program name, split into words as a shell would and parsed by
//! atex-provision's own clap definitions (one grammar for both tools).

use std::sync::Arc;

use atex_provision::cli::Command;
use atex_provision::libvirt::Libvirt;
use atex_provision::local::Local;
use atex_provision::podman::Podman;
use atex_provision::ssh::Ssh;
use atex_provision::testing_farm::TestingFarm;
use atex_provision::{ProvisionError, Provisioner};
use clap::Parser;

/// The embedded default when no `--provision` is given: this machine, once.
pub const DEFAULT_SPEC: &str = "local";

/// A bad `--provision SPEC`: nothing is provisioned (exit 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// The quoting is broken (an unclosed quote, a trailing backslash).
    #[error("--provision {0:?}: unbalanced quotes")]
    Quoting(String),
    /// atex-provision's grammar refused it (clap's message).
    #[error("--provision {spec:?}: {message}")]
    Grammar {
        /// The spec as given.
        spec: String,
        /// Why, first line of clap's message.
        message: String,
    },
    /// The provisioner refused its options.
    #[error("--provision {spec:?}: {source}")]
    Provisioner {
        /// The spec as given.
        spec: String,
        /// Why.
        #[source]
        source: ProvisionError,
    },
}

/// One parsed `--provision SPEC`.
#[derive(Clone)]
pub struct Spec {
    /// The spec as given, for messages.
    pub text: String,
    /// The provisioner it makes.
    pub provisioner: Arc<dyn Provisioner>,
    /// The most machines of this spec at once.
    pub max: usize,
    /// How many times a failed reservation is tried again.
    pub retries: u32,
    /// Its `--platform`, when given.
    pub platform: Option<String>,
    /// Its `-c DIM=VALUE` arguments, as given: the fmf context of its
    /// machines' platform.
    pub context: Vec<String>,
    /// The platform group it serves (an index into the run's test lists,
    /// see [`run::run_platforms`](crate::run::run_platforms)); 0 when the
    /// run has one.
    pub group: usize,
    /// What is checked before the run starts.
    check: Option<Check>,
}

/// A provisioner's checks before anything is provisioned.
#[derive(Clone)]
enum Check {
    /// The image or rootfs exists.
    Podman(Arc<Podman>),
    /// The hypervisor answers, the image exists, the accelerator.
    Libvirt(Arc<Libvirt>),
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("text", &self.text)
            .field("max", &self.max)
            .field("retries", &self.retries)
            .finish()
    }
}

/// atex-provision's subcommands, without a program name.
#[derive(Debug, Parser)]
#[command(name = "--provision", no_binary_name = true)]
struct SpecCli {
    #[command(subcommand)]
    command: Command,
}

impl Spec {
    /// A spec of a provisioner of one's own (a library user's): at most
    /// `max` machines of it at once, failed reservations tried twice more,
    /// named by the provisioner's kind in messages.
    pub fn new(provisioner: Arc<dyn Provisioner>, max: usize) -> Spec {
        Spec {
            text: provisioner.kind().to_owned(),
            provisioner,
            max,
            retries: 2,
            platform: None,
            context: Vec::new(),
            group: 0,
            check: None,
        }
    }

    /// Parse `text`. The most machines at once is `--max` (podman,
    /// testing-farm), the number of hosts (ssh), or for `local` `--count`
    /// or `--max N`: atex-provision's `local` has no `--max` (it holds
    /// nothing), so `--max N` is taken out here before its grammar sees
    /// the rest. `--count` caps any kind further.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let mut words = shlex::split(text).ok_or_else(|| SpecError::Quoting(text.to_owned()))?;
        let mut local_max = None;
        if words.first().map(String::as_str) == Some("local") {
            local_max = take_max(&mut words).map_err(|message| SpecError::Grammar {
                spec: text.to_owned(),
                message,
            })?;
        }
        let cli = SpecCli::try_parse_from(&words).map_err(|e| SpecError::Grammar {
            spec: text.to_owned(),
            message: clap_message(&e),
        })?;
        let refused = |source| SpecError::Provisioner {
            spec: text.to_owned(),
            source,
        };
        let mut platform = None;
        let (provisioner, max, common, check): (Arc<dyn Provisioner>, usize, _, _) =
            match cli.command {
                Command::Local { args, common } => {
                    let max = local_max.or(common.count).unwrap_or(1);
                    platform.clone_from(&args.platform);
                    (Arc::new(Local::new(&args)), max, common, None)
                }
                Command::Ssh { args, common } => {
                    // The session's connection is the first check of
                    // each host (decision 27).
                    platform.clone_from(&args.platform);
                    let ssh = Ssh::new(&args).map_err(refused)?.unchecked_first_use();
                    let max = ssh.host_count();
                    (Arc::new(ssh), max, common, None)
                }
                Command::Podman { args, common } => {
                    platform.clone_from(&args.platform);
                    let podman = Arc::new(Podman::new(&args).map_err(refused)?);
                    (
                        podman.clone(),
                        args.max,
                        common,
                        Some(Check::Podman(podman)),
                    )
                }
                Command::Libvirt { args, common } => {
                    platform.clone_from(&args.platform);
                    let libvirt = Arc::new(Libvirt::new(&args).map_err(refused)?);
                    (
                        libvirt.clone(),
                        args.max,
                        common,
                        Some(Check::Libvirt(libvirt)),
                    )
                }
                Command::TestingFarm { args, common } => {
                    platform.clone_from(&args.platform);
                    let tf = TestingFarm::new(&args).map_err(refused)?;
                    (Arc::new(tf), args.max, common, None)
                }
                Command::Release { .. } => {
                    return Err(SpecError::Grammar {
                        spec: text.to_owned(),
                        message: "`release` is not a provisioner".to_owned(),
                    });
                }
            };
        let max = common.count.map_or(max, |count| count.min(max));
        if max == 0 {
            return Err(SpecError::Grammar {
                spec: text.to_owned(),
                message: "at most 0 machines: nothing could run".to_owned(),
            });
        }
        // `-c DIM=VALUE`: the machines' fmf context, in their records.
        let provisioner =
            common
                .with_context(provisioner)
                .map_err(|message| SpecError::Grammar {
                    spec: text.to_owned(),
                    message,
                })?;
        Ok(Spec {
            text: text.to_owned(),
            provisioner,
            max,
            retries: common.retries,
            platform,
            context: common.context,
            group: 0,
            check,
        })
    }

    /// Checks a provisioner can make before any machine is asked for (a
    /// podman image that does not exist); an `Invalid` error is bad input.
    pub async fn check(&self) -> Result<(), ProvisionError> {
        match &self.check {
            Some(Check::Podman(podman)) => podman.check().await,
            Some(Check::Libvirt(libvirt)) => libvirt.check().await,
            None => Ok(()),
        }
    }
}

/// Take `--max N` / `--max=N` out of `words`.
fn take_max(words: &mut Vec<String>) -> Result<Option<usize>, String> {
    let Some(at) = words
        .iter()
        .position(|w| w == "--max" || w.starts_with("--max="))
    else {
        return Ok(None);
    };
    let word = words.remove(at);
    let value = match word.strip_prefix("--max=") {
        Some(value) => value.to_owned(),
        None if at < words.len() => words.remove(at),
        None => return Err("--max needs a value".to_owned()),
    };
    value
        .parse()
        .map(Some)
        .map_err(|_| format!("--max {value:?}: a number is expected"))
}

/// The first line of clap's message, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn kinds_and_maxima() {
        assert_eq!(Spec::parse("local").unwrap().max, 1);
        assert_eq!(Spec::parse("local --max 3").unwrap().max, 3);
        assert_eq!(Spec::parse("local --max=2 --platform x").unwrap().max, 2);
        assert_eq!(Spec::parse("local --count 4").unwrap().max, 4);
        let ssh = Spec::parse("ssh 'root@10.0.0.5' root@10.0.0.6:2222").unwrap();
        assert_eq!(ssh.max, 2);
        let podman = Spec::parse("podman --image localhost/x --max 5").unwrap();
        assert_eq!(podman.max, 5);
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "nope",
            "local 'x",
            "local --max",
            "local --max x",
            "local --bogus",
            "release",
            "local --max 0",
            "local -c distro",
        ] {
            assert!(Spec::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    /// `-c DIM=VALUE` in a SPEC puts the context into every machine's
    /// record.
    #[test]
    fn a_spec_context_reaches_the_machines() {
        let spec = Spec::parse("local -c distro=fedora-41 -c arch=x86_64,aarch64").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let machine = runtime
            .block_on(spec.provisioner.reserve(Default::default()))
            .unwrap();
        assert_eq!(machine.context["distro"], ["fedora-41"]);
        assert_eq!(machine.context["arch"], ["x86_64", "aarch64"]);
        runtime.block_on(spec.provisioner.release(machine)).unwrap();
    }
}

//! The `testing-farm` provisioner: machines reserved through the Testing
//! Farm REST API, the way ATEX's `TestingFarmProvisioner` reserves them.
//!
//! One reservation is one Testing Farm request running the
//! `/testing-farm/reserve` test with our public key in its secrets:
//!
//! 1. `POST /v0.1/requests` (compose, arch, pool, hardware, timeout);
//! 2. wait until the request runs and its `pipeline.log` artifact exists
//!    (`404`/`403` mean "not yet"), then read the log with `Range` requests
//!    until `Guest is ready: ArtemisGuest(..., USER@HOST, arch=...)` and
//!    `starting tests execution` appear;
//! 3. retry ssh with our key until it works (the reserve test installs the
//!    key only once it runs).
//!
//! Release cancels the request (`DELETE`) and removes a generated key. Every
//! API call is retried with exponential backoff on 408/429/5xx and transport
//! errors (ATEX: 130 tries, 2 s factor, 120 s cap; `--api-retries`,
//! `--api-backoff`).
//!
//! The token comes from `TESTING_FARM_API_TOKEN` or `--token-file`; it is
//! sent only in the `Authorization` header, and only to the API URL the
//! user configured (`--api-url`, `TESTING_FARM_API_URL` or the public
//! service): never logged (every message and error has it replaced by
//! `***`, since a service may echo it), never in a child's environment or
//! command line, never in the Machine record. A record says which request
//! to cancel, never where a secret is read from nor where it is sent:
//! [`release_record`] takes the API URL, the token file and the CA file
//! from its [`ReleaseArgs`] and refuses a record naming another API.
//!
//! Deviations from ATEX 1.x (for docs/deviations.md):
//! - the guest line may carry `HOST:PORT` (the real service never writes a
//!   port and means 22; the local test server needs it for its sshd);
//! - the wait for the machine is bounded (`--ready-timeout`, by default the
//!   request's `--timeout`); on timeout or cancellation the request is
//!   cancelled, never left running;
//! - a generated key is ed25519 (ATEX: RSA) and lives in a directory that
//!   stays until release (machines outlive `atex-provision --detach`);
//! - ssh options are `IdentitiesOnly=yes`, `Compression=yes` on top of the
//!   connection defaults (ATEX also set `ConnectionAttempts=1000`);
//! - there is no public-IP guessing through ifconfig.me: on the `public`
//!   ranch the ingress rule's CIDR must be given with `--source-cidr`;
//! - `os_cleaning`, `kickstart`, `variables`, `secrets` and `artifacts` of
//!   ATEX's `Reserve` are not offered yet.

mod api;
mod reserve;

use std::path::PathBuf;
use std::time::Duration;

use atex_shared::records::Machine;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::pool::Log;
use crate::provisioner::{BoxFuture, CancellationToken, ProvisionError, Provisioner};
use api::{Api, Backoff, Token};
use reserve::{SpecInput, Waits};

/// The public Testing Farm API.
pub const DEFAULT_API_URL: &str = "https://api.testing-farm.io";

/// The most machines one provisioner holds (ATEX's `absolute_max_remotes`).
pub const ABSOLUTE_MAX: usize = 50;

/// The provisioner's name in Machine records.
pub const KIND: &str = "testing-farm";

/// Options of `atex-provision testing-farm`.
///
/// Build it from the command line (clap) or, in a program, with
/// [`Args::new`] and plain field updates.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The compose to install, e.g. `Fedora-41` or `CentOS-Stream-9`.
    #[arg(long, value_name = "COMPOSE")]
    pub compose: String,

    /// The machine's architecture.
    #[arg(long, default_value = "x86_64", value_name = "ARCH")]
    pub arch: String,

    /// Minutes the request may live: queueing, provisioning and the whole
    /// reservation (Testing Farm's pipeline timeout).
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    pub timeout: u32,

    /// The Testing Farm pool (infrastructure) to reserve from.
    #[arg(long, value_name = "POOL")]
    pub pool: Option<String>,

    /// Hardware requirements: a JSON object, or `@FILE` holding one.
    #[arg(long, value_name = "JSON|@FILE")]
    pub hardware: Option<String>,

    /// A file holding the API token (default: the environment variable
    /// TESTING_FARM_API_TOKEN). The token is never printed nor recorded.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// The API's base URL (default: TESTING_FARM_API_URL, else
    /// the public service at api.testing-farm.io).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,

    /// The private ssh key the machines authorize (default: a new ed25519
    /// key per machine, removed on release).
    #[arg(long, value_name = "PATH")]
    pub ssh_key: Option<PathBuf>,

    /// How many machines may be held or reserved at once (at most 50).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max: usize,

    /// The platform results are reported for (default: COMPOSE@ARCH).
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,

    /// A provisioning tag for the machine, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Ask Testing Farm to skip its guest setup.
    #[arg(long)]
    pub skip_guest_setup: bool,

    /// On the `public` ranch, the address range allowed to reach the
    /// machines (e.g. `203.0.113.7/32`); required there.
    #[arg(long, value_name = "CIDR")]
    pub source_cidr: Option<String>,

    /// A PEM file of CA certificates to trust for https instead of the
    /// bundled Mozilla roots (e.g. the system bundle, for a company CA).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,

    /// Seconds between two looks at a request and its pipeline log.
    #[arg(long, default_value = "30", value_parser = parse_seconds, value_name = "SECONDS")]
    pub poll_interval: Duration,

    /// Seconds to wait for a machine to answer ssh after its request was
    /// made (default: the --timeout); then the request is cancelled.
    #[arg(long, value_parser = parse_seconds, value_name = "SECONDS")]
    pub ready_timeout: Option<Duration>,

    /// Seconds over which a batch of reservations is spread, so that the
    /// service does not get them all at once.
    #[arg(long, default_value = "30", value_parser = parse_seconds, value_name = "SECONDS")]
    pub stagger: Duration,

    /// How many times an API call is tried again on 408/429/5xx or a
    /// network error.
    #[arg(long, default_value_t = 130, value_name = "N")]
    pub api_retries: u32,

    /// Seconds before the first API retry; doubling, at most 120 s.
    #[arg(long, default_value = "2", value_parser = parse_seconds, value_name = "SECONDS")]
    pub api_backoff: Duration,
}

impl Args {
    /// The command-line defaults for `compose`.
    ///
    /// ```
    /// let mut args = atex_provision::testing_farm::Args::new("Fedora-41");
    /// args.max = 10;
    /// assert_eq!(args.arch, "x86_64");
    /// assert_eq!(args.timeout, 60);
    /// ```
    pub fn new(compose: impl Into<String>) -> Args {
        Args {
            compose: compose.into(),
            arch: "x86_64".into(),
            timeout: 60,
            pool: None,
            hardware: None,
            token_file: None,
            api_url: None,
            ssh_key: None,
            max: 3,
            platform: None,
            tags: Vec::new(),
            skip_guest_setup: false,
            source_cidr: None,
            ca_file: None,
            poll_interval: Duration::from_secs(30),
            ready_timeout: None,
            stagger: Duration::from_secs(30),
            api_retries: 130,
            api_backoff: Duration::from_secs(2),
        }
    }
}

/// A non-negative number of seconds, fractions allowed.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{text:?} is not a valid duration"))
}

/// Machines from Testing Farm; see the module documentation.
///
/// ```no_run
/// # async fn demo() -> Result<(), atex_provision::ProvisionError> {
/// use std::sync::Arc;
/// use atex_provision::testing_farm::{Args, TestingFarm};
/// use atex_provision::{Pool, PoolOptions};
///
/// // TESTING_FARM_API_TOKEN must be set.
/// let tf = TestingFarm::new(&Args::new("Fedora-41"))?;
/// let mut pool = Pool::new(Arc::new(tf), PoolOptions::default());
/// pool.provision(2);
/// while let Some(machine) = pool.next().await {
///     println!("{}", serde_json::to_string(&machine?).unwrap());
/// }
/// pool.stop().await; // cancels every request
/// # Ok(()) }
/// ```
pub struct TestingFarm {
    args: Args,
    api: Api,
    platform: String,
    hardware: Option<Value>,
    tags: Vec<(String, String)>,
    /// `GET /whoami`, asked once (for the ranch).
    whoami: OnceCell<Value>,
    log: Option<Log>,
}

impl std::fmt::Debug for TestingFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestingFarm")
            .field("api", &self.api.base())
            .field("platform", &self.platform)
            .field("max", &self.max_machines())
            .finish_non_exhaustive()
    }
}

impl TestingFarm {
    /// Check `args` and read the token; nothing is contacted yet. Bad
    /// options or a missing token are [`ProvisionError::Invalid`].
    pub fn new(args: &Args) -> Result<TestingFarm, ProvisionError> {
        if args.compose.trim().is_empty() {
            return Err(ProvisionError::Invalid(
                "--compose must not be empty".into(),
            ));
        }
        if args.max == 0 {
            return Err(ProvisionError::Invalid("--max must be at least 1".into()));
        }
        if args.timeout == 0 {
            return Err(ProvisionError::Invalid(
                "--timeout must be at least 1 minute".into(),
            ));
        }
        if args.poll_interval.is_zero() {
            return Err(ProvisionError::Invalid(
                "--poll-interval must be above 0".into(),
            ));
        }
        let hardware = args.hardware.as_deref().map(parse_hardware).transpose()?;
        let tags = args
            .tags
            .iter()
            .map(|t| match t.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
                _ => Err(ProvisionError::Invalid(format!(
                    "--tag {t:?} is not KEY=VALUE"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let url = api_url(args.api_url.as_deref())?;
        let token = Token::load(args.token_file.as_ref())?;
        let ca_file = args.ca_file.as_ref().map(absolute).transpose()?;
        let api = Api::new(&url, token, backoff(args), ca_file.as_deref())?;
        let mut args = args.clone();
        // The record names the CA file (for a hint at release), which may
        // run in another directory.
        args.ca_file = ca_file;
        Ok(TestingFarm {
            platform: args
                .platform
                .clone()
                .unwrap_or_else(|| format!("{}@{}", args.compose, args.arch)),
            api,
            hardware,
            tags,
            whoami: OnceCell::new(),
            log: None,
            args,
        })
    }

    /// Send progress lines (request created, state, guest) to `log`.
    pub fn with_log(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Log `line`, without the token (states and summaries are the
    /// service's words).
    fn log(&self, line: &str) {
        if let Some(log) = &self.log {
            log(&self.api.redact(line));
        }
    }

    async fn ingress_cidr(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<String>, ProvisionError> {
        let whoami = self
            .whoami
            .get_or_try_init(|| self.api.whoami(cancel))
            .await?;
        let ranch = whoami.pointer("/token/ranch").and_then(Value::as_str);
        if ranch != Some("public") {
            return Ok(None);
        }
        match &self.args.source_cidr {
            Some(cidr) => Ok(Some(cidr.clone())),
            None => Err(ProvisionError::Invalid(
                "the public ranch firewalls machines: pass --source-cidr with the address range \
                 that ssh comes from"
                    .into(),
            )),
        }
    }

    async fn reserve_one(&self, cancel: CancellationToken) -> Result<Machine, ProvisionError> {
        let ingress = self.ingress_cidr(&cancel).await?;
        let key = match &self.args.ssh_key {
            Some(path) => reserve::user_key(path).await?,
            None => reserve::generate_key().await?,
        };
        let drop_key = |key: &reserve::Key| {
            if let Some(dir) = &key.dir {
                reserve::remove_key_dir(dir);
            }
        };
        let spec = reserve::authorized_keys_b64(&key.public).map(|b64| {
            reserve::request_spec(&SpecInput {
                compose: &self.args.compose,
                arch: &self.args.arch,
                pool: self.args.pool.as_deref(),
                hardware: self.hardware.as_ref(),
                timeout_minutes: self.args.timeout,
                skip_guest_setup: self.args.skip_guest_setup,
                tags: &self.tags,
                ingress_cidr: ingress.as_deref(),
                authorized_keys_b64: &b64,
            })
        });
        let created = match spec {
            Ok(spec) => self.api.create_request(&spec, &cancel).await,
            Err(e) => Err(e),
        };
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                drop_key(&key);
                return Err(e);
            }
        };
        self.log(&format!(
            "{KIND}: request {id} created for {}",
            self.platform
        ));
        let waits = Waits {
            poll: self.args.poll_interval,
            ready: self
                .args
                .ready_timeout
                .unwrap_or(Duration::from_secs(u64::from(self.args.timeout) * 60)),
        };
        let say = |line: &str| self.log(&format!("{KIND}: {line}"));
        match reserve::wait_ready(&self.api, &say, &id, &key.private, waits, &cancel).await {
            Ok(connection) => {
                self.log(&format!("{KIND}: request {id} is ready"));
                Ok(Machine {
                    context: Default::default(),
                    id: format!("{KIND}/{id}"),
                    provisioner: KIND.into(),
                    connection,
                    platform: self.platform.clone(),
                    release: release_json(self.api.base(), &id, &self.args, key.dir.as_deref()),
                })
            }
            Err(e) => {
                if let Err(cancel_err) = self.api.cancel_request(&id).await {
                    self.log(&format!(
                        "{KIND}: failed to cancel request {id}: {cancel_err}"
                    ));
                }
                drop_key(&key);
                if !e.is_cancelled() {
                    self.log(&format!("{KIND}: request {id} failed: {e}"));
                }
                Err(e)
            }
        }
    }
}

impl Provisioner for TestingFarm {
    fn kind(&self) -> &str {
        KIND
    }

    fn max_machines(&self) -> usize {
        self.args.max.clamp(1, ABSOLUTE_MAX)
    }

    /// ATEX's stagger: reservation `i` of a batch of `n` waits
    /// `stagger * i / n`.
    fn stagger(&self, index: usize, batch: usize) -> Duration {
        if batch == 0 {
            return Duration::ZERO;
        }
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        let batch = u32::try_from(batch).unwrap_or(u32::MAX);
        self.args.stagger.saturating_mul(index) / batch
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move {
            self.reserve_one(cancel)
                .await
                .map_err(|e| self.api.redact_error(e))
        })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async move {
            let info = ReleaseInfo::from_record(&machine)?;
            // A machine of another service (e.g. from a record) never gets
            // this provisioner's token.
            same_api(&machine, &info.api_url, self.api.base())?;
            self.api.cancel_request(&info.request_id).await?;
            self.log(&format!("{KIND}: request {} cancelled", info.request_id));
            if let Some(dir) = &info.key_dir {
                reserve::remove_key_dir(dir);
            }
            Ok(())
        })
    }
}

/// Where `atex-provision release` sends the cancellations of Testing Farm
/// machines, and with which credentials: always from the user (options,
/// environment), never from a record. The defaults are those of
/// `atex-provision testing-farm`.
///
/// ```
/// let args = atex_provision::testing_farm::ReleaseArgs::default();
/// assert!(args.api_url.is_none() && args.token_file.is_none());
/// ```
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReleaseArgs {
    /// The Testing Farm API the token is sent to (default:
    /// TESTING_FARM_API_URL, else the public service at
    /// api.testing-farm.io). A record naming another API is refused.
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,

    /// A file holding the Testing Farm API token (default: the
    /// environment variable TESTING_FARM_API_TOKEN). Records never say
    /// where the token comes from.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// A PEM file of CA certificates to trust for the API's https instead
    /// of the bundled Mozilla roots (as for `testing-farm --ca-file`).
    #[arg(long, value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
}

/// Check a Testing Farm machine record before anything is released: it
/// names a request, it names the API that `args` configure (a token goes
/// nowhere else), and a token is at hand. Errors are
/// [`ProvisionError::Invalid`] (bad input: exit 2), saying how to allow
/// another API.
pub fn check_release(machine: &Machine, args: &ReleaseArgs) -> Result<(), ProvisionError> {
    let info = ReleaseInfo::from_record(machine)?;
    let configured = api_url(args.api_url.as_deref())?;
    same_api(machine, &info.api_url, &configured)?;
    Token::load(args.token_file.as_ref()).map(drop)
}

/// Refuse `machine` when its record's API is not `configured`.
fn same_api(machine: &Machine, recorded: &str, configured: &str) -> Result<(), ProvisionError> {
    if recorded.trim_end_matches('/') == configured {
        return Ok(());
    }
    // The record's words, quoted and bounded: they may be anything.
    let recorded: String = format!("{recorded:?}").chars().take(300).collect();
    Err(ProvisionError::Invalid(format!(
        "machine {}: its record names the Testing Farm API {recorded}, but the configured one \
         is {configured:?}; the token is sent only to the configured API: to release it there, \
         pass --api-url {recorded} to release (or set TESTING_FARM_API_URL)",
        machine.id
    )))
}

/// Release a Testing Farm machine from its record (for `atex-provision
/// release` in another process): cancel its request and remove its
/// generated key. Idempotent.
///
/// The record only says which request to cancel: the API it goes to, the
/// token (`--token-file` or `TESTING_FARM_API_TOKEN`) and the CA file come
/// from `args` (see [`check_release`], which this runs first: a record
/// naming another API than the configured one is refused, so a crafted
/// record cannot make the token travel). The `token_file` that records of
/// older versions carry is ignored.
///
/// ```no_run
/// # async fn demo(line: &str) -> Result<(), atex_provision::ProvisionError> {
/// use atex_provision::testing_farm::{ReleaseArgs, release_record};
/// let machine: atex_shared::records::Machine = serde_json::from_str(line).unwrap();
/// release_record(&machine, &ReleaseArgs::default()).await?;
/// # Ok(()) }
/// ```
pub async fn release_record(machine: &Machine, args: &ReleaseArgs) -> Result<(), ProvisionError> {
    let info = ReleaseInfo::from_record(machine)?;
    let configured = api_url(args.api_url.as_deref())?;
    same_api(machine, &info.api_url, &configured)?;
    let token = Token::load(args.token_file.as_ref())?;
    let backoff = Backoff {
        retries: 10,
        base: Duration::from_secs(2),
        max: Duration::from_secs(120),
    };
    let ca_file = args.ca_file.as_ref().map(absolute).transpose()?;
    let api = Api::new(&configured, token, backoff, ca_file.as_deref())?;
    let cancelled = api.cancel_request(&info.request_id).await;
    if let Err(err) = cancelled {
        // A record made with --ca-file: its CA is trusted only when the
        // user says so again.
        return Err(match (&info.ca_file, &args.ca_file) {
            (Some(recorded), None) => ProvisionError::Failed(api.redact(&format!(
                "{err} (the machine was reserved with --ca-file {}: pass --ca-file to release \
                 to trust it)",
                recorded.display()
            ))),
            _ => err,
        });
    }
    if let Some(dir) = &info.key_dir {
        reserve::remove_key_dir(dir);
    }
    Ok(())
}

/// The `release` part of a Testing Farm Machine record: which request,
/// and the generated key to remove. `ca_file` is only named in a hint.
#[derive(Debug)]
struct ReleaseInfo {
    api_url: String,
    request_id: String,
    key_dir: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// The record's `release`: never a token nor where to read one; the CA
/// file only for the hint when a release fails without `--ca-file`.
fn release_json(api_url: &str, id: &str, args: &Args, key_dir: Option<&std::path::Path>) -> Value {
    json!({
        "api_url": api_url,
        "request_id": id,
        "key_dir": key_dir,
        "ca_file": args.ca_file,
    })
}

impl ReleaseInfo {
    fn from_record(machine: &Machine) -> Result<ReleaseInfo, ProvisionError> {
        let release = &machine.release;
        let text = |key: &str| release.get(key).and_then(Value::as_str).map(str::to_owned);
        let bad = || {
            ProvisionError::Invalid(format!(
                "machine {} is not a Testing Farm machine record (release needs api_url and \
                 request_id)",
                machine.id
            ))
        };
        let request_id = text("request_id").ok_or_else(bad)?;
        // The id goes into a URL path.
        if request_id.is_empty()
            || !request_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad());
        }
        Ok(ReleaseInfo {
            api_url: text("api_url").ok_or_else(bad)?,
            request_id,
            key_dir: text("key_dir").map(PathBuf::from),
            ca_file: text("ca_file").map(PathBuf::from),
        })
    }
}

/// The API URL: the option, else `TESTING_FARM_API_URL`, else the public
/// service. Only http and https.
fn api_url(option: Option<&str>) -> Result<String, ProvisionError> {
    let url = match option {
        Some(url) => url.to_owned(),
        None => std::env::var("TESTING_FARM_API_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned()),
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ProvisionError::Invalid(format!(
            "the Testing Farm API URL {url:?} is not http(s)://"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn parse_hardware(text: &str) -> Result<Value, ProvisionError> {
    let (json, source) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                ProvisionError::Invalid(format!("cannot read the hardware file {path}: {e}"))
            })?,
            path.to_owned(),
        ),
        None => (text.to_owned(), "--hardware".to_owned()),
    };
    let value: Value = serde_json::from_str(&json).map_err(|e| {
        ProvisionError::Invalid(format!("{source}:{}:{}: {e}", e.line(), e.column()))
    })?;
    if !value.is_object() {
        return Err(ProvisionError::Invalid(format!(
            "{source}: hardware must be a JSON object"
        )));
    }
    Ok(value)
}

fn absolute(path: &PathBuf) -> Result<PathBuf, ProvisionError> {
    std::path::absolute(path)
        .map_err(|e| ProvisionError::io(format!("resolve {}", path.display()), e))
}

fn backoff(args: &Args) -> Backoff {
    Backoff {
        retries: args.api_retries,
        base: args.api_backoff,
        max: Duration::from_secs(120),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn args_new_matches_the_command_line_defaults() {
        let parsed = Cli::parse_from(["x", "--compose", "Fedora-41"]).args;
        assert_eq!(
            format!("{parsed:?}"),
            format!("{:?}", Args::new("Fedora-41"))
        );
    }

    #[test]
    fn bad_options_are_invalid() {
        let with = |f: fn(&mut Args)| {
            let mut args = Args::new("Fedora-41");
            args.token_file = Some("/nonexistent/token".into());
            f(&mut args);
            TestingFarm::new(&args).unwrap_err()
        };
        let invalid = |e: ProvisionError| matches!(e, ProvisionError::Invalid(_));
        assert!(invalid(with(|_| {})), "missing token file");
        assert!(invalid(with(|a| a.hardware = Some("{nope".into()))));
        assert!(invalid(with(|a| a.hardware = Some("[1]".into()))));
        assert!(invalid(with(|a| a.tags = vec!["novalue".into()])));
        assert!(invalid(with(|a| a.api_url = Some("ftp://x".into()))));
        assert!(invalid(with(|a| a.max = 0)));
    }

    #[test]
    fn max_is_clamped_and_stagger_spreads_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let mut args = Args::new("Fedora-41");
        args.token_file = Some(token);
        args.max = 500;
        let tf = TestingFarm::new(&args).unwrap();
        assert_eq!(tf.max_machines(), ABSOLUTE_MAX);
        assert_eq!(tf.stagger(0, 3), Duration::ZERO);
        assert_eq!(tf.stagger(2, 3), Duration::from_secs(20));
        assert_eq!(tf.platform, "Fedora-41@x86_64");
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let mut args = Args::new("Fedora-41");
        args.token_file = Some(token);
        args.ca_file = Some(ca);
        let err = TestingFarm::new(&args).unwrap_err();
        assert!(matches!(err, ProvisionError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        args.ca_file = Some(dir.path().join("missing.pem"));
        assert!(matches!(
            TestingFarm::new(&args),
            Err(ProvisionError::Invalid(_))
        ));
    }

    #[test]
    fn release_info_refuses_foreign_records() {
        let mut machine = Machine {
            context: Default::default(),
            id: "x".into(),
            provisioner: KIND.into(),
            connection: atex_shared::records::Connection::Local,
            platform: String::new(),
            release: json!({"api_url": "http://127.0.0.1:1", "request_id": "../../whoami"}),
        };
        assert!(ReleaseInfo::from_record(&machine).is_err());
        machine.release = json!({"api_url": "http://127.0.0.1:1", "request_id": "ab-12"});
        let info = ReleaseInfo::from_record(&machine).unwrap();
        assert_eq!(info.request_id, "ab-12");
    }

    #[test]
    fn release_goes_only_to_the_configured_api() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let machine = Machine {
            context: Default::default(),
            id: "testing-farm/ab".into(),
            provisioner: KIND.into(),
            connection: atex_shared::records::Connection::Local,
            platform: String::new(),
            release: json!({"api_url": "http://127.0.0.1:9/", "request_id": "ab",
                            "token_file": "/etc/hostname"}),
        };
        let args = ReleaseArgs {
            api_url: Some("http://127.0.0.1:8".into()),
            token_file: Some(token),
            ca_file: None,
        };
        let err = check_release(&machine, &args).unwrap_err();
        assert!(matches!(err, ProvisionError::Invalid(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("pass --api-url \"http://127.0.0.1:9/\" to release"),
            "{text}"
        );
        let args = ReleaseArgs {
            api_url: Some("http://127.0.0.1:9".into()),
            ..args
        };
        check_release(&machine, &args).unwrap();
    }
}

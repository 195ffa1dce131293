//! The `podman` provisioner: containers on the controller, one per
//! machine, reached with `podman exec` or, with `--ssh`, over ssh to an
//! sshd in the container published on 127.0.0.1.
//!
//! Every container is named `atex-<random>` before `podman run` starts (so
//! a cancelled or failed run can still be removed by name) and labelled
//! [`LABEL`] (so leftovers can be listed with
//! `podman ps -a --filter label=atex.provisioner=podman`).
//!
//! Podman commands inherit the environment, `CONTAINERS_CONF` included,
//! unless `--containers-conf` names the file (then it is also written into
//! the release record, so a release from another process uses it too).
//! ATEX notes that the podman CLI has concurrency issues; `podman run`
//! calls of one [`Podman`] are serialized (they take ~0.2 s each here), the
//! readiness checks run concurrently.
//!
//! Without `--systemd`, containers run with podman's `--init` (catatonit
//! as PID 1, the command its child), so processes orphaned by a killed
//! test are reaped instead of staying zombies under `sleep infinity`.
//!
//! The systemd variant (`--systemd`) runs `/sbin/init` with
//! `--systemd=always --restart=always`: a reboot from inside (`systemctl
//! reboot`, `reboot`) ends the container and podman starts it again, so
//! tests that reboot work. Checked on this project's machines (podman 4.3,
//! runc, cgroup v1 hybrid, kernel 6.18) with `--rootfs /:O`: systemd boots
//! as PID 1 and reaches `degraded` in ~3 s, and `systemctl reboot` brings
//! the container back in ~2 s. Two things are needed there, both handled
//! or documented here:
//!
//! - with `--rootfs`, podman's default tmpfs on `/run` copies the rootfs's
//!   `/run` up, which loops into podman's own overlay under `/run` ("too
//!   many levels of symbolic links"), so the systemd variant mounts `/run`
//!   and `/tmp` as tmpfs with `notmpcopyup`;
//! - the host's enabled units start inside, and the host's podman units
//!   (`podman-restart.service`, `podman-auto-update.service`) hang in the
//!   container (nested overlay is refused), keeping systemd `starting`
//!   past the 60 s bound; so for `--rootfs` the default command is
//!   `/sbin/init` with [`ROOTFS_SYSTEMD_MASKS`] (ATEX runs plain
//!   `/sbin/init`, with images only).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use atex_shared::connection::Connection as Conn;
use atex_shared::records::{Connection, Machine};
use serde::{Deserialize, Serialize};

use crate::provisioner::{BoxFuture, CancellationToken, ProvisionError, Provisioner};

/// The label on every container this provisioner starts.
pub const LABEL: &str = "atex.provisioner=podman";

/// The port sshd listens on inside the container with `--ssh` (not 22,
/// which a systemd container of the host's userland takes for its own
/// sshd).
pub const SSH_PORT: u16 = 22022;

/// Where the ssh keys and the sshd config are mounted in the container.
const SSH_MOUNT: &str = "/var/lib/atex-ssh";

/// Prefix of the per-container ssh directory on the controller; release
/// removes only directories named so.
const SSH_DIR_PREFIX: &str = "atex-podman-";

/// The bound of one podman command.
const PODMAN_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a new container may take to become ready (ATEX waits 60 s for
/// systemd).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `/sbin/init` in a systemd container of a `--rootfs`
/// (see the module docs): a rootfs that is the controller's own userland
/// has podman, whose units hang or fail inside a container and keep
/// systemd from reaching `running`. systemd in a container takes its own
/// arguments as its kernel command line.
pub const ROOTFS_SYSTEMD_MASKS: &[&str] = &[
    "systemd.mask=podman-restart.service",
    "systemd.mask=podman-auto-update.timer",
    "systemd.mask=podman-auto-update.service",
    "systemd.mask=podman.socket",
    "systemd.mask=podman.service",
];

/// Options of `atex-provision podman`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["image", "rootfs"]))]
pub struct Args {
    /// The image to run (it must exist locally: nothing is pulled).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// A root filesystem to run instead of an image, passed to podman's
    /// `--rootfs` (`/:O` runs the controller's own userland as a
    /// copy-on-write overlay).
    #[arg(long, value_name = "PATH")]
    pub rootfs: Option<String>,
    /// How many containers may exist at once.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max: usize,
    /// An option for `podman run`, before the image (`--run-option=-v`
    /// `--run-option=/a:/b`, `--run-option=--label=x`); repeatable.
    #[arg(long = "run-option", value_name = "OPT", allow_hyphen_values = true)]
    pub run_options: Vec<String>,
    /// The command the container runs (default `sleep infinity`, under
    /// podman's `--init`; with `--systemd` `/sbin/init`, for a rootfs with
    /// podman's units masked); takes the rest of the command line.
    #[arg(long, value_name = "CMD", num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Run systemd as PID 1 (`--systemd=always --restart=always`), so a
    /// reboot from inside restarts the container; ready once
    /// `systemctl is-system-running` says running or degraded.
    #[arg(long)]
    pub systemd: bool,
    /// Run sshd in the container on a port published on 127.0.0.1 and hand
    /// out ssh connections (root, a generated key) instead of podman ones.
    /// The container needs `/usr/sbin/sshd` and `/bin/sh` (or, with
    /// `--systemd`, `/bin/mkdir`); the keys live in a directory under
    /// `$TMPDIR` until release.
    #[arg(long)]
    pub ssh: bool,
    /// The platform results are reported for (default: the image, or
    /// `podman` for a rootfs).
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// The `containers.conf` for the podman commands run here (and on
    /// release, through the record), as `CONTAINERS_CONF`; default: the
    /// environment's.
    #[arg(long, value_name = "PATH")]
    pub containers_conf: Option<PathBuf>,
}

/// What a container runs.
#[derive(Debug, Clone)]
enum Source {
    Image(String),
    Rootfs(String),
}

/// Starts one podman container per machine; see the module docs.
///
/// ```
/// use atex_provision::Provisioner;
/// use atex_provision::podman::{Args, Podman};
/// let args = Args { image: Some("localhost/sut".into()), max: 2, ..Args::default() };
/// assert_eq!(Podman::new(&args).unwrap().max_machines(), 2);
/// let both = Args { rootfs: Some("/:O".into()), ..args };
/// assert!(Podman::new(&both).is_err());
/// ```
#[derive(Debug)]
pub struct Podman {
    source: Source,
    max: usize,
    run_options: Vec<String>,
    command: Vec<String>,
    systemd: bool,
    ssh: bool,
    platform: String,
    containers_conf: Option<PathBuf>,
    /// Serializes `podman run` (see the module docs).
    run_lock: tokio::sync::Mutex<()>,
}

/// What [`Machine::release`] holds for a podman machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Release {
    /// The container's name.
    container: String,
    /// The controller directory with the container's ssh keys (`--ssh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ssh_dir: Option<PathBuf>,
    /// `CONTAINERS_CONF` for podman, when set with `--containers-conf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    containers_conf: Option<PathBuf>,
}

impl Release {
    fn conf(&self) -> Option<&Path> {
        self.containers_conf.as_deref()
    }
}

impl Podman {
    /// A provisioner of containers as `args` describe; exactly one of
    /// `--image` and `--rootfs`, and `--max` at least 1, else
    /// [`ProvisionError::Invalid`].
    pub fn new(args: &Args) -> Result<Podman, ProvisionError> {
        let source = match (&args.image, &args.rootfs) {
            (Some(image), None) if !image.is_empty() => Source::Image(image.clone()),
            (None, Some(rootfs)) if !rootfs.is_empty() => Source::Rootfs(rootfs.clone()),
            _ => {
                return Err(ProvisionError::Invalid(
                    "podman needs exactly one of --image IMAGE and --rootfs PATH".into(),
                ));
            }
        };
        if args.max == 0 {
            return Err(ProvisionError::Invalid("--max must be at least 1".into()));
        }
        let command = match (args.command.is_empty(), args.systemd) {
            (false, _) => args.command.clone(),
            (true, true) => match source {
                Source::Image(_) => vec!["/sbin/init".to_owned()],
                Source::Rootfs(_) => std::iter::once("/sbin/init")
                    .chain(ROOTFS_SYSTEMD_MASKS.iter().copied())
                    .map(str::to_owned)
                    .collect(),
            },
            (true, false) => vec!["sleep".to_owned(), "infinity".to_owned()],
        };
        let platform = args.platform.clone().unwrap_or_else(|| match &source {
            Source::Image(image) => image.clone(),
            Source::Rootfs(_) => "podman".to_owned(),
        });
        Ok(Podman {
            source,
            max: args.max,
            run_options: args.run_options.clone(),
            command,
            systemd: args.systemd,
            ssh: args.ssh,
            platform,
            containers_conf: match &args.containers_conf {
                Some(path) => {
                    Some(std::path::absolute(path).map_err(|e| {
                        ProvisionError::io(format!("resolve {}", path.display()), e)
                    })?)
                }
                None => None,
            },
            run_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Check what can be checked before any container is started: the
    /// image exists locally (nothing is pulled), or the rootfs directory
    /// exists. A missing one is [`ProvisionError::Invalid`] (bad input,
    /// exit 2); a podman that cannot answer is another error.
    pub async fn check(&self) -> Result<(), ProvisionError> {
        match &self.source {
            Source::Image(image) => {
                let argv = ["image", "exists", image.as_str()].map(str::to_owned);
                match podman_status(&argv, self.containers_conf.as_deref()).await? {
                    Some(0) => Ok(()),
                    // `podman image exists` answers 1 for "no such image".
                    Some(1) => Err(self.image_not_known(image)),
                    other => Err(ProvisionError::Failed(format!(
                        "`podman image exists {image}` failed (exit {other:?})"
                    ))),
                }
            }
            Source::Rootfs(rootfs) => {
                // podman's `--rootfs PATH:O` asks for an overlay of PATH.
                let path = rootfs.strip_suffix(":O").unwrap_or(rootfs);
                match Path::new(path).is_dir() {
                    true => Ok(()),
                    false => Err(ProvisionError::Invalid(format!(
                        "podman: --rootfs {rootfs}: {path} is not a directory"
                    ))),
                }
            }
        }
    }

    /// The bad-input error for an image podman does not have.
    fn image_not_known(&self, image: &str) -> ProvisionError {
        ProvisionError::Invalid(format!(
            "podman: {image}: image not known (it must exist locally, nothing is pulled: \
             get one with `podman pull`, `podman import ROOTFS.tar {image}` or `podman build`, \
             or run a root filesystem with --rootfs, e.g. --rootfs /:O)"
        ))
    }

    /// A failed `podman run` said why in words: a missing image is bad
    /// input (never retried), a missing init binary wants a package.
    fn explain_run_error(&self, err: ProvisionError) -> ProvisionError {
        let ProvisionError::Command { stderr, .. } = &err else {
            return err;
        };
        match &self.source {
            Source::Image(image) if stderr.contains("image not known") => {
                return self.image_not_known(image);
            }
            _ => {}
        }
        if stderr.contains("container-init binary not found") {
            return ProvisionError::Failed(format!(
                "{err} (containers run with podman's --init, which needs catatonit: \
                 `apt-get install catatonit`, or init_path in containers.conf)"
            ));
        }
        err
    }

    /// The `podman` arguments that start the container of `release`.
    fn run_argv(&self, release: &Release) -> Vec<String> {
        let mut argv: Vec<String> = [
            "container",
            "run",
            "--detach",
            "--quiet",
            "--pull",
            "never",
            "--name",
            &release.container,
            "--label",
            LABEL,
        ]
        .map(str::to_owned)
        .to_vec();
        if !self.systemd {
            // An init as PID 1 (podman's catatonit) reaps the processes
            // orphaned in the container: `sleep infinity` as PID 1 left
            // every killed test's children as zombies. systemd is its own.
            argv.push("--init".to_owned());
        }
        if self.systemd {
            argv.extend(["--systemd=always".to_owned(), "--restart=always".to_owned()]);
            if matches!(self.source, Source::Rootfs(_)) {
                // See the module docs: the copy-up of /run loops.
                for dir in ["/run", "/tmp"] {
                    argv.extend(["--tmpfs".to_owned(), format!("{dir}:rw,notmpcopyup")]);
                }
            }
        }
        if let Some(dir) = &release.ssh_dir {
            argv.extend([
                "--publish".to_owned(),
                format!("127.0.0.1::{SSH_PORT}"),
                "--volume".to_owned(),
                format!("{}:{SSH_MOUNT}:ro", dir.display()),
            ]);
            if self.systemd {
                // The unit starts sshd on every boot, pulled in by a
                // drop-in of multi-user.target (a `.wants` entry would
                // have to be a symlink, which a bind mount cannot make).
                for (file, target) in [
                    ("atex-sshd.service", "/etc/systemd/system/atex-sshd.service"),
                    (
                        "atex-sshd.conf",
                        "/etc/systemd/system/multi-user.target.d/atex-sshd.conf",
                    ),
                ] {
                    argv.extend([
                        "--volume".to_owned(),
                        format!("{}:{target}:ro", dir.join(file).display()),
                    ]);
                }
            }
        }
        argv.extend(self.run_options.iter().cloned());
        match &self.source {
            Source::Image(image) => argv.push(image.clone()),
            Source::Rootfs(rootfs) => argv.extend(["--rootfs".to_owned(), rootfs.clone()]),
        }
        if self.ssh && !self.systemd {
            // sshd daemonizes, then the command runs as before; on a
            // container restart both start again.
            argv.extend([
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                format!(
                    "mkdir -p /run/sshd && /usr/sbin/sshd -f {SSH_MOUNT}/sshd_config && exec \"$@\""
                ),
                "atex-sshd".to_owned(),
            ]);
        }
        argv.extend(self.command.iter().cloned());
        argv
    }

    async fn reserve_inner(&self, cancel: &CancellationToken) -> Result<Machine, ProvisionError> {
        if cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let name = new_name();
        let ssh_dir = match self.ssh {
            true => Some(prepare_ssh_dir(&name).await?),
            false => None,
        };
        let release = Release {
            container: name,
            ssh_dir,
            containers_conf: self.containers_conf.clone(),
        };
        match self.start(&release, cancel).await {
            Ok(machine) => Ok(machine),
            Err(err) => {
                // Also after a cancelled or killed `podman run`: the name
                // was chosen before, so whatever it created goes.
                let _ = remove(&release).await;
                Err(err)
            }
        }
    }

    /// Run the container, then wait until it answers on its connection.
    async fn start(
        &self,
        release: &Release,
        cancel: &CancellationToken,
    ) -> Result<Machine, ProvisionError> {
        {
            let _serial = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                guard = self.run_lock.lock() => guard,
            };
            let argv = self.run_argv(release);
            // Not interrupted by a cancel: a `podman run` killed while it
            // creates the container leaves conmon and `runc init` running
            // for a container podman no longer lists. It returns within
            // about a second (or PODMAN_TIMEOUT); the caller then removes
            // the container by name.
            podman(&argv, release.conf())
                .await
                .map_err(|err| self.explain_run_error(err))?;
            if cancel.is_cancelled() {
                return Err(ProvisionError::Cancelled);
            }
        }
        let connection = match &release.ssh_dir {
            None => Connection::Podman {
                container: release.container.clone(),
            },
            Some(dir) => Connection::Ssh {
                host: "127.0.0.1".to_owned(),
                port: published_port(release).await?,
                user: "root".to_owned(),
                identity_file: Some(dir.join("key")),
                options: Default::default(),
            },
        };
        let machine = Machine {
            context: Default::default(),
            id: format!("podman/{}", release.container),
            provisioner: "podman".to_owned(),
            connection,
            platform: self.platform.clone(),
            release: serde_json::to_value(release)
                .map_err(|e| ProvisionError::Failed(format!("encode the release record: {e}")))?,
        };
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        match self.wait_ready(&machine, deadline, cancel).await {
            Ok(()) => Ok(machine),
            Err(err) if err.is_cancelled() => Err(err),
            Err(err) => {
                let logs = container_logs(release).await;
                Err(ProvisionError::Failed(format!(
                    "container {} is not ready: {err}{logs}",
                    release.container
                )))
            }
        }
    }

    /// Connect through the machine's connection and run `true` (or, with
    /// systemd, poll `systemctl is-system-running` until it says running
    /// or degraded). The connection is always closed at the end; the
    /// cancel token is checked between steps, never in the middle of an
    /// ssh connect (a master dropped mid-start could outlive the process).
    async fn wait_ready(
        &self,
        machine: &Machine,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
    ) -> Result<(), ProvisionError> {
        if let Connection::Ssh { host, port, .. } = &machine.connection {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                banner = wait_for_banner(host, *port, deadline, READY_TIMEOUT) => banner?,
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let mut conn =
            Conn::new(&machine.connection).with_timeout(left.max(Duration::from_secs(5)));
        let result = async {
            conn.connect().await?;
            loop {
                if cancel.is_cancelled() {
                    return Err(ProvisionError::Cancelled);
                }
                let script: &[u8] = match self.systemd {
                    true => b"systemctl is-system-running 2>&1\n",
                    false => b"true\n",
                };
                let out = conn.run_script(script).await?;
                let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                match self.systemd {
                    false if out.success() => return Ok(()),
                    false => {
                        return Err(ProvisionError::Failed(format!(
                            "`true` exited with {:?}: {}",
                            out.code,
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                    true if state == "running" || state == "degraded" => return Ok(()),
                    true => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    // What systemd still waits for, for people.
                    let jobs = conn
                        .run_script(b"systemctl list-jobs --no-legend --no-pager | head -n 5\n")
                        .await
                        .map(|out| last_lines(&out.stdout, 5))
                        .unwrap_or_default();
                    return Err(ProvisionError::Timeout(format!(
                        "systemd is {state:?}, not running or degraded, after \
                         {READY_TIMEOUT:?}; jobs: {jobs}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        .await;
        let closed = conn.disconnect().await;
        result?;
        closed.map_err(ProvisionError::from)
    }
}

impl Provisioner for Podman {
    fn kind(&self) -> &str {
        "podman"
    }

    fn max_machines(&self) -> usize {
        self.max
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move { self.reserve_inner(&cancel).await })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async move { release_record(&machine).await })
    }
}

/// Check a podman machine record before anything is released: its
/// `release` field names a container (not empty, not starting with `-`)
/// and, if any, an ssh directory of ours (absolute, named
/// `atex-podman-*`). Errors are [`ProvisionError::Invalid`].
pub fn check_release(machine: &Machine) -> Result<(), ProvisionError> {
    release_of(machine).map(drop)
}

/// The checked `release` field of a podman machine record.
fn release_of(machine: &Machine) -> Result<Release, ProvisionError> {
    let release: Release = serde_json::from_value(machine.release.clone()).map_err(|e| {
        ProvisionError::Invalid(format!(
            "machine {}: the release record is not a podman one: {e}",
            machine.id
        ))
    })?;
    if release.container.is_empty() || release.container.starts_with('-') {
        return Err(ProvisionError::Invalid(format!(
            "machine {}: bad container name {:?}",
            machine.id, release.container
        )));
    }
    if let Some(dir) = &release.ssh_dir {
        let named_ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(SSH_DIR_PREFIX));
        if !named_ours || !dir.is_absolute() {
            return Err(ProvisionError::Invalid(format!(
                "machine {}: {} is not an atex ssh directory",
                machine.id,
                dir.display()
            )));
        }
    }
    Ok(release)
}

/// Release a podman machine from its record alone (another process):
/// `podman container rm -f -t 0` its container and remove its ssh keys.
/// A container that is already gone is not an error.
///
/// Only a container that carries atex's label ([`LABEL`], set at
/// creation) is touched: a record naming any other container (a crafted
/// or mistaken one) is refused with [`ProvisionError::Invalid`], and
/// neither the container nor the ssh directory is touched. The container
/// is removed by the id its label was read with, so a container renamed
/// or replaced in between is not removed.
pub async fn release_record(machine: &Machine) -> Result<(), ProvisionError> {
    let release = release_of(machine)?;
    let Some(id) = labelled_id(&release).await? else {
        // Gone already; its ssh keys still go.
        return remove_ssh_dir(&release).await;
    };
    remove_container(&id, release.conf()).await?;
    remove_ssh_dir(&release).await
}

/// The id of the record's container when it carries [`LABEL`]; `None`
/// when there is no such container; refused when it is not atex's.
async fn labelled_id(release: &Release) -> Result<Option<String>, ProvisionError> {
    let (key, value) = LABEL.split_once('=').unwrap_or((LABEL, ""));
    // `{{.Id}}` first: the label value may be empty, or anything.
    let format = format!("{{{{.Id}}}} {{{{index .Config.Labels \"{key}\"}}}}");
    let argv = [
        "container",
        "inspect",
        "--format",
        format.as_str(),
        "--",
        release.container.as_str(),
    ]
    .map(str::to_owned);
    let out = match podman(&argv, release.conf()).await {
        Ok(out) => out,
        Err(ProvisionError::Command { stderr, .. })
            if stderr.to_ascii_lowercase().contains("no such container") =>
        {
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    let text = String::from_utf8_lossy(&out);
    let line = text.trim();
    let (id, label) = line.split_once(' ').unwrap_or((line, ""));
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ProvisionError::Failed(format!(
            "`podman container inspect {}` gave no container id: {line:?}",
            release.container
        )));
    }
    if label.trim() != value {
        return Err(ProvisionError::Invalid(format!(
            "container {:?} does not carry atex's label {LABEL} (it was not made by \
             atex-provision): not removed",
            release.container
        )));
    }
    Ok(Some(id.to_owned()))
}

/// Remove the container (gone already is fine), then its ssh directory:
/// for containers this process named itself (a failed reservation).
async fn remove(release: &Release) -> Result<(), ProvisionError> {
    remove_container(&release.container, release.conf()).await?;
    remove_ssh_dir(release).await
}

/// `podman container rm -f -t 0 NAME`; gone already is fine.
async fn remove_container(name: &str, conf: Option<&Path>) -> Result<(), ProvisionError> {
    let argv = ["container", "rm", "-f", "-t", "0", "--", name].map(str::to_owned);
    match podman(&argv, conf).await {
        Ok(_) => Ok(()),
        Err(ProvisionError::Command { stderr, .. })
            if stderr.to_ascii_lowercase().contains("no such container") =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Remove the record's ssh directory, if any (gone already is fine).
async fn remove_ssh_dir(release: &Release) -> Result<(), ProvisionError> {
    if let Some(dir) = &release.ssh_dir {
        match tokio::fs::remove_dir_all(dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(ProvisionError::io(format!("remove {}", dir.display()), e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Run `podman ARGV...` (bounded; killed when dropped) and return its
/// stdout; a failure is [`ProvisionError::Command`].
async fn podman(argv: &[String], conf: Option<&Path>) -> Result<Vec<u8>, ProvisionError> {
    let command = format!("podman {}", argv.join(" "));
    let child = podman_command(argv, conf)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ProvisionError::io("start podman (is it installed?)", e))?;
    let out = tokio::time::timeout(PODMAN_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ProvisionError::Timeout(format!("`{command}` after {PODMAN_TIMEOUT:?}")))?
        .map_err(|e| ProvisionError::io(format!("wait for `{command}`"), e))?;
    if !out.status.success() {
        return Err(ProvisionError::Command {
            command,
            status: out.status.to_string(),
            stderr: last_lines(&out.stderr, 5),
        });
    }
    Ok(out.stdout)
}

/// `podman ARGV...` with `CONTAINERS_CONF` from `conf`, stdin from
/// /dev/null, killed when dropped, in its own process group: Ctrl-C in a
/// terminal reaches only atex-provision, which then removes what podman
/// made, in order.
fn podman_command(argv: &[String], conf: Option<&Path>) -> tokio::process::Command {
    let mut podman = crate::child::command("podman");
    if let Some(conf) = conf {
        podman.env("CONTAINERS_CONF", conf);
    }
    podman
        .args(argv)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    podman
}

/// Run `podman ARGV...` (bounded, output dropped) and return its exit
/// code (`None` when killed by a signal); only failing to run it at all
/// is an error.
async fn podman_status(
    argv: &[String],
    conf: Option<&Path>,
) -> Result<Option<i32>, ProvisionError> {
    let command = format!("podman {}", argv.join(" "));
    let mut child = podman_command(argv, conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| ProvisionError::io("start podman (is it installed?)", e))?;
    let status = tokio::time::timeout(PODMAN_TIMEOUT, child.wait())
        .await
        .map_err(|_| ProvisionError::Timeout(format!("`{command}` after {PODMAN_TIMEOUT:?}")))?
        .map_err(|e| ProvisionError::io(format!("wait for `{command}`"), e))?;
    Ok(status.code())
}

/// The host port podman published for [`SSH_PORT`].
async fn published_port(release: &Release) -> Result<u16, ProvisionError> {
    let container = &release.container;
    let argv = ["port", container, &format!("{SSH_PORT}/tcp")].map(|s| s.to_owned());
    let out = podman(&argv, release.conf()).await?;
    let text = String::from_utf8_lossy(&out);
    text.lines()
        .filter_map(|line| line.trim().rsplit_once(':'))
        .find_map(|(_, port)| port.parse::<u16>().ok())
        .ok_or_else(|| {
            ProvisionError::Failed(format!(
                "`podman port {container}` names no port for {SSH_PORT}: {:?}",
                text.trim()
            ))
        })
}

/// Wait until `host:port` greets with an ssh banner (sshd is up, not just
/// the port forward), polling until `deadline` (`within` from the start,
/// for the message).
pub(crate) async fn wait_for_banner(
    host: &str,
    port: u16,
    deadline: tokio::time::Instant,
    within: Duration,
) -> Result<(), ProvisionError> {
    loop {
        let addr = (host.to_owned(), port);
        // Blocking std sockets on a blocking thread: this crate's tokio has
        // no `net` feature, and each try is bounded.
        let greeted = tokio::task::spawn_blocking(move || banner(&addr))
            .await
            .unwrap_or(false);
        if greeted {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ProvisionError::Timeout(format!(
                "no ssh banner on {host}:{port} within {within:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether `addr` answers with an ssh banner within about two seconds.
fn banner(addr: &(String, u16)) -> bool {
    use std::io::Read;
    use std::net::ToSocketAddrs;
    let Some(sock) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// The container's state and the end of its log, for error messages
/// (empty when podman tells neither).
async fn container_logs(release: &Release) -> String {
    let mut text = String::new();
    let argv = [
        "inspect",
        "--format",
        "{{.State.Status}}",
        &release.container,
    ]
    .map(str::to_owned);
    if let Ok(out) = podman(&argv, release.conf()).await {
        text = format!(
            " (the container is {})",
            String::from_utf8_lossy(&out).trim()
        );
    }
    let argv = ["logs", "--tail", "10", &release.container].map(str::to_owned);
    match podman(&argv, release.conf()).await {
        Ok(out) if !out.trim_ascii().is_empty() => {
            text.push_str(&format!("; its log ends: {}", last_lines(&out, 10)));
        }
        _ => {}
    }
    text
}

/// The last `n` lines of `bytes`, lossily decoded, joined with ` | `.
pub(crate) fn last_lines(bytes: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// `atex-` and ten random hex digits.
pub(crate) fn new_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded randomly per process; the serial and the clock
    // keep names of one process apart.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SERIAL.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    format!("atex-{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

/// The sshd config inside the container: its own port, keys and pid file,
/// root by key only. `UsePAM no` and `StrictModes no` as for the loopback
/// sshd of the tests (ENVIRONMENT.md).
fn sshd_config() -> String {
    format!(
        "Port {SSH_PORT}\nHostKey {SSH_MOUNT}/host_key\nPidFile /run/atex-sshd.pid\n\
         AuthorizedKeysFile {SSH_MOUNT}/authorized_keys\nStrictModes no\nUsePAM no\n\
         PermitRootLogin prohibit-password\nPubkeyAuthentication yes\n\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         MaxSessions 200\nMaxStartups 100\nUseDNS no\nPrintMotd no\n\
         Subsystem sftp internal-sftp\n"
    )
}

/// The systemd unit that starts sshd on every boot of a systemd container.
fn sshd_unit() -> String {
    format!(
        "[Unit]\nDescription=sshd for atex\nAfter=network.target\n\n\
         [Service]\nExecStartPre=/bin/mkdir -p /run/sshd\n\
         ExecStart=/usr/sbin/sshd -D -e -f {SSH_MOUNT}/sshd_config\nRestart=on-failure\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

/// Create the container's ssh directory on the controller: a client key
/// (`key`, handed out in the Machine record), a host key, the
/// authorized_keys, the sshd config, its unit and the drop-in that
/// starts the unit. It outlives this process
/// (the record points to the key) and goes on release.
async fn prepare_ssh_dir(name: &str) -> Result<PathBuf, ProvisionError> {
    let dir = std::env::temp_dir().join(format!("{SSH_DIR_PREFIX}{name}"));
    let result = async {
        let mut builder = tokio::fs::DirBuilder::new();
        builder.mode(0o700);
        builder
            .create(&dir)
            .await
            .map_err(|e| ProvisionError::io(format!("create {}", dir.display()), e))?;
        keygen(&dir.join("key")).await?;
        keygen(&dir.join("host_key")).await?;
        let write = |file: &str, text: String| {
            let path = dir.join(file);
            async move {
                tokio::fs::write(&path, text)
                    .await
                    .map_err(|e| ProvisionError::io(format!("write {}", path.display()), e))
            }
        };
        let public = tokio::fs::read_to_string(dir.join("key.pub"))
            .await
            .map_err(|e| ProvisionError::io(format!("read {}/key.pub", dir.display()), e))?;
        write("authorized_keys", public).await?;
        write("sshd_config", sshd_config()).await?;
        write("atex-sshd.service", sshd_unit()).await?;
        write(
            "atex-sshd.conf",
            "[Unit]\nWants=atex-sshd.service\n".to_owned(),
        )
        .await?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(dir),
        Err(err) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(err)
        }
    }
}

async fn keygen(path: &Path) -> Result<(), ProvisionError> {
    let out = crate::child::command("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "atex", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| ProvisionError::io("run ssh-keygen (is openssh-client installed?)", e))?;
    if !out.status.success() {
        return Err(ProvisionError::Command {
            command: format!("ssh-keygen -f {}", path.display()),
            status: out.status.to_string(),
            stderr: last_lines(&out.stderr, 5),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            rootfs: Some("/:O".into()),
            max: 3,
            run_options: vec!["--label=x=y".into()],
            ..Args::default()
        }
    }

    #[test]
    fn run_command_line() {
        let podman = Podman::new(&args()).unwrap();
        let release = Release {
            container: "atex-1".into(),
            ssh_dir: None,
            containers_conf: None,
        };
        let argv = podman.run_argv(&release).join(" ");
        assert_eq!(
            argv,
            "container run --detach --quiet --pull never --name atex-1 \
             --label atex.provisioner=podman --init --label=x=y --rootfs /:O sleep infinity"
        );
        assert_eq!(podman.platform, "podman");
    }

    #[test]
    fn systemd_and_ssh_command_line() {
        let podman = Podman::new(&Args {
            systemd: true,
            ssh: true,
            ..args()
        })
        .unwrap();
        let release = Release {
            container: "atex-1".into(),
            ssh_dir: Some("/tmp/atex-podman-atex-1".into()),
            containers_conf: None,
        };
        let argv = podman.run_argv(&release).join(" ");
        assert!(argv.contains("--systemd=always --restart=always"), "{argv}");
        assert!(!argv.contains("--init"), "systemd is its own init: {argv}");
        assert!(argv.contains("--tmpfs /run:rw,notmpcopyup"), "{argv}");
        assert!(argv.contains("--publish 127.0.0.1::22022"), "{argv}");
        assert!(
            argv.ends_with(
                "--rootfs /:O /sbin/init systemd.mask=podman-restart.service \
                            systemd.mask=podman-auto-update.timer \
                            systemd.mask=podman-auto-update.service \
                            systemd.mask=podman.socket systemd.mask=podman.service"
            ),
            "{argv}"
        );
        let plain_ssh = Podman::new(&Args {
            ssh: true,
            image: Some("img".into()),
            rootfs: None,
            command: vec!["cat".into()],
            ..args()
        })
        .unwrap();
        let argv = plain_ssh.run_argv(&release);
        assert_eq!(&argv[argv.len() - 5..][..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[argv.len() - 6], "img");
        assert_eq!(argv.last().unwrap(), "cat");
        assert_eq!(plain_ssh.platform, "img");
    }

    #[test]
    fn bad_arguments() {
        assert!(Podman::new(&Args::default()).is_err());
        assert!(Podman::new(&Args { max: 0, ..args() }).is_err());
    }

    #[test]
    fn names_differ() {
        let a = new_name();
        assert!(a.starts_with("atex-") && a.len() == 15, "{a}");
        assert_ne!(a, new_name());
    }

    #[test]
    fn release_records_are_checked() {
        let machine = |release| Machine {
            context: Default::default(),
            id: "podman/x".into(),
            provisioner: "podman".into(),
            connection: Connection::Local,
            platform: String::new(),
            release,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for bad in [
            serde_json::Value::Null,
            serde_json::json!({"container": "-rf"}),
            serde_json::json!({"container": "c", "ssh_dir": "/etc"}),
        ] {
            let err = rt.block_on(release_record(&machine(bad))).unwrap_err();
            assert!(matches!(err, ProvisionError::Invalid(_)), "{err}");
        }
    }
}

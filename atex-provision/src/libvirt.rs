//! The `libvirt` provisioner: virtual machines on a libvirt hypervisor,
//! this machine's (`qemu:///system`) or another host's
//! (`qemu+ssh://user@host/system`), driven with `virsh` (decision 37).
//!
//! Each machine is a transient domain named `atex-<random>` on a
//! copy-on-write qcow2 overlay of the image (`qemu-img create -b`, made on
//! the hypervisor's host, in `--overlay-dir`): the image itself is never
//! written. Its network is qemu's user-mode network, the guest's port 22
//! forwarded to a port on 127.0.0.1 of the hypervisor's host (no libvirt
//! bridge: its addresses are never reachable from here); for a remote
//! hypervisor the ssh connection to the guest goes through that host
//! (a `ProxyCommand` in the Machine record). With `--kernel` the guest
//! boots that kernel and initrd directly. qemu runs as the user who made
//! the overlay (a `dac` seclabel), so images that user can read boot.
//!
//! Release destroys the domain (a transient domain is then gone) and
//! deletes its overlay and console log; a cancelled or failed reservation
//! does the same for whatever it made.
//!
//! `--accel auto` uses kvm when it works: on this machine's hypervisor,
//! a kernel given with `--kernel` must print its first line within
//! [`KVM_PROBE`] under kvm (nested kvm here stops before that); on a
//! remote one, libvirt's domain capabilities must offer kvm. Otherwise
//! tcg, said on stderr.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atex_shared::connection::Connection as Conn;
use atex_shared::records::{Connection, Machine};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::podman::{last_lines, new_name, wait_for_banner};
use crate::provisioner::{BoxFuture, CancellationToken, ProvisionError, Provisioner};

/// The bound of one `virsh`, `qemu-img` or remote command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How long kvm has to show a kernel's first line (`--accel auto`).
pub const KVM_PROBE: Duration = Duration::from_secs(10);

/// Prefix of the overlay and console files; release removes only files
/// named so.
const FILE_PREFIX: &str = "atex-libvirt-";

/// The kernel command line with `--kernel` and no `--append`: the disk is
/// the root file system, the console on the serial port, `eth0` named so.
pub const DEFAULT_APPEND: &str = "root=/dev/vda rw console=ttyS0 net.ifnames=0";

/// The accelerator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// kvm when it works, else tcg (see the module docs).
    #[default]
    Auto,
    /// Hardware virtualization.
    Kvm,
    /// qemu's emulation (slow, works everywhere).
    Tcg,
}

/// Options of `atex-provision libvirt`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// The guest disk image on the hypervisor's host (raw, or qcow2 when
    /// its name ends in `.qcow2`); never written.
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,
    /// A kernel to boot directly (on the hypervisor's host).
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// The initrd for --kernel.
    #[arg(long, value_name = "PATH", requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The kernel command line for --kernel [default: root=/dev/vda rw
    /// console=ttyS0 net.ifnames=0].
    #[arg(
        long,
        value_name = "ARGS",
        requires = "kernel",
        allow_hyphen_values = true
    )]
    pub append: Option<String>,
    /// The user to log in as on the guests.
    #[arg(long, value_name = "USER", default_value = "root")]
    pub user: String,
    /// The private key that logs in to the guests.
    #[arg(short = 'i', long = "identity-file", value_name = "PATH")]
    pub identity_file: Option<PathBuf>,
    /// How many machines may exist at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub max: usize,
    /// Memory per guest, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub memory: u32,
    /// Virtual CPUs per guest.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub vcpus: u32,
    /// The hypervisor: `qemu:///system`, or another host's
    /// `qemu+ssh://user@host[:port]/system[?keyfile=KEY&no_verify=1]`.
    #[arg(long, value_name = "URI", default_value = "qemu:///system")]
    pub uri: String,
    /// The accelerator.
    #[arg(long, value_enum, default_value_t)]
    pub accel: Accel,
    /// Where the overlays and console logs go, on the hypervisor's host.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub overlay_dir: PathBuf,
    /// How long a guest may take to answer over ssh, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub boot_timeout: u64,
    /// The platform results are reported for (default: the image's file
    /// name).
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
}

/// The hypervisor's host, when it is not this machine: where the overlay
/// is made and through which the guests are reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Remote {
    /// `user@host`, or `host`.
    target: String,
    port: Option<u16>,
    keyfile: Option<PathBuf>,
    /// `no_verify=1` in the URI: the host key is not checked.
    no_verify: bool,
}

impl Remote {
    /// The hypervisor's host of `uri`, `None` for this machine.
    fn of(uri: &str) -> Result<Option<Remote>, String> {
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(format!("--uri {uri}: not a libvirt URI (qemu:///system?)"));
        };
        let (authority, query) = match rest.split_once('/') {
            Some((authority, path)) => (authority, path.split_once('?').map(|(_, q)| q)),
            None => (rest, None),
        };
        if authority.is_empty() || !scheme.contains("+ssh") {
            if !authority.is_empty() && authority != "localhost" {
                return Err(format!(
                    "--uri {uri}: a remote hypervisor is reached with qemu+ssh://"
                ));
            }
            return Ok(None);
        }
        let (target, port) = match authority.rsplit_once(':') {
            Some((target, port)) => {
                let port = port
                    .parse()
                    .map_err(|_| format!("--uri {uri}: bad port {port:?}"))?;
                (target, Some(port))
            }
            None => (authority, None),
        };
        let mut remote = Remote {
            target: target.to_owned(),
            port,
            keyfile: None,
            no_verify: false,
        };
        for pair in query.unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("keyfile", path)) => remote.keyfile = Some(PathBuf::from(path)),
                Some(("no_verify", "1")) => remote.no_verify = true,
                _ => {}
            }
        }
        Ok(Some(remote))
    }

    /// The ssh options that reach the host.
    fn ssh_options(&self) -> Vec<String> {
        let mut options = vec!["-o".to_owned(), "BatchMode=yes".to_owned()];
        if self.no_verify {
            options.extend(
                [
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ]
                .map(str::to_owned),
            );
        }
        if let Some(port) = self.port {
            options.extend(["-p".to_owned(), port.to_string()]);
        }
        if let Some(key) = &self.keyfile {
            options.extend(["-i".to_owned(), key.display().to_string()]);
        }
        options
    }

    /// The `ProxyCommand` that reaches a guest's forwarded port.
    fn proxy_command(&self) -> String {
        let mut words = vec!["ssh".to_owned()];
        words.extend(self.ssh_options().iter().map(|w| sh_quote(w)));
        words.extend(["-W".to_owned(), "%h:%p".to_owned(), sh_quote(&self.target)]);
        words.join(" ")
    }
}

/// Quote `word` for a POSIX shell.
fn sh_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b));
    match plain {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

/// What [`Machine::release`] holds for a libvirt machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Release {
    /// The hypervisor.
    uri: String,
    /// The domain's name.
    domain: String,
    /// Its overlay, on the hypervisor's host.
    overlay: PathBuf,
    /// Its console log, on the hypervisor's host.
    console: PathBuf,
}

/// Starts one transient libvirt domain per machine; see the module docs.
///
/// ```
/// use atex_provision::Provisioner;
/// use atex_provision::libvirt::{Args, Libvirt};
/// let args = Args {
///     image: "/var/lib/images/f41.raw".into(),
///     overlay_dir: "/var/tmp".into(),
///     max: 2,
///     ..Args::default()
/// };
/// let libvirt = Libvirt::new(&Args { uri: "qemu:///system".into(), ..args.clone() }).unwrap();
/// assert_eq!(libvirt.max_machines(), 2);
/// assert!(Libvirt::new(&Args { uri: "nope".into(), ..args }).is_err());
/// ```
#[derive(Debug)]
pub struct Libvirt {
    args: Args,
    remote: Option<Remote>,
    platform: String,
    /// The domain type, once decided (`kvm` or `qemu`).
    virt_type: tokio::sync::OnceCell<&'static str>,
}

impl Libvirt {
    /// A provisioner of virtual machines as `args` describe; a bad
    /// `--uri`, relative paths or `--max 0` are [`ProvisionError::Invalid`].
    pub fn new(args: &Args) -> Result<Libvirt, ProvisionError> {
        let remote = Remote::of(&args.uri).map_err(ProvisionError::Invalid)?;
        if args.max == 0 {
            return Err(ProvisionError::Invalid("--max must be at least 1".into()));
        }
        let paths = [
            Some(&args.image),
            args.kernel.as_ref(),
            args.initrd.as_ref(),
            Some(&args.overlay_dir),
        ];
        if let Some(path) = paths.into_iter().flatten().find(|p| !p.is_absolute()) {
            return Err(ProvisionError::Invalid(format!(
                "libvirt: {}: paths on the hypervisor's host must be absolute",
                path.display()
            )));
        }
        let mut args = args.clone();
        if let Some(key) = &args.identity_file {
            args.identity_file = Some(
                std::path::absolute(key)
                    .map_err(|e| ProvisionError::io(format!("resolve {}", key.display()), e))?,
            );
        }
        let platform = args.platform.clone().unwrap_or_else(|| {
            args.image
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "libvirt".to_owned())
        });
        Ok(Libvirt {
            args,
            remote,
            platform,
            virt_type: tokio::sync::OnceCell::new(),
        })
    }

    /// Check what can be checked before any machine is asked for: the
    /// hypervisor answers, the image and kernel exist on this machine's
    /// hypervisor (missing: [`ProvisionError::Invalid`]); and decide the
    /// accelerator.
    pub async fn check(&self) -> Result<(), ProvisionError> {
        virsh(&self.args.uri, &["version"]).await.map_err(|e| {
            ProvisionError::Failed(format!(
                "libvirt at {} does not answer ({e}); is libvirtd running?",
                self.args.uri
            ))
        })?;
        if self.remote.is_none() {
            let files = [
                Some(&self.args.image),
                self.args.kernel.as_ref(),
                self.args.initrd.as_ref(),
            ];
            if let Some(missing) = files.into_iter().flatten().find(|p| !p.is_file()) {
                return Err(ProvisionError::Invalid(format!(
                    "libvirt: {}: no such file (`make vm-image` builds a guest)",
                    missing.display()
                )));
            }
        }
        self.virt_type().await.map(drop)
    }

    /// The domain type: `kvm` or `qemu` (tcg), decided once.
    async fn virt_type(&self) -> Result<&'static str, ProvisionError> {
        self.virt_type
            .get_or_try_init(|| async {
                let kvm = match self.args.accel {
                    Accel::Kvm => true,
                    Accel::Tcg => false,
                    Accel::Auto => match self.kvm_works().await {
                        Ok(()) => true,
                        Err(why) => {
                            eprintln!("atex-provision: libvirt: kvm {why}: using tcg (slow)");
                            false
                        }
                    },
                };
                Ok(if kvm { "kvm" } else { "qemu" })
            })
            .await
            .copied()
    }

    /// Whether kvm works for `--accel auto`, or why not.
    async fn kvm_works(&self) -> Result<(), String> {
        let caps = virsh(&self.args.uri, &["domcapabilities", "--virttype", "kvm"]).await;
        if caps.is_err() {
            return Err("is not offered by the hypervisor".to_owned());
        }
        match (&self.remote, &self.args.kernel) {
            (None, Some(kernel)) => probe_kvm(kernel).await,
            _ => Ok(()),
        }
    }

    async fn reserve_inner(&self, cancel: &CancellationToken) -> Result<Machine, ProvisionError> {
        if cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let virt_type = self.virt_type().await?;
        let name = new_name();
        let release = Release {
            uri: self.args.uri.clone(),
            overlay: self
                .args
                .overlay_dir
                .join(format!("{FILE_PREFIX}{name}.qcow2")),
            console: self
                .args
                .overlay_dir
                .join(format!("{FILE_PREFIX}{name}.console")),
            domain: name,
        };
        match self.start(&release, virt_type, cancel).await {
            Ok(machine) => Ok(machine),
            Err(err) => {
                let _ = remove(&release, self.remote.as_ref()).await;
                Err(err)
            }
        }
    }

    /// Make the overlay, start the domain, wait until the guest answers.
    async fn start(
        &self,
        release: &Release,
        virt_type: &str,
        cancel: &CancellationToken,
    ) -> Result<Machine, ProvisionError> {
        let format = match self.args.image.extension().is_some_and(|e| e == "qcow2") {
            true => "qcow2",
            false => "raw",
        };
        let script = format!(
            "set -e; qemu-img create -q -f qcow2 -F {format} -b {} {} >&2; id -u; id -g\n",
            sh_quote(&self.args.image.display().to_string()),
            sh_quote(&release.overlay.display().to_string()),
        );
        let out = host_script(self.remote.as_ref(), &script).await?;
        let ids: Vec<&str> = std::str::from_utf8(&out)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let [uid, gid] = ids[..] else {
            return Err(ProvisionError::Failed(format!("`id` said {ids:?}")));
        };
        let port = match &self.remote {
            None => free_port()?,
            // Not known from here: a port in use fails the start, and the
            // reservation is tried again with another.
            Some(_) => 20000 + (std::process::id() as u16 ^ rand_u16()) % 40000,
        };
        let xml = self.domain_xml(release, virt_type, port, uid, gid);
        let file = tempfile::Builder::new()
            .prefix("atex-libvirt-")
            .suffix(".xml")
            .tempfile()
            .map_err(|e| ProvisionError::io("create the domain's XML file", e))?;
        std::fs::write(file.path(), xml)
            .map_err(|e| ProvisionError::io("write the domain's XML file", e))?;
        let path = file.path().display().to_string();
        virsh(&release.uri, &["create", &path]).await?;
        if cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        let mut options = IndexMap::new();
        if let Some(remote) = &self.remote {
            options.insert("ProxyCommand".to_owned(), remote.proxy_command());
        }
        let machine = Machine {
            context: Default::default(),
            id: format!("libvirt/{}", release.domain),
            provisioner: "libvirt".to_owned(),
            connection: Connection::Ssh {
                host: "127.0.0.1".to_owned(),
                port,
                user: self.args.user.clone(),
                identity_file: self.args.identity_file.clone(),
                options,
            },
            platform: self.platform.clone(),
            release: serde_json::to_value(release)
                .map_err(|e| ProvisionError::Failed(format!("encode the release record: {e}")))?,
        };
        let timeout = Duration::from_secs(self.args.boot_timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        let ready = async {
            if self.remote.is_none() {
                wait_for_banner("127.0.0.1", port, deadline, timeout).await?;
            }
            wait_for_login(&machine, deadline).await
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => Err(ProvisionError::Cancelled),
            ready = ready => match ready {
                Ok(()) => Ok(machine),
                Err(err) => {
                    let console = console_tail(release, self.remote.as_ref()).await;
                    Err(ProvisionError::Failed(format!(
                        "domain {} is not ready: {err}{console}",
                        release.domain
                    )))
                }
            },
        }
    }

    /// The transient domain's XML.
    fn domain_xml(
        &self,
        release: &Release,
        virt_type: &str,
        port: u16,
        uid: &str,
        gid: &str,
    ) -> String {
        let a = &self.args;
        let esc = |p: &Path| xml_escape(&p.display().to_string());
        let mut os = String::from("<type arch='x86_64' machine='pc'>hvm</type>");
        if let Some(kernel) = &a.kernel {
            os.push_str(&format!("<kernel>{}</kernel>", esc(kernel)));
            if let Some(initrd) = &a.initrd {
                os.push_str(&format!("<initrd>{}</initrd>", esc(initrd)));
            }
            let append = a.append.as_deref().unwrap_or(DEFAULT_APPEND);
            os.push_str(&format!("<cmdline>{}</cmdline>", xml_escape(append)));
        } else {
            os.push_str("<boot dev='hd'/>");
        }
        format!(
            "<domain type='{virt_type}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n\
             <name>{name}</name>\n\
             <memory unit='MiB'>{memory}</memory>\n\
             <vcpu>{vcpus}</vcpu>\n\
             <os>{os}</os>\n\
             <features><acpi/></features>\n\
             <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>\n\
             <seclabel type='static' model='dac' relabel='no'><label>+{uid}:+{gid}</label></seclabel>\n\
             <devices>\n\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{overlay}'/><target dev='vda' bus='virtio'/></disk>\n\
             <serial type='file'><source path='{console}'/><target port='0'/></serial>\n\
             <memballoon model='none'/>\n\
             </devices>\n\
             <qemu:commandline>\n\
             <qemu:arg value='-netdev'/>\
             <qemu:arg value='user,id=atexnet,hostfwd=tcp:127.0.0.1:{port}-:22'/>\n\
             <qemu:arg value='-device'/>\
             <qemu:arg value='virtio-net-pci,netdev=atexnet,bus=pci.0,addr=0x10'/>\n\
             </qemu:commandline>\n\
             </domain>\n",
            name = xml_escape(&release.domain),
            memory = a.memory,
            vcpus = a.vcpus,
            overlay = esc(&release.overlay),
            console = esc(&release.console),
        )
    }
}

impl Provisioner for Libvirt {
    fn kind(&self) -> &str {
        "libvirt"
    }

    fn max_machines(&self) -> usize {
        self.args.max
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move { self.reserve_inner(&cancel).await })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async move { release_record(&machine).await })
    }
}

/// Escape `text` for XML.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// A few random bits (for a remote port).
fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish() as u16
}

/// A port free on 127.0.0.1 now.
fn free_port() -> Result<u16, ProvisionError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ProvisionError::io("find a free port on 127.0.0.1", e))
}

/// Boot `kernel` under kvm with qemu directly and wait up to [`KVM_PROBE`]
/// for its first line on the serial port.
async fn probe_kvm(kernel: &Path) -> Result<(), String> {
    let mut child = crate::child::command("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args([
            "-no-reboot",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-kernel",
        ])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1 rdinit=/atex-kvm-probe"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("could not be tried (qemu-system-x86_64: {e})"))?;
    let Some(mut stdout) = child.stdout.take() else {
        return Err("could not be tried (no output)".to_owned());
    };
    let seen = tokio::time::timeout(KVM_PROBE, async {
        let mut text = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => text.extend_from_slice(&buf[..n]),
            }
            if text.windows(13).any(|w| w == b"Linux version") {
                return true;
            }
        }
    })
    .await;
    let _ = child.kill().await;
    match seen {
        Ok(true) => Ok(()),
        Ok(false) => Err("stopped before the kernel said a word".to_owned()),
        Err(_) => Err(format!(
            "showed no kernel line within {KVM_PROBE:?} (nested kvm?)"
        )),
    }
}

/// Log in to the guest and run `true`, again and again until `deadline`.
async fn wait_for_login(
    machine: &Machine,
    deadline: tokio::time::Instant,
) -> Result<(), ProvisionError> {
    loop {
        let mut conn = Conn::new(&machine.connection).with_timeout(Duration::from_secs(20));
        let tried = async {
            conn.connect().await?;
            let out = conn.run_script(b"true\n").await?;
            Ok::<bool, ProvisionError>(out.success())
        }
        .await;
        let _ = conn.disconnect().await;
        match tried {
            Ok(true) => return Ok(()),
            _ if tokio::time::Instant::now() >= deadline => {
                return Err(ProvisionError::Timeout(match tried {
                    Err(e) => format!("no ssh login before the deadline: {e}"),
                    Ok(_) => "`true` failed on the guest".to_owned(),
                }));
            }
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// Check a libvirt machine record before anything is released: a domain
/// named `atex-*`, overlay and console files named `atex-libvirt-*`,
/// absolute. Errors are [`ProvisionError::Invalid`].
pub fn check_release(machine: &Machine) -> Result<(), ProvisionError> {
    release_of(machine).map(drop)
}

fn release_of(machine: &Machine) -> Result<Release, ProvisionError> {
    let release: Release = serde_json::from_value(machine.release.clone()).map_err(|e| {
        ProvisionError::Invalid(format!(
            "machine {}: the release record is not a libvirt one: {e}",
            machine.id
        ))
    })?;
    let ours = |p: &Path| {
        p.is_absolute()
            && p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(FILE_PREFIX))
    };
    let named = release.domain.starts_with("atex-")
        && release
            .domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !named || !ours(&release.overlay) || !ours(&release.console) {
        return Err(ProvisionError::Invalid(format!(
            "machine {}: not an atex domain and overlay: {:?}",
            machine.id, machine.release
        )));
    }
    Remote::of(&release.uri).map_err(ProvisionError::Invalid)?;
    Ok(release)
}

/// Release a libvirt machine from its record alone: destroy its domain
/// (gone already is not an error) and delete its overlay and console log.
pub async fn release_record(machine: &Machine) -> Result<(), ProvisionError> {
    let release = release_of(machine)?;
    let remote = Remote::of(&release.uri).map_err(ProvisionError::Invalid)?;
    remove(&release, remote.as_ref()).await
}

/// Destroy the domain and delete its files.
async fn remove(release: &Release, remote: Option<&Remote>) -> Result<(), ProvisionError> {
    let destroyed = match virsh(&release.uri, &["destroy", &release.domain]).await {
        Err(ProvisionError::Command { stderr, .. })
            if stderr.contains("failed to get domain") || stderr.contains("Domain not found") =>
        {
            Ok(())
        }
        other => other.map(drop),
    };
    let script = format!(
        "rm -f -- {} {}\n",
        sh_quote(&release.overlay.display().to_string()),
        sh_quote(&release.console.display().to_string())
    );
    let removed = host_script(remote, &script).await.map(drop);
    destroyed.and(removed)
}

/// The console's last lines, for an error message.
async fn console_tail(release: &Release, remote: Option<&Remote>) -> String {
    let script = format!(
        "tail -n 5 -- {}\n",
        sh_quote(&release.console.display().to_string())
    );
    match host_script(remote, &script).await {
        Ok(out) if !out.is_empty() => format!("; console: {}", last_lines(&out, 5)),
        _ => String::new(),
    }
}

/// `virsh -c URI ARGS...`, bounded; its stdout.
async fn virsh(uri: &str, args: &[&str]) -> Result<Vec<u8>, ProvisionError> {
    let mut command = crate::child::command("virsh");
    command.args(["-q", "-c", uri]).args(args);
    let what = format!("virsh -c {uri} {}", args.join(" "));
    bounded(command, &what, "virsh (apt-get install libvirt-clients)").await
}

/// Run `script` with `sh` on the hypervisor's host (here, or over ssh);
/// its stdout.
async fn host_script(remote: Option<&Remote>, script: &str) -> Result<Vec<u8>, ProvisionError> {
    let mut command = match remote {
        None => {
            let mut sh = crate::child::command("sh");
            sh.args(["-c", script]);
            sh
        }
        Some(remote) => {
            let mut ssh = crate::child::command("ssh");
            ssh.args(remote.ssh_options())
                .arg(&remote.target)
                .arg(script);
            ssh
        }
    };
    command.stdin(Stdio::null());
    let what = script.lines().next().unwrap_or_default().to_owned();
    bounded(command, &what, "sh or ssh").await
}

/// Run `command` ([`COMMAND_TIMEOUT`]), in its own process group, killed
/// when dropped; its stdout, or the error with its stderr's last lines.
async fn bounded(
    mut command: tokio::process::Command,
    what: &str,
    program: &str,
) -> Result<Vec<u8>, ProvisionError> {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProvisionError::io(format!("start {program}"), e))?;
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ProvisionError::Timeout(format!("`{what}` after {COMMAND_TIMEOUT:?}")))?
        .map_err(|e| ProvisionError::io(format!("wait for `{what}`"), e))?;
    if !out.status.success() {
        return Err(ProvisionError::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            stderr: last_lines(&out.stderr, 5),
        });
    }
    Ok(out.stdout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn uris_name_the_hypervisor_s_host() {
        assert_eq!(Remote::of("qemu:///system").unwrap(), None);
        assert_eq!(Remote::of("qemu:///session").unwrap(), None);
        let remote = Remote::of("qemu+ssh://me@h.example:2222/system?keyfile=/k&no_verify=1")
            .unwrap()
            .unwrap();
        assert_eq!(
            remote,
            Remote {
                target: "me@h.example".into(),
                port: Some(2222),
                keyfile: Some("/k".into()),
                no_verify: true
            }
        );
        assert_eq!(
            remote.proxy_command(),
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -p 2222 -i /k -W %h:%p me@h.example"
        );
        assert!(Remote::of("nope").is_err());
        assert!(Remote::of("qemu+tcp://h/system").is_err());
        assert!(Remote::of("qemu+ssh://h:x/system").is_err());
    }

    #[test]
    fn release_records_are_checked() {
        let machine = |release: serde_json::Value| Machine {
            id: "libvirt/x".into(),
            provisioner: "libvirt".into(),
            connection: Connection::Local,
            platform: String::new(),
            context: Default::default(),
            release,
        };
        let good = serde_json::json!({
            "uri": "qemu:///system", "domain": "atex-0123456789",
            "overlay": "/var/tmp/atex-libvirt-atex-0123456789.qcow2",
            "console": "/var/tmp/atex-libvirt-atex-0123456789.console",
        });
        assert!(check_release(&machine(good.clone())).is_ok());
        for (key, bad) in [
            ("domain", "my-vm"),
            ("domain", "atex-x;rm"),
            ("overlay", "/etc/passwd"),
            ("console", "atex-libvirt-relative"),
            ("uri", "nope"),
        ] {
            let mut record = good.clone();
            record[key] = bad.into();
            assert!(check_release(&machine(record)).is_err(), "{key}={bad}");
        }
    }

    #[test]
    fn the_domain_has_the_overlay_the_forward_and_the_kernel() {
        let args = Args {
            image: "/i/disk.raw".into(),
            kernel: Some("/i/vmlinuz".into()),
            max: 1,
            memory: 512,
            vcpus: 2,
            uri: "qemu:///system".into(),
            overlay_dir: "/var/tmp".into(),
            ..Args::default()
        };
        let libvirt = Libvirt::new(&args).unwrap();
        let release = Release {
            uri: args.uri.clone(),
            domain: "atex-1".into(),
            overlay: "/var/tmp/atex-libvirt-atex-1.qcow2".into(),
            console: "/var/tmp/atex-libvirt-atex-1.console".into(),
        };
        let xml = libvirt.domain_xml(&release, "qemu", 4242, "0", "0");
        for part in [
            "<domain type='qemu'",
            "<name>atex-1</name>",
            "<memory unit='MiB'>512</memory>",
            "<vcpu>2</vcpu>",
            "<kernel>/i/vmlinuz</kernel>",
            "<cmdline>root=/dev/vda rw console=ttyS0 net.ifnames=0</cmdline>",
            "<source file='/var/tmp/atex-libvirt-atex-1.qcow2'/>",
            "hostfwd=tcp:127.0.0.1:4242-:22",
            "<label>+0:+0</label>",
        ] {
            assert!(xml.contains(part), "{part} missing: {xml}");
        }
        assert_eq!(libvirt.platform, "disk.raw");
    }
}

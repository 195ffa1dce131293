//! The `ssh` provisioner: existing hosts named on the command line or in a
//! file, each handed out to one user at a time after checking that it is
//! reachable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use atex_shared::connection::Connection as Conn;
use atex_shared::records::{Connection, Machine};
use indexmap::IndexMap;

use crate::provisioner::{BoxFuture, CancellationToken, ProvisionError, Provisioner};

/// How long the reachability check of one host may take by default.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `atex-provision ssh`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// Hosts to hand out, as `user@host[:port]` (`root` when the user is
    /// left out; IPv6 addresses in brackets: `root@[::1]:2222`).
    #[arg(value_name = "USER@HOST[:PORT]")]
    pub hosts: Vec<String>,
    /// A file with more hosts, one per line: `user@host[:port]` or a
    /// Machine record (JSON; handed out as it is, with provisioner `ssh`
    /// and nothing to release). `#` comments and blank lines are ignored.
    #[arg(long, value_name = "PATH")]
    pub hosts_file: Option<PathBuf>,
    /// The private key for the `user@host` hosts (Machine records carry
    /// their own).
    #[arg(long, short = 'i', value_name = "PATH")]
    pub identity_file: Option<PathBuf>,
    /// An ssh client option for the `user@host` hosts, e.g.
    /// `-o ProxyJump=bastion`; repeatable.
    #[arg(short = 'o', value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// The platform results are reported for (default: `ssh`); Machine
    /// records with a platform keep theirs.
    #[arg(long, value_name = "NAME")]
    pub platform: Option<String>,
    /// How long checking that a host is reachable may take, in seconds
    /// (default: 30).
    #[arg(long, value_name = "SECONDS")]
    pub check_timeout: Option<u64>,
}

/// Hands out a fixed set of existing hosts, each to one user at a time.
///
/// [`Provisioner::reserve`] takes the next free host (round robin, so a
/// retry after an unreachable host tries another one), connects to it,
/// runs `true` and disconnects, so no ssh master is left behind.
/// Releasing only marks the host free again: nothing was created.
///
/// The check is not interrupted by cancellation (an ssh master dropped
/// half-way through authentication could outlive the process); it is
/// bounded by [`Args::check_timeout`] and the reservation reports
/// [`ProvisionError::Cancelled`] once it ends.
///
/// ```
/// use atex_provision::ssh::{Args, Ssh};
/// let args = Args {
///     hosts: vec!["root@127.0.0.1:2222".into(), "tester@localhost".into()],
///     ..Args::default()
/// };
/// let ssh = Ssh::new(&args).unwrap();
/// assert_eq!(ssh.host_count(), 2);
/// ```
#[derive(Debug)]
pub struct Ssh {
    hosts: Vec<Machine>,
    state: Mutex<State>,
    check_timeout: Duration,
}

#[derive(Debug)]
struct State {
    busy: Vec<bool>,
    /// Hosts whose next reservation skips the check (see
    /// [`Ssh::unchecked_first_use`]).
    unchecked: Vec<bool>,
    /// Where the search for a free host starts next time.
    cursor: usize,
}

impl Ssh {
    /// The provisioner of the hosts in `args` (command line first, then
    /// the file). Bad host strings and bad file lines are
    /// [`ProvisionError::Invalid`], the file's naming `FILE:LINE:`; no
    /// hosts at all is invalid too.
    pub fn new(args: &Args) -> Result<Ssh, ProvisionError> {
        let options = parse_options(&args.options)?;
        let platform = args.platform.clone().unwrap_or_else(|| "ssh".to_owned());
        let defaults = Defaults {
            identity_file: args.identity_file.as_deref(),
            options: &options,
            platform: &platform,
        };
        let mut hosts = Vec::new();
        for (index, spec) in args.hosts.iter().enumerate() {
            let machine = defaults
                .machine(spec)
                .and_then(|m| validate(&m).map(|()| m))
                .map_err(|e| {
                    ProvisionError::Invalid(format!("host argument {}: {e}", index + 1))
                })?;
            hosts.push(machine);
        }
        if let Some(path) = &args.hosts_file {
            let file = std::fs::File::open(path).map_err(|e| {
                ProvisionError::Invalid(format!(
                    "cannot open the hosts file {}: {e}",
                    path.display()
                ))
            })?;
            hosts.extend(parse_hosts_file(
                std::io::BufReader::new(file),
                path,
                &defaults,
            )?);
        }
        if hosts.is_empty() {
            return Err(ProvisionError::Invalid(
                "no hosts: name them as USER@HOST[:PORT] or with --hosts-file".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for host in &hosts {
            if !seen.insert(host.id.as_str()) {
                return Err(ProvisionError::Invalid(format!(
                    "the host {} is listed twice",
                    host.id
                )));
            }
        }
        Ok(Ssh {
            state: Mutex::new(State {
                busy: vec![false; hosts.len()],
                unchecked: vec![false; hosts.len()],
                cursor: 0,
            }),
            hosts,
            check_timeout: args
                .check_timeout
                .map_or(DEFAULT_CHECK_TIMEOUT, |s| Duration::from_secs(s.max(1))),
        })
    }

    /// Hand each host out the first time without the reachability check:
    /// for a caller that connects to the machine right away, whose
    /// connection is the check (atex-orchestrate's session: a failed
    /// connection is a failed setup, released and replaced). The check
    /// costs a whole ssh connection, key exchange included: about 120 ms
    /// of CPU on each side with OpenSSH 9's default key exchange, and its
    /// round trips before the first test. A host handed out again after
    /// a release is checked, so a dead host costs its caller one failed
    /// connection, then fails its reservations as without this.
    pub fn unchecked_first_use(self) -> Ssh {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.unchecked.iter_mut().for_each(|u| *u = true);
        }
        self
    }

    /// How many hosts there are: the default number of machines to ask for.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// The hosts, as the Machine records [`Provisioner::reserve`] hands out.
    pub fn hosts(&self) -> &[Machine] {
        &self.hosts
    }

    /// Mark the next free host busy; `None` when all are. With it, whether
    /// it must be checked first.
    fn take(&self) -> Option<(usize, bool)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let n = state.busy.len();
        let index = (0..n)
            .map(|i| (state.cursor + i) % n)
            .find(|&i| !state.busy[i])?;
        state.busy[index] = true;
        state.cursor = (index + 1) % n;
        let check = !std::mem::replace(&mut state.unchecked[index], false);
        Some((index, check))
    }

    fn give_back(&self, index: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(busy) = state.busy.get_mut(index) {
            *busy = false;
        }
    }
}

impl Provisioner for Ssh {
    fn kind(&self) -> &str {
        "ssh"
    }

    fn max_machines(&self) -> usize {
        self.hosts.len()
    }

    fn reserve(&self, cancel: CancellationToken) -> BoxFuture<'_, Result<Machine, ProvisionError>> {
        Box::pin(async move {
            if cancel.is_cancelled() {
                return Err(ProvisionError::Cancelled);
            }
            let (index, check) = self.take().ok_or_else(|| {
                ProvisionError::Failed(format!("all {} hosts are in use", self.hosts.len()))
            })?;
            let machine = self.hosts[index].clone();
            if check {
                let checked = check_reachable(&machine.connection, self.check_timeout).await;
                if let Err(err) = checked {
                    self.give_back(index);
                    return Err(err);
                }
            }
            if cancel.is_cancelled() {
                self.give_back(index);
                return Err(ProvisionError::Cancelled);
            }
            Ok(machine)
        })
    }

    fn release(&self, machine: Machine) -> BoxFuture<'_, Result<(), ProvisionError>> {
        Box::pin(async move {
            if let Some(index) = self.hosts.iter().position(|h| h.id == machine.id) {
                self.give_back(index);
            }
            Ok(())
        })
    }
}

/// Release an ssh machine from its record alone (another process): there
/// is nothing to give back.
pub async fn release_record(machine: &Machine) -> Result<(), ProvisionError> {
    let _ = machine;
    Ok(())
}

/// Connect, run `true`, disconnect, all within `timeout`; the error names
/// the host. The connection is always closed, so no ssh master stays.
pub(crate) async fn check_reachable(
    record: &Connection,
    timeout: Duration,
) -> Result<(), ProvisionError> {
    let mut conn = Conn::new(record).with_timeout(timeout);
    let target = conn.target();
    let result = async {
        conn.connect().await?;
        let out = tokio::time::timeout(timeout, conn.run_script(b"true\n"))
            .await
            .map_err(|_| ProvisionError::Timeout(format!("run `true` on {target}")))??;
        if !out.success() {
            return Err(ProvisionError::Failed(format!(
                "check {target}: `true` exited with {:?}: {}",
                out.code,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
    .await;
    let closed = conn.disconnect().await;
    result?;
    closed.map_err(ProvisionError::from)
}

/// What `user@host` entries get from the command line.
struct Defaults<'a> {
    identity_file: Option<&'a Path>,
    options: &'a IndexMap<String, String>,
    platform: &'a str,
}

impl Defaults<'_> {
    /// The Machine record of `spec` (`user@host[:port]`).
    fn machine(&self, spec: &str) -> Result<Machine, String> {
        let (user, host, port) = parse_host(spec)?;
        let identity_file = match self.identity_file {
            Some(path) => Some(
                std::path::absolute(path)
                    .map_err(|e| format!("resolve the identity file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Machine {
            context: Default::default(),
            id: format!("ssh/{user}@{host}:{port}"),
            provisioner: "ssh".to_owned(),
            connection: Connection::Ssh {
                host,
                port,
                user,
                identity_file,
                options: self.options.clone(),
            },
            platform: self.platform.to_owned(),
            release: serde_json::Value::Null,
        })
    }
}

/// The longest host name (RFC 1035 allows 253 characters plus a final
/// dot) or user name accepted.
pub const MAX_NAME: usize = 255;

/// The longest line of a hosts file (a Machine record with its options
/// fits easily); a longer line is refused without reading it whole.
pub const MAX_LINE: usize = 64 * 1024;

/// `text` quoted for a message, at most 60 characters of it: a bad host
/// may be megabytes long.
fn shown(text: &str) -> String {
    let mut quoted: String = format!("{text:?}");
    if quoted.chars().count() > 62 {
        quoted = quoted.chars().take(60).collect::<String>() + "...\"";
    }
    quoted
}

/// Split and check `[user@]host[:port]`: the user defaults to `root`, the
/// port to 22. The host is a DNS name, an IPv4 address or an IPv6 address
/// in brackets (`[::1]:2222`; a bare IPv6 address without a port is
/// accepted too); names and users are at most [`MAX_NAME`] characters,
/// never start with `-` (ssh would read an option) and hold no spaces or
/// control characters; the port is 1-65535.
fn parse_host(spec: &str) -> Result<(String, String, u16), String> {
    let spec = spec.trim();
    let bad = |why: &str| format!("bad host {}: {why}", shown(spec));
    // user + '@' + '[' + host + ']' + ':' + port
    if spec.len() > 2 * MAX_NAME + 9 {
        return Err(bad(&format!("longer than {} characters", 2 * MAX_NAME + 9)));
    }
    let (user, rest) = match spec.rsplit_once('@') {
        Some((user, rest)) => (user, rest),
        None => ("root", spec),
    };
    check_user(user).map_err(|why| bad(&why))?;
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("no `]` after the IPv6 address"))?;
        if !is_ipv6(host) {
            return Err(bad(&format!("{} is not an IPv6 address", shown(host))));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(bad("junk after `]`")),
            },
        }
    } else {
        match rest.matches(':').count() {
            0 => (rest, None),
            1 => {
                let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
                (host, Some(port))
            }
            // A bare IPv6 address, without a port.
            _ if is_ipv6(rest) => (rest, None),
            _ => {
                return Err(bad(
                    "an IPv6 address goes in brackets ([::1]:22), and a name has no `:`",
                ));
            }
        }
    };
    if !is_ipv6(host) {
        check_host_name(host).map_err(|why| bad(&why))?;
    }
    let port = match port {
        None => 22,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(bad(&format!("the port {} is not 1-65535", shown(p)))),
        },
    };
    Ok((user.to_owned(), host.to_owned(), port))
}

/// A user name: not empty, no leading `-`, no spaces or control
/// characters, at most [`MAX_NAME`] characters.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("the user is empty".into());
    }
    if user.len() > MAX_NAME {
        return Err(format!("the user is longer than {MAX_NAME} characters"));
    }
    if user.starts_with('-') {
        return Err("the user starts with `-`".into());
    }
    if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the user has spaces or control characters".into());
    }
    Ok(())
}

/// An IPv6 address, with an optional `%zone` (`fe80::1%eth0`).
fn is_ipv6(text: &str) -> bool {
    let (address, zone) = match text.split_once('%') {
        Some((address, zone)) => (address, Some(zone)),
        None => (text, None),
    };
    let zone_ok = zone.is_none_or(|z| {
        !z.is_empty()
            && z.len() <= 64
            && z.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    });
    zone_ok && address.parse::<std::net::Ipv6Addr>().is_ok()
}

/// A DNS name or an IPv4 address: labels of letters, digits, `-` and `_`
/// (common in internal names), 1-63 characters, not starting or ending
/// with `-`, joined by dots (one final dot allowed), at most [`MAX_NAME`]
/// characters; a name of digits and dots only must be an IPv4 address.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host name is empty".into());
    }
    if host.len() > MAX_NAME {
        return Err(format!(
            "the host name is longer than {MAX_NAME} characters"
        ));
    }
    if host.starts_with('-') {
        return Err("the host name starts with `-`".into());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let all_digits = name.chars().all(|c| c.is_ascii_digit() || c == '.');
    if all_digits {
        return match name.parse::<std::net::Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{} is not an IPv4 address", shown(host))),
        };
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!(
                "{} is not a host name (letters, digits, `-` and `_` in dot-separated labels \
                 of 1-63 characters), an IPv4 address or an [IPv6] address",
                shown(host)
            ));
        }
    }
    Ok(())
}

/// `KEY=VALUE` options, in order; a later key replaces an earlier one.
fn parse_options(options: &[String]) -> Result<IndexMap<String, String>, ProvisionError> {
    let mut map = IndexMap::new();
    for option in options {
        let (key, value) = option
            .split_once('=')
            .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                ProvisionError::Invalid(format!(
                    "bad ssh option {option:?}: expected KEY=VALUE, KEY an ssh_config keyword"
                ))
            })?;
        map.insert(key.to_owned(), value.to_owned());
    }
    Ok(map)
}

/// What atex-shared's connection checks say about `machine` (a host
/// starting with `-`, option values with line breaks, an identity file
/// that cannot be read), before anything is started.
fn validate(machine: &Machine) -> Result<(), String> {
    atex_shared::connection::validate(&machine.connection).map_err(|e| e.to_string())
}

/// The hosts of a hosts file, read line by line (no line over
/// [`MAX_LINE`] bytes is held whole); errors name `FILE:LINE:`.
fn parse_hosts_file(
    mut input: impl std::io::BufRead,
    path: &Path,
    defaults: &Defaults<'_>,
) -> Result<Vec<Machine>, ProvisionError> {
    use std::io::{BufRead as _, Read as _};
    let mut hosts = Vec::new();
    let mut buf = Vec::new();
    for number in 1.. {
        let at = |message: String| {
            ProvisionError::Invalid(format!("{}:{number}: {message}", path.display()))
        };
        buf.clear();
        let limit = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
        let read = input
            .by_ref()
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|e| at(format!("failed to read: {e}")))?;
        if read == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(at(format!("the line is longer than {MAX_LINE} bytes")));
        }
        let line = std::str::from_utf8(&buf).map_err(|_| at("the line is not UTF-8".into()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let machine = if line.starts_with('{') {
            let mut machine: Machine =
                serde_json::from_str(line).map_err(|e| at(format!("not a Machine record: {e}")))?;
            if machine.id.is_empty() {
                return Err(at("the Machine record has an empty id".into()));
            }
            if machine.platform.is_empty() {
                machine.platform = defaults.platform.to_owned();
            }
            // Handed out by this provisioner now: `atex-provision release`
            // must not give it back to the one that made it.
            machine.provisioner = "ssh".to_owned();
            machine.release = serde_json::Value::Null;
            machine
        } else {
            defaults.machine(line).map_err(at)?
        };
        validate(&machine).map_err(at)?;
        hosts.push(machine);
    }
    Ok(hosts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    /// With `unchecked_first_use`, a host nobody listens on is handed out
    /// once without a connection; handed out again after its release, it
    /// is checked and refused.
    #[test]
    fn unchecked_first_use_checks_a_host_given_again() {
        // A port on loopback nobody listens on: the check fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = Args {
            hosts: vec![format!("root@127.0.0.1:{port}")],
            check_timeout: Some(5),
            ..Args::default()
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let checked = Ssh::new(&args).unwrap();
            assert!(checked.reserve(CancellationToken::new()).await.is_err());
            let ssh = Ssh::new(&args).unwrap().unchecked_first_use();
            let machine = ssh.reserve(CancellationToken::new()).await.unwrap();
            ssh.release(machine).await.unwrap();
            let again = ssh.reserve(CancellationToken::new()).await;
            assert!(again.is_err(), "{again:?}");
        });
    }

    #[test]
    fn host_strings() {
        assert_eq!(
            parse_host("tester@example.org:2222").unwrap(),
            ("tester".into(), "example.org".into(), 2222)
        );
        assert_eq!(
            parse_host("example.org").unwrap(),
            ("root".into(), "example.org".into(), 22)
        );
        assert_eq!(
            parse_host("a@[::1]:2200").unwrap(),
            ("a".into(), "::1".into(), 2200)
        );
        assert_eq!(parse_host("a@::1").unwrap(), ("a".into(), "::1".into(), 22));
        assert_eq!(
            parse_host("10.0.0.5:2222").unwrap(),
            ("root".into(), "10.0.0.5".into(), 2222)
        );
        assert_eq!(
            parse_host("u@host_1.example.org.").unwrap(),
            ("u".into(), "host_1.example.org.".into(), 22)
        );
        assert_eq!(parse_host("a@[fe80::1%eth0]:22").unwrap().1, "fe80::1%eth0");
        for bad in [
            "a@host:0",
            "a@host:x",
            "@host",
            "a@",
            "a@[::1",
            "a@[::1]x",
            "a@h:99999",
            // Issue 10, item 17: not a host at all.
            "[1,2,3]",
            "a@[nope]:22",
            "a@1:2:3",
            "a@-oProxyCommand=x",
            "-u@host",
            "a@host name",
            "a@ho\u{7}st",
            "a@999.1.1.1",
            "a@1.2.3",
            "a@-host",
            "a@host-.org",
            "a@a..b",
            "a@host/path",
            "a@h\u{e9}te",
        ] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_hosts_are_refused_with_a_short_message() {
        let label = "a".repeat(63);
        let long_ok = [&*label, &*label, &*label, &*label].join(".");
        assert_eq!(long_ok.len(), MAX_NAME);
        assert!(parse_host(&long_ok).is_ok());
        assert!(
            parse_host(&format!("{long_ok}.b")).is_err(),
            "over {MAX_NAME}"
        );
        assert!(parse_host(&format!("{}.b", "a".repeat(64))).is_err());
        let huge = "x".repeat(5_000_000);
        let err = parse_host(&huge).unwrap_err();
        assert!(err.len() < 200, "{err}");
        let err = parse_host(&format!("{}@h", "u".repeat(256))).unwrap_err();
        assert!(err.contains("user is longer"), "{err}");
    }

    #[test]
    fn options_need_a_keyword_and_a_value() {
        let map = parse_options(&["ProxyJump=b=c".into(), "Port=1".into()]).unwrap();
        assert_eq!(map["ProxyJump"], "b=c");
        assert!(parse_options(&["Proxy Jump=x".into()]).is_err());
        assert!(parse_options(&["NoValue".into()]).is_err());
    }

    #[test]
    fn hosts_file_lines_and_errors() {
        let options = IndexMap::new();
        let defaults = Defaults {
            identity_file: None,
            options: &options,
            platform: "p",
        };
        let text = "# pool\n\n  u@h1:2\n{\"id\":\"m/1\",\"provisioner\":\"x\",\
                    \"connection\":{\"kind\":\"local\"}}\n";
        let hosts = parse_hosts_file(text.as_bytes(), Path::new("hosts"), &defaults).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].id, "ssh/u@h1:2");
        assert_eq!(hosts[1].platform, "p");
        assert_eq!(hosts[1].provisioner, "ssh");
        let parse = |text: &str| {
            parse_hosts_file(text.as_bytes(), Path::new("hosts"), &defaults)
                .unwrap_err()
                .to_string()
        };
        let err = parse("u@h\nu@h:nope\n");
        assert!(err.starts_with("hosts:2: bad host"), "{err}");
        let err = parse("{nope\n");
        assert!(err.starts_with("hosts:1: not a Machine record"), "{err}");
        let err = parse("# hosts\n[1,2,3]\n");
        assert!(err.starts_with("hosts:2: bad host \"[1,2,3]\""), "{err}");
        let err = parse(&format!("u@h\n{}\nu@h2\n", "x".repeat(MAX_LINE + 10)));
        assert!(err.starts_with("hosts:2: the line is longer"), "{err}");
        let record = r#"{"id":"m","provisioner":"ssh","connection":{"kind":"ssh","host":"-oProxyCommand=x","port":22,"user":"u"}}"#;
        let err = parse(record);
        assert!(err.starts_with("hosts:1: ") && err.contains("'-'"), "{err}");
    }

    #[test]
    fn hosts_rotate_and_come_back() {
        let args = Args {
            hosts: vec!["a@h1".into(), "a@h2".into()],
            ..Args::default()
        };
        let ssh = Ssh::new(&args).unwrap();
        assert_eq!(ssh.max_machines(), 2);
        assert_eq!(ssh.take(), Some((0, true)));
        ssh.give_back(0);
        // The cursor moved on: a retry after a failure tries the other host.
        assert_eq!(ssh.take(), Some((1, true)));
        assert_eq!(ssh.take(), Some((0, true)));
        assert_eq!(ssh.take(), None);
    }

    #[test]
    fn no_hosts_and_duplicates_are_invalid() {
        assert!(matches!(
            Ssh::new(&Args::default()),
            Err(ProvisionError::Invalid(_))
        ));
        let args = Args {
            hosts: vec!["a@h".into(), "a@h:22".into()],
            ..Args::default()
        };
        assert!(Ssh::new(&args).is_err());
    }
}

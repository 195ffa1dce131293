//! One Testing Farm reservation: the request spec, the ssh key it
//! authorizes, following the request and its pipeline log until the guest
//! shows, and waiting until ssh with our key works.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atex_shared::connection::Connection;
use atex_shared::records;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::api::{ALIVE_STATES, Api};
use crate::provisioner::{CancellationToken, ProvisionError};

/// Prefix of the directories holding generated keys; release removes only
/// directories named so.
pub(crate) const KEY_DIR_PREFIX: &str = "atex-tf-key-";

/// The user, host and port of a guest, from its `Guest is ready` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guest {
    pub(crate) user: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

/// Parse a pipeline log line such as
/// `... ] Guest is ready: ArtemisGuest(8f2a..., root@10.0.0.5, arch=x86_64, ...)`
/// (ATEX's regex `\] Guest is ready: ArtemisGuest\([^,]+, ([^\s@,]+)@([^,]+), arch=`).
///
/// Beyond ATEX, the host may carry a `:PORT` (`root@10.0.0.5:2222`, or
/// `[::1]:2222` for IPv6); the real service always means port 22 and never
/// writes one. The local test server uses it for its loopback sshd.
pub(crate) fn parse_guest_line(line: &str) -> Option<Guest> {
    let rest = line.split_once("] Guest is ready: ArtemisGuest(")?.1;
    let (guest_id, rest) = rest.split_once(", ")?;
    if guest_id.is_empty() || guest_id.contains(',') {
        return None;
    }
    let (address, _) = rest.split_once(", arch=")?;
    let (user, host) = address.split_once('@')?;
    if user.is_empty() || user.contains(|c: char| c.is_whitespace() || c == ',') {
        return None;
    }
    if host.is_empty() || host.contains(',') {
        return None;
    }
    let (host, port) = split_port(host)?;
    Some(Guest {
        user: user.to_owned(),
        host: host.to_owned(),
        port,
    })
}

/// `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
fn split_port(host: &str) -> Option<(&str, u16)> {
    if let Some(inner) = host.strip_prefix('[') {
        let (addr, rest) = inner.split_once(']')?;
        return match rest.strip_prefix(':') {
            Some(port) => Some((addr, port.parse().ok()?)),
            None if rest.is_empty() => Some((addr, 22)),
            None => None,
        };
    }
    match host.matches(':').count() {
        1 => {
            let (h, port) = host.split_once(':')?;
            Some((h, port.parse().ok()?))
        }
        _ => Some((host, 22)),
    }
}

/// Whether the reserve test started (the key is installed right after).
pub(crate) fn is_tests_start(line: &str) -> bool {
    line.contains("] starting tests execution")
}

/// A private key and the public key line Testing Farm gets.
#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) private: PathBuf,
    pub(crate) public: String,
    /// The directory of a generated key (removed on release).
    pub(crate) dir: Option<PathBuf>,
}

/// Where generated keys go: a directory that outlives this process (the
/// machine may be used after `atex-provision --detach` exits), private to
/// the user: `$XDG_RUNTIME_DIR` when set, else the temp dir.
fn key_parent() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir)
}

/// Generate an ed25519 key in a new directory that stays until release.
pub(crate) async fn generate_key() -> Result<Key, ProvisionError> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::Builder::new()
        .prefix(KEY_DIR_PREFIX)
        // Private to the user (tempfile leaves the mode to the umask).
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(key_parent())
        .map_err(|e| ProvisionError::io("create a directory for the ssh key", e))?
        .keep();
    let private = dir.join("id_ed25519");
    let result = crate::child::command("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "atex", "-f"])
        .arg(&private)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let fail = |err: ProvisionError| {
        remove_key_dir(&dir);
        Err(err)
    };
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            return fail(ProvisionError::io(
                "run ssh-keygen (is openssh-client installed?)",
                e,
            ));
        }
    };
    if !out.status.success() {
        return fail(ProvisionError::Command {
            command: format!("ssh-keygen -t ed25519 -f {}", private.display()),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    match std::fs::read_to_string(private.with_extension("pub")) {
        Ok(public) => Ok(Key {
            private,
            public,
            dir: Some(dir),
        }),
        Err(e) => fail(ProvisionError::io("read the generated public key", e)),
    }
}

/// The user's key: its public half from `KEY.pub`, else from `ssh-keygen -y`.
pub(crate) async fn user_key(private: &Path) -> Result<Key, ProvisionError> {
    let private = std::path::absolute(private)
        .map_err(|e| ProvisionError::io(format!("resolve {}", private.display()), e))?;
    let mut pub_path = private.clone().into_os_string();
    pub_path.push(".pub");
    let public = match std::fs::read_to_string(&pub_path) {
        Ok(public) => public,
        Err(_) => {
            let out = crate::child::command("ssh-keygen")
                .arg("-y")
                .arg("-f")
                .arg(&private)
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|e| ProvisionError::io("run ssh-keygen -y", e))?;
            if !out.status.success() {
                return Err(ProvisionError::Invalid(format!(
                    "cannot read the ssh key {}: {}",
                    private.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    Ok(Key {
        private,
        public,
        dir: None,
    })
}

/// Remove a generated key directory: only one named by us, and only its
/// files (a tampered record cannot make release delete a tree).
pub(crate) fn remove_key_dir(dir: &Path) {
    let ours = dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(KEY_DIR_PREFIX));
    if !ours {
        return;
    }
    for name in ["id_ed25519", "id_ed25519.pub"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

/// The public key as Testing Farm gets it: `TYPE KEY` with the comment
/// replaced (ATEX hides it the same way), base64-encoded.
pub(crate) fn authorized_keys_b64(public: &str) -> Result<String, ProvisionError> {
    let mut parts = public.split_whitespace();
    let (Some(kind), Some(key)) = (parts.next(), parts.next()) else {
        return Err(ProvisionError::Invalid(
            "the ssh public key is not `TYPE KEY [COMMENT]`".into(),
        ));
    };
    let line = format!("{kind} {key} atex@testing-farm\n");
    Ok(base64::engine::general_purpose::STANDARD.encode(line))
}

/// What goes into one reservation request.
#[derive(Debug, Clone)]
pub(crate) struct SpecInput<'a> {
    pub(crate) compose: &'a str,
    pub(crate) arch: &'a str,
    pub(crate) pool: Option<&'a str>,
    pub(crate) hardware: Option<&'a Value>,
    pub(crate) timeout_minutes: u32,
    pub(crate) skip_guest_setup: bool,
    pub(crate) tags: &'a [(String, String)],
    /// The ingress rule's CIDR, only on the public ranch.
    pub(crate) ingress_cidr: Option<&'a str>,
    pub(crate) authorized_keys_b64: &'a str,
}

/// The request spec of ATEX's `Reserve` (spec/atex-reference.md section 5).
pub(crate) fn request_spec(input: &SpecInput<'_>) -> Value {
    let mut tags = serde_json::Map::new();
    tags.insert("ArtemisUseSpot".into(), "false".into());
    for (k, v) in input.tags {
        tags.insert(k.clone(), v.clone().into());
    }
    let mut provisioning = json!({ "tags": tags });
    if let Some(cidr) = input.ingress_cidr {
        provisioning["security_group_rules_ingress"] = json!([{
            "type": "ingress", "protocol": "-1", "cidr": cidr,
            "port_min": 0, "port_max": 65535,
        }]);
    }
    let mut settings = json!({ "provisioning": provisioning });
    if input.skip_guest_setup {
        settings["pipeline"] = json!({ "skip_guest_setup": true });
    }
    let mut environment = json!({
        "arch": input.arch,
        "os": { "compose": input.compose },
        "settings": settings,
        "secrets": { "TF_RESERVATION_AUTHORIZED_KEYS_BASE64": input.authorized_keys_b64 },
    });
    if let Some(pool) = input.pool {
        environment["pool"] = pool.into();
    }
    if let Some(hardware) = input.hardware {
        environment["hardware"] = hardware.clone();
    }
    json!({
        "test": { "fmf": {
            "url": "https://gitlab.com/testing-farm/tests",
            "ref": "main", "path": ".", "name": "/testing-farm/reserve",
        }},
        "environments": [environment],
        "settings": { "pipeline": { "timeout": input.timeout_minutes } },
    })
}

/// How to follow one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waits {
    /// Between two looks at the request state or the pipeline log.
    pub(crate) poll: Duration,
    /// Until the machine answers ssh, from the request's creation.
    pub(crate) ready: Duration,
}

/// Follows one request: its state (at most once per poll interval) and its
/// pipeline log.
struct Follower<'a> {
    api: &'a Api,
    log: &'a (dyn Fn(&str) + Sync),
    state: String,
    id: &'a str,
    cancel: &'a CancellationToken,
    waits: Waits,
    last_check: Option<Instant>,
    artifacts: Option<String>,
}

impl Follower<'_> {
    /// Look at the request (unless looked at within the poll interval);
    /// fails when it ended. Returns its state.
    async fn check(&mut self, force: bool) -> Result<Option<String>, ProvisionError> {
        if !force
            && self
                .last_check
                .is_some_and(|t| t.elapsed() < self.waits.poll)
        {
            return Ok(None);
        }
        let request = self.api.request(self.id, self.cancel).await?;
        self.last_check = Some(Instant::now());
        let state = request
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if state != self.state {
            (self.log)(&format!("request {} is {state}", self.id));
            self.state.clone_from(&state);
        }
        if let Some(url) = request.pointer("/run/artifacts").and_then(Value::as_str) {
            self.artifacts = Some(url.trim_end_matches('/').to_owned());
        }
        if !ALIVE_STATES.contains(&state.as_str()) {
            let summary = request
                .pointer("/result/summary")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            // The state and summary are the service's words: no token.
            return Err(ProvisionError::Failed(self.api.redact(&format!(
                "Testing Farm request {} ended in state {:?}{summary}",
                self.id, state
            ))));
        }
        Ok(Some(state))
    }

    async fn sleep(&self) -> Result<(), ProvisionError> {
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(ProvisionError::Cancelled),
            () = tokio::time::sleep(self.waits.poll) => Ok(()),
        }
    }

    /// Wait until the request runs and its pipeline log exists; returns
    /// the log's URL.
    async fn log_url(&mut self) -> Result<String, ProvisionError> {
        loop {
            let state = self.check(true).await?;
            if state.as_deref() == Some("running")
                && let Some(artifacts) = &self.artifacts
            {
                let url = format!("{artifacts}/pipeline.log");
                let head = self.api.artifact("HEAD", &url, None, self.cancel).await?;
                match head.status {
                    200 => return Ok(url),
                    // Not there yet, or not yet readable: both are races
                    // of the service that ATEX met; wait and look again.
                    403 | 404 => {}
                    other => {
                        return Err(ProvisionError::Api {
                            method: "HEAD".into(),
                            url,
                            message: format!("HTTP {other}"),
                        });
                    }
                }
            }
            self.sleep().await?;
        }
    }

    /// Read the pipeline log until the guest shows and the reserve test
    /// starts. Handles servers that honour `Range` (206, 416 for no new
    /// data) and servers that ignore it (200: skip what was read).
    async fn guest(&mut self) -> Result<Guest, ProvisionError> {
        let url = self.log_url().await?;
        let mut read: u64 = 0;
        let mut partial = Vec::new();
        let mut guest = None;
        loop {
            let reply = self
                .api
                .artifact("GET", &url, Some(read), self.cancel)
                .await?;
            let fresh: &[u8] = match reply.status {
                206 => &reply.body,
                200 => reply
                    .body
                    .get(usize::try_from(read).unwrap_or(usize::MAX)..)
                    .unwrap_or(&[]),
                416 | 403 | 404 => &[],
                other => {
                    return Err(ProvisionError::Api {
                        method: "GET".into(),
                        url,
                        message: format!("HTTP {other}"),
                    });
                }
            };
            read += fresh.len() as u64;
            partial.extend_from_slice(fresh);
            // Only whole lines: a line cut by the poll is read next time.
            while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = partial.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                if guest.is_none() {
                    guest = parse_guest_line(&line);
                } else if is_tests_start(&line)
                    && let Some(guest) = guest.take()
                {
                    return Ok(guest);
                }
            }
            self.check(false).await?;
            self.sleep().await?;
        }
    }
}

/// Follow request `id` until its guest answers ssh with `key`; at most
/// `waits.ready` in all.
pub(crate) async fn wait_ready(
    api: &Api,
    log: &(dyn Fn(&str) + Sync),
    id: &str,
    key: &Path,
    waits: Waits,
    cancel: &CancellationToken,
) -> Result<records::Connection, ProvisionError> {
    let started = Instant::now();
    let mut follower = Follower {
        api,
        log,
        state: String::new(),
        id,
        cancel,
        waits,
        last_check: None,
        artifacts: None,
    };
    let work = async {
        let guest = follower.guest().await?;
        log(&format!(
            "request {id}: guest {}@{}:{} is up, waiting for ssh",
            guest.user, guest.host, guest.port
        ));
        let connection = ssh_record(&guest, key);
        loop {
            follower.check(false).await?;
            let left = waits.ready.saturating_sub(started.elapsed());
            let try_for = left.clamp(Duration::from_secs(1), Duration::from_secs(15));
            let mut conn = Connection::new(&connection).with_timeout(try_for);
            let connected = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                r = conn.connect() => r,
            };
            if connected.is_ok() {
                let _ = conn.disconnect().await;
                return Ok(connection);
            }
            // The key is authorized only once the reserve test runs.
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                () = tokio::time::sleep(waits.poll.min(Duration::from_secs(1))) => {}
            }
        }
    };
    match tokio::time::timeout(waits.ready, work).await {
        Ok(result) => result,
        Err(_) => Err(ProvisionError::Timeout(format!(
            "Testing Farm request {id}: the guest was not reachable over ssh within {:?}",
            waits.ready
        ))),
    }
}

/// The Machine's connection: the key only (agents and `~/.ssh` keys would
/// be tried first and can exhaust the server's attempts), compression
/// as ATEX does for remote guests.
fn ssh_record(guest: &Guest, key: &Path) -> records::Connection {
    let mut options = indexmap::IndexMap::new();
    options.insert("IdentitiesOnly".to_owned(), "yes".to_owned());
    options.insert("Compression".to_owned(), "yes".to_owned());
    records::Connection::Ssh {
        host: guest.host.clone(),
        port: guest.port,
        user: guest.user.clone(),
        identity_file: Some(key.to_path_buf()),
        options,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    fn guest(user: &str, host: &str, port: u16) -> Option<Guest> {
        Some(Guest {
            user: user.into(),
            host: host.into(),
            port,
        })
    }

    #[test]
    fn guest_lines_of_the_real_service_mean_port_22() {
        let line = "01:02:03 [pipeline] Guest is ready: ArtemisGuest(8f2a-11, root@3.14.15.92, \
                    arch=x86_64, compose=Fedora-41, snapshots=False)";
        assert_eq!(parse_guest_line(line), guest("root", "3.14.15.92", 22));
        let v6 = "x ] Guest is ready: ArtemisGuest(a, root@2001:db8::5, arch=aarch64)";
        assert_eq!(parse_guest_line(v6), guest("root", "2001:db8::5", 22));
    }

    #[test]
    fn guest_lines_may_carry_a_port() {
        let line = "t ] Guest is ready: ArtemisGuest(g1, atex-test@127.0.0.1:2222, arch=x86_64)";
        assert_eq!(
            parse_guest_line(line),
            guest("atex-test", "127.0.0.1", 2222)
        );
        let v6 = "t ] Guest is ready: ArtemisGuest(g1, root@[::1]:2200, arch=x86_64)";
        assert_eq!(parse_guest_line(v6), guest("root", "::1", 2200));
    }

    #[test]
    fn other_lines_are_not_guests() {
        for line in [
            "Guest is ready: ArtemisGuest(a, root@h, arch=x)",
            "] Guest is ready: ArtemisGuest(a, h, arch=x)",
            "] Guest is ready: ArtemisGuest(a, root@h:notaport, arch=x)",
            "] Guest is ready: ArtemisGuest(a, root@h)",
            "] starting tests execution",
        ] {
            assert_eq!(parse_guest_line(line), None, "{line}");
        }
        assert!(is_tests_start("12:00 [x] starting tests execution\n"));
    }

    #[test]
    fn the_key_comment_is_hidden() {
        let b64 = authorized_keys_b64("ssh-ed25519 AAAAC3Nza me@laptop\n").unwrap();
        let line = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(line, b"ssh-ed25519 AAAAC3Nza atex@testing-farm\n");
        assert!(authorized_keys_b64("garbage").is_err());
    }

    #[test]
    fn spec_has_atex_shape_and_optional_parts() {
        let hw = json!({"memory": ">= 8 GB"});
        let tags = [("team".to_owned(), "qa".to_owned())];
        let spec = request_spec(&SpecInput {
            compose: "Fedora-41",
            arch: "aarch64",
            pool: Some("beaker"),
            hardware: Some(&hw),
            timeout_minutes: 90,
            skip_guest_setup: true,
            tags: &tags,
            ingress_cidr: Some("1.2.3.4/32"),
            authorized_keys_b64: "QUJD",
        });
        let env = &spec["environments"][0];
        assert_eq!(spec["test"]["fmf"]["name"], "/testing-farm/reserve");
        assert_eq!(spec["settings"]["pipeline"]["timeout"], 90);
        assert_eq!(env["os"]["compose"], "Fedora-41");
        assert_eq!(env["arch"], "aarch64");
        assert_eq!(env["pool"], "beaker");
        assert_eq!(env["hardware"], hw);
        assert_eq!(env["settings"]["pipeline"]["skip_guest_setup"], true);
        assert_eq!(
            env["settings"]["provisioning"]["tags"]["ArtemisUseSpot"],
            "false"
        );
        assert_eq!(env["settings"]["provisioning"]["tags"]["team"], "qa");
        assert_eq!(
            env["settings"]["provisioning"]["security_group_rules_ingress"][0]["cidr"],
            "1.2.3.4/32"
        );
        assert_eq!(
            env["secrets"]["TF_RESERVATION_AUTHORIZED_KEYS_BASE64"],
            "QUJD"
        );

        let plain = request_spec(&SpecInput {
            pool: None,
            hardware: None,
            skip_guest_setup: false,
            tags: &[],
            ingress_cidr: None,
            ..SpecInput {
                compose: "c",
                arch: "x86_64",
                pool: None,
                hardware: None,
                timeout_minutes: 60,
                skip_guest_setup: false,
                tags: &[],
                ingress_cidr: None,
                authorized_keys_b64: "",
            }
        });
        let env = &plain["environments"][0];
        assert!(env.get("pool").is_none() && env.get("hardware").is_none());
        assert!(env["settings"].get("pipeline").is_none());
        assert!(
            env["settings"]["provisioning"]
                .get("security_group_rules_ingress")
                .is_none()
        );
    }

    #[test]
    fn key_dirs_of_others_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("id_ed25519");
        std::fs::write(&file, "x").unwrap();
        remove_key_dir(dir.path());
        assert!(file.exists(), "not named {KEY_DIR_PREFIX}*");
    }
}

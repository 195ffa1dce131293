//! A local HTTP server implementing the documented Testing Farm API
//! endpoints that atex-provision uses, whose "guest" is a loopback sshd.
//!
//! Endpoints: `POST/GET /v0.1/requests`, `GET/DELETE /v0.1/requests/{id}`,
//! `GET /v0.1/whoami` (all with `Authorization: Bearer TOKEN`, else 401),
//! and the artifacts `HEAD/GET /artifacts/{id}/pipeline.log` (no auth, like
//! the real artifacts host; `Range: bytes=N-` answered with 206 or 416, or
//! ignored with 200 in [`Config::ignore_range`] mode; 404 or 403 before the
//! log exists).
//!
//! A request's life follows the clock from its creation: `queued` for
//! [`Config::queue_delay`], then `running`; the pipeline log appears after
//! [`Config::log_delay`], the `Guest is ready: ArtemisGuest(ID,
//! atex-test@127.0.0.1:PORT, arch=...)` line after [`Config::guest_delay`],
//! and `starting tests execution` after [`Config::tests_delay`] more, when
//! the public key from the request's secret
//! `TF_RESERVATION_AUTHORIZED_KEYS_BASE64` is authorized in the sshd (as the
//! real reserve test does). Cancelling a request removes its key again.
//! The real service writes no port in the guest line (it is 22); this
//! server adds `:PORT` because its sshd cannot listen on 22.
//!
//! Faults per test: [`Fault`] (the request errors out, the guest never
//! shows), a storm of 503 or 429 answers ([`TfServer::storm`]), 403 before
//! the log exists, error bodies that reflect the `Authorization` header
//! ([`Config::reflect_authorization`]). Every exchange is recorded
//! ([`TfServer::seen`]): a second server that must get nothing checks
//! that it saw nothing.
//!
//! ```no_run
//! use atex_tests::tf_server::{Config, TfServer};
//! let server = TfServer::start(Config::default()).unwrap();
//! let mut args = atex_provision::testing_farm::Args::new("Fedora-41");
//! args.api_url = Some(server.url().to_owned());
//! // ... reserve, release ...
//! assert!(server.open_requests().is_empty());
//! ```

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::sshd::{SshdPool, TEST_USER};

/// The token the server accepts unless [`Config::token`] says otherwise.
pub const DEFAULT_TOKEN: &str = "tf-test-token-7f3a9c";

/// What goes wrong with every request of a server.
#[derive(Debug, Clone, Default)]
pub enum Fault {
    /// Nothing: the guest comes up.
    #[default]
    None,
    /// The request turns `error` this long after its creation, with this
    /// summary (as when provisioning fails).
    Error {
        /// Time from creation.
        after: Duration,
        /// `result.summary` of the request.
        summary: String,
    },
    /// The request runs but its log never shows the guest.
    NoGuest,
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bearer token accepted on `/v0.1`.
    pub token: String,
    /// `token.ranch` of `/whoami` (`public` makes the provisioner add an
    /// ingress rule).
    pub ranch: String,
    /// `queued` this long after creation, then `running`.
    pub queue_delay: Duration,
    /// From `running` until the pipeline log exists.
    pub log_delay: Duration,
    /// From `running` until the guest line.
    pub guest_delay: Duration,
    /// From the guest line until `starting tests execution` and the key
    /// authorization.
    pub tests_delay: Duration,
    /// From `starting tests execution` until the key is authorized (the
    /// real reserve test installs it a little after that line).
    pub key_delay: Duration,
    /// What goes wrong.
    pub fault: Fault,
    /// Answer 403 instead of 404 while the log does not exist.
    pub log_forbidden: bool,
    /// Ignore `Range` and always answer 200 with the whole log.
    pub ignore_range: bool,
    /// Answer `POST /v0.1/requests` this late, after the request exists
    /// (a slow API).
    pub post_delay: Duration,
    /// Answer every API call (`/v0.1/...`) with 400 and a message that
    /// repeats the request's `Authorization` header, as a careless service
    /// or proxy does: whoever prints error bodies as received shows the
    /// token.
    pub reflect_authorization: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: DEFAULT_TOKEN.into(),
            ranch: "private".into(),
            queue_delay: Duration::from_millis(100),
            log_delay: Duration::from_millis(100),
            guest_delay: Duration::from_millis(200),
            tests_delay: Duration::from_millis(200),
            key_delay: Duration::ZERO,
            fault: Fault::None,
            log_forbidden: false,
            ignore_range: false,
            post_delay: Duration::ZERO,
            reflect_authorization: false,
        }
    }
}

/// One exchange the server had, as it saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// The `Authorization` header, verbatim.
    pub authorization: Option<String>,
    /// The `Range` header, verbatim.
    pub range: Option<String>,
    /// The request body, lossily decoded.
    pub body: String,
    /// The status answered.
    pub status: u16,
}

/// A request as the server holds it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its id.
    pub id: String,
    /// The JSON spec that was posted.
    pub spec: Value,
    /// When it was created.
    pub created: Instant,
    /// Its state now (`queued`, `running`, `error`, `canceled`).
    pub state: String,
    /// How many DELETEs it got.
    pub deletes: u32,
}

#[derive(Debug)]
struct Entry {
    id: String,
    spec: Value,
    public_key: String,
    created: Instant,
    canceled: bool,
    authorized: bool,
    deletes: u32,
}

#[derive(Debug)]
struct State {
    config: Config,
    base: String,
    guest_port: u16,
    authorized_keys: PathBuf,
    requests: Vec<Entry>,
    seen: Vec<Seen>,
    storm: (u32, u16),
    serial: u32,
}

/// The running server; stops its threads and its sshd on drop.
#[derive(Debug)]
pub struct TfServer {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    /// Ends the HTTP server (axum's graceful shutdown).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    guest: SshdPool,
}

impl TfServer {
    /// Start the guest sshd and the server on a free loopback port.
    pub fn start(config: Config) -> Result<TfServer> {
        let guest = SshdPool::start(1)?;
        let authorized_keys = guest
            .client_key()
            .parent()
            .context("the sshd pool's key has no directory")?
            .join("authorized_keys");
        // Nothing may log in until a request authorizes its key.
        std::fs::write(&authorized_keys, "").context("failed to empty authorized_keys")?;
        let guest_port = match guest.machines().first().map(|m| &m.connection) {
            Some(atex_shared::records::Connection::Ssh { port, .. }) => *port,
            _ => anyhow::bail!("the guest sshd has no port"),
        };
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("failed to bind the server")?;
        listener
            .set_nonblocking(true)
            .context("failed to make the listener non-blocking")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            config,
            base: url.clone(),
            guest_port,
            authorized_keys,
            requests: Vec::new(),
            seen: Vec::new(),
            storm: (0, 503),
            serial: 0,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (shutdown, stopped) = tokio::sync::oneshot::channel();
        {
            let state = Arc::clone(&state);
            threads.push(std::thread::spawn(move || {
                if let Err(e) = serve(listener, state, stopped) {
                    eprintln!("tf_server: the HTTP server stopped: {e}");
                }
            }));
        }
        {
            let (state, stop) = (Arc::clone(&state), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    tick(&mut lock(&state));
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        Ok(TfServer {
            url,
            state,
            stop,
            shutdown: Some(shutdown),
            threads,
            guest,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT` (for `--api-url` or
    /// `TESTING_FARM_API_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The token the server accepts.
    pub fn token(&self) -> String {
        lock(&self.state).config.token.clone()
    }

    /// The guest sshd's port.
    pub fn guest_port(&self) -> u16 {
        lock(&self.state).guest_port
    }

    /// The ids of requests still alive (`new`, `queued`, `running`): what a
    /// clean shutdown must leave empty.
    pub fn open_requests(&self) -> Vec<String> {
        let state = lock(&self.state);
        let now = Instant::now();
        state
            .requests
            .iter()
            .filter(|r| {
                ["new", "queued", "running"].contains(&request_state(&state.config, r, now))
            })
            .map(|r| r.id.clone())
            .collect()
    }

    /// Every request, in creation order.
    pub fn requests(&self) -> Vec<Request> {
        let state = lock(&self.state);
        let now = Instant::now();
        state
            .requests
            .iter()
            .map(|r| Request {
                id: r.id.clone(),
                spec: r.spec.clone(),
                created: r.created,
                state: request_state(&state.config, r, now).to_owned(),
                deletes: r.deletes,
            })
            .collect()
    }

    /// Every exchange so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.state).seen.clone()
    }

    /// Answer the next `count` API calls (`/v0.1/...`) with `status`
    /// (503, 429 with `Retry-After: 0`, ...).
    pub fn storm(&self, count: u32, status: u16) {
        lock(&self.state).storm = (count, status);
    }

    /// API calls of the storm not answered yet.
    pub fn storm_left(&self) -> u32 {
        lock(&self.state).storm.0
    }

    /// Replace the fault for requests from now on (and those alive).
    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state).config.fault = fault;
    }
}

impl Drop for TfServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The sshd pool stops its server when dropped after this.
        let _ = &self.guest;
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A request's state at `now`, from its age.
fn request_state(config: &Config, r: &Entry, now: Instant) -> &'static str {
    let age = now.saturating_duration_since(r.created);
    if r.canceled {
        return "canceled";
    }
    if let Fault::Error { after, .. } = &config.fault
        && age >= *after
    {
        return "error";
    }
    if age < config.queue_delay {
        "queued"
    } else {
        "running"
    }
}

/// The pipeline log at `now`, or `None` before it exists.
fn pipeline_log(state: &State, r: &Entry, now: Instant) -> Option<String> {
    let config = &state.config;
    let age = now.saturating_duration_since(r.created);
    let running = config.queue_delay;
    if age < running + config.log_delay {
        return None;
    }
    let stamp = |d: Duration| format!("{:>8.3}", d.as_secs_f64());
    let mut log = format!(
        "[{}] [pipeline] pipeline started for {}\n",
        stamp(running),
        r.id
    );
    log.push_str(&format!(
        "[{}] [provision] waiting for the guest\n",
        stamp(running)
    ));
    let guest_at = running + config.guest_delay;
    if matches!(config.fault, Fault::NoGuest) || age < guest_at || r.canceled {
        return Some(log);
    }
    let arch = r
        .spec
        .pointer("/environments/0/arch")
        .and_then(Value::as_str)
        .unwrap_or("x86_64");
    log.push_str(&format!(
        "[{}] [provision] Guest is ready: ArtemisGuest({}-guest, {TEST_USER}@127.0.0.1:{}, \
         arch={arch}, snapshots=False)\n",
        stamp(guest_at),
        r.id,
        state.guest_port
    ));
    let tests_at = guest_at + config.tests_delay;
    if age >= tests_at {
        log.push_str(&format!(
            "[{}] [test] starting tests execution\n",
            stamp(tests_at)
        ));
    }
    Some(log)
}

/// Advance the guests: authorize the keys of requests whose reserve test
/// started, remove those of ended requests.
fn tick(state: &mut State) {
    let now = Instant::now();
    let config = state.config.clone();
    let mut changed = false;
    for r in &mut state.requests {
        let alive = request_state(&config, r, now) == "running";
        let tests_at =
            config.queue_delay + config.guest_delay + config.tests_delay + config.key_delay;
        let want = alive
            && !matches!(config.fault, Fault::NoGuest)
            && now.saturating_duration_since(r.created) >= tests_at;
        if want != r.authorized {
            r.authorized = want;
            changed = true;
        }
    }
    if changed {
        let keys: String = state
            .requests
            .iter()
            .filter(|r| r.authorized)
            .map(|r| format!("{}\n", r.public_key.trim_end()))
            .collect();
        let _ = std::fs::write(&state.authorized_keys, keys);
    }
}

/// Serve HTTP on `listener` with axum (one handler for every path and
/// method: [`route`] decides) until `stopped` fires.
fn serve(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let app = axum::Router::new()
            .fallback(exchange)
            .layer(axum::extract::DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    })
}

/// One exchange: the request as [`route`] reads it, recorded in
/// [`State::seen`], answered (a successful POST after
/// [`Config::post_delay`]).
async fn exchange(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<State>>>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let http = Http {
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| uri.path().to_owned()),
        headers: headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    let (answer, delay) = {
        let mut state = lock(&state);
        let answer = route(&mut state, &http);
        state.seen.push(Seen {
            method: http.method.clone(),
            path: http.path.clone(),
            authorization: http.headers.get("authorization").cloned(),
            range: http.headers.get("range").cloned(),
            body: String::from_utf8_lossy(&http.body).into_owned(),
            status: answer.status,
        });
        let slow = http.method == "POST" && answer.status == 200;
        (answer, slow.then_some(state.config.post_delay))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = axum::response::Response::builder()
        .status(answer.status)
        .header("content-type", answer.content_type)
        .header("connection", "close");
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    // hyper leaves the body out of a HEAD answer, its length in.
    response
        .body(axum::body::Body::from(answer.body))
        .unwrap_or_else(|e| {
            let mut failed = axum::response::Response::new(axum::body::Body::from(e.to_string()));
            *failed.status_mut() = axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            failed
        })
}

struct Http {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Answer {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    fn message(status: u16, message: &str) -> Answer {
        Answer::json(status, &json!({ "message": message }))
    }
}

fn route(state: &mut State, http: &Http) -> Answer {
    let (path, query) = http.path.split_once('?').unwrap_or((&http.path, ""));
    if let Some(rest) = path.strip_prefix("/artifacts/") {
        return artifact(state, http, rest);
    }
    let Some(api) = path.strip_prefix("/v0.1") else {
        return Answer::message(404, "no such endpoint");
    };
    if state.storm.0 > 0 {
        state.storm.0 -= 1;
        let mut answer = Answer::message(state.storm.1, "the service is busy");
        if state.storm.1 == 429 {
            answer.headers.push(("Retry-After", "0".into()));
        }
        return answer;
    }
    if state.config.reflect_authorization {
        let header = http.headers.get("authorization").map_or("", String::as_str);
        return Answer::message(
            400,
            &format!(
                "bad request {} {path} with Authorization: {header}",
                http.method
            ),
        );
    }
    let expected = format!("Bearer {}", state.config.token);
    if http.headers.get("authorization") != Some(&expected) {
        return Answer::message(401, "missing or bad API token");
    }
    let now = Instant::now();
    match (http.method.as_str(), api) {
        ("GET", "/whoami") => Answer::json(
            200,
            &json!({
                "token": {"id": "token-1", "name": "atex tests", "ranch": state.config.ranch},
                "user": {"id": "user-1", "name": "atex"},
            }),
        ),
        ("POST", "/requests") => create(state, &http.body, now),
        ("GET", "/requests") => {
            let wanted = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("state="))
                .map(str::to_owned);
            let list: Vec<Value> = state
                .requests
                .iter()
                .filter(|r| {
                    wanted
                        .as_deref()
                        .is_none_or(|w| request_state(&state.config, r, now) == w)
                })
                .map(|r| request_json(state, r, now))
                .collect();
            Answer::json(200, &Value::Array(list))
        }
        (method, rest) => {
            let Some(id) = rest.strip_prefix("/requests/") else {
                return Answer::message(404, "no such endpoint");
            };
            let Some(index) = state.requests.iter().position(|r| r.id == id) else {
                return Answer::message(404, "no such request");
            };
            match method {
                "GET" => Answer::json(200, &request_json(state, &state.requests[index], now)),
                "DELETE" => {
                    let config = state.config.clone();
                    let r = &mut state.requests[index];
                    r.deletes += 1;
                    if request_state(&config, r, now) == "running"
                        || request_state(&config, r, now) == "queued"
                    {
                        r.canceled = true;
                        let id = r.id.clone();
                        tick(state);
                        Answer::json(200, &json!({"id": id, "state": "cancel-requested"}))
                    } else {
                        Answer::message(409, "the request already finished")
                    }
                }
                _ => Answer::message(405, "method not allowed"),
            }
        }
    }
}

fn create(state: &mut State, body: &[u8], now: Instant) -> Answer {
    let Ok(spec) = serde_json::from_slice::<Value>(body) else {
        return Answer::message(400, "the body is not JSON");
    };
    let Some(b64) = spec
        .pointer("/environments/0/secrets/TF_RESERVATION_AUTHORIZED_KEYS_BASE64")
        .and_then(Value::as_str)
    else {
        return Answer::message(400, "no TF_RESERVATION_AUTHORIZED_KEYS_BASE64 secret");
    };
    let Ok(key) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        return Answer::message(400, "the authorized key is not base64");
    };
    if spec.pointer("/environments/0/os/compose").is_none() {
        return Answer::message(400, "no compose");
    }
    state.serial += 1;
    let port: u16 = state
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let id = format!(
        "{:08x}-{port:04x}-4000-8000-{:012x}",
        state.serial, state.serial
    );
    state.requests.push(Entry {
        id: id.clone(),
        spec,
        public_key: String::from_utf8_lossy(&key).into_owned(),
        created: now,
        canceled: false,
        authorized: false,
        deletes: 0,
    });
    Answer::json(200, &json!({"id": id, "state": "new"}))
}

fn request_json(state: &State, r: &Entry, now: Instant) -> Value {
    let current = request_state(&state.config, r, now);
    let mut value = json!({
        "id": r.id,
        "state": current,
        "environments_requested": r.spec.get("environments"),
        "settings": r.spec.get("settings"),
        "result": null,
        "run": null,
    });
    if current != "queued" {
        value["run"] = json!({"artifacts": format!("{}/artifacts/{}", state.base, r.id)});
    }
    if current == "error"
        && let Fault::Error { summary, .. } = &state.config.fault
    {
        value["result"] = json!({"overall": "error", "summary": summary});
    }
    value
}

fn artifact(state: &State, http: &Http, rest: &str) -> Answer {
    let Some((id, "pipeline.log")) = rest.split_once('/') else {
        return Answer::message(404, "no such artifact");
    };
    let now = Instant::now();
    let log = state
        .requests
        .iter()
        .find(|r| r.id == id)
        .and_then(|r| pipeline_log(state, r, now));
    let Some(log) = log else {
        let status = if state.config.log_forbidden { 403 } else { 404 };
        return Answer {
            status,
            content_type: "text/html",
            headers: Vec::new(),
            body: b"<html>not here</html>".to_vec(),
        };
    };
    let text = |status, body: Vec<u8>, headers| Answer {
        status,
        content_type: "text/plain",
        headers,
        body,
    };
    let bytes = log.into_bytes();
    let from = http
        .headers
        .get("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match from {
        Some(from) if !state.config.ignore_range && http.method == "GET" => {
            let len = bytes.len();
            if from >= len {
                text(
                    416,
                    Vec::new(),
                    vec![("Content-Range", format!("bytes */{len}"))],
                )
            } else {
                let range = format!("bytes {from}-{}/{len}", len - 1);
                text(206, bytes[from..].to_vec(), vec![("Content-Range", range)])
            }
        }
        _ => text(200, bytes, Vec::new()),
    }
}

//! The Testing Farm REST API client: the calls the provisioner makes, with
//! the bearer token, response checks, and retries with backoff on the
//! statuses a busy service answers with.
//!
//! HTTP is blocking (`ureq`, rustls for https) and runs on tokio's blocking
//! threads, as DESIGN.md decides for Testing Farm.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::provisioner::{CancellationToken, ProvisionError, redact};

/// Statuses that mean "try again later" (ATEX's urllib3 `status_forcelist`).
const RETRY_STATUSES: &[u16] = &[408, 429, 500, 502, 503, 504];

/// How long a cancelled reservation still waits for its POST in flight.
const POST_GRACE: Duration = Duration::from_secs(10);

/// Request states in which a request still holds (or will hold) a machine.
pub(crate) const ALIVE_STATES: &[&str] = &["new", "queued", "running"];

/// The API token. Its `Debug` shows nothing, so it cannot leak through
/// logs of structures that hold it.
#[derive(Clone)]
pub(crate) struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// The token from `file` when given, else from `TESTING_FARM_API_TOKEN`.
    pub(crate) fn load(file: Option<&PathBuf>) -> Result<Token, ProvisionError> {
        let text = match file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                ProvisionError::Invalid(format!(
                    "cannot read the Testing Farm token file {}: {e}",
                    path.display()
                ))
            })?,
            None => std::env::var("TESTING_FARM_API_TOKEN").map_err(|_| {
                ProvisionError::Invalid(
                    "no Testing Farm token: set TESTING_FARM_API_TOKEN or pass --token-file".into(),
                )
            })?,
        };
        let token = text.trim();
        if token.is_empty() {
            return Err(ProvisionError::Invalid(
                "the Testing Farm token is empty".into(),
            ));
        }
        if token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ProvisionError::Invalid(
                "the Testing Farm token contains spaces or control characters".into(),
            ));
        }
        Ok(Token(token.into()))
    }
}

/// How failed calls are tried again: `retries` more times, waiting
/// `base * 2^n` (at most `max`) before try `n + 1`, or what a `Retry-After`
/// header asks (also at most `max`).
///
/// The defaults are ATEX's (130 retries, factor 2 s, 120 s cap): about
/// four hours of outage are ridden out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) retries: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
        retry_after.unwrap_or(exponential).min(self.max)
    }
}

/// A raw answer: status, content type, `Retry-After`, body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// A Testing Farm API endpoint with its credentials.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    /// Base URL without a trailing slash, e.g. `https://api.testing-farm.io`.
    base: String,
    token: Token,
    agent: ureq::Agent,
    backoff: Backoff,
}

impl Api {
    /// A client of `base`. `ca_file` (PEM) replaces the bundled Mozilla
    /// roots for https, e.g. with a system bundle that holds a company CA.
    pub(crate) fn new(
        base: &str,
        token: Token,
        backoff: Backoff,
        ca_file: Option<&Path>,
    ) -> Result<Api, ProvisionError> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("atex-provision/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            let roots = root_certs(path)?;
            config = config.tls_config(ureq::tls::TlsConfig::builder().root_certs(roots).build());
        }
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent: config.build().into(),
            backoff,
        })
    }

    /// The base URL, as given.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `text` without the token (see [`ProvisionError::redacted`]).
    pub(crate) fn redact(&self, text: &str) -> String {
        redact(text, &self.token.0)
    }

    /// `error` without the token. Every error the API calls return has
    /// been through this: a service may reflect the `Authorization`
    /// header in its error body.
    pub(crate) fn redact_error(&self, error: ProvisionError) -> ProvisionError {
        error.redacted(&self.token.0)
    }

    /// `GET /v0.1/whoami`.
    pub(crate) async fn whoami(&self, cancel: &CancellationToken) -> Result<Value, ProvisionError> {
        self.json("GET", &self.url("/v0.1/whoami"), None, cancel)
            .await
            .map_err(|e| self.redact_error(e))
    }

    /// `POST /v0.1/requests`; returns the new request's id.
    pub(crate) async fn create_request(
        &self,
        spec: &Value,
        cancel: &CancellationToken,
    ) -> Result<String, ProvisionError> {
        let url = self.url("/v0.1/requests");
        let reply = self
            .json("POST", &url, Some(spec), cancel)
            .await
            .map_err(|e| self.redact_error(e))?;
        reply
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| api_error("POST", &url, "the reply has no request id"))
    }

    /// `GET /v0.1/requests/{id}`.
    pub(crate) async fn request(
        &self,
        id: &str,
        cancel: &CancellationToken,
    ) -> Result<Value, ProvisionError> {
        self.json("GET", &self.request_url(id), None, cancel)
            .await
            .map_err(|e| self.redact_error(e))
    }

    /// `DELETE /v0.1/requests/{id}`. Idempotent: a request that is already
    /// gone, finished or being cancelled is fine.
    pub(crate) async fn cancel_request(&self, id: &str) -> Result<(), ProvisionError> {
        self.cancel_inner(id)
            .await
            .map_err(|e| self.redact_error(e))
    }

    async fn cancel_inner(&self, id: &str) -> Result<(), ProvisionError> {
        let url = self.request_url(id);
        // Releasing must not itself be cancellable: it is the cleanup.
        let never = CancellationToken::new();
        let reply = self.send("DELETE", &url, None, &never).await?;
        if (200..300).contains(&reply.status) || reply.status == 404 {
            return Ok(());
        }
        // The service refuses to cancel requests that already ended (the
        // exact status is not documented): look at the state instead.
        let state = self.request(id, &never).await?;
        match state.get("state").and_then(Value::as_str) {
            Some(s) if !ALIVE_STATES.contains(&s) => Ok(()),
            _ => Err(status_error("DELETE", &url, &reply)),
        }
    }

    /// A `HEAD` or `GET` of an artifact (no JSON expected), with extra
    /// headers; retried like API calls.
    pub(crate) async fn artifact(
        &self,
        method: &'static str,
        url: &str,
        range_from: Option<u64>,
        cancel: &CancellationToken,
    ) -> Result<Reply, ProvisionError> {
        let headers = range_from
            .map(|n| vec![("Range", format!("bytes={n}-"))])
            .unwrap_or_default();
        self.retrying(method, url, None, headers, false, cancel)
            .await
            .map_err(|e| self.redact_error(e))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request_url(&self, id: &str) -> String {
        self.url(&format!("/v0.1/requests/{id}"))
    }

    /// A call whose answer must be a JSON 200 (ATEX's checks: a non-200 is
    /// an error with the service's message; a non-JSON content type or
    /// body is an error too).
    async fn json(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<Value, ProvisionError> {
        let reply = self.send(method, url, body, cancel).await?;
        if reply.status == 401 {
            // A bad token is bad input: trying again cannot help.
            return Err(ProvisionError::Invalid(format!(
                "{method} {url}: the Testing Farm API refused the token (HTTP 401)"
            )));
        }
        if !(200..300).contains(&reply.status) {
            return Err(status_error(method, url, &reply));
        }
        if !reply.content_type.starts_with("application/json") {
            return Err(api_error(
                method,
                url,
                &format!("expected JSON, got content type {:?}", reply.content_type),
            ));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| api_error(method, url, &format!("the reply is not JSON: {e}")))
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        body: Option<&Value>,
        cancel: &CancellationToken,
    ) -> Result<Reply, ProvisionError> {
        let body = body.map(|b| b.to_string().into_bytes());
        self.retrying(method, url, body, Vec::new(), true, cancel)
            .await
    }

    /// One call, tried again on transport errors and [`RETRY_STATUSES`].
    /// `cancel` interrupts the waits between tries and calls in flight,
    /// except that a POST gets [`POST_GRACE`] to finish (interrupted
    /// half-way, it could leave a request nobody knows about).
    async fn retrying(
        &self,
        method: &'static str,
        url: &str,
        body: Option<Vec<u8>>,
        headers: Vec<(&'static str, String)>,
        auth: bool,
        cancel: &CancellationToken,
    ) -> Result<Reply, ProvisionError> {
        let mut attempt = 0;
        loop {
            let agent = self.agent.clone();
            let token = auth.then(|| self.token.clone());
            let (u, b, h) = (url.to_owned(), body.clone(), headers.clone());
            let call = tokio::task::spawn_blocking(move || once(&agent, method, &u, token, b, h));
            let joined = if method == "POST" {
                tokio::pin!(call);
                tokio::select! {
                    biased;
                    joined = &mut call => joined,
                    () = cancel.cancelled() => {
                        // Learn the new request's id so that it can be
                        // cancelled, but do not hold up a Ctrl-C for long.
                        match tokio::time::timeout(POST_GRACE, call).await {
                            Ok(joined) => joined,
                            Err(_) => return Err(ProvisionError::Cancelled),
                        }
                    }
                }
            } else {
                // Reads may be abandoned; the thread ends on its own.
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                    joined = call => joined,
                }
            };
            let outcome = joined
                .map_err(|e| api_error(method, url, &format!("the HTTP thread failed: {e}")))?;
            let (message, retry_after) = match outcome {
                Ok(reply) if !RETRY_STATUSES.contains(&reply.status) => return Ok(reply),
                Ok(reply) => (format!("HTTP {}", reply.status), reply.retry_after),
                Err(e) => (e, None),
            };
            if attempt >= self.backoff.retries {
                return Err(api_error(
                    method,
                    url,
                    &format!("{message} (gave up after {} tries)", attempt + 1),
                ));
            }
            let delay = self.backoff.delay(attempt, retry_after);
            attempt += 1;
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(ProvisionError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// One blocking HTTP exchange. Transport errors come back as text (the URL
/// is ours; ureq never puts headers into its errors).
fn once(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<Token>,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, String)>,
) -> Result<Reply, String> {
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {}", token.0));
    }
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let result = match body {
        Some(body) => {
            let request = request
                .header("Content-Type", "application/json")
                .body(body)
                .map_err(|e| e.to_string())?;
            agent.run(request)
        }
        None => {
            let request = request.body(()).map_err(|e| e.to_string())?;
            agent.run(request)
        }
    };
    let mut response = result.map_err(|e| e.to_string())?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let status = response.status().as_u16();
    let body = if method == "HEAD" {
        Vec::new()
    } else {
        response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| e.to_string())?
    };
    Ok(Reply {
        status,
        content_type,
        retry_after,
        body,
    })
}

/// The certificates of a PEM file, as the only trusted roots.
fn root_certs(path: &Path) -> Result<ureq::tls::RootCerts, ProvisionError> {
    let invalid = |why: String| {
        ProvisionError::Invalid(format!("cannot use the CA file {}: {why}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) = item.map_err(|e| invalid(e.to_string()))? {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(invalid("it holds no PEM certificate".into()));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

fn api_error(method: &str, url: &str, message: &str) -> ProvisionError {
    ProvisionError::Api {
        method: method.to_owned(),
        url: url.to_owned(),
        message: message.to_owned(),
    }
}

/// An error for a non-2xx reply, with the service's own message when it
/// sent one (`{"message": ...}` or the body's first line).
fn status_error(method: &str, url: &str, reply: &Reply) -> ProvisionError {
    let text = String::from_utf8_lossy(&reply.body);
    let detail = serde_json::from_slice::<Value>(&reply.body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| {
            text.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect()
        });
    let message = if detail.trim().is_empty() {
        format!("HTTP {} with an empty body", reply.status)
    } else {
        format!("HTTP {}: {}", reply.status, detail.trim())
    };
    api_error(method, url, &message)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap (STYLE.md)
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_honours_retry_after() {
        let b = Backoff {
            retries: 5,
            base: Duration::from_secs(2),
            max: Duration::from_secs(120),
        };
        assert_eq!(b.delay(0, None), Duration::from_secs(2));
        assert_eq!(b.delay(3, None), Duration::from_secs(16));
        assert_eq!(b.delay(40, None), Duration::from_secs(120));
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(999))),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn token_debug_is_redacted() {
        let token = Token("s3cret".into());
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn status_error_carries_the_service_message() {
        let reply = Reply {
            status: 400,
            content_type: "application/json".into(),
            retry_after: None,
            body: br#"{"message": "bad compose"}"#.to_vec(),
        };
        let err = status_error("POST", "http://x/v0.1/requests", &reply);
        assert_eq!(
            err.to_string(),
            "POST http://x/v0.1/requests: HTTP 400: bad compose"
        );
        let empty = Reply {
            body: Vec::new(),
            ..reply
        };
        assert!(
            status_error("GET", "u", &empty)
                .to_string()
                .contains("empty body")
        );
    }
}

//! A minimal WebDriver client for driving headless Chromium through
//! ChromeDriver in the HTML report tests: HTTP/1.1 JSON over a std
//! `TcpStream` to a chromedriver started on 127.0.0.1 (a free port), stopped
//! by its pid on drop. Chromium runs headless with a fresh profile and no
//! background networking.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL_HINT: &str =
    "run `make deps` (or `apt-get install chromium chromium-driver`) to install them";

/// A chromedriver process and one browser session in it.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start chromedriver and a headless Chromium session. Fails (never
    /// skips) when either is not installed.
    pub fn start() -> Result<Browser> {
        for path in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(path).is_file() {
                bail!("{path} is not installed: {INSTALL_HINT}");
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("failed to find a free port")?
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start {CHROMEDRIVER}"))?;
        let profile = tempfile::Builder::new()
            .prefix("atex-chromium-")
            .tempdir()
            .context("failed to create a profile dir")?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser.request("GET", "/status", None).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile_arg = format!("--user-data-dir={}", browser._profile.path().display());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900", profile_arg],
            }
        }}});
        let value = browser
            .request("POST", "/session", Some(&caps))
            .context("failed to start a Chromium session")?;
        browser.session = value["sessionId"]
            .as_str()
            .context("no sessionId in the new-session answer")?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; returns its `value`.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .with_context(|| format!("failed to connect to chromedriver on port {}", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let code: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
        let mut length = None;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((k, v)) = header.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let mut data = Vec::new();
        match length {
            Some(n) => {
                data.resize(n, 0);
                reader.read_exact(&mut data)?;
            }
            None => {
                reader.read_to_end(&mut data)?;
            }
        }
        let value: Value = serde_json::from_slice(&data)
            .with_context(|| format!("chromedriver answered {code} with non-JSON"))?;
        if code >= 400 {
            bail!("{method} {path}: HTTP {code}: {}", value["value"]);
        }
        Ok(value["value"].clone())
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Navigate to `url` (e.g. a `file://` URL).
    pub fn goto(&self, url: &str) -> Result<()> {
        self.request(
            "POST",
            &self.session_path("/url"),
            Some(&json!({"url": url})),
        )?;
        Ok(())
    }

    /// Run `script` (a function body; `return` gives the value) with `args`.
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        self.request(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({"script": script, "args": args})),
        )
    }

    /// The id of the first element matching the CSS `selector`.
    pub fn find(&self, selector: &str) -> Result<String> {
        let value = self.request(
            "POST",
            &self.session_path("/element"),
            Some(&json!({"using": "css selector", "value": selector})),
        )?;
        value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("no element id for {selector}"))
    }

    /// Click the element `id`.
    pub fn click(&self, id: &str) -> Result<()> {
        self.request(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(&json!({})),
        )?;
        Ok(())
    }

    /// Take a screenshot, save it as `path` (PNG) and return its bytes.
    pub fn screenshot(&self, path: &Path) -> Result<Vec<u8>> {
        use base64::Engine;
        let value = self.request("GET", &self.session_path("/screenshot"), None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().context("screenshot is not a string")?)
            .context("screenshot is not base64")?;
        std::fs::write(path, &png)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(png)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.request("DELETE", &self.session_path(""), None);
        }
        // Only the chromedriver this value started, by its pid.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A `file://` URL for an absolute path.
pub fn file_url(path: &Path) -> String {
    let path: PathBuf = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

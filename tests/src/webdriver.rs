//! Headless Chromium through ChromeDriver for the HTML report tests, driven
//! with fantoccini (a maintained WebDriver client) on a runtime of its own,
//! behind a small blocking API. The chromedriver is started on 127.0.0.1 (a
//! free port) and stopped by its pid on drop; Chromium runs headless with a
//! fresh profile and no background networking.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::elements::{Element, ElementRef};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL_HINT: &str =
    "run `make deps` (or `apt-get install chromium chromium-driver`) to install them";

/// A chromedriver process and one browser session in it.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start a runtime for the WebDriver client")?;
        let mut browser = Browser {
            driver,
            runtime,
            client: None,
            _profile: profile,
        };
        let profile_arg = format!("--user-data-dir={}", browser._profile.path().display());
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".to_owned(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--window-size=1280,900", profile_arg],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = browser.runtime.block_on(async {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            loop {
                match ClientBuilder::new(connector.clone())
                    .capabilities(caps.clone())
                    .connect(&url)
                    .await
                {
                    Ok(client) => return Ok(client),
                    Err(e) if Instant::now() > deadline => {
                        return Err(anyhow::anyhow!(
                            "no Chromium session from chromedriver on port {port} within 20 s: {e}"
                        ));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })?;
        browser.client = Some(client);
        Ok(browser)
    }

    fn client(&self) -> Result<&Client> {
        self.client
            .as_ref()
            .context("the browser session is closed")
    }

    /// Navigate to `url` (e.g. a `file://` URL).
    pub fn goto(&self, url: &str) -> Result<()> {
        let client = self.client()?;
        self.runtime
            .block_on(client.goto(url))
            .with_context(|| format!("go to {url}"))
    }

    /// Run `script` (a function body; `return` gives the value) with `args`
    /// (a JSON array, or one value).
    pub fn execute(&self, script: &str, args: Value) -> Result<Value> {
        let args = match args {
            Value::Array(args) => args,
            Value::Null => Vec::new(),
            one => vec![one],
        };
        let client = self.client()?;
        self.runtime
            .block_on(client.execute(script, args))
            .context("execute a script in the page")
    }

    /// The id of the first element matching the CSS `selector`.
    pub fn find(&self, selector: &str) -> Result<String> {
        let client = self.client()?;
        let element = self
            .runtime
            .block_on(client.find(Locator::Css(selector)))
            .with_context(|| format!("no element for {selector}"))?;
        Ok(element.element_id().into())
    }

    /// Click the element `id`.
    pub fn click(&self, id: &str) -> Result<()> {
        let element =
            Element::from_element_id(self.client()?.clone(), ElementRef::from(id.to_owned()));
        self.runtime
            .block_on(element.click())
            .with_context(|| format!("click element {id}"))
    }

    /// Take a screenshot, save it as `path` (PNG) and return its bytes.
    pub fn screenshot(&self, path: &Path) -> Result<Vec<u8>> {
        let client = self.client()?;
        let png = self
            .runtime
            .block_on(client.screenshot())
            .context("take a screenshot")?;
        std::fs::write(path, &png)
            .with_context(|| format!("failed to write {}", path.display()))?;
        Ok(png)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
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

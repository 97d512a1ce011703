//! A small W3C WebDriver client for the browser tests: it starts the real
//! `chromedriver`, opens a headless Chromium session and speaks the protocol's
//! JSON over HTTP (navigation, elements, scripts, screenshots, Chromium's
//! browser log and the WebAuthn virtual authenticator extension).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use serde_json::{Value, json};

/// The key of an element reference in WebDriver JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Finds `chromium` and `chromedriver` (Debian's packages).
pub fn browser_binaries() -> Result<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .chain([
                    PathBuf::from("/usr/bin"),
                    PathBuf::from("/usr/lib/chromium"),
                ])
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"])
        .context("chromium is not installed (apt-get install -y chromium chromium-driver)")?;
    let driver = find(&["chromedriver"])
        .context("chromedriver is not installed (apt-get install -y chromium-driver)")?;
    Ok((chromium, driver))
}

/// A running `chromedriver`; killed on drop.
pub struct Driver {
    child: Child,
    pub url: String,
    chromium: PathBuf,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(log: &Path) -> Result<Self> {
        let (chromium, driver) = browser_binaries()?;
        let port = crate::stack::free_port()?;
        let log_file = std::fs::File::create(log)?;
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting chromedriver")?;
        let me = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(resp) = me.http.get(format!("{}/status", me.url)).send().await
                && let Ok(v) = resp.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return Ok(me);
            }
            ensure!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless browser with its own profile in `profile`.
    pub async fn browser(&self, profile: &Path) -> Result<Browser> {
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": self.chromium,
                        "args": args,
                    },
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "webauthn:virtualAuthenticators": true,
                    "unhandledPromptBehavior": "ignore",
                }
            }
        });
        let resp: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await?
            .json()
            .await?;
        let id = resp["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("new session: {resp}"))?
            .to_owned();
        Ok(Browser {
            base: format!("{}/session/{id}", self.url),
            http: self.http.clone(),
        })
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    base: String,
    http: reqwest::Client,
}

/// How long element lookups wait by default.
pub const WAIT: Duration = Duration::from_secs(20);

impl Browser {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!(
                "webdriver {method} {path}: {} {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v["value"].clone())
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<String> {
        Ok(self
            .get("/url")
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Sets the window size (narrow-screen checks).
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.post("/window/rect", json!({ "width": width, "height": height }))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body; `arguments` holds `args`); its result.
    pub async fn script(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script` asynchronously: it calls `done(value)` (defined for
    /// it) with its result.
    pub async fn script_async(&self, script: &str) -> Result<Value> {
        let wrapped = format!("const done = arguments[arguments.length - 1]; {script}");
        self.post("/execute/async", json!({ "script": wrapped, "args": [] }))
            .await
    }

    /// Elements matching `css` right now.
    pub async fn find_all(&self, css: &str) -> Result<Vec<String>> {
        let v = self
            .post(
                "/elements",
                json!({ "using": "css selector", "value": css }),
            )
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The first visible element matching `css`, waiting up to `timeout`.
    pub async fn wait(&self, css: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            for id in self.find_all(css).await? {
                if self
                    .get(&format!("/element/{id}/displayed"))
                    .await
                    .is_ok_and(|v| v == true)
                {
                    return Ok(id);
                }
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await.unwrap_or_default();
                let banner = self.banner().await;
                bail!("no visible {css} after {timeout:?} on {url}{banner}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The error banner's text, if one shows (for failure messages).
    async fn banner(&self) -> String {
        let js = "const b = document.querySelector('[data-testid=error-banner]'); \
                  return b && b.offsetParent !== null ? b.textContent : '';";
        match self.script(js, vec![]).await {
            Ok(Value::String(s)) if !s.is_empty() => format!(" (error banner: {s})"),
            _ => String::new(),
        }
    }

    /// Waits until `check` (a function body returning a truthy value, given
    /// `args`) holds; its value.
    pub async fn until(
        &self,
        what: &str,
        timeout: Duration,
        check: &str,
        args: Vec<Value>,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.script(check, args.clone()).await?;
            if !(v.is_null() || v == false || v == "") {
                return Ok(v);
            }
            if Instant::now() >= deadline {
                let url = self.current_url().await.unwrap_or_default();
                let banner = self.banner().await;
                bail!("{what}: not after {timeout:?} on {url}{banner}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Clicks the first visible `css`. An element the page re-rendered
    /// between finding and clicking (stale) is found again.
    pub async fn click(&self, css: &str) -> Result<()> {
        let mut tries = 0;
        loop {
            let id = self.wait(css, WAIT).await?;
            match self.post(&format!("/element/{id}/click"), json!({})).await {
                Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other.with_context(|| format!("click {css}")).map(drop),
            }
        }
    }

    /// Clears the field `css` and types `text` into it.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let id = self.wait(css, WAIT).await?;
        self.post(&format!("/element/{id}/clear"), json!({}))
            .await?;
        self.post(&format!("/element/{id}/value"), json!({ "text": text }))
            .await
            .with_context(|| format!("type into {css}"))
            .map(drop)
    }

    /// Chooses `path` in the file input `css`.
    pub async fn file(&self, css: &str, path: &Path) -> Result<()> {
        let id = self.find_all(css).await?.into_iter().next();
        let id = id.with_context(|| format!("no {css}"))?;
        self.post(
            &format!("/element/{id}/value"),
            json!({ "text": path.to_string_lossy() }),
        )
        .await
        .map(drop)
    }

    /// Selects the option whose value is `value` in the `<select>` `css`.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.wait(css, WAIT).await?;
        let js = "const s = document.querySelector(arguments[0]); s.value = arguments[1]; \
                  s.dispatchEvent(new Event('change', {bubbles: true})); return s.value;";
        let got = self.script(js, vec![json!(css), json!(value)]).await?;
        ensure!(got == value, "{css} has no option {value:?}");
        Ok(())
    }

    /// Grants the page a permission (`clipboard-read`, `clipboard-write`).
    pub async fn grant(&self, name: &str) -> Result<()> {
        self.post(
            "/permissions",
            json!({ "descriptor": { "name": name }, "state": "granted" }),
        )
        .await
        .map(drop)
    }

    /// Double-clicks `dx` pixels right of the left edge of `css`, at its
    /// vertical middle.
    pub async fn double_click(&self, css: &str, dx: i64) -> Result<()> {
        let id = self.wait(css, WAIT).await?;
        let width = self
            .script(
                "return document.querySelector(arguments[0]).getBoundingClientRect().width;",
                vec![json!(css)],
            )
            .await?
            .as_f64()
            .unwrap_or_default();
        let x = dx - (width / 2.0) as i64;
        let click = [
            json!({"type": "pointerDown", "button": 0}),
            json!({"type": "pointerUp", "button": 0}),
        ];
        let mut actions = vec![json!({
            "type": "pointerMove", "duration": 0, "x": x, "y": 0,
            "origin": { ELEMENT: id },
        })];
        actions.extend(click.iter().cloned());
        actions.extend(click.iter().cloned());
        self.post(
            "/actions",
            json!({ "actions": [{
                "type": "pointer", "id": "mouse",
                "parameters": { "pointerType": "mouse" },
                "actions": actions,
            }] }),
        )
        .await
        .map(drop)
    }

    /// Presses `key` with Ctrl and Shift held.
    pub async fn ctrl_shift(&self, key: char) -> Result<()> {
        let (ctrl, shift) = ("\u{E009}", "\u{E008}");
        let k = key.to_string();
        let actions = [
            json!({"type": "keyDown", "value": ctrl}),
            json!({"type": "keyDown", "value": shift}),
            json!({"type": "keyDown", "value": k}),
            json!({"type": "keyUp", "value": k}),
            json!({"type": "keyUp", "value": shift}),
            json!({"type": "keyUp", "value": ctrl}),
        ];
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await
        .map(drop)
    }

    /// Sends keystrokes to whatever has the focus.
    pub async fn keys(&self, text: &str) -> Result<()> {
        let actions: Vec<Value> = text
            .chars()
            .flat_map(|c| {
                let k = c.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await
        .map(drop)
    }

    pub async fn text(&self, css: &str) -> Result<String> {
        let id = self.wait(css, WAIT).await?;
        Ok(self
            .get(&format!("/element/{id}/text"))
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    pub async fn attr(&self, css: &str, name: &str) -> Result<Option<String>> {
        let id = self.wait(css, WAIT).await?;
        Ok(self
            .get(&format!("/element/{id}/attribute/{name}"))
            .await?
            .as_str()
            .map(str::to_owned))
    }

    /// Writes a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.get("/screenshot").await?;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().context("screenshot")?)?;
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Chromium's console messages since the last call: (level, message).
    pub async fn console(&self) -> Result<Vec<(String, String)>> {
        let v = self.post("/se/log", json!({ "type": "browser" })).await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Adds a virtual platform authenticator (resident keys, user
    /// verification that succeeds); its id.
    pub async fn add_authenticator(&self) -> Result<String> {
        let v = self
            .post(
                "/webauthn/authenticator",
                json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "isUserConsenting": true,
                }),
            )
            .await?;
        Ok(v.as_str().context("authenticator id")?.to_owned())
    }

    /// The credentials the virtual authenticator holds.
    pub async fn credentials(&self, authenticator: &str) -> Result<Vec<Value>> {
        let v = self
            .get(&format!(
                "/webauthn/authenticator/{authenticator}/credentials"
            ))
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Ends the browser session.
    pub async fn quit(self) -> Result<()> {
        self.http.delete(&self.base).send().await?;
        Ok(())
    }
}

//! A real headless Chromium, driven over WebDriver: Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs them). Without them a test is skipped, except under `CI=true`, where
//! their absence is a failure.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Map, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser at a time: Chromium is heavy and the tests run on small machines.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A headless Chromium window and the driver that runs it.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// How a browser window looks.
#[derive(Clone, Copy)]
pub struct Window {
    /// Width in CSS pixels.
    pub width: u32,
    /// Prefer the dark colour scheme.
    pub dark: bool,
}

impl Window {
    /// 1280 px wide, light.
    pub const DESKTOP: Window = Window {
        width: 1280,
        dark: false,
    };
}

impl Browser {
    /// Starts a browser, or `None` (with a note) when Chromium is not installed outside CI.
    pub async fn start(window: Window) -> Option<Browser> {
        let installed =
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !installed {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing: install chromium and chromium-driver"
            );
            eprintln!("skipped: {CHROMIUM} and {CHROMEDRIVER} are not installed");
            return None;
        }
        // fantoccini's TLS stack and the tests' both bring rustls: name its crypto once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let turn = ONE_AT_A_TIME.lock().await;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--no-proxy-server".into(),
            format!("--window-size={},900", window.width),
        ];
        if window.dark {
            args.push("--force-dark-mode".into());
        }
        let mut caps = Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": CHROMIUM, "args": args }),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Some(Browser {
            client,
            driver,
            _turn: turn,
        })
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// The first element matching `css`, waiting up to 10 s for it (a page may still be loading).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let page = self.client.source().await.unwrap_or_default();
                panic!("no {css} on {}: {e}\n{page}", self.url().await)
            }
        }
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Types into the field `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks the first element matching `css` and waits for the page it leads to (a link or
    /// a form's submit button): the next step must not race the navigation.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.js("window.__sluiceOldPage = true").await;
        element.click().await.unwrap();
        self.wait_for(
            "the next page",
            "return window.__sluiceOldPage !== true && document.readyState === 'complete'",
        )
        .await;
    }

    /// Clicks the first element matching `css`, which changes the page in place.
    pub async fn click_here(&self, css: &str) {
        self.find(css).await.click().await.unwrap();
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// The current address.
    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits (up to 15 s) until `script` returns `true`.
    pub async fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.js(script).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Signs in through the form at `base`.
    pub async fn sign_in(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/ui/sign-in")).await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("button[type=submit]").await;
    }

    /// Ends the browser session (the driver stops when dropped).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

//! The browser harness for the console's tests: a headless Chromium driven over WebDriver by
//! Debian's chromedriver, each [`Browser`] with a chromedriver process and a Chromium profile of
//! its own (so tests run in parallel), and the steps the tests share: go to a page, wait for an
//! element, click, fill, read text, run JavaScript, wait for a condition, take a screenshot, and
//! read the page's paint timings.
//!
//! Pages come from 127.0.0.1 only (a service or a page server of the test), and Chromium starts
//! with its background networking, component updates and sync off, and with every host name but
//! the loopback's resolving to nothing: a test never reaches another host (checked with
//! `strace -f -e trace=connect` on the smoke test: no connection and no DNS query leaves). Without `/usr/bin/chromium` or `/usr/bin/chromedriver` the browser tests skip, except
//! under `CI=true`, where they fail (`.ci/run` installs both).
//!
//! It must leave nothing running: [`Browser::close`] ends the session (chromedriver then stops
//! its Chromium), and dropping a `Browser` that was not closed does the same on a best-effort
//! basis, kills its chromedriver and any Chromium process still started on its profile.

pub mod seeding;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

pub use seeding::seed_deliveries;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags every session's Chromium starts with, besides its own `--user-data-dir`.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    // Even with the flags above, Chromium looks up clients2.google.com (its extension updater)
    // and start.duckduckgo.com (Debian's default search engine, preconnected at start). Every
    // name then resolves to nothing, without asking the DNS server, except the loopback.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
];

/// How long [`Browser::click`], [`Browser::fill`] and [`Browser::text_of`] wait for their
/// element to appear.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long chromedriver may take to answer after it starts.
const DRIVER_START: Duration = Duration::from_secs(20);

/// The size of the page a session shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewport {
    /// A desktop window of 1280 x 900.
    Desktop,
    /// A phone: Chromium's mobile emulation at 390 x 844 CSS pixels (device pixel ratio 3, touch
    /// events, `<meta name="viewport">` honoured), as an iPhone 12 to 14 shows a page.
    Phone,
}

impl Viewport {
    pub const PHONE_WIDTH: u32 = 390;
    pub const PHONE_HEIGHT: u32 = 844;
}

/// Whether the browser tests can run: both programs are there. `None` to skip (after saying so
/// once per test binary); under `CI=true` a missing program fails the test instead.
fn browser_programs() -> Option<()> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return Some(());
    }
    let why = format!(
        "{} missing (Debian: apt-get install chromium chromium-driver)",
        missing.join(" and ")
    );
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{why} (CI=true: the browser tests must run)"
    );
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        // Straight to the file descriptor: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {why}; the browser tests of this test binary do not run"
        );
    });
    None
}

/// A chromedriver process on a free port of 127.0.0.1, killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts chromedriver, logging to `log`, and waits until it answers.
    fn start(log: &Path) -> Driver {
        // The port is free when asked for; another process could take it before chromedriver
        // binds it, so a driver that does not come up is started again on another port.
        let mut last_error = String::new();
        for _ in 0..3 {
            let addr = free_port();
            let mut child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={}", addr.port()))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}"));
            let deadline = Instant::now() + DRIVER_START;
            loop {
                if status_is_ready(addr) {
                    return Driver { child, addr };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!("chromedriver exited with {status}");
                    break;
                }
                if Instant::now() > deadline {
                    last_error = format!(
                        "chromedriver did not answer on {addr} within {}s",
                        DRIVER_START.as_secs()
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "{last_error}; its log ({}):\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener.local_addr().expect("the bound address")
}

/// One plain HTTP/1.1 request to chromedriver with a short timeout, without the async runtime
/// (for [`Drop`]): the status line's code, or `None` when it does not answer.
fn driver_request(addr: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    // Only the status line is read: chromedriver may keep the connection open after it.
    let mut head = Vec::new();
    let mut buf = [0; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let read = stream.read(&mut buf).ok()?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

fn status_is_ready(addr: SocketAddr) -> bool {
    driver_request(addr, "GET", "/status") == Some(200)
}

/// A headless Chromium session of its own: its own chromedriver process and a fresh profile.
pub struct Browser {
    client: Option<Client>,
    session: Option<String>,
    viewport: Viewport,
    // Field order is drop order: the driver (which stops Chromium) before the profile's
    // directory.
    driver: Driver,
    dir: tempfile::TempDir,
}

impl Browser {
    /// A desktop session (1280 x 900); `None` to skip when Chromium or chromedriver is missing
    /// outside CI.
    pub async fn start() -> Option<Browser> {
        Self::start_with(Viewport::Desktop).await
    }

    /// A phone-sized session (390 x 844, see [`Viewport::Phone`]).
    pub async fn start_phone() -> Option<Browser> {
        Self::start_with(Viewport::Phone).await
    }

    pub async fn start_with(viewport: Viewport) -> Option<Browser> {
        browser_programs()?;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let profile = dir.path().join("profile");
        let driver = Driver::start(&dir.path().join("chromedriver.log"));
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut chrome = json!({ "binary": CHROMIUM, "args": args });
        if viewport == Viewport::Phone {
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": {
                    "width": Viewport::PHONE_WIDTH,
                    "height": Viewport::PHONE_HEIGHT,
                    "pixelRatio": 3.0,
                    "mobile": true,
                    "touch": true,
                }
            });
        }
        let capabilities = json!({ "browserName": "chrome", "goog:chromeOptions": chrome });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver.url())
            .await;
        let client = match connected {
            Ok(client) => client,
            Err(e) => panic!(
                "chromedriver could not start a Chromium session: {e}; its log:\n{}",
                std::fs::read_to_string(dir.path().join("chromedriver.log")).unwrap_or_default()
            ),
        };
        let session = client
            .session_id()
            .await
            .expect("the session's id")
            .expect("a session was created");
        Some(Browser {
            client: Some(client),
            session: Some(session),
            viewport,
            driver,
            dir,
        })
    }

    /// The WebDriver client, for what the helpers below do not cover.
    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("the session is open")
    }

    pub fn viewport(&self) -> Viewport {
        self.viewport
    }

    /// The profile's directory: no process may still run on it once the browser is closed.
    pub fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    /// Opens `url` and waits until it has loaded (the `load` event).
    pub async fn goto(&self, url: &str) {
        self.client()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Waits up to `timeout` until an element matches the CSS `selector`, and returns the first.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Element {
        self.client()
            .wait()
            .at_most(timeout)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no element matches {selector:?} within {} ms: {e}",
                    timeout.as_millis()
                )
            })
    }

    /// Clicks the element `selector` matches, once it is there.
    pub async fn click(&self, selector: &str) {
        self.wait_for(selector, STEP_TIMEOUT)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {selector:?}: {e}"));
    }

    /// Replaces the value of the field `selector` matches with `text`, typed key by key.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.wait_for(selector, STEP_TIMEOUT).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear {selector:?}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {selector:?}: {e}"));
    }

    /// The rendered text of the element `selector` matches (as a user sees it), once it is there.
    pub async fn text_of(&self, selector: &str) -> String {
        self.wait_for(selector, STEP_TIMEOUT)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("cannot read the text of {selector:?}: {e}"))
    }

    /// Runs `script` as the body of a function with `args` as `arguments`, and returns what it
    /// returns (`return ...;`), as JSON.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("the script failed: {e}\n{script}"))
    }

    /// Waits up to `timeout` until the JavaScript expression `condition` is truthy, checking it
    /// every 50 ms.
    pub async fn wait_until(&self, condition: &str, timeout: Duration) {
        let script = format!("return !!({condition});");
        let deadline = Instant::now() + timeout;
        loop {
            if self.execute(&script, Vec::new()).await == Value::Bool(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{condition:?} did not hold within {} ms",
                timeout.as_millis()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves what the page shows as `<target>/console-screenshots/<name>.png` and returns that
    /// path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client()
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take the screenshot {name:?}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// When the current page first painted anything, in milliseconds after its navigation
    /// started; `None` when it has not painted within a second or two.
    pub async fn first_paint_ms(&self) -> Option<f64> {
        self.paint_entry("first-paint").await
    }

    /// When the current page first painted text, an image or a canvas, in milliseconds after
    /// its navigation started; `None` when it has not within a second or two.
    pub async fn first_contentful_paint_ms(&self) -> Option<f64> {
        self.paint_entry("first-contentful-paint").await
    }

    /// The `startTime` of the page's paint timing entry `name`. The entries are recorded after
    /// the frame is presented, which may come a little after `load`: they are waited for.
    async fn paint_entry(&self, name: &str) -> Option<f64> {
        let script = "const e = performance.getEntriesByType('paint') \
                      .find(e => e.name === arguments[0]); return e ? e.startTime : null;";
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(ms) = self.execute(script, vec![json!(name)]).await.as_f64() {
                return Some(ms);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session: chromedriver stops this session's Chromium. Call it at the end of
    /// every test; dropping an open `Browser` only tries to.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client
                .close()
                .await
                .unwrap_or_else(|e| panic!("cannot end the browser session: {e}"));
            self.session = None;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The runtime may be gone (a test that panicked), so the session is ended with a plain
        // request of this thread, which chromedriver answers once Chromium is stopped.
        drop(self.client.take());
        if let Some(session) = self.session.take() {
            let _ = driver_request(self.driver.addr, "DELETE", &format!("/session/{session}"));
        }
        // Then chromedriver is killed (`Driver`'s drop), and any Chromium process started on
        // this profile that outlived it, found by its command line: the profile's path is this
        // browser's own.
        let _ = self.driver.child.kill();
        let _ = self.driver.child.wait();
        for pid in processes_using(&self.profile()) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

/// The ids of the processes whose command line mentions `path`.
pub fn processes_using(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
        })
        .collect()
}

/// `<target>/console-screenshots`: the target directory is `CARGO_TARGET_DIR` when it is an
/// absolute path, otherwise the one holding this test binary (the nearest ancestor with cargo's
/// `CACHEDIR.TAG`, else three levels up from `target/debug/deps/it-...`).
pub fn screenshot_dir() -> PathBuf {
    let from_env = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    let target = from_env.unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        exe.ancestors()
            .find(|dir| dir.join("CACHEDIR.TAG").is_file())
            .or_else(|| exe.ancestors().nth(3))
            .expect("the test binary is under a target directory")
            .to_owned()
    });
    target.join("console-screenshots")
}

/// The smoke test's page: a greeting, a field and a button that writes what was typed.
const SMOKE_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>harness smoke</title>
<style>body { font-family: sans-serif; margin: 2rem; } h1 { color: #234; }</style>
</head>
<body>
<h1 id="greeting">Hello from 127.0.0.1</h1>
<label>Name <input id="name" autocomplete="off"></label>
<button id="go" type="button">Greet</button>
<p id="out"></p>
<script>
document.getElementById('go').addEventListener('click', () => {
  document.getElementById('out').textContent = 'Hi, ' + document.getElementById('name').value;
});
</script>
</body>
</html>
"#;

/// Serves `html` at every path of a free port of 127.0.0.1 until the test's runtime ends.
async fn serve_page(html: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    let mut response = hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(html.as_bytes()),
                    ));
                    response.headers_mut().insert(
                        "content-type",
                        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The harness itself: a page of a server on 127.0.0.1 is read, filled in, clicked, waited on,
/// timed and photographed, on a desktop and a phone; a real service's answer is read too; and
/// closing leaves no Chromium running on either profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let Some(desktop) = Browser::start().await else {
        return;
    };
    let page = serve_page(SMOKE_PAGE).await;
    desktop.goto(&format!("http://{page}/")).await;
    assert_eq!(desktop.text_of("#greeting").await, "Hello from 127.0.0.1");
    desktop.fill("#name", "Ada").await;
    desktop.click("#go").await;
    desktop
        .wait_until(
            "document.getElementById('out').textContent === 'Hi, Ada'",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(desktop.text_of("#out").await, "Hi, Ada");
    let width = desktop
        .execute("return window.innerWidth;", Vec::new())
        .await;
    assert_eq!(width, json!(1280), "the desktop viewport");

    let first_paint = desktop.first_paint_ms().await.expect("a first paint");
    let contentful = desktop
        .first_contentful_paint_ms()
        .await
        .expect("a first contentful paint");
    assert!(
        first_paint > 0.0 && contentful >= first_paint,
        "first paint {first_paint} ms, first contentful paint {contentful} ms"
    );

    let shot = desktop.screenshot("harness-smoke").await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        shot.display()
    );

    // A real service on 127.0.0.1, as the console's tests will use.
    let service = crate::utils::Service::start().await;
    desktop
        .goto(&format!("http://{}/health", service.addr))
        .await;
    assert!(
        desktop.text_of("body").await.contains(r#""status":"ok""#),
        "the service's /health as the browser shows it"
    );

    let Some(phone) = Browser::start_phone().await else {
        return;
    };
    assert_eq!(phone.viewport(), Viewport::Phone);
    phone.goto(&format!("http://{page}/")).await;
    let width = phone.execute("return window.innerWidth;", Vec::new()).await;
    assert_eq!(width, json!(Viewport::PHONE_WIDTH), "the phone viewport");
    phone.screenshot("harness-smoke-phone").await;

    let profiles = [desktop.profile(), phone.profile()];
    assert!(
        !processes_using(&profiles[0]).is_empty(),
        "Chromium runs on the desktop session's profile"
    );
    desktop.close().await;
    phone.close().await;
    for profile in &profiles {
        assert_nothing_runs_on(profile).await;
    }
}

/// Asserts that no process runs on `profile` within a second (Chromium's helper processes end
/// just after the browser's).
async fn assert_nothing_runs_on(profile: &Path) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left = processes_using(profile);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes still run on {}: {left:?}",
            profile.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Dropping a browser that was never closed (a test that panicked) stops its Chromium too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_browser_leaves_nothing_running() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let page = serve_page(SMOKE_PAGE).await;
    browser.goto(&format!("http://{page}/")).await;
    let profile = browser.profile();
    assert!(!processes_using(&profile).is_empty());
    drop(browser);
    assert_nothing_runs_on(&profile).await;
}

/// Pages through `path` (a delivery listing with its query) 1000 rows at a time and returns
/// every row.
async fn all_pages(service: &crate::utils::Service, path: &str) -> Vec<Value> {
    use crate::api::{Auth, request};
    let mut rows = Vec::new();
    loop {
        let page = format!("{path}&limit=1000&offset={}", rows.len());
        let answer = request(
            service,
            "GET",
            &page,
            Auth::Wallet(crate::utils::API_KEY),
            None,
        )
        .await;
        assert_eq!(
            answer.status,
            hyper::StatusCode::OK,
            "{page}: {}",
            answer.json
        );
        let contents = answer.json["contents"].as_array().unwrap();
        rows.extend(contents.iter().cloned());
        if answer.json.get("next").is_none() {
            return rows;
        }
    }
}

/// Seeds 10,000 deliveries and reads them back through the REST API: as many of each state as
/// the seeding says, each with the attempts and times its state needs, and events of every
/// type whose data the API serves. Proves the seeded rows are data webhookd itself could have
/// written.
async fn seeded_rows_read_back(backend: crate::utils::Backend) {
    use crate::api::{Auth, request};
    use crate::utils::{API_KEY, Service, refusing_url, register};
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let hook = register(&service, &refusing_url()).await;
    let n = 10_000;
    let seeded = seed_deliveries(&service, webhook_domain::WalletId::DEFAULT, hook.id, n).await;
    assert_eq!(seeded.deliveries.values().sum::<u64>(), n);
    assert_eq!(seeded.in_state("delivered"), 9_600);
    assert_eq!(seeded.in_state("exhausted"), 300);

    let listing = format!("/events/webhooks/{}/deliveries?", hook.id);
    let everything = all_pages(&service, &listing).await;
    assert_eq!(everything.len() as u64, n);
    let logged: usize = everything
        .iter()
        .map(|d| d["attempts"].as_array().unwrap().len())
        .sum();
    assert_eq!(logged as u64, seeded.attempts, "attempt rows read back");

    for (state, made, logged) in [
        ("exhausted", 5, Some(5)),
        ("retry_scheduled", 2, Some(2)),
        ("pending", 0, Some(0)),
        ("cancelled", 1, Some(1)),
        ("delivered", 1, None),
    ] {
        let rows = all_pages(&service, &format!("{listing}state={state}")).await;
        assert_eq!(
            rows.len() as u64,
            seeded.in_state(state),
            "{state} deliveries"
        );
        for row in &rows {
            assert_eq!(row["state"], state);
            assert_eq!(row["attemptCount"], made, "{row}");
            if let Some(logged) = logged {
                assert_eq!(row["attempts"].as_array().unwrap().len(), logged, "{row}");
            }
            let finished = row.get("finishedAt").is_some();
            let next = row.get("nextAttemptAt").is_some();
            match state {
                "pending" | "retry_scheduled" => assert!(next && !finished, "{row}"),
                _ => assert!(finished && !next, "{row}"),
            }
            if state == "cancelled" {
                assert_eq!(row["cancelReason"], "target_disabled");
            }
        }
        if state == "exhausted" {
            // Events of every type, each served whole by the API.
            let mut types = std::collections::BTreeSet::new();
            for row in rows.iter().take(26) {
                let event = request(
                    &service,
                    "GET",
                    &format!("/events/{}", row["eventId"].as_str().unwrap()),
                    Auth::Wallet(API_KEY),
                    None,
                )
                .await;
                assert_eq!(event.status, hyper::StatusCode::OK, "{}", event.json);
                types.insert(event.json["type"].as_str().unwrap().to_owned());
            }
            assert_eq!(
                types.len(),
                4,
                "every event type among the seeded: {types:?}"
            );
        }
    }
}

mod seeding_is_consistent {
    use crate::utils::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::seeded_rows_read_back(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::seeded_rows_read_back(Backend::Postgres).await;
    }
}

/// How long seeding 1,000,000 deliveries takes (printed): run with
/// `cargo test -p webhook-app --test it browser::seeding_a_million -- --ignored --nocapture --test-threads 1`.
async fn seed_a_million(backend: crate::utils::Backend) {
    use crate::utils::{Service, refusing_url, register};
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let hook = register(&service, &refusing_url()).await;
    let seeded = seed_deliveries(
        &service,
        webhook_domain::WalletId::DEFAULT,
        hook.id,
        1_000_000,
    )
    .await;
    let _ = writeln!(
        std::io::stderr(),
        "{backend:?}: seeded 1,000,000 deliveries ({} attempt rows) in {:.1} s",
        seeded.attempts,
        seeded.elapsed.as_secs_f64()
    );
}

mod seeding_a_million {
    use crate::utils::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: about a minute per backend"]
    async fn sqlite() {
        super::seed_a_million(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: about a minute per backend"]
    async fn postgres() {
        super::seed_a_million(Backend::Postgres).await;
    }
}

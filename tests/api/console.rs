//! The operator console in a real browser: Debian's Chromium, driven over
//! WebDriver (chromedriver) by fantoccini, against the real verifyd. An
//! operator signs in with a key, watches a dead letter appear, opens it,
//! replays it, and the SMS reaches the (mocked) provider.
//!
//! `VERIFYD_SCREENSHOTS=docs/ops/screenshots cargo test -p verifyd --test api console`
//! writes the screenshots the README shows; without it they go to a
//! temporary directory (and are still taken and checked).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use verifyd_providers::testkit::Failure;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::{TestApp, captured_logs, spawn_app_with};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

async fn start_driver() -> Driver {
    for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: the console is tested in a real browser. Install it with \
             `apt-get install -y chromium chromium-driver` (.ci/run does when it is missing; package {what})"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = std::env::temp_dir().join(format!("verifyd-chromium-{}", uuid::Uuid::new_v4().simple()));
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), profile };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if reqwest::get(format!("{}/status", driver.url)).await.is_ok_and(|r| r.status().is_success()) {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1366,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", driver.profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(&driver.url).await.expect("a Chromium session")
}

fn screenshots() -> PathBuf {
    match std::env::var_os("VERIFYD_SCREENSHOTS") {
        Some(dir) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(dir),
        None => std::env::temp_dir().join("verifyd-console-screenshots"),
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}: a real picture ({} bytes)", png.len());
    let dir = screenshots();
    std::fs::create_dir_all(&dir).expect("screenshot directory");
    std::fs::write(dir.join(name), png).expect("screenshot written");
}

/// Waits until the element `css` shows `text` (the page refreshes every few seconds).
async fn shows_text(client: &Client, css: &str, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let now = match client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(text) {
            return now;
        }
        assert!(Instant::now() < deadline, "{css} did not show {text:?} within {within:?}; it shows:\n{now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `css` matches a displayed element.
async fn shown(client: &Client, css: &str, within: Duration) -> fantoccini::elements::Element {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && element.is_displayed().await.unwrap_or(false)
        {
            return element;
        }
        if Instant::now() >= deadline {
            let text = client.find(Locator::Css("body")).await.ok();
            let body = match text {
                Some(b) => b.text().await.unwrap_or_default(),
                None => String::new(),
            };
            panic!("{css} not shown within {within:?}; the page says:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn letter_of(app: &TestApp, key: &str, verification_id: &str) -> Value {
    app.wait_for_dead_letter(key, |l| l["verification_id"] == verification_id).await
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_operator_signs_in_watches_a_dead_letter_arrive_replays_it_and_the_sms_goes_out() {
    let app = spawn_app_with(|c| c.verification.ttl_secs = 900).await;
    let operator = app.operator_key().await;
    let driver = start_driver().await;
    let client = browser(&driver).await;

    // Signing in: the key goes in a form field and nowhere else.
    client.goto(&app.url("/ops")).await.expect("the console loads");
    let input = shown(&client, "#key-input", Duration::from_secs(10)).await;
    input.send_keys(&operator).await.expect("type the key");
    screenshot(&client, "console-sign-in.png").await;
    client.find(Locator::Css("#sign-in-button")).await.unwrap().click().await.unwrap();
    shown(&client, "#console #cards .card", Duration::from_secs(10)).await;
    assert!(!client.current_url().await.unwrap().as_str().contains(&operator), "the key stays out of the URL");
    let view = shown(&client, "#view-name", Duration::from_secs(5)).await.text().await.unwrap();
    assert_eq!(view, "whole deployment");

    // A delivery fails through every retry while the operator watches.
    app.twilio.fail_next(3, Failure::code(503, "20500")).await;
    let phone = "+14155552695";
    let created = app.create_verification("console-user", phone, "sms").await;
    let verification_id = created.body["id"].as_str().unwrap().to_owned();
    let letter = letter_of(&app, &operator, &verification_id).await;
    let letter_id = letter["id"].as_str().unwrap().to_owned();
    let row = format!("tr[data-letter-id='{letter_id}']");
    // The page finds it on its own (it refreshes every few seconds).
    shown(&client, &row, Duration::from_secs(15)).await;
    shows_text(&client, "#cards", "Dead letters\n1", Duration::from_secs(15)).await;
    shows_text(&client, "#providers tr[data-provider='twilio']", "unavailable 3", Duration::from_secs(15)).await;
    let failures = shows_text(&client, "#failures", "+*********95", Duration::from_secs(15)).await;
    assert!(!failures.contains(phone), "never the whole number");
    screenshot(&client, "console-dead-letter.png").await;

    // Opened: its reason and every attempt.
    client.find(Locator::Css(&format!("{row} button.inspect"))).await.unwrap().click().await.unwrap();
    let dialog = shown(&client, "#letter-dialog", Duration::from_secs(10)).await;
    shown(&client, "#letter-attempts tbody tr", Duration::from_secs(5)).await;
    let text = dialog.text().await.unwrap();
    assert!(text.contains("retries_exhausted") && text.contains("Replayable\nyes"), "{text}");
    let attempts = client.find_all(Locator::Css("#letter-attempts tbody tr")).await.unwrap();
    assert_eq!(attempts.len(), 4, "three retryable failures and the final give-up");
    screenshot(&client, "console-inspect.png").await;

    // A request that changes something needs the page's CSRF token and origin:
    // the session cookie alone (what another site could make the browser send) is refused.
    let cookie = client.get_named_cookie("verifyd_console").await.expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"));
    let forged = app
        .client
        .post(app.url(&format!("/v1/ops/dead-letters/{letter_id}/replay")))
        .header("Cookie", format!("verifyd_console={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let problem: Value = forged.json().await.unwrap();
    assert_eq!(problem["error"], "csrf_failed");
    assert_eq!(app.twilio.sent_sms().await.len(), 0, "nothing sent by the forged request");

    // Replay from the console: the SMS goes out, once.
    client.find(Locator::Css("#dialog-replay")).await.unwrap().click().await.unwrap();
    let toast = shown(&client, "#toast.show", Duration::from_secs(10)).await;
    assert!(toast.text().await.unwrap().starts_with("Replayed"), "{}", toast.text().await.unwrap());
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(&verification_id, &code).await.body["status"], "approved");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(app.twilio.sent_sms().await.len(), 1, "delivered exactly once");

    // The same page on a phone.
    client.set_window_size(390, 844).await.unwrap();
    client
        .find(Locator::Css("#letter-filter select[name='status']"))
        .await
        .unwrap()
        .select_by_value("all")
        .await
        .unwrap();
    shows_text(&client, &row, "replayed", Duration::from_secs(10)).await;
    screenshot(&client, "console-phone.png").await;
    let width: Value = client.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap();
    assert!(
        width.as_u64().unwrap_or(9999) <= 400,
        "no sideways scrolling of the page on a phone (tables scroll inside): {width}"
    );

    // Signing out ends the session for good.
    client.find(Locator::Css("#sign-out")).await.unwrap().click().await.unwrap();
    shown(&client, "#key-input", Duration::from_secs(10)).await;
    let after = app
        .client
        .get(app.url("/v1/ops/overview"))
        .header("Cookie", format!("verifyd_console={}", cookie.value()))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let audit = app.get_as(&operator, "/v1/ops/audit").await;
    let entry = &audit.body["entries"][0];
    assert_eq!(
        (entry["action"].as_str(), entry["api_key_id"].as_str()),
        (Some("dead_letter.replayed"), operator.split('.').next())
    );

    client.close().await.unwrap();
    let logs = captured_logs();
    assert!(!logs.contains(&operator), "the operator key reached a log line");
    assert!(!logs.contains(cookie.value()), "the session token reached a log line");
}

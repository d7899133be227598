//! A backend's test against a real verifyd whose SMS provider is a mock.
//! Copy it: it needs only `verifyd_providers` (feature `testkit`), `reqwest`,
//! `serde_json`, `sqlx` (to drop its database at the end) and `tokio`, a
//! verifyd binary (`VERIFYD_BIN`), PostgreSQL and RabbitMQ.
//! docs/testing.md shows this file; a test checks they are the same.

use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};
use verifyd_providers::testkit::{Failure, TwilioMock};

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
const RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// verifyd, started as your backend's tests would: its own process, configured
/// by environment variables, sending SMS to `twilio` (the mock).
struct Verifyd {
    process: Child,
    url: String,
    database: String,
}

impl Verifyd {
    fn command(database: &str, twilio: &TwilioMock) -> Command {
        let bin = std::env::var("VERIFYD_BIN").ok().or(option_env!("CARGO_BIN_EXE_verifyd").map(String::from));
        let mut command = Command::new(bin.expect("set VERIFYD_BIN to the verifyd binary"));
        command
            .env_clear()
            .env("RUST_LOG", "warn")
            .env("VERIFYD_DATABASE__URL", format!("{POSTGRES}/{database}"))
            .env("VERIFYD_AMQP__URL", RABBITMQ)
            // One prefix for every run: its queues are reused, not left behind.
            .env("VERIFYD_AMQP__PREFIX", "\"testkit-example.\"")
            // Test-only keys (base64 of 32 bytes); never use them elsewhere.
            .env("VERIFYD_SECRETS__CODE_HMAC_KEY", "\"dGVzdC1vbmx5LWhtYWMta2V5LTMyLWJ5dGVzLWxvbmc=\"")
            .env("VERIFYD_SECRETS__ENCRYPTION_KEY", "\"dGVzdC1vbmx5LWFlYWQta2V5LTMyLWJ5dGVzLWxvbmc=\"")
            .env("VERIFYD_PROVIDERS__SMS", "[\"twilio\"]")
            .env("VERIFYD_PROVIDERS__VOICE", "[\"twilio\"]")
            .env("VERIFYD_PROVIDERS__TWILIO__ACCOUNT_SID", "\"AC00000000000000000000000000000000\"")
            .env("VERIFYD_PROVIDERS__TWILIO__AUTH_TOKEN", "\"test-token\"")
            .env("VERIFYD_PROVIDERS__TWILIO__FROM", "\"+15005550006\"")
            .env("VERIFYD_PROVIDERS__TWILIO__BASE_URL", twilio.uri());
        command
    }

    /// Migrates a fresh database, makes an API key, starts `verifyd serve`
    /// and waits until it is ready. Returns it and the key.
    async fn start(twilio: &TwilioMock) -> (Verifyd, String) {
        let database = format!("example_{}", std::process::id());
        let key = Self::command(&database, twilio)
            .args(["keys", "create", "--tenant", "example", "--scope", "verify,enrol"])
            .output()
            .expect("verifyd keys create runs");
        assert!(key.status.success(), "{}", String::from_utf8_lossy(&key.stderr));
        let key = String::from_utf8(key.stdout).expect("the key is text").trim().to_owned();

        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let process = Self::command(&database, twilio)
            .arg("serve")
            .env("VERIFYD_HTTP__BIND", format!("127.0.0.1:{port}"))
            .spawn()
            .expect("verifyd serve starts");
        let verifyd = Verifyd { process, url: format!("http://127.0.0.1:{port}"), database };
        for _ in 0..300 {
            if let Ok(ready) = reqwest::get(format!("{}/readyz", verifyd.url)).await
                && ready.status().is_success()
            {
                return (verifyd, key);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("verifyd was not ready within 30 s");
    }

    async fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let admin = sqlx::PgPool::connect(&format!("{POSTGRES}/postgres")).await.expect("PostgreSQL");
        let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database);
        sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&admin).await.expect("the test database is dropped");
    }
}

#[tokio::test]
async fn a_person_verifies_their_phone_with_the_code_they_were_sent() {
    let twilio = TwilioMock::start().await;
    let (verifyd, key) = Verifyd::start(&twilio).await;
    let http = reqwest::Client::new();
    let phone = "+14155552671";

    // Your backend asks for a verification...
    let created: Value = http
        .post(format!("{}/v1/verifications", verifyd.url))
        .bearer_auth(&key)
        .json(&json!({ "account_id": "user-42", "phone": phone, "channel": "sms" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().unwrap();

    // ...the person reads the SMS (here: the mock does)...
    let code = twilio.wait_for_code(phone, Duration::from_secs(10)).await.expect("an SMS reached Twilio");
    let sent = twilio.sent().await;
    assert!(sent[0].is_to(phone) && sent[0].text.contains(&code), "{sent:?}");

    // ...and types it; a wrong code first.
    let check = |code: String| {
        let request = http.post(format!("{}/v1/verifications/{id}/check", verifyd.url)).bearer_auth(&key);
        async move { request.json(&json!({ "code": code })).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let wrong = if code == "0000000" { "1111111" } else { "0000000" };
    assert_eq!(check(wrong.to_owned()).await["status"], "pending");
    assert_eq!(check(code).await["status"], "approved");

    // A provider refusing the number: verifyd does not send it again.
    twilio.fail_next(1, Failure::InvalidNumber).await;
    let refused = http
        .post(format!("{}/v1/verifications", verifyd.url))
        .bearer_auth(&key)
        .json(&json!({ "account_id": "user-43", "phone": "+14155550100", "channel": "sms" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 201);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(twilio.deliveries_to("+14155550100").await, 0);

    verifyd.stop().await;
}

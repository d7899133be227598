//! `verifyd mock-provider`: the built binary as a stand-in provider, in its
//! own process, driven only over HTTP, as a team testing in Java, Node or
//! Python would: verifyd sends through its real Twilio client to it, the
//! test reads the code from `GET /_mock/messages` and makes the next send
//! fail with `POST /_mock/fail-next`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};

/// A `verifyd mock-provider` child process, killed when dropped.
struct MockProvider {
    child: Child,
    url: String,
}

impl Drop for MockProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `verifyd mock-provider <provider> --port 0` and reads the address
/// it prints on its first line.
fn start_mock_provider(provider: &str) -> MockProvider {
    let mut child = Command::new(env!("CARGO_BIN_EXE_verifyd"))
        .args(["mock-provider", provider, "--port", "0"])
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("verifyd mock-provider starts");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut reader = BufReader::new(stdout);
    let mut first = String::new();
    reader.read_line(&mut first).expect("mock-provider prints its address");
    // Keep reading what it prints next: a closed pipe would fail its writes.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let url = first.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "first line: {first:?}");
    MockProvider { child, url }
}

async fn messages_to(app: &TestApp, mock: &MockProvider, phone: &str) -> Vec<Value> {
    let url = format!("{}/_mock/messages?to={}", mock.url, phone.replace('+', "%2B"));
    let r = app.send(app.client.get(url)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["messages"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_messages(app: &TestApp, mock: &MockProvider, phone: &str, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let messages = messages_to(app, mock, phone).await;
        if messages.len() >= count {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{phone} did not get {count} message(s) at the mock provider within 10 s");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn verifyd_sends_to_a_mock_provider_process_and_its_http_api_gives_the_code() {
    let mock = start_mock_provider("twilio");
    let url = mock.url.clone();
    let app = spawn_app_with(|c| {
        let twilio = c.providers.twilio.as_mut().expect("tests configure twilio");
        twilio.base_url = url;
    })
    .await;
    let phone = "+14155552671";

    let created = app.create_verification("ada", phone, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();
    let messages = wait_for_messages(&app, &mock, phone, 1).await;
    assert_eq!((messages[0]["provider"].as_str(), messages[0]["channel"].as_str()), (Some("twilio"), Some("sms")));
    assert!(messages[0]["id"].as_str().unwrap().starts_with("SM"), "{}", messages[0]);
    let code = messages[0]["code"].as_str().expect("the code is given").to_owned();
    assert!(messages[0]["text"].as_str().unwrap().contains(&code));
    assert_eq!(app.check(id, &code).await.body["status"], "approved");
    assert!(app.twilio.sent().await.is_empty(), "nothing went to the in-process mock");

    // Forget, then make the next send fail with Twilio's real error: verifyd
    // records the refusal and does not retry it.
    let cleared = app.send(app.client.delete(format!("{}/_mock/messages", mock.url))).await;
    assert_eq!(cleared.status, 204);
    assert!(messages_to(&app, &mock, phone).await.is_empty());
    let fail = json!({ "count": 1, "failure": "invalid_number" });
    let armed = app.send(app.client.post(format!("{}/_mock/fail-next", mock.url)).json(&fail)).await;
    assert_eq!(armed.status, 204, "{:?}", armed.body);
    let refused = app.create_verification("bob", "+14155552672", "sms").await;
    let refused_id = refused.body["id"].as_str().unwrap().to_owned();
    let mut outcome = None;
    for _ in 0..200 {
        outcome = sqlx::query_scalar::<_, String>("SELECT outcome FROM delivery_attempts WHERE verification_id = $1")
            .bind(uuid::Uuid::parse_str(&refused_id).unwrap())
            .fetch_optional(&app.pool)
            .await
            .unwrap();
        if outcome.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(outcome.as_deref(), Some("permanent_error"));
    assert!(messages_to(&app, &mock, "+14155552672").await.is_empty(), "a refused send is not listed");

    // A request the control API cannot read says why.
    let bad =
        app.send(app.client.post(format!("{}/_mock/fail-next", mock.url)).json(&json!({"failure": "oops"}))).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["detail"].as_str().unwrap().contains("unknown failure"), "{:?}", bad.body);
}

/// Each provider offered answers its own API and lists what it accepted.
#[actix_rt::test(system = "verifyd::system::System")]
async fn vonage_telnyx_and_sinch_mock_providers_speak_their_apis() {
    let client = reqwest::Client::new();
    for provider in ["vonage", "telnyx", "sinch"] {
        let mock = start_mock_provider(provider);
        let request = match provider {
            "vonage" => client.post(format!("{}/sms/json", mock.url)).form(&[
                ("api_key", "k"),
                ("api_secret", "s"),
                ("from", "Acme"),
                ("to", "447700900123"),
                ("text", "Your code is 4820193"),
            ]),
            "telnyx" => client
                .post(format!("{}/v2/messages", mock.url))
                .bearer_auth("KEY0123")
                .json(&json!({"from": "+15005550006", "to": "+447700900123", "text": "Your code is 4820193"})),
            _ => client
                .post(format!("{}/xms/v1/plan42/batches", mock.url))
                .bearer_auth("token")
                .json(&json!({"from": "+15005550006", "to": ["447700900123"], "body": "Your code is 4820193"})),
        };
        let sent = request.send().await.unwrap();
        assert!(sent.status().is_success(), "{provider}: {}", sent.status());
        let listed: Value =
            client.get(format!("{}/_mock/messages", mock.url)).send().await.unwrap().json().await.unwrap();
        assert_eq!(listed["provider"], provider);
        assert_eq!(listed["messages"][0]["code"], "4820193", "{provider}: {listed}");
    }
}

#[test]
fn it_does_not_run_with_production_configuration() {
    let output = Command::new(env!("CARGO_BIN_EXE_verifyd"))
        .args(["mock-provider", "twilio", "--port", "0"])
        .env_clear()
        .env("VERIFYD_MODE", "production")
        .output()
        .expect("verifyd runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("VERIFYD_MODE=production"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing listened");
}

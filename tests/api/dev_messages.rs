//! `GET /v1/dev/messages`: in development mode with the inbox provider, a
//! backend reads the code it was just sent over HTTP; with production
//! configuration the route does not exist.

use std::time::Duration;

use serde_json::Value;
use verifyd::config::Mode;
use verifyd_providers::inbox::InboxConfig;

use crate::helpers::{TestApp, spawn_app_with};

const PHONE: &str = "+14155552671";

async fn inbox_app() -> (TestApp, std::path::PathBuf) {
    let path = std::env::temp_dir().join(format!("verifyd-dev-inbox-{}.jsonl", uuid::Uuid::new_v4().simple()));
    let config = InboxConfig::new(&path);
    let app = spawn_app_with(|c| {
        c.providers.inbox = Some(config);
        c.providers.sms = vec!["inbox".into()];
        c.providers.voice = vec!["inbox".into()];
    })
    .await;
    (app, path)
}

/// The newest message to `to` listed by the endpoint, once one is there.
async fn latest_message(app: &TestApp, to: &str) -> Value {
    for _ in 0..200 {
        let r = app.get(&format!("/v1/dev/messages?to={}", to.replace('+', "%2B"))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store");
        if let Some(message) = r.body["messages"].get(0) {
            return message.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no message to {to} listed within 10 s");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn in_development_a_backend_reads_the_code_it_was_sent_and_the_check_approves() {
    let (app, path) = inbox_app().await;
    let created = app.create_verification("ada", PHONE, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().unwrap();

    let message = latest_message(&app, PHONE).await;
    assert_eq!((message["channel"].as_str(), message["to"].as_str()), (Some("sms"), Some(PHONE)));
    let code = message["code"].as_str().expect("the code is listed").to_owned();
    assert!(message["text"].as_str().unwrap().contains(&code), "{message}");
    assert_eq!(app.check(id, &code).await.body["status"], "approved");

    // A call is listed too, newest first; another number's messages are not.
    let voice = app.create_verification("bob", "+14155552672", "voice").await;
    assert_eq!(voice.status, 201);
    let call = latest_message(&app, "+14155552672").await;
    assert_eq!(call["channel"], "voice");
    assert!(call["script"].as_str().unwrap().contains(", "), "{call}");
    let all = app.get("/v1/dev/messages?limit=1").await;
    assert_eq!(all.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(all.body["messages"][0]["to"], "+14155552672", "newest first");
    let only_ada = app.get(&format!("/v1/dev/messages?to={}", PHONE.replace('+', "%2B"))).await;
    assert!(only_ada.body["messages"].as_array().unwrap().iter().all(|m| m["to"] == PHONE));

    // It takes an API key, and refuses what it cannot read.
    let anonymous = app.send(app.client.get(app.url("/v1/dev/messages"))).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(app.get("/v1/dev/messages?to=12").await.body["error"], "invalid_field");
    assert_eq!(app.get("/v1/dev/messages?limit=0").await.body["field"], "limit");
    let _ = std::fs::remove_file(path);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn with_production_configuration_the_route_does_not_exist() {
    let app = spawn_app_with(|c| c.mode = Mode::Production).await;
    let created = app.create_verification("ada", PHONE, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    app.code_sent_to(PHONE).await;

    let r = app.get(&format!("/v1/dev/messages?to={}", PHONE.replace('+', "%2B"))).await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["error"], "not_found");
    // The same answer, word for word, as a path that never existed.
    let unknown = app.get("/v1/no-such-route").await;
    assert_eq!((unknown.status, &unknown.body), (404, &r.body));

    // Production refuses the inbox provider itself, so the route can never have a file to read.
    let mut config = app.config.clone();
    config.providers.inbox = Some(InboxConfig::new(std::env::temp_dir().join("never-written.jsonl")));
    config.providers.sms = vec!["inbox".into()];
    assert!(verifyd::routes::build(&config).is_err(), "production mode refuses the inbox provider");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn in_development_without_the_inbox_provider_the_route_does_not_exist_either() {
    let app = spawn_app_with(|_| {}).await;
    let r = app.get("/v1/dev/messages").await;
    assert_eq!((r.status, r.body["error"].as_str()), (404, Some("not_found")));
}

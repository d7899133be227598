//! Event webhooks as a backend uses them: it adds an endpoint over the API
//! (the secret shown once), and every event its filter matches is POSTed to
//! it, signed per Standard Webhooks, in order for each verification, retried
//! through RabbitMQ when the receiver fails, and left as a dead letter an
//! operator replays when it refuses. Receivers are real HTTP servers
//! (wiremock); the signature is checked here by its own code, from the spec.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::{TestApp, captured_logs, spawn_app_with};
use crate::routing::US;

/// Short retries and timeouts, so a test sees several of them.
fn with_webhooks(c: &mut verifyd::config::Config) {
    c.webhooks.retry_delays_ms = vec![150, 200, 250, 300, 350, 400];
    c.webhooks.timeout_ms = 500;
}

/// A receiver answering `status` to everything; `first` answers (status,
/// delay) come before it, once each, in that order.
async fn receiver(first: &[(u16, Duration)], then: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(then)).with_priority(10).mount(&server).await;
    // Mounted last first: wiremock takes the earliest-mounted matching mock of the
    // best priority, and each of these serves once.
    for (i, (status, delay)) in first.iter().enumerate() {
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(*status).set_delay(*delay))
            .up_to_n_times(1)
            .with_priority(u8::try_from(i + 1).unwrap_or(9))
            .mount(&server)
            .await;
    }
    server
}

/// One POST as the receiver saw it.
#[derive(Clone)]
struct Hook {
    id: String,
    timestamp: i64,
    signature: String,
    body: Vec<u8>,
    json: Value,
    content_type: String,
    user_agent: String,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.id, self.json["event"], self.json["verification_id"])
    }
}

fn hook(r: &Request) -> Hook {
    let header = |name: &str| r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    Hook {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp").parse().expect("webhook-timestamp is seconds"),
        signature: header("webhook-signature"),
        body: r.body.clone(),
        json: serde_json::from_slice(&r.body).expect("a JSON body"),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
    }
}

async fn hooks(server: &MockServer) -> Vec<Hook> {
    server.received_requests().await.unwrap_or_default().iter().map(hook).collect()
}

/// Waits (15 s) until `server` has received `n` POSTs.
async fn wait_for_hooks(server: &MockServer, n: usize) -> Vec<Hook> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = hooks(server).await;
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "{} of {n} webhooks within 15 s: {got:?}", got.len());
        actix_rt::time::sleep(Duration::from_millis(30)).await;
    }
}

/// The Standard Webhooks check, written from the spec: each space-separated
/// `v1,<base64>` is HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
/// base64 key after `whsec_`.
fn signed_by(secret: &str, h: &Hook) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("whsec_ prefix")).expect("base64 key");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("key");
    mac.update(format!("{}.{}.", h.id, h.timestamp).as_bytes());
    mac.update(&h.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    h.signature.split(' ').any(|s| s == expected)
}

/// Adds an endpoint; returns (its id, its secret).
async fn add_endpoint(app: &TestApp, url: &str, event_types: Value) -> (String, String) {
    let made = app.post_json("/v1/webhooks", &json!({ "url": url, "event_types": event_types })).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["webhook"]["id"].as_str().expect("id").to_owned();
    let secret = made.body["secret"].as_str().expect("secret").to_owned();
    (id, secret)
}

/// An endpoint's deliveries, once `done` holds of them (15 s at most).
async fn deliveries_until(app: &TestApp, endpoint: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let read = app.get(&format!("/v1/webhooks/{endpoint}/deliveries")).await;
        assert_eq!(read.status, 200, "{:?}", read.body);
        let list = read.body["deliveries"].as_array().cloned().unwrap_or_default();
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "not reached within 15 s: {list:?}");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_delivered(n: usize) -> impl Fn(&[Value]) -> bool {
    move |l: &[Value]| l.len() >= n && l.iter().all(|d| d["status"] == "delivered")
}

/// The events of one verification, in the order they were sent.
fn events_of(hooks: &[Hook], verification: &str) -> Vec<String> {
    hooks
        .iter()
        .filter(|h| h.json["verification_id"] == verification)
        .map(|h| h.json["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_backend_receives_its_events_signed_in_order_and_as_amqp_publishes_them() {
    let app = spawn_app_with(with_webhooks).await;
    let server = receiver(&[], 200).await;
    let url = format!("{}/hooks/verifyd?token=s3cr3t-path-token", server.uri());
    let made = app.post_json("/v1/webhooks", &json!({ "url": url })).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(
        made.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "a secret is never cached"
    );
    let secret = made.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let webhook = &made.body["webhook"];
    assert_eq!(
        (&webhook["url"], &webhook["event_types"], &webhook["enabled"]),
        (&json!(url), &json!(["*"]), &json!(true))
    );
    let endpoint = webhook["id"].as_str().expect("id").to_owned();

    let mut events = app.capture_events(&format!("{}.#", app.tenant)).await;
    let verification = app.verified_phone("uma", US).await.verification_id;
    events.wait_for_event("verification.approved", Duration::from_secs(10)).await;
    let published: Vec<Value> = events.drain(Duration::from_millis(500)).await.iter().map(|m| m.json()).collect();
    let names: Vec<&Value> = published.iter().map(|e| &e["event"]).collect();
    assert!(names.contains(&&json!("factor.added")), "the approval also made the phone a factor: {names:?}");
    assert_eq!(names.len(), 4, "{published:?}");
    let received = deliveries_until(&app, &endpoint, all_delivered(published.len())).await;
    let hooks = hooks(&server).await;
    assert_eq!(hooks.len(), published.len(), "one POST per event, none repeated: {hooks:?} {names:?}");
    let by_id = |v: &mut Vec<Value>| v.sort_by(|a, b| a["event_id"].as_str().cmp(&b["event_id"].as_str()));
    let (mut bodies, mut events) = (hooks.iter().map(|h| h.json.clone()).collect::<Vec<_>>(), published.clone());
    by_id(&mut bodies);
    by_id(&mut events);
    assert_eq!(bodies, events, "the bodies are the events as AMQP carries them");
    // One verification's events reach the endpoint in the order they were
    // recorded (docs/webhooks.md). Its delivery and its approval are written by
    // two transactions that can overlap (the code reaches the phone before the
    // dispatcher records the provider's answer), so AMQP, which publishes in
    // commit order, may carry those two the other way round.
    let recorded: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM webhook_deliveries WHERE endpoint_id = $1::uuid AND lane = $2 ORDER BY seq",
    )
    .bind(&endpoint)
    .bind(format!("verification:{verification}"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(events_of(&hooks, &verification), recorded, "one verification's events in the order they were recorded");
    assert_eq!(recorded.first().map(String::as_str), Some("verification.created"));
    let mut amqp_events: Vec<&str> = published
        .iter()
        .filter(|e| e["verification_id"] == verification.as_str())
        .map(|e| e["event"].as_str().unwrap_or_default())
        .collect();
    let mut recorded_events: Vec<&str> = recorded.iter().map(String::as_str).collect();
    amqp_events.sort_unstable();
    recorded_events.sort_unstable();
    assert_eq!(amqp_events, recorded_events, "the same events by AMQP");
    let now = verifyd_core::timestamp::now().timestamp();
    for h in &hooks {
        assert!(signed_by(&secret, h), "signature verifies with the secret shown: {h:?}");
        assert!(h.id.starts_with("msg_"), "{h:?}");
        assert!((now - h.timestamp).abs() < 60, "webhook-timestamp is now: {h:?}");
        assert_eq!(h.content_type, "application/json");
        assert!(h.user_agent.starts_with("verifyd-webhooks/"), "{h:?}");
    }
    let mut ids: Vec<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), hooks.len(), "each event has its own webhook-id");
    assert!(received.iter().all(|d| d["attempts"] == 1 && d["last_status"] == 200), "{received:?}");
    // (Across lanes, a verification's and the account's, arrival order is free.)
    let mut listed_ids: Vec<&str> = received.iter().map(|d| d["webhook_id"].as_str().unwrap_or("-")).collect();
    listed_ids.sort_unstable();
    assert_eq!(listed_ids, ids, "the deliveries list names the webhook-ids the receiver saw");

    // The secret is never shown again, nor logged; neither is the URL's token.
    let listed = app.get("/v1/webhooks").await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["webhooks"][0]["id"], endpoint.as_str());
    assert!(listed.body["webhooks"][0].get("secret").is_none(), "{:?}", listed.body);
    let logs = captured_logs();
    let key = secret.trim_start_matches("whsec_");
    assert!(!logs.contains(key), "the signing secret is in the logs");
    assert!(!logs.contains("s3cr3t-path-token"), "the URL's token is in the logs");
    let audit = app.get("/v1/audit?limit=500").await;
    let text = audit.body.to_string();
    assert!(text.contains("webhook.created") && !text.contains("s3cr3t-path-token") && !text.contains(key), "{text}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_receiver_that_fails_then_recovers_gets_every_event_once_delivered_in_order() {
    let app = spawn_app_with(with_webhooks).await;
    let fail = Duration::ZERO;
    let server = receiver(&[(503, fail), (500, fail), (429, fail), (503, fail)], 200).await;
    let (endpoint, secret) = add_endpoint(&app, &format!("{}/in", server.uri()), json!(["verification.*"])).await;

    let first = app.verified_phone("vic", US).await.verification_id;
    let second = app.verified_phone("wen", US).await.verification_id;
    let list =
        deliveries_until(&app, &endpoint, |l| l.len() >= 6 && l.iter().all(|d| d["status"] == "delivered")).await;
    let hooks = hooks(&server).await;
    let attempts: i64 = list.iter().map(|d| d["attempts"].as_i64().unwrap_or(0)).sum();
    assert_eq!(attempts, i64::try_from(hooks.len()).unwrap_or(0), "every POST is counted: {list:?}");
    assert_eq!(hooks.len(), list.len() + 4, "four refusals, then each event once");
    for v in [&first, &second] {
        // One at a time: once the next event of a verification is tried, the
        // one before it is never tried again (it was delivered).
        let mut ids: Vec<&str> =
            hooks.iter().filter(|h| h.json["verification_id"] == v.as_str()).map(|h| h.id.as_str()).collect();
        ids.dedup();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            (ids.len(), distinct.len()),
            (3, 3),
            "retries never let a later event of {v} overtake an earlier one: {hooks:?}"
        );
        assert_eq!(events_of(&hooks, v).first().map(String::as_str), Some("verification.created"));
    }
    // A retry is the same message: same webhook-id and body, a fresh signature.
    let retried = &hooks[0];
    let same: Vec<&Hook> = hooks.iter().filter(|h| h.id == retried.id).collect();
    assert!(same.len() >= 2, "the first delivery was retried: {hooks:?}");
    assert!(same.iter().all(|h| h.body == retried.body && signed_by(&secret, h)));
    let head = list.iter().find(|d| d["webhook_id"] == retried.id.as_str()).expect("listed");
    assert_eq!((&head["attempts"], &head["last_status"]), (&json!(same.len()), &json!(200)), "{head}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_slow_receiver_is_timed_out_and_retried_while_another_endpoint_gets_its_events() {
    let app = spawn_app_with(with_webhooks).await;
    let slow = Duration::from_millis(1_500);
    let sluggish = receiver(&[(200, slow), (200, slow)], 200).await;
    let quick = receiver(&[], 200).await;
    let (slow_id, _) = add_endpoint(&app, &format!("{}/slow", sluggish.uri()), json!(["verification.created"])).await;
    let (quick_id, _) = add_endpoint(&app, &format!("{}/quick", quick.uri()), json!(["verification.created"])).await;

    let created = app.create_verification("xia", US, "sms").await;
    assert_eq!(created.status, 201);
    deliveries_until(&app, &quick_id, all_delivered(1)).await;
    let meanwhile = app.get(&format!("/v1/webhooks/{slow_id}/deliveries")).await;
    assert_eq!(
        meanwhile.body["deliveries"][0]["status"], "pending",
        "the slow one is still being tried: {:?}",
        meanwhile.body
    );

    let done = deliveries_until(&app, &slow_id, all_delivered(1)).await;
    assert_eq!(done[0]["attempts"], 3, "two attempts timed out (500 ms), the third was answered: {done:?}");
    let tries = hooks(&sluggish).await;
    assert_eq!(tries.len(), 3);
    assert!(tries.iter().all(|h| h.id == tries[0].id), "one message, tried three times");
    assert!(captured_logs().contains("no answer within 500 ms"), "the timeout is logged in words");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn filters_disabling_and_secret_rotation_do_what_the_backend_asked() {
    let app = spawn_app_with(with_webhooks).await;
    let approvals = receiver(&[], 200).await;
    let factors = receiver(&[], 200).await;
    let witness = receiver(&[], 200).await;
    let (approvals_id, first_secret) = add_endpoint(&app, &approvals.uri(), json!(["verification.approved"])).await;
    let (factors_id, _) = add_endpoint(&app, &factors.uri(), json!(["factor.*", "account.reset"])).await;
    add_endpoint(&app, &witness.uri(), json!(["verification.approved"])).await;

    let one = app.verified_phone("yan", US).await.verification_id;
    let got = wait_for_hooks(&approvals, 1).await;
    assert_eq!(got[0].json["verification_id"], one.as_str());
    assert_eq!(got[0].json["event"], "verification.approved", "only what the filter names");
    assert!(signed_by(&first_secret, &got[0]));
    assert_eq!(got[0].signature.split(' ').count(), 1);

    // Rotation with an hour's overlap: both secrets sign.
    let rotated =
        app.post_json(&format!("/v1/webhooks/{approvals_id}/rotate-secret"), &json!({ "overlap_secs": 3600 })).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert_eq!(rotated.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let second_secret = rotated.body["secret"].as_str().expect("secret").to_owned();
    assert_ne!(second_secret, first_secret);
    assert!(rotated.body["webhook"]["previous_secret_expires_at"].is_string(), "{:?}", rotated.body);
    app.verified_phone("yan", US).await;
    let got = wait_for_hooks(&approvals, 2).await;
    assert_eq!(got[1].signature.split(' ').count(), 2, "{:?}", got[1]);
    assert!(signed_by(&second_secret, &got[1]) && signed_by(&first_secret, &got[1]));

    // Rotation without overlap: only the newest signs.
    let rotated =
        app.post_json(&format!("/v1/webhooks/{approvals_id}/rotate-secret"), &json!({ "overlap_secs": 0 })).await;
    let third_secret = rotated.body["secret"].as_str().expect("secret").to_owned();
    assert!(rotated.body["webhook"].get("previous_secret_expires_at").is_none(), "{:?}", rotated.body);
    app.verified_phone("yan", US).await;
    let got = wait_for_hooks(&approvals, 3).await;
    assert!(
        signed_by(&third_secret, &got[2]) && !signed_by(&second_secret, &got[2]) && !signed_by(&first_secret, &got[2])
    );

    // Off: an event the witness receives is not even made for it.
    let off = app.client.patch(app.url(&format!("/v1/webhooks/{approvals_id}"))).bearer_auth(&app.api_key);
    let off = app.send(off.json(&json!({ "enabled": false }))).await;
    assert_eq!(
        (off.status, &off.body["enabled"], &off.body["disabled_reason"]),
        (200, &json!(false), &json!("manual"))
    );
    let quiet = app.verified_phone("yan", US).await.verification_id;
    let seen = wait_for_hooks(&witness, 4).await;
    assert!(seen.iter().any(|h| h.json["verification_id"] == quiet.as_str()), "{seen:?}");
    let list = app.get(&format!("/v1/webhooks/{approvals_id}/deliveries")).await;
    assert_eq!(list.body["deliveries"].as_array().map(Vec::len), Some(3), "{:?}", list.body);
    assert_eq!(hooks(&approvals).await.len(), 3);
    let on = app.client.patch(app.url(&format!("/v1/webhooks/{approvals_id}"))).bearer_auth(&app.api_key);
    let on = app.send(on.json(&json!({ "enabled": true }))).await;
    assert_eq!((on.status, on.body.get("disabled_reason")), (200, None));
    app.verified_phone("yan", US).await;
    wait_for_hooks(&approvals, 4).await;
    let factor_events = hooks(&factors).await;
    assert!(!factor_events.is_empty(), "the first approval made the phone a factor");
    assert!(
        factor_events.iter().all(|h| h.json["event"].as_str().is_some_and(|e| e.starts_with("factor."))),
        "{factor_events:?}"
    );

    // What the API refuses, and to whom.
    for (body, field) in [
        (json!({ "url": "ftp://hooks.example.com/" }), "url"),
        (json!({ "url": "https://user:pw@hooks.example.com/" }), "url"),
        (json!({ "url": "https://hooks.example.com/", "event_types": ["verification.nope"] }), "event_types"),
        (json!({ "url": "https://hooks.example.com/", "event_types": [] }), "event_types"),
    ] {
        let refused = app.post_json("/v1/webhooks", &body).await;
        assert_eq!((refused.status, &refused.body["field"]), (422, &json!(field)), "{body}: {:?}", refused.body);
    }
    let stranger = app.other_tenant("webhook-stranger").await;
    assert_eq!(app.get_as(&stranger, &format!("/v1/webhooks/{approvals_id}")).await.status, 404);
    let verifier = app.key_with_scopes(&["verify"]).await;
    let refused = app.get_as(&verifier, "/v1/webhooks").await;
    assert_eq!((refused.status, &refused.body["required_scope"]), (403, &json!("admin")));
    for n in 3..20 {
        add_endpoint(&app, &format!("https://hooks{n}.example.com/"), json!(["*"])).await;
    }
    let full = app.post_json("/v1/webhooks", &json!({ "url": "https://one-too-many.example.com/" })).await;
    assert_eq!((full.status, &full.body["error"]), (409, &json!("too_many_webhooks")), "{:?}", full.body);
    let deleted = app.delete_json(&format!("/v1/webhooks/{factors_id}"), &json!({})).await;
    assert_eq!((deleted.status, &deleted.body["deleted"]["id"]), (200, &json!(factors_id)));
    assert_eq!(app.get(&format!("/v1/webhooks/{factors_id}")).await.status, 404);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_refused_delivery_is_a_dead_letter_the_operator_replays_under_the_same_webhook_id() {
    let app = spawn_app_with(|c| {
        with_webhooks(c);
        c.webhooks.retry_delays_ms = vec![100, 150];
    })
    .await;
    let refusing = receiver(&[], 400).await;
    let failing = receiver(&[], 503).await;
    let gone = receiver(&[], 410).await;
    let approved = json!(["verification.approved"]);
    let (refusing_id, secret) =
        add_endpoint(&app, &format!("{}/hook?token=never-logged", refusing.uri()), approved.clone()).await;
    let (failing_id, _) = add_endpoint(&app, &failing.uri(), approved.clone()).await;
    let (gone_id, _) = add_endpoint(&app, &gone.uri(), approved).await;
    app.verified_phone("zed", US).await;

    let operator = app.operator_key().await;
    let refused = app
        .wait_for_dead_letter(&operator, |l| {
            l["reason_kind"] == "receiver_refused" && l["reason"].as_str().is_some_and(|r| r.contains("HTTP 400"))
        })
        .await;
    let letter = &refused;
    assert_eq!(letter["tenant"], app.tenant.as_str(), "{refused}");
    assert_eq!(letter["replayable"], true, "{refused}");
    assert!(letter["webhook_delivery_id"].is_string(), "{refused}");
    assert!(!refused.to_string().contains("never-logged"), "a letter names the host, not the URL's token: {refused}");
    let exhausted = app.wait_for_dead_letter(&operator, |l| l["reason_kind"] == "retries_exhausted").await;
    assert!(exhausted["reason"].as_str().is_some_and(|r| r.contains("after 3 tries")), "{exhausted}");
    assert_eq!(hooks(&failing).await.len(), 3, "the first try and two retries");
    let failed = deliveries_until(&app, &failing_id, |l| l.first().is_some_and(|d| d["status"] == "dead")).await;
    assert_eq!((&failed[0]["attempts"], &failed[0]["last_status"]), (&json!(3), &json!(503)));

    // 410 Gone: the endpoint turns itself off, and its letter waits for it.
    let gone_letter =
        app.wait_for_dead_letter(&operator, |l| l["reason"].as_str().is_some_and(|r| r.contains("HTTP 410"))).await;
    let endpoint = app.get(&format!("/v1/webhooks/{gone_id}")).await;
    assert_eq!((&endpoint.body["enabled"], &endpoint.body["disabled_reason"]), (&json!(false), &json!("gone")));
    let gone_letter_id = gone_letter["id"].as_str().expect("id");
    let too_soon =
        app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{gone_letter_id}/replay"), &json!({})).await;
    assert_eq!(
        (too_soon.status, &too_soon.body["error"]),
        (409, &json!("dead_letter_not_replayable")),
        "{:?}",
        too_soon.body
    );

    // The receiver is fixed; the operator replays: the same message arrives once more.
    let first_try = hooks(&refusing).await;
    assert_eq!(first_try.len(), 1, "a refusal is not retried");
    refusing.reset().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&refusing).await;
    let id = letter["id"].as_str().expect("letter id");
    let replayed = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    assert!(replayed.body["replayed"]["webhook_delivery_id"].is_string(), "{:?}", replayed.body);
    let again = wait_for_hooks(&refusing, 1).await;
    assert_eq!(again[0].id, first_try[0].id, "a replay keeps its webhook-id, so the receiver can deduplicate");
    assert_eq!(again[0].body, first_try[0].body);
    assert!(signed_by(&secret, &again[0]));
    deliveries_until(&app, &refusing_id, all_delivered(1)).await;
    let twice = app.post_json_as(&operator, &format!("/v1/ops/dead-letters/{id}/replay"), &json!({})).await;
    assert_eq!(twice.status, 409, "a letter is replayed once: {:?}", twice.body);
    assert!(!captured_logs().contains("never-logged"));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_delivery_cut_off_by_a_killed_worker_is_made_by_another_process_under_the_same_id() {
    let mut app = spawn_app_with(|c| {
        with_webhooks(c);
        // Only worker processes deliver webhooks here, so one can be killed mid-POST.
        c.webhooks.consumers = 0;
        c.webhooks.timeout_ms = 5_000;
    })
    .await;
    let hanging = receiver(&[(200, Duration::from_secs(4))], 200).await;
    let (endpoint, secret) = add_endpoint(&app, &hanging.uri(), json!(["verification.created"])).await;
    app.start_worker_process().await;
    webhook_consumers(&app, 1).await;
    let created = app.create_verification("ada", US, "sms").await;
    assert_eq!(created.status, 201);
    let first = wait_for_hooks(&hanging, 1).await;

    app.kill_worker_processes();
    let pending = app.get(&format!("/v1/webhooks/{endpoint}/deliveries")).await;
    assert_eq!(pending.body["deliveries"][0]["status"], "pending", "{:?}", pending.body);
    app.start_worker_process().await;
    webhook_consumers(&app, 1).await;
    let done = deliveries_until(&app, &endpoint, all_delivered(1)).await;
    let posts = hooks(&hanging).await;
    assert_eq!(posts.len(), 2, "the cut-off POST, then one more by the new worker: {posts:?}");
    assert_eq!(posts[1].id, first[0].id, "the same webhook-id: the receiver can tell it is a repeat");
    assert!(signed_by(&secret, &posts[1]));
    assert_eq!((&done[0]["attempts"], &done[0]["last_status"]), (&json!(1), &json!(200)), "{done:?}");
}

/// Waits (10 s) until `n` consumers listen on the webhooks queue.
async fn webhook_consumers(app: &TestApp, n: u32) {
    let ch = app.amqp.create_channel().await.expect("channel");
    let queue = app.topology.webhooks_queue();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        let q = ch.queue_declare(queue.as_str().into(), passive, Default::default()).await.expect("webhooks queue");
        if q.consumer_count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{} of {n} webhook consumers within 10 s", q.consumer_count());
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

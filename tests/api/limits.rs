//! Every request is bounded: bodies of each kind (JSON, forms, raw bodies,
//! AMQP messages), URLs and headers, each string field, list pages. Over a
//! limit is a problem document naming it, and nothing is done; error details
//! never show verifyd's internals.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verifyd_providers::testkit::VonageMock;
use verifyd_providers::vonage::{SignatureMethod, signature};

use crate::helpers::{Reply, TWILIO_TOKEN, TestApp, spawn_app, spawn_app_with};

const PHONE: &str = "+14155552690";
const RECEIPT_URL: &str = "https://verifyd.example.com/v1/callbacks/twilio";
const VONAGE_SECRET: &str = "vonage-signature-secret";

fn assert_problem(r: &Reply, status: u16, error: &str) {
    assert_eq!(r.status, status, "{:?}", r.body);
    assert_eq!(r.headers["content-type"], "application/problem+json", "{:?}", r.body);
    assert_eq!(r.body["error"], error, "{:?}", r.body);
}

/// A signed Twilio status callback padded to about `size` bytes.
async fn twilio_receipt(app: &TestApp, size: usize) -> Reply {
    let params = vec![
        ("MessageSid".to_owned(), "SM00000000000000000000000000000000".to_owned()),
        ("MessageStatus".to_owned(), "delivered".to_owned()),
        ("Padding".to_owned(), "x".repeat(size)),
    ];
    let signed = verifyd_providers::twilio::request_signature(TWILIO_TOKEN, RECEIPT_URL, &params);
    let request = app.client.post(app.url("/v1/callbacks/twilio")).header("X-Twilio-Signature", signed).form(&params);
    reply(request).await
}

/// A signed Vonage receipt padded to about `size` bytes, as a form.
async fn vonage_receipt(app: &TestApp, size: usize) -> Reply {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut params = vec![
        ("messageId".to_owned(), "0A0000001234567B".to_owned()),
        ("status".to_owned(), "delivered".to_owned()),
        ("client-ref".to_owned(), "x".repeat(size)),
        ("timestamp".to_owned(), now.to_string()),
    ];
    let sig = signature(&params, VONAGE_SECRET.as_bytes(), SignatureMethod::HmacSha256);
    params.push(("sig".to_owned(), sig));
    reply(app.client.post(app.url("/v1/callbacks/vonage")).form(&params)).await
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("verifyd answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// A request written by hand on a fresh connection: the status line's code
/// and the body of the answer.
async fn raw_http(app: &TestApp, request: &[u8]) -> (u16, String) {
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    // Sent in pieces a server reads as they come; it may answer and close early.
    for chunk in request.chunks(4096) {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn each_kind_of_body_over_the_limit_is_a_413_problem_and_under_it_is_read() {
    let vonage = VonageMock::start().await;
    let mut vonage_config = vonage.config("key-1", "secret-1", "Acme");
    vonage_config.signature_secret = Some(VONAGE_SECRET.to_owned().into());
    let app = spawn_app_with(move |c| {
        // Above actix-web's own 16 KiB default for forms: the configured limit governs.
        c.http.max_body_bytes = 32 * 1024;
        c.providers.twilio.as_mut().unwrap().status_callback = Some(RECEIPT_URL.to_owned());
        c.providers.vonage = Some(vonage_config);
    })
    .await;
    let over = 40 * 1024;
    let detail = "request body larger than 32768 bytes";

    // JSON, with a Content-Length.
    let big = json!({ "account_id": "u", "phone": PHONE, "channel": "sms", "locale": "x".repeat(over) });
    let r = app.post_json("/v1/verifications", &big).await;
    assert_problem(&r, 413, "body_too_large");
    assert_eq!(r.body["detail"], detail);

    // JSON sent chunked, with no length announced: refused once it grows past the limit.
    let chunk = format!("{{\"account_id\": \"{}\"}}", "y".repeat(over));
    let request = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        app.api_key,
        chunk.len()
    );
    let (status, body) = raw_http(&app, request.as_bytes()).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("body_too_large"), "{body}");

    // Bodies read raw: an optional body (resend, login) and provider receipts.
    let created = app.create_verification("u", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap();
    let padded = format!("{{\"channel\": \"sms\"{}}}", " ".repeat(over));
    let r = app.post_raw(&format!("/v1/verifications/{id}/resend"), "application/json", padded.clone()).await;
    assert_problem(&r, 413, "body_too_large");
    assert_eq!(r.body["detail"], detail);
    let r = app.post_raw("/v1/accounts/u/login", "application/json", padded).await;
    assert_problem(&r, 413, "body_too_large");
    assert_problem(&twilio_receipt(&app, over).await, 413, "body_too_large");
    assert_problem(&vonage_receipt(&app, over).await, 413, "body_too_large");

    // Just under the limit, each is read: a 20 KiB form (more than actix-web's
    // default form limit) is signed, accepted and acknowledged.
    assert_eq!(twilio_receipt(&app, 20 * 1024).await.status, 204);
    assert_eq!(vonage_receipt(&app, 20 * 1024).await.status, 204);
    let padded = format!("{{\"channel\": \"sms\"{}}}", " ".repeat(20 * 1024));
    let r = app.post_raw(&format!("/v1/verifications/{id}/resend"), "application/json", padded).await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["sends"], 2, "only the bounded resend counted");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_amqp_request_over_the_limit_is_dead_lettered_unread_with_the_reason() {
    let app = spawn_app_with(|c| c.amqp.max_request_bytes = 2048).await;
    let mut rejected = app.capture_events(&format!("{}.verification.rejected", app.tenant)).await;
    let (reply_to, mut replies) = app.reply_queue().await;
    let request = json!({ "account_id": "amqp-big", "phone": PHONE, "channel": "sms" }).to_string();

    // A valid request, padded with white space past the limit.
    let big = format!("{request}{}", " ".repeat(4096));
    let props = BasicProperties::default().with_reply_to(reply_to.as_str().into()).with_correlation_id("c-1".into());
    app.publish_request(&app.tenant, big.as_bytes(), props).await;
    let letter = app.wait_for_dead_letter(&app.api_key, |l| l["reason_kind"] == "too_large").await;
    assert_eq!(letter["body"]["bytes"], big.len(), "the message is kept as it came");
    let reason = letter["reason"].as_str().expect("reason");
    assert!(reason.contains("request too large") && reason.contains("2048"), "{reason}");
    let event = rejected.next(Duration::from_secs(10)).await.expect("rejected event").json();
    assert_eq!(event["error"], "request_too_large");
    let replied = replies.next(Duration::from_secs(10)).await.expect("reply").json();
    assert_eq!(replied["error"], "request_too_large");

    // The same request padded below the limit is served.
    let small = format!("{request}{}", " ".repeat(1024));
    app.publish_request(&app.tenant, small.as_bytes(), BasicProperties::default()).await;
    app.code_sent_to(PHONE).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn long_urls_and_large_headers_are_refused_with_a_problem_and_the_server_stays_up() {
    let app = spawn_app().await;
    let body = json!({ "account_id": "u", "phone": PHONE, "channel": "sms" });

    // One 16 KiB header.
    let request = app.client.post(app.url("/v1/verifications")).bearer_auth(&app.api_key).json(&body);
    let r = reply(request.header("X-Padding", "h".repeat(16 * 1024))).await;
    assert_problem(&r, 431, "headers_too_large");
    // Many small headers adding up past 8 KiB.
    let mut request = app.client.post(app.url("/v1/verifications")).bearer_auth(&app.api_key).json(&body);
    for i in 0..60 {
        request = request.header(format!("x-h{i}"), "v".repeat(150));
    }
    assert_problem(&reply(request).await, 431, "headers_too_large");
    // A 16 KiB API key is refused the same way, before it is looked up.
    let r = app.post_json_as(&"k".repeat(16 * 1024), "/v1/verifications", &body).await;
    assert_problem(&r, 431, "headers_too_large");
    // More headers than actix-web parses (96): refused by the server itself.
    let mut raw = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..120 {
        raw.push_str(&format!("x-h{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let (status, _) = raw_http(&app, raw.as_bytes()).await;
    assert_eq!(status, 431);
    // 200 KiB of headers: past what actix-web buffers; refused, not read.
    let raw = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(200 * 1024));
    let (status, _) = raw_http(&app, raw.as_bytes()).await;
    assert_eq!(status, 431);

    // A 5 KiB URL.
    let r = app.get(&format!("/v1/accounts/{}/factors", "a".repeat(5 * 1024))).await;
    assert_problem(&r, 414, "uri_too_long");
    assert_eq!(r.body["detail"], "request URL longer than 4096 bytes");

    assert_eq!(app.create_verification("u", PHONE, "sms").await.status, 201, "still serving");
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(none, 1, "only the last request created anything");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn every_string_field_and_page_size_has_a_bound() {
    let app = spawn_app().await;
    let long = |n: usize| "z".repeat(n);
    let verification = |extra: Value| {
        let mut body = json!({ "account_id": "u", "phone": PHONE, "channel": "sms" });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("POST", "/v1/verifications", verification(json!({ "account_id": long(129) })), "account_id"),
        ("POST", "/v1/verifications", verification(json!({ "phone": format!("+1{}", "5".repeat(2000)) })), "phone"),
        ("POST", "/v1/verifications", verification(json!({ "locale": long(3000) })), "locale"),
        ("POST", "/v1/verifications", verification(json!({ "idempotency_key": long(256) })), "idempotency_key"),
        ("POST", "/v1/verifications", verification(json!({ "channel": long(1000) })), "channel"),
        ("POST", "/v1/accounts/u/factors/totp", json!({ "label": long(129) }), "label"),
        ("POST", "/v1/accounts/u/reset", json!({ "actor": long(129) }), "actor"),
        ("POST", "/v1/accounts/u/reset", json!({ "actor": "admin", "reason": long(501) }), "reason"),
        ("POST", "/v1/accounts/u/login", json!({ "organisation_id": long(129) }), "organisation_id"),
        ("POST", "/v1/accounts/u/login", json!({ "locale": long(100) }), "locale"),
        ("PUT", "/v1/organisations/acme/policy", json!({ "policy": long(5000), "actor": "admin" }), "policy"),
        ("PUT", "/v1/organisations/acme/policy", json!({ "policy": "required", "actor": long(129) }), "actor"),
    ];
    for (method, path, body, field) in cases {
        let request = match method {
            "PUT" => app.client.put(app.url(path)),
            _ => app.client.post(app.url(path)),
        };
        let r = reply(request.bearer_auth(&app.api_key).json(&body)).await;
        assert_problem(&r, 422, "invalid_field");
        assert_eq!(r.body["field"], field, "{method} {path}: {:?}", r.body);
    }
    // Ids in paths.
    let r = app.get(&format!("/v1/accounts/{}/factors", long(129))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("account_id")));
    let r = app.get(&format!("/v1/organisations/{}/audit", long(129))).await;
    assert_eq!((r.status, r.body["field"].as_str()), (422, Some("organisation_id")));
    // Audit pages: 1 to 500 entries.
    for limit in ["0", "501", "100000000000"] {
        let r = app.get(&format!("/v1/accounts/u/audit?limit={limit}")).await;
        assert_problem(&r, 422, "invalid_field");
    }
    assert_eq!(app.get("/v1/accounts/u/audit?limit=500").await.status, 200);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn malformed_bodies_get_details_without_internals() {
    let app = spawn_app_with(|c| {
        c.providers.twilio.as_mut().unwrap().status_callback = Some(RECEIPT_URL.to_owned());
    })
    .await;
    let created = app.create_verification("u", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let endpoints = [
        "/v1/verifications".to_owned(),
        format!("/v1/verifications/{id}/check"),
        format!("/v1/verifications/{id}/resend"),
        "/v1/accounts/u/factors/totp".to_owned(),
        "/v1/accounts/u/reset".to_owned(),
        "/v1/accounts/u/login".to_owned(),
        "/v1/proofs/verify".to_owned(),
        "/v1/callbacks/twilio".to_owned(),
    ];
    let nested = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let bodies: Vec<Vec<u8>> = vec![
        b"\"7654321\"".to_vec(),
        b"7654321".to_vec(),
        b"[7654321]".to_vec(),
        b"null".to_vec(),
        b"{\"code\": 7654321}".to_vec(),
        b"{\"account_id\": 7654321, \"phone\": true, \"channel\": []}".to_vec(),
        b"{\"account_id\": \"u\", \"phone\": \"+14155552690\", \"channel\": \"sms\", \"code_length\": 7654321}"
            .to_vec(),
        b"{\"account_id\": \"u\", \"phone\": \"+14155552690\", \"channel\": \"sms\", \"code_length\": -1}".to_vec(),
        b"{\"factor_id\": \"7654321\", \"password_checked_at\": \"yesterday\"}".to_vec(),
        b"{\"chanel\": \"voice\"}".to_vec(),
        b"{\"account_id\": \"u\"".to_vec(),
        b"{\"a\": 1e999999}".to_vec(),
        vec![b'{', 0xff, 0xfe, b'}'],
        nested.into_bytes(),
    ];
    let mut answered = 0;
    for path in &endpoints {
        for body in &bodies {
            let request = app.client.post(app.url(path)).bearer_auth(&app.api_key);
            let r = reply(request.header("Content-Type", "application/json").body(body.clone())).await;
            let shown = String::from_utf8_lossy(body);
            assert!((400..500).contains(&r.status), "{path} {shown}: {} {:?}", r.status, r.body);
            assert_eq!(r.headers["content-type"], "application/problem+json", "{path} {shown}: {:?}", r.body);
            let detail = r.body["detail"].as_str().unwrap_or_default();
            for leak in ["::", "sqlx", "/src/", "struct ", "verifyd_", "7654321", "u8", "i64"] {
                assert!(!detail.contains(leak), "{path} {shown}: {leak:?} in {detail:?}");
            }
            answered += 1;
        }
    }
    assert_eq!(answered, endpoints.len() * bodies.len());
    assert_eq!(app.get(&format!("/v1/verifications/{id}")).await.body["attempts"], 0, "nothing was checked");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_account_holds_at_most_twenty_factors_so_its_list_stays_bounded() {
    let app = spawn_app().await;
    for n in 0..20 {
        let r = app.post_json("/v1/accounts/many/factors/totp", &json!({ "label": format!("device {n}") })).await;
        assert_eq!(r.status, 201, "enrolment {n}: {:?}", r.body);
    }
    let r = app.post_json("/v1/accounts/many/factors/totp", &json!({})).await;
    assert_problem(&r, 409, "too_many_factors");
    let listed = app.get("/v1/accounts/many/factors").await;
    assert_eq!(listed.body["factors"].as_array().map(Vec::len), Some(20));
    // Another account is not affected.
    assert_eq!(app.post_json("/v1/accounts/other/factors/totp", &json!({})).await.status, 201);
}

/// Found by the vonage_callback fuzz target: an unsigned receipt whose
/// `timestamp` overflows a system time panicked the worker answering it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_vonage_receipt_with_an_overflowing_timestamp_is_refused_not_a_crash() {
    let vonage = VonageMock::start().await;
    let mut vonage_config = vonage.config("key-1", "secret-1", "Acme");
    vonage_config.signature_secret = Some(VONAGE_SECRET.to_owned().into());
    let app = spawn_app_with(move |c| c.providers.vonage = Some(vonage_config)).await;
    for timestamp in ["18446744073709551615", "17500175006320000000"] {
        let query = format!("messageId=0A01&status=delivered&timestamp={timestamp}&sig=00");
        let r = reply(app.client.get(app.url(&format!("/v1/callbacks/vonage?{query}")))).await;
        assert_problem(&r, 403, "invalid_signature");
    }
    assert_eq!(vonage_receipt(&app, 10).await.status, 204, "still serving signed receipts");
}

/// A request that holds its place in flight: its headers are sent, its body
/// never finishes, so its handler waits for the rest. `key`: the API key it
/// presents (an empty one presents none).
async fn held_request(app: &TestApp, key: &str) -> tokio::net::TcpStream {
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let auth = if key.is_empty() { String::new() } else { format!("Authorization: Bearer {key}\r\n") };
    let head = format!(
        "POST /v1/verifications HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: 200\r\n\r\n{{\"account_id\": \"held\""
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn past_max_in_flight_a_request_is_answered_503_at_once_and_nothing_is_done() {
    let app = spawn_app_with(|c| c.http.max_in_flight = 2).await;
    let missing = format!("/v1/verifications/{}", uuid::Uuid::new_v4());

    // Requests without a key are not counted: slow bodies from anyone cannot
    // hold the permits (they are refused 401 when their body comes).
    let anonymous: Vec<_> = futures_util::future::join_all((0..4).map(|_| held_request(&app, ""))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.get(&missing).await.status, 404, "anonymous requests took the permits");

    // Two with a key take both permits: the next keyed request is shed. A
    // held request that arrived while a probe held a permit was shed itself
    // (it has an answer): it is sent again.
    let mut held: Vec<tokio::net::TcpStream> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let shed = loop {
        held.retain(|s| matches!(s.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
        while held.len() < 2 {
            held.push(held_request(&app, &app.api_key).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = app.get(&missing).await;
        if r.status == 503 {
            break r;
        }
        assert_eq!(r.status, 404, "{:?}", r.body);
        assert!(std::time::Instant::now() < deadline, "two held requests never filled max_in_flight = 2");
    };
    assert_problem(&shed, 503, "overloaded");
    assert_eq!(shed.headers["retry-after"], "1");
    assert_eq!(
        shed.body["detail"],
        "this process is handling 2 requests at once, the most it takes: retry in a second"
    );

    // A create shed meanwhile sends nothing and stores nothing.
    let create =
        app.post_json("/v1/verifications", &json!({ "account_id": "u", "phone": PHONE, "channel": "sms" })).await;
    assert_problem(&create, 503, "overloaded");
    // The probes answer however busy the process is; so do requests without
    // a key (with their 401) and the providers' receipts.
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);
    assert_eq!(app.send(app.client.get(app.url(&missing))).await.status, 401);
    let receipt = twilio_receipt(&app, 10).await;
    assert_ne!(receipt.status, 503, "{:?}", receipt.body);

    // Once the held requests go, requests are served again.
    drop(held);
    drop(anonymous);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.get(&missing).await.status == 503 {
        assert!(std::time::Instant::now() < deadline, "permits were not given back when the held requests went");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0, "a shed create must not be stored");
    assert!(app.twilio.sent_sms().await.is_empty(), "a shed create must not be sent");
}

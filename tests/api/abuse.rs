//! Abuse defences over HTTP and AMQP: geo permissions, number types, and the
//! SMS-pumping guard.

use std::time::Duration;

use lapin::BasicProperties;
use serde_json::{Value, json};
use verifyd::config::Config;
use verifyd_core::abuse::geo::Countries;

use crate::helpers::{Reply, TestApp, captured_logs, spawn_app, spawn_app_with};

const GB: &str = "+447400123456";
const US: &str = "+14155552671";
const FR: &str = "+33612345678";
/// UK premium rate (09) and freephone (080); Spanish shared cost (901).
const PREMIUM: &str = "+449098790000";
const FREEPHONE: &str = "+448001234567";
const SHARED_COST: &str = "+34901123456";
/// A UK mobile outside the prefix `in_prefix` numbers share.
const OTHER_GB: &str = "+447500123456";

/// Numbers in one UK mobile prefix (+44 7400), one per index.
fn in_prefix(i: usize) -> String {
    format!("+447400123{i:03}")
}

/// A guard that judges a prefix after `min_volume` verifications, at once.
fn guard(min_volume: u32) -> impl FnOnce(&mut Config) {
    move |config| {
        config.abuse.pumping.min_volume = min_volume;
        config.abuse.pumping.min_conversion = 0.2;
        config.abuse.pumping.grace_secs = 0;
    }
}

fn assert_refused(reply: &Reply, status: u16, error: &str) {
    assert_eq!(reply.status, status, "{:?}", reply.body);
    assert_eq!(reply.body["error"], error, "{:?}", reply.body);
    assert_eq!(reply.body["type"], format!("https://verifyd.dev/problems/{error}"));
}

async fn verifications_to(app: &TestApp, phone: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM verifications WHERE destination = $1")
        .bind(phone)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn sms_to(app: &TestApp, phone: &str) -> usize {
    app.twilio.sent_sms().await.iter().filter(|s| s.to == phone).count()
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_tenant_list_allows_its_countries_per_channel_and_nothing_reaches_the_others() {
    let app = spawn_app().await;
    let initial = app.get("/v1/settings/geo-permissions").await;
    assert_eq!(initial.status, 200);
    assert_eq!(
        initial.body,
        json!({ "sms": null, "voice": null, "whatsapp": null, "default": { "sms": null, "voice": null, "whatsapp": null } })
    );

    let set = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": ["GB"], "voice": ["GB", "US"] })).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.body["sms"], json!(["GB"]));
    assert_eq!(set.body["voice"], json!(["GB", "US"]));
    // Exactly the ISO 3166-1 codes the document lists: not `UK`, not `gb`.
    for refused in ["UK", "gb", " GB"] {
        let bad = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": [refused] })).await;
        assert_refused(&bad, 422, "invalid_field");
        assert_eq!(bad.body["field"], "sms");
    }
    assert_eq!(
        app.get("/v1/settings/geo-permissions").await.body["sms"],
        json!(["GB"]),
        "a refused PUT changes nothing"
    );

    // SMS to GB goes out; SMS to the US is refused before anything is stored or sent.
    let allowed = app.create_verification("geo-1", GB, "sms").await;
    assert_eq!(allowed.status, 201, "{:?}", allowed.body);
    let refused = app.create_verification("geo-2", US, "sms").await;
    assert_refused(&refused, 403, "destination_not_allowed");
    assert_eq!(refused.body["country"], "US");
    assert_eq!(refused.body["channel"], "sms");
    assert!(!refused.body.to_string().contains("4155552671"), "the problem never carries the number");

    // Voice may reach the US; switching that verification to SMS may not.
    let call = app.create_verification("geo-3", US, "voice").await;
    assert_eq!(call.status, 201, "{:?}", call.body);
    let id = call.body["id"].as_str().unwrap();
    let switched = app.post_json(&format!("/v1/verifications/{id}/resend"), &json!({ "channel": "sms" })).await;
    assert_refused(&switched, 403, "destination_not_allowed");
    assert_eq!(switched.body["channel"], "sms");

    app.code_sent_to(GB).await;
    app.code_sent_to(US).await;
    app.delivery_settled().await;
    assert_eq!(sms_to(&app, US).await, 0, "no SMS reached the refused country");
    assert_eq!(app.twilio.placed_calls().await.len(), 1);
    assert_eq!(verifications_to(&app, US).await, 1, "only the call was stored");
    let stored: String = sqlx::query_scalar("SELECT channel FROM verifications WHERE destination = $1")
        .bind(US)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, "voice", "the refused resend left the channel alone");

    // Back to the default (every country): SMS to the US goes out.
    let reset = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": null })).await;
    assert_eq!(
        reset.body,
        json!({ "sms": null, "voice": null, "whatsapp": null, "default": { "sms": null, "voice": null, "whatsapp": null } })
    );
    let now_allowed = app.create_verification("geo-4", US, "sms").await;
    assert_eq!(now_allowed.status, 201, "{:?}", now_allowed.body);

    // Each accepted change is in the tenant's audit trail; the refused one is not.
    let trail = app.get("/v1/audit").await.body["entries"].clone();
    let changes: Vec<_> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "geo_permissions.changed")
        .map(|e| (e["detail"].clone(), e["api_key_id"].clone()))
        .collect();
    let by = json!(app.api_key.split_once('.').unwrap().0);
    assert_eq!(
        changes,
        vec![
            (json!({ "sms": null, "voice": null, "whatsapp": null }), by.clone()),
            (json!({ "sms": ["GB"], "voice": ["GB", "US"], "whatsapp": null }), by),
        ]
    );
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_configured_default_applies_until_a_tenant_sets_its_own_list() {
    let app = spawn_app_with(|config| {
        config.abuse.default_countries.sms = Some(Countries::parse(&["GB"]).unwrap());
    })
    .await;
    let geo = app.get("/v1/settings/geo-permissions").await;
    assert_eq!(geo.body["default"], json!({ "sms": ["GB"], "voice": null, "whatsapp": null }));

    assert_eq!(app.create_verification("d-1", GB, "sms").await.status, 201);
    let refused = app.create_verification("d-2", US, "sms").await;
    assert_refused(&refused, 403, "destination_not_allowed");
    assert_eq!(app.create_verification("d-3", US, "voice").await.status, 201, "voice has no default list");
    let other = app.other_tenant("geo-other").await;
    let body = json!({ "account_id": "d-4", "phone": FR, "channel": "sms" });
    assert_refused(&app.post_json_as(&other, "/v1/verifications", &body).await, 403, "destination_not_allowed");

    // The tenant's own list replaces the default, for this tenant only.
    let set = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": ["US", "FR"] })).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(app.create_verification("d-5", US, "sms").await.status, 201);
    assert_refused(&app.create_verification("d-6", GB, "sms").await, 403, "destination_not_allowed");
    assert_refused(&app.post_json_as(&other, "/v1/verifications", &body).await, 403, "destination_not_allowed");

    app.code_sent_to(GB).await;
    for _ in 0..100 {
        if sms_to(&app, US).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.delivery_settled().await;
    assert_eq!(sms_to(&app, US).await, 1, "the SMS allowed by the tenant's list");
    assert_eq!(sms_to(&app, GB).await, 1, "only the send made before the tenant's list");
    assert_eq!(sms_to(&app, FR).await, 0);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn premium_rate_and_shared_cost_numbers_get_no_code_and_voice_still_calls_freephone() {
    let app = spawn_app().await;
    for (phone, channel, number_type) in [
        (PREMIUM, "sms", "premium_rate"),
        (PREMIUM, "voice", "premium_rate"),
        (SHARED_COST, "sms", "shared_cost"),
        (SHARED_COST, "voice", "shared_cost"),
        (FREEPHONE, "sms", "toll_free"),
    ] {
        let refused = app.create_verification("nt-1", phone, channel).await;
        assert_refused(&refused, 422, "number_type_not_allowed");
        assert_eq!(refused.body["number_type"], number_type, "{phone} by {channel}");
        assert_eq!(refused.body["channel"], channel);
    }
    // A freephone line can take a call: voice does not refuse toll_free.
    let call = app.create_verification("nt-2", FREEPHONE, "voice").await;
    assert_eq!(call.status, 201, "{:?}", call.body);
    app.code_sent_to(FREEPHONE).await;

    app.delivery_settled().await;
    assert!(app.twilio.sent_sms().await.is_empty());
    let calls = app.twilio.placed_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].to, FREEPHONE);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_amqp_request_refused_by_a_defence_gets_the_rejected_event_with_the_http_reason() {
    let app = spawn_app().await;
    let (reply_to, mut replies) = app.reply_queue().await;
    let mut rejected = app.capture_events(&format!("{}.verification.rejected", app.tenant)).await;
    let body = json!({ "account_id": "amqp-nt", "phone": PREMIUM, "channel": "sms" }).to_string();
    let props = BasicProperties::default()
        .with_reply_to(reply_to.as_str().into())
        .with_correlation_id("corr-premium".into())
        .with_message_id("premium-1".into());
    app.publish_request(&app.tenant, body.as_bytes(), props).await;

    let reply = replies.next(Duration::from_secs(10)).await.expect("a reply");
    assert_eq!(reply.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("corr-premium"));
    let event = reply.json();
    assert_eq!(event["event"], "verification.rejected");
    assert_eq!(event["error"], "number_type_not_allowed");
    assert_eq!(event["number_type"], "premium_rate");
    assert_eq!(event["channel"], "sms");
    assert_eq!(event["account_id"], "amqp-nt");
    assert!(event.get("to").is_none() && !event.to_string().contains("9098790000"), "{event}");
    assert_eq!(rejected.next(Duration::from_secs(10)).await.expect("event").json()["error"], "number_type_not_allowed");

    app.delivery_settled().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 0);
    assert!(app.twilio.sent_sms().await.is_empty());
}

/// Sends to `phone` for a fresh account through `base` (a serve process).
async fn send(app: &TestApp, base: &str, i: usize, phone: &str) -> Reply {
    let body = json!({ "account_id": format!("acct-{i}"), "phone": phone, "channel": "sms" });
    app.post_json_at(base, "/v1/verifications", &body).await
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_pumping_attack_on_one_prefix_blocks_it_once_across_processes() {
    let mut app = spawn_app_with(guard(8)).await;
    let mut events = app.capture_events(&format!("{}.abuse.#", app.tenant)).await;
    let second = app.start_another_serve().await;
    let bases = [app.address.clone(), second.clone()];

    // Sends nobody completes: 7 one after the other, then 7 at once over both
    // processes, around the 8th that trips the guard.
    for i in 0..7 {
        assert_eq!(send(&app, &bases[i % 2], i, &in_prefix(i)).await.status, 201);
    }
    let phones: Vec<String> = (7..14).map(in_prefix).collect();
    let burst = futures_util::future::join_all(
        phones.iter().enumerate().map(|(k, phone)| send(&app, &bases[k % 2], 7 + k, phone)),
    )
    .await;
    let mut accepted = 7;
    for reply in &burst {
        match reply.status {
            201 => accepted += 1,
            _ => assert_refused(reply, 403, "destination_prefix_blocked"),
        }
    }
    assert!(accepted >= 8, "the send that trips the guard still goes out");

    // Now every process refuses the prefix, with what an operator needs.
    for (i, base) in bases.iter().enumerate() {
        let refused = send(&app, base, 20 + i, &in_prefix(20 + i)).await;
        assert_refused(&refused, 403, "destination_prefix_blocked");
        assert_eq!(refused.body["prefix"], "+447400");
        assert!(refused.body["blocked_until"].is_string());
    }
    // Another prefix of the same country is not affected.
    assert_eq!(send(&app, &bases[0], 30, OTHER_GB).await.status, 201);

    let event = events.wait_for_event("abuse.prefix_blocked", Duration::from_secs(10)).await;
    assert_eq!(event["tenant"], app.tenant.as_str());
    assert_eq!(event["prefix"], "+447400");
    assert_eq!(event["country"], "GB");
    assert_eq!(event["approved"], 0);
    assert!(event["sent"].as_i64().unwrap() >= 8, "{event}");
    assert!(event.get("account_id").is_none() && event.get("to").is_none(), "{event}");
    let all = events.drain(Duration::from_secs(1)).await;
    assert_eq!(all.len(), 1, "one block, one event: {:?}", all.iter().map(|m| m.text()).collect::<Vec<_>>());

    let blocked = app.get("/v1/abuse/blocked-prefixes").await;
    assert_eq!(blocked.status, 200);
    let list = blocked.body["blocked"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{:?}", blocked.body);
    assert_eq!(list[0]["prefix"], "+447400");
    assert_eq!(list[0]["country"], "GB");
    assert_eq!(list[0]["approved"], 0);

    // The provider got exactly the accepted sends to the prefix.
    app.code_sent_to(OTHER_GB).await;
    let to_prefix =
        |sms: &[verifyd_providers::testkit::TwilioSms]| sms.iter().filter(|s| s.to.starts_with("+447400")).count();
    for _ in 0..100 {
        if to_prefix(&app.twilio.sent_sms().await) >= accepted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.delivery_settled().await;
    assert_eq!(to_prefix(&app.twilio.sent_sms().await), accepted);

    let logs = captured_logs();
    assert!(logs.contains("destination prefix blocked") && logs.contains("prefix=+447400"), "a warning names it");
    assert!(!logs.contains("447400123007"), "no full number of the prefix in the logs");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn normal_traffic_at_the_same_volume_is_not_blocked() {
    let app = spawn_app_with(guard(8)).await;
    let mut events = app.capture_events(&format!("{}.abuse.#", app.tenant)).await;
    // People who type their code, except two who do not.
    for i in 0..12 {
        let phone = in_prefix(i);
        let created = send(&app, &app.address, i, &phone).await;
        assert_eq!(created.status, 201, "send {i}: {:?}", created.body);
        if i == 3 || i == 7 {
            continue;
        }
        let code = app.code_sent_to(&phone).await;
        let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
        assert_eq!(checked.body["status"], "approved");
    }
    assert_eq!(app.get("/v1/abuse/blocked-prefixes").await.body["blocked"], json!([]));
    assert!(events.drain(Duration::from_secs(1)).await.is_empty(), "no block announced");
    let stats: (i64, i64) =
        sqlx::query_as("SELECT sum(sent), sum(approved) FROM prefix_stats WHERE prefix = '+447400'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stats, (12, 10), "every send and approval counted");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_operator_lifts_a_block_and_only_new_sends_count_towards_the_next() {
    let app = spawn_app_with(guard(4)).await;
    for i in 0..4 {
        assert_eq!(send(&app, &app.address, i, &in_prefix(i)).await.status, 201);
    }
    assert_refused(&send(&app, &app.address, 4, &in_prefix(4)).await, 403, "destination_prefix_blocked");

    let other = app.other_tenant("ops-other").await;
    let foreign = app.client.delete(app.url("/v1/abuse/blocked-prefixes/%2B447400")).bearer_auth(&other);
    assert_eq!(foreign.send().await.unwrap().status(), 404, "another tenant has no such block to lift");

    let lifted = app.delete_json("/v1/abuse/blocked-prefixes/%2B447400", &json!({})).await;
    assert_eq!(lifted.status, 200, "{:?}", lifted.body);
    assert_eq!(lifted.body["lifted"]["prefix"], "+447400");
    assert!(lifted.body["lifted"]["lifted_at"].is_string());
    assert_eq!(app.get("/v1/abuse/blocked-prefixes").await.body["blocked"], json!([]));
    let trail = app.get("/v1/audit").await.body["entries"].clone();
    let blocked = &trail[1];
    assert_eq!(
        (blocked["action"].as_str(), blocked["actor"].as_str()),
        (Some("prefix_block.blocked"), Some("verifyd:pumping-guard")),
        "{trail}"
    );
    assert_eq!((&blocked["detail"]["prefix"], &blocked["detail"]["sent"]), (&json!("+447400"), &json!(4)));
    let audited = trail[0].clone();
    assert_eq!(audited["action"], "prefix_block.lifted", "{audited}");
    assert_eq!((&audited["detail"]["prefix"], &audited["detail"]["sent"]), (&json!("+447400"), &json!(4)));
    assert_eq!(audited["api_key_id"], json!(app.api_key.split_once('.').unwrap().0));
    let again = app.delete_json("/v1/abuse/blocked-prefixes/447400", &json!({})).await;
    assert_refused(&again, 404, "not_found");
    assert_refused(&app.delete_json("/v1/abuse/blocked-prefixes/44-7400", &json!({})).await, 422, "invalid_field");

    // Sends resume; the sends that led to the block are not counted again …
    for i in 5..8 {
        assert_eq!(send(&app, &app.address, i, &in_prefix(i)).await.status, 201, "send {i} after the lift");
    }
    // … but fresh evidence blocks it again.
    assert_eq!(send(&app, &app.address, 8, &in_prefix(8)).await.status, 201);
    let reblocked = send(&app, &app.address, 9, &in_prefix(9)).await;
    assert_refused(&reblocked, 403, "destination_prefix_blocked");
    let blocked: Value = app.get("/v1/abuse/blocked-prefixes").await.body;
    assert_eq!(blocked["blocked"][0]["sent"], 4, "{blocked}");
}

/// The prefix's counts per minute, as stored: (sent, approved) summed.
async fn prefix_counts(app: &TestApp, prefix: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT coalesce(sum(sent), 0)::bigint, coalesce(sum(approved), 0)::bigint FROM prefix_stats WHERE prefix = $1",
    )
    .bind(prefix)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// Waits until the prefix's stored counts are `want` (the tally writes them
/// every quarter second).
async fn counts_become(app: &TestApp, prefix: &str, want: (i64, i64)) {
    for _ in 0..50 {
        if prefix_counts(app, prefix).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(prefix_counts(app, prefix).await, want, "the tally wrote the counts");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn with_a_grace_period_sends_and_approvals_are_counted_in_batches_and_old_evidence_still_blocks() {
    // The default kind of guard: only minutes past the grace period are judged,
    // so counts go through the batched tally instead of each send's transaction.
    let app = spawn_app_with(|config| {
        config.abuse.pumping.min_volume = 8;
        config.abuse.pumping.min_conversion = 0.2;
        config.abuse.pumping.grace_secs = 30;
    })
    .await;
    let mut events = app.capture_events(&format!("{}.abuse.#", app.tenant)).await;

    // Three sends and one approval reach prefix_stats without any commit of theirs.
    let mut ids = Vec::new();
    for i in 0..3 {
        let created = send(&app, &app.address, i, &in_prefix(i)).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    let code = app.code_sent_to(&in_prefix(0)).await;
    assert_eq!(app.check(&ids[0], &code).await.body["status"], "approved");
    counts_become(&app, "+447400", (3, 1)).await;

    // Evidence older than the grace period: 20 sends an hour's quarter ago, none
    // approved. The next send reads it, goes out, and blocks the prefix.
    sqlx::query(
        "INSERT INTO prefix_stats (tenant_id, prefix, minute, sent, approved)
         SELECT id, '+447400', date_trunc('minute', now() - interval '15 minutes'), 20, 0 FROM tenants WHERE name = $1",
    )
    .bind(&app.tenant)
    .execute(&app.pool)
    .await
    .unwrap();
    assert_eq!(send(&app, &app.address, 3, &in_prefix(3)).await.status, 201, "the send that trips still goes out");
    assert_refused(&send(&app, &app.address, 4, &in_prefix(4)).await, 403, "destination_prefix_blocked");
    let event = events.wait_for_event("abuse.prefix_blocked", Duration::from_secs(10)).await;
    assert_eq!((event["prefix"].as_str(), event["sent"].as_i64()), (Some("+447400"), Some(20)), "{event}");
    assert_eq!(event["approved"], 0, "{event}");
    // What led to the block is cleared, the tripping send's own count included.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(prefix_counts(&app, "+447400").await, (0, 0));
}

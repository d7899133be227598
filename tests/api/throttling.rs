//! Send and check limits: each scope refuses with 429, its name and a
//! `Retry-After` from the same GCRA arithmetic as governor's `NotUntil`; and
//! two processes answer as one, because PostgreSQL holds the same buckets.

use std::time::Duration;

use lapin::BasicProperties;
use serde_json::{Value, json};
use verifyd_core::limits::Limit;

use crate::helpers::{Reply, TestApp, spawn_app_with};

fn uk(n: usize) -> String {
    format!("+4479111{:05}", 50_000 + n)
}

async fn create_at(app: &TestApp, base: &str, body: Value) -> Reply {
    app.post_json_at(base, "/v1/verifications", &body).await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"].to_str().unwrap().parse().unwrap()
}

/// A 429 that names its scope in the body and agrees with its header.
fn assert_throttled(reply: &Reply, scope: &str) -> u64 {
    assert_eq!(reply.status, 429, "{:?}", reply.body);
    assert_eq!(reply.body["error"], "throttled");
    assert_eq!(reply.body["scope"], scope, "{:?}", reply.body);
    let secs = retry_after(reply);
    assert_eq!(reply.body["retry_after"].as_u64(), Some(secs), "body and header agree");
    secs
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn two_processes_give_the_same_answer_and_retry_after_as_one() {
    // 3 per 60 s: three at once, then one every 20 s.
    let mut app = spawn_app_with(|c| c.throttle.per_phone = Limit::new(3, 60)).await;
    let other = app.start_another_serve().await;
    let phone = uk(1);
    let body = |n: usize| json!({ "account_id": format!("acct-{n}"), "phone": phone, "channel": "sms" });
    // Two through this process, one through the other: each process's own
    // limiter saw fewer than three.
    let first_sent = std::time::Instant::now();
    assert_eq!(create_at(&app, &app.address, body(0)).await.status, 201);
    assert_eq!(create_at(&app, &other, body(1)).await.status, 201);
    assert_eq!(create_at(&app, &app.address, body(2)).await.status, 201);

    let here = create_at(&app, &app.address, body(3)).await;
    let there = create_at(&app, &other, body(4)).await;
    let (a, b) = (assert_throttled(&here, "phone"), assert_throttled(&there, "phone"));
    // The next cell is 20 s after the first send: both say so (to the
    // second, less what a loaded machine took since).
    let earliest = 19u64.saturating_sub(first_sent.elapsed().as_secs());
    assert!((earliest..=20).contains(&a) && (earliest..=20).contains(&b), "Retry-After {a} and {b}");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 3, "a refused request stores nothing");
    assert!(app.twilio.wait_for_next_code(&phone, 2, Duration::from_secs(10)).await.is_some());
    assert_eq!(app.twilio.deliveries_to(&phone).await, 3);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_end_user_ip_limit_holds_across_processes_and_counts_only_that_address() {
    let mut app = spawn_app_with(|c| c.throttle.per_ip = Limit::new(3, 600)).await;
    let other = app.start_another_serve().await;
    let from = |n: usize, ip: Option<&str>| {
        let mut body = json!({ "account_id": format!("ip-{n}"), "phone": uk(100 + n), "channel": "sms" });
        if let Some(ip) = ip {
            body["end_user_ip"] = json!(ip);
        }
        body
    };
    let attacker = Some("203.0.113.7");
    assert_eq!(create_at(&app, &app.address, from(0, attacker)).await.status, 201);
    assert_eq!(create_at(&app, &other, from(1, attacker)).await.status, 201);
    assert_eq!(create_at(&app, &other, from(2, attacker)).await.status, 201);
    assert_throttled(&create_at(&app, &app.address, from(3, attacker)).await, "ip");
    assert_throttled(&create_at(&app, &other, from(4, attacker)).await, "ip");
    // Another address, IPv6 included, and a request without one, are not affected.
    assert_eq!(create_at(&app, &app.address, from(5, Some("2001:db8::1"))).await.status, 201);
    assert_eq!(create_at(&app, &other, from(6, None)).await.status, 201);
    // An address that is not one is refused as such, not counted.
    let bad = create_at(&app, &app.address, from(7, Some("203.0.113.7; DROP"))).await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    assert_eq!(bad.body["field"], "end_user_ip");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn country_and_tenant_limits_refuse_their_own_scope_only() {
    let app = spawn_app_with(|c| {
        c.throttle.per_country = Limit::new(2, 600);
        c.throttle.per_tenant = Limit::new(3, 600);
    })
    .await;
    let sms = |n: usize, phone: &str| json!({ "account_id": format!("c-{n}"), "phone": phone, "channel": "sms" });
    assert_eq!(app.post_json("/v1/verifications", &sms(0, &uk(200))).await.status, 201);
    assert_eq!(app.post_json("/v1/verifications", &sms(1, &uk(201))).await.status, 201);
    assert_throttled(&app.post_json("/v1/verifications", &sms(2, &uk(202))).await, "country");
    // A US number is another country; the tenant's third code.
    assert_eq!(app.post_json("/v1/verifications", &sms(3, "+14155552680")).await.status, 201);
    assert_throttled(&app.post_json("/v1/verifications", &sms(4, "+14155552681")).await, "tenant");
    // Another tenant has its own budget.
    let key = app.other_tenant("other-tenant").await;
    let theirs = app.post_json_as(&key, "/v1/verifications", &sms(5, "+14155552682")).await;
    assert_eq!(theirs.status, 201, "{:?}", theirs.body);
}

/// The tenant's and country's cells are taken before a send's transaction; a
/// send refused inside it hands them back, so the tenant's budget is spent
/// only by codes that went out.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_send_refused_in_its_transaction_hands_back_the_tenants_cells() {
    let mut app = spawn_app_with(|c| {
        c.throttle.per_phone = Limit::new(1, 600);
        c.throttle.per_tenant = Limit::new(2, 600);
    })
    .await;
    let other = app.start_another_serve().await;
    let sms = |n: usize, phone: String| json!({ "account_id": format!("g-{n}"), "phone": phone, "channel": "sms" });
    assert_eq!(create_at(&app, &app.address, sms(0, uk(400))).await.status, 201);
    // The other process's own limiter has not seen this phone: the send gets
    // to PostgreSQL, takes the tenant's cell, and the phone's limit refuses it.
    assert_throttled(&create_at(&app, &other, sms(1, uk(400))).await, "phone");
    assert_eq!(create_at(&app, &app.address, sms(2, uk(401))).await.status, 201, "the refused send's cell came back");
    assert_throttled(&create_at(&app, &other, sms(3, uk(402))).await, "tenant");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, 2);
}

/// A tenant limit of 300 is taken three cells at a time (a lease, decision
/// 185). Two processes sending in turn still send no more than the limit
/// lets through, and each is refused at most its lease early.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_tenant_limit_taken_a_lease_at_a_time_holds_across_processes() {
    let mut app = spawn_app_with(|c| c.throttle.per_tenant = Limit::new(300, 600)).await;
    let other = app.start_another_serve().await;
    let sms = |n: usize| json!({ "account_id": format!("l-{n}"), "phone": uk(1000 + n), "channel": "sms" });
    let started = std::time::Instant::now();
    let mut sent = 0;
    for n in 0..330 {
        let base = if n % 2 == 0 { app.address.clone() } else { other.clone() };
        let reply = create_at(&app, &base, sms(n)).await;
        match reply.status {
            201 => sent += 1,
            _ => {
                assert_throttled(&reply, "tenant");
            }
        }
    }
    // The bucket refills a cell every 2 s while the test runs.
    let refilled = started.elapsed().as_secs() as usize / 2 + 1;
    assert!(sent <= 300 + refilled, "{sent} sent: more than the limit let through");
    assert!(sent >= 300 - 2 * 3, "{sent} sent: refused more than two leases early");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(stored, sent as i64);
}

/// A country named in `per_country_overrides` gets its own limit, in process
/// and in PostgreSQL; every other country keeps `per_country`.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_country_override_replaces_the_country_limit_there_only() {
    let mut app = spawn_app_with(|c| {
        c.throttle.per_country = Limit::new(2, 600);
        c.throttle.per_country_overrides.insert("US".into(), Limit::new(4, 600));
    })
    .await;
    let other = app.start_another_serve().await;
    let sms = |n: usize, phone: String| json!({ "account_id": format!("o-{n}"), "phone": phone, "channel": "sms" });
    for n in 0..2 {
        assert_eq!(create_at(&app, &app.address, sms(n, uk(500 + n))).await.status, 201);
    }
    assert_throttled(&create_at(&app, &app.address, sms(2, uk(502))).await, "country");
    // Four US sends, half through each process: the override holds across both.
    for n in 0..4 {
        let base = if n % 2 == 0 { app.address.clone() } else { other.clone() };
        let us = format!("+1415555{:04}", 2700 + n);
        assert_eq!(create_at(&app, &base, sms(10 + n, us)).await.status, 201, "US send {n}");
    }
    let refused = create_at(&app, &other, sms(20, "+14155552720".into())).await;
    let secs = assert_throttled(&refused, "country");
    assert!((149..=150).contains(&secs), "one US cell back every 150 s: {secs}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn checks_per_account_span_its_verifications_and_a_refused_check_costs_no_attempt() {
    let app = spawn_app_with(|c| c.throttle.checks_per_account = Limit::new(3, 3_600)).await;
    let first = app.create_verification("checker", &uk(300), "sms").await.body["id"].as_str().unwrap().to_owned();
    let second = app.create_verification("checker", &uk(301), "sms").await.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(&uk(301)).await;
    let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    assert_eq!(app.check(&first, &wrong).await.status, 200);
    assert_eq!(app.check(&first, &wrong).await.status, 200);
    assert_eq!(app.check(&second, &wrong).await.status, 200);
    let refused = app.check(&second, &code).await;
    let secs = assert_throttled(&refused, "checks");
    assert!((1199..=1200).contains(&secs), "one check back every 20 min: {secs}");
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM verifications WHERE id = $1::uuid")
        .bind(&second)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(attempts, 1, "the refused check was not counted against the verification");
    assert_eq!(app.get(&format!("/v1/verifications/{second}")).await.body["status"], "pending");
    // Another account checks freely.
    let other = app.create_verification("someone-else", &uk(302), "sms").await.body["id"].as_str().unwrap().to_owned();
    let theirs = app.code_sent_to(&uk(302)).await;
    assert_eq!(app.check(&other, &theirs).await.body["status"], "approved");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_throttled_amqp_request_gets_a_rejected_event_with_scope_and_retry_after() {
    let app = spawn_app_with(|c| c.throttle.per_phone = Limit::new(1, 600)).await;
    let mut rejected = app.capture_events(&format!("{}.verification.rejected", app.tenant)).await;
    assert_eq!(app.create_verification("amqp-1", &uk(400), "sms").await.status, 201);
    let body = json!({ "account_id": "amqp-2", "phone": uk(400), "channel": "sms" }).to_string();
    app.publish_request(&app.tenant, body.as_bytes(), BasicProperties::default()).await;
    let event = rejected.next(Duration::from_secs(10)).await.expect("a rejected event").json();
    assert_eq!(event["error"], "throttled");
    assert_eq!(event["scope"], "phone");
    let secs = event["retry_after"].as_u64().unwrap();
    assert!((599..=600).contains(&secs), "{secs}");
    assert!(!event.to_string().contains(&uk(400)[3..]), "the event does not carry the number: {event}");
    app.delivery_settled().await;
    assert_eq!(app.twilio.sent_sms().await.len(), 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_paced_provider_never_gets_more_than_its_rate_and_every_code_still_goes_out() {
    // 5 per second with a burst of 5: in any one-second span at most 10 arrive.
    let app = spawn_app_with(|c| {
        c.providers.tps.insert("twilio".into(), 5);
    })
    .await;
    const N: usize = 25;
    for n in 0..N {
        let r = app.create_verification(&format!("paced-{n}"), &uk(500 + n), "sms").await;
        assert_eq!(r.status, 201, "{:?}", r.body);
    }
    for n in 0..N {
        assert!(app.twilio.wait_for_code(&uk(500 + n), Duration::from_secs(30)).await.is_some(), "code {n} sent");
    }
    let mut arrivals: Vec<_> = app.twilio.sent_sms().await.into_iter().map(|s| s.received_at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), N, "each code once");
    let busiest = arrivals
        .iter()
        .map(|&from| arrivals.iter().filter(|&&t| t >= from && t.duration_since(from) < Duration::from_secs(1)).count())
        .max()
        .unwrap();
    assert!(busiest <= 10, "{busiest} messages reached the provider within one second");
    let spread = arrivals[N - 1].duration_since(arrivals[0]);
    // 25 messages at 5/s after a burst of 5 take at least 4 s.
    assert!(spread >= Duration::from_millis(3_800), "all {N} within {spread:?}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn wrong_codes_in_a_row_lock_the_account_with_doubling_backoff_and_a_right_code_clears_it() {
    let app = spawn_app_with(|c| {
        c.throttle.lockout = verifyd_core::limits::lockout::Lockout { after_wrong: 3, base_secs: 2, max_secs: 60 };
    })
    .await;
    let new = |n: usize| {
        let app = &app;
        async move {
            let id =
                app.create_verification("locked", &uk(600 + n), "sms").await.body["id"].as_str().unwrap().to_owned();
            let code = app.code_sent_to(&uk(600 + n)).await;
            let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
            (id, code, wrong)
        }
    };
    let (a, a_code, a_wrong) = new(0).await;
    let (b, b_code, b_wrong) = new(1).await;
    // Three wrong codes in a row, over two verifications.
    assert_eq!(app.check(&a, &a_wrong).await.status, 200);
    assert_eq!(app.check(&b, &b_wrong).await.status, 200);
    assert_eq!(app.check(&a, &a_wrong).await.status, 200);
    let locked = app.check(&b, &b_code).await;
    assert_eq!(assert_throttled(&locked, "lockout"), 2);
    // Even the right code waits; the refusal cost no attempt.
    assert_eq!(app.get(&format!("/v1/verifications/{b}")).await.body["attempts"], 1);
    actix_rt::time::sleep(Duration::from_millis(2_100)).await;
    // Locked again at once: the second lockout lasts twice as long.
    assert_eq!(app.check(&b, &b_wrong).await.status, 200);
    assert_eq!(app.check(&b, &b_wrong).await.status, 200);
    assert_eq!(app.check(&a, &a_wrong).await.status, 200);
    assert_eq!(assert_throttled(&app.check(&a, &a_code).await, "lockout"), 4);
    actix_rt::time::sleep(Duration::from_millis(4_100)).await;
    // A right code clears the record: the next wrong one does not lock.
    assert_eq!(app.check(&a, &a_code).await.body["status"], "approved");
    let (c, c_code, c_wrong) = new(2).await;
    assert_eq!(app.check(&c, &c_wrong).await.status, 200);
    assert_eq!(app.check(&c, &c_code).await.body["status"], "approved");
    // Another account was never affected.
    let other = app.create_verification("not-locked", &uk(610), "sms").await.body["id"].as_str().unwrap().to_owned();
    let theirs = app.code_sent_to(&uk(610)).await;
    assert_eq!(app.check(&other, &theirs).await.body["status"], "approved");
}

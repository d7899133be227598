//! Single use under concurrency, and limits that hold across processes.

use futures_util::future::join_all;
use serde_json::json;

use crate::helpers::spawn_app;

const PHONE: &str = "+14155552690";

#[actix_rt::test(system = "verifyd::system::System")]
async fn of_ten_parallel_checks_with_the_right_code_exactly_one_approves() {
    let app = spawn_app().await;
    let created = app.create_verification("race", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;

    let replies = join_all((0..10).map(|_| app.check(&id, &code))).await;
    let approved = replies.iter().filter(|r| r.status == 200 && r.body["status"] == "approved").count();
    let refused = replies.iter().filter(|r| r.status == 409).count();
    assert_eq!((approved, refused), (1, 9), "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    let factors = app.get("/v1/accounts/race/factors").await;
    assert_eq!(factors.body["factors"].as_array().unwrap().len(), 1);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn twenty_parallel_wrong_codes_use_exactly_five_attempts() {
    let app = spawn_app().await;
    let created = app.create_verification("brute", PHONE, "sms").await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let code = app.code_sent_to(PHONE).await;
    let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();

    let replies = join_all((0..20).map(|_| app.check(&id, &wrong))).await;
    let counted = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(counted, 5, "only five tries are ever counted");
    assert_eq!(replies.iter().filter(|r| r.body["status"] == "max_attempts_reached").count(), 1);
    let stored: i32 = sqlx::query_scalar("SELECT attempts FROM verifications WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 5);
    assert_eq!(app.check(&id, &code).await.status, 409, "the right code is too late");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn two_serve_processes_share_one_per_phone_limit() {
    let mut app = spawn_app().await;
    let second = app.start_another_serve().await;
    let create_on = |base: String, n: usize| {
        let (client, key) = (app.client.clone(), app.api_key.clone());
        async move {
            let body = json!({ "account_id": format!("acct-{n}"), "phone": PHONE, "channel": "sms" });
            let r = client.post(format!("{base}/v1/verifications")).bearer_auth(key).json(&body).send().await.unwrap();
            r.status().as_u16()
        }
    };
    // 3 codes through one process and 2 through the other: 5 in all, the limit.
    // Each process's own limiter saw at most 3, so only the shared count in
    // PostgreSQL can refuse the sixth.
    for n in 0..3 {
        assert_eq!(create_on(app.address.clone(), n).await, 201);
    }
    for n in 3..5 {
        assert_eq!(create_on(second.clone(), n).await, 201);
    }
    assert_eq!(create_on(second.clone(), 5).await, 429);
    assert_eq!(create_on(app.address.clone(), 6).await, 429);
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(sent, 5);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_hundred_parallel_creates_with_one_key_over_two_processes_all_get_the_one_verification() {
    let mut app = spawn_app().await;
    let second = app.start_another_serve().await;
    let body = json!({ "account_id": "user-race", "phone": PHONE, "channel": "sms", "idempotency_key": "pay-42" });
    let create_on = |base: String| {
        let (client, key, body) = (app.client.clone(), app.api_key.clone(), body.clone());
        async move {
            let r = client.post(format!("{base}/v1/verifications")).bearer_auth(key).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let bases = [app.address.clone(), second];
    let replies = join_all((0..100).map(|n| create_on(bases[n % 2].clone()))).await;

    let statuses: Vec<u16> = replies.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "one request creates: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 99, "the others replay it: {statuses:?}");
    let ids: std::collections::BTreeSet<&str> = replies.iter().filter_map(|(_, b)| b["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one verification id in every answer");
    app.code_sent_to(PHONE).await;
    app.delivery_settled().await;
    assert_eq!(app.twilio.sent_sms().await.len(), 1, "one SMS");
    // The replays spent none of the phone's budget: four more codes may go out.
    for n in 0..4 {
        let other = json!({ "account_id": format!("next-{n}"), "phone": PHONE, "channel": "sms" });
        assert_eq!(app.post_json("/v1/verifications", &other).await.status, 201, "send {n} after the race");
    }
}

//! The seed experiences without friction: Twilio's console (verify a phone
//! once, show and download the recovery code, log in with it), codes on screen
//! that are the codes downloaded, a user's own factor changes with the
//! `enrol` scope, and an admin reset that names who stands behind it.

use serde_json::{Value, json};

use crate::helpers::{Reply, TestApp, spawn_app};

/// A POST of `body` that asks for `accept`.
async fn post_accepting(app: &TestApp, path: &str, accept: &str, body: &Value) -> Reply {
    app.send(app.client.post(app.url(path)).bearer_auth(&app.api_key).header("Accept", accept).json(body)).await
}

async fn login_challenge(app: &TestApp, account: &str) -> String {
    let r = app.post_json(&format!("/v1/accounts/{account}/login"), &json!({})).await;
    assert_eq!(r.body["decision"], "challenge", "{:?}", r.body);
    r.body["challenge"]["id"].as_str().unwrap().to_owned()
}

async fn answer(app: &TestApp, account: &str, challenge: &str, code: &str) -> Reply {
    app.post_json(&format!("/v1/accounts/{account}/challenges/{challenge}/answer"), &json!({ "code": code })).await
}

/// (d) Twilio's console: the phone verified once by SMS is the proof that
/// shows the recovery code; no second SMS.
#[actix_rt::test(system = "verifyd::system::System")]
async fn seed_d_verify_a_phone_once_then_download_the_recovery_code_and_log_in_with_it_once() {
    let app = spawn_app().await;
    let phone = "+14155550177";
    let checked = app.verified_phone("tia", phone).await.approval;
    let proof = checked.body["proof"].as_str().expect("the first factor's approval gives a step-up proof").to_owned();
    assert_eq!(checked.headers["cache-control"], "no-store", "no cache keeps a proof");
    assert!(checked.body["proof_expires_at"].as_str().unwrap() > verifyd_core::timestamp::now().to_rfc3339().as_str());

    let body = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let made = post_accepting(&app, "/v1/accounts/tia/recovery-code", "text/plain", &body).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(made.headers["content-disposition"], "attachment; filename=\"recovery-code.txt\"");
    assert_eq!(made.headers["cache-control"], "no-store");
    let file = made.body.as_str().expect("a text file");
    assert!(file.starts_with("Recovery code for tia (generated "), "{file}");
    let recovery_code = file.lines().last().unwrap().to_owned();
    assert_eq!(recovery_code.len(), 19, "XXXX-XXXX-XXXX-XXXX: {file}");
    assert_eq!(app.twilio.sent_sms().await.len(), 1, "one SMS in all");

    // The phone guards the login now; the recovery code opens it, once.
    let challenge = login_challenge(&app, "tia").await;
    let passed = answer(&app, "tia", &challenge, &recovery_code).await;
    assert_eq!((passed.status, passed.body["answered_by"].as_str()), (200, Some("recovery_code")), "{:?}", passed.body);
    let challenge = login_challenge(&app, "tia").await;
    assert_eq!(answer(&app, "tia", &challenge, &recovery_code).await.status, 422, "used once");

    // A second phone is no first factor: its approval gives no proof.
    let second = app.verified_phone("tia", "+14155550178").await.approval;
    assert!(second.body.get("proof").is_none(), "{:?}", second.body);
}

/// The codes a page shows are the codes it offers for download: the answer
/// that makes them holds the file, so nothing is asked twice.
#[actix_rt::test(system = "verifyd::system::System")]
async fn the_backup_codes_on_screen_are_the_ones_in_the_file_and_a_json_preference_wins() {
    let app = spawn_app().await;
    let proof = app.verified_phone("ben", "+14155550179").await.approval.body["proof"].as_str().unwrap().to_owned();
    let body = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let made = post_accepting(&app, "/v1/accounts/ben/backup-codes", "application/json, text/plain;q=0.5", &body).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let codes: Vec<&str> = made.body["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(codes.len(), 10);
    let download = &made.body["download"];
    assert_eq!(
        (download["filename"].as_str(), download["content_type"].as_str()),
        (Some("backup-codes.txt"), Some("text/plain; charset=utf-8"))
    );
    let file = download["text"].as_str().unwrap();
    let in_file: Vec<&str> = file.lines().skip(2).collect();
    assert_eq!(in_file, codes, "{file}");
    assert_eq!(app.get("/v1/accounts/ben/backup-codes").await.body["remaining"], 10, "one set, not two");

    // A code from the file opens a login.
    let challenge = login_challenge(&app, "ben").await;
    let passed = answer(&app, "ben", &challenge, in_file[3]).await;
    assert_eq!(passed.body["answered_by"], "backup_code", "{:?}", passed.body);
    assert_eq!(app.get("/v1/accounts/ben/backup-codes").await.body["remaining"], 9);
}

/// A backend's user-facing role changes a user's own factors with that
/// user's step-up; the admin role resets, and says who stands behind it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_users_own_factor_changes_take_enrol_and_a_reset_takes_a_proof_or_an_attestation() {
    let app = spawn_app().await;
    let enrol = app.key_with_scopes(&["enrol"]).await;
    let admin = app.key_with_scopes(&["admin"]).await;
    let checked = app.verified_phone("ola", "+14155550180").await.approval;
    let proof = checked.body["proof"].as_str().unwrap().to_owned();
    let factors = app.get_as(&enrol, "/v1/accounts/ola/factors").await.body;
    let factor_id = factors["factors"][0]["id"].as_str().unwrap().to_owned();

    let default_path = format!("/v1/accounts/ola/factors/{factor_id}/default");
    let put = |key: String, body: Value| {
        let req = app.client.put(app.url(&default_path)).bearer_auth(key).json(&body);
        app.send(req)
    };
    let by_admin = put(admin.clone(), json!({ "step_up": proof })).await;
    assert_eq!(
        (by_admin.status, by_admin.body["required_scope"].as_str()),
        (403, Some("enrol")),
        "{:?}",
        by_admin.body
    );
    assert_eq!(put(enrol.clone(), json!({ "step_up": proof })).await.status, 200);
    let removed = app
        .send(
            app.client
                .delete(app.url(&format!("/v1/accounts/ola/factors/{factor_id}")))
                .bearer_auth(&enrol)
                .json(&json!({ "step_up": proof })),
        )
        .await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);

    // A reset: the admin's own proof (checked) or an attestation (kept).
    let proof = app.verified_phone("ola", "+14155550181").await.approval.body["proof"].as_str().unwrap().to_owned();
    let reset = |body: Value| {
        let req = app.client.post(app.url("/v1/accounts/ola/reset")).bearer_auth(&admin).json(&body);
        app.send(req)
    };
    let bare = reset(json!({ "actor": "admin-1" })).await;
    assert_eq!((bare.status, bare.body["error"].as_str()), (403, Some("step_up_required")), "{:?}", bare.body);
    let not_theirs = reset(json!({ "actor": "admin-1", "step_up": proof })).await;
    assert_eq!((not_theirs.status, not_theirs.body["error"].as_str()), (403, Some("invalid_proof")));
    let both = reset(json!({ "actor": "admin-1", "step_up": proof, "attestation": "ID seen" })).await;
    assert_eq!((both.status, both.body["field"].as_str()), (422, Some("attestation")));
    let blank = reset(json!({ "actor": "admin-1", "attestation": "  " })).await;
    assert_eq!((blank.status, blank.body["field"].as_str()), (422, Some("attestation")));
    let nothing_gone = app.get_as(&enrol, "/v1/accounts/ola/factors").await.body;
    assert_eq!(nothing_gone["factors"].as_array().unwrap().len(), 1, "refused resets change nothing");

    let attested = reset(json!({ "actor": "admin-1", "attestation": "ID checked on a video call, ticket 4411",
                                  "reason": "lost phone" }))
    .await;
    assert_eq!((attested.status, attested.body["factors_removed"].as_u64()), (200, Some(1)), "{:?}", attested.body);
    let audit = app.get_as(&admin, "/v1/accounts/ola/audit").await.body;
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "account.reset").unwrap().clone();
    assert_eq!(entry["actor"], "admin-1");
    assert_eq!(entry["detail"]["authority"], "attestation", "{entry}");
    assert_eq!(entry["detail"]["attestation"], "ID checked on a video call, ticket 4411");
    assert!(entry["api_key_id"].as_str().is_some_and(|k| admin.starts_with(k)), "{entry}");

    // An admin with a factor of their own resets with their proof.
    let admin_proof =
        app.verified_phone("admin-2", "+14155550182").await.approval.body["proof"].as_str().unwrap().to_owned();
    app.verified_phone("ola", "+14155550183").await;
    let proven = reset(json!({ "actor": "admin-2", "step_up": admin_proof })).await;
    assert_eq!((proven.status, proven.body["factors_removed"].as_u64()), (200, Some(1)), "{:?}", proven.body);
}

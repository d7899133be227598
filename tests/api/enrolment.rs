//! Authenticator-app enrolment and backup codes, through the HTTP API.

use std::time::Duration;

use base64::Engine;
use serde_json::json;

use crate::helpers::{TestApp, authenticator_code, spawn_app};

async fn db_dump(app: &TestApp) -> String {
    let mut dump = String::new();
    for table in ["factors", "backup_codes", "outbox"] {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&app.pool).await.unwrap();
        dump.push_str(&rows);
    }
    dump
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn an_authenticator_app_enrols_from_the_otpauth_uri_and_its_first_code_activates_it() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.factor.added", app.tenant)).await;

    let enrolled = app.post_json("/v1/accounts/ada/factors/totp", &json!({ "label": "ada@example.com" })).await;
    assert_eq!(enrolled.status, 201, "{:?}", enrolled.body);
    assert_eq!(enrolled.headers["cache-control"], "no-store");
    let uri = enrolled.body["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with(&format!("otpauth://totp/{}:ada%40example.com?", app.tenant)), "{uri}");
    let key = enrolled.body["key"].as_str().unwrap().to_owned();
    assert_eq!(key.split(' ').count(), 8, "160 bits = 32 base32 characters, in groups of four: {key}");
    let png =
        base64::engine::general_purpose::STANDARD.decode(enrolled.body["qr_png_base64"].as_str().unwrap()).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(enrolled.body["factor"]["status"], "pending");
    let factor_id = enrolled.body["factor"]["id"].as_str().unwrap().to_owned();

    let listed = app.get("/v1/accounts/ada/factors").await;
    assert_eq!(listed.body["factors"][0]["status"], "pending");
    assert!(!listed.body.to_string().contains(&key.replace(' ', "")), "the key is shown only at enrolment");

    let path = format!("/v1/accounts/ada/factors/{factor_id}/confirm");
    let confirmed = app.post_json(&path, &json!({ "code": authenticator_code(&uri, 0) })).await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    assert_eq!(confirmed.body["factor"]["status"], "active");
    assert_eq!(confirmed.body["factor"]["kind"], "totp");
    let again = app.post_json(&path, &json!({ "code": authenticator_code(&uri, 0) })).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"], "factor_already_active");

    let event = events.wait_for_event("factor.added", Duration::from_secs(10)).await;
    assert_eq!(event["factor_kind"], "totp");
    assert_eq!(event["account_id"], "ada");

    // The secret is nowhere at rest in a readable form.
    let secret = totp_rs::Secret::try_from_base32(key.replace(' ', "")).unwrap();
    let dump = db_dump(&app).await;
    assert!(!dump.contains(&key.replace(' ', "")), "base32 key in the database");
    assert!(!dump.contains(&hex::encode(secret.as_bytes())), "raw secret in the database");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn five_wrong_confirmation_codes_abandon_the_enrolment() {
    let app = spawn_app().await;
    let enrolled = app.post_json("/v1/accounts/bob/factors/totp", &json!({})).await;
    let uri = enrolled.body["otpauth_uri"].as_str().unwrap().to_owned();
    let factor_id = enrolled.body["factor"]["id"].as_str().unwrap();
    let path = format!("/v1/accounts/bob/factors/{factor_id}/confirm");
    let right = authenticator_code(&uri, 0);
    let wrong: String = right.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();

    for left in (1..=4).rev() {
        let r = app.post_json(&path, &json!({ "code": wrong })).await;
        assert_eq!((r.status, r.body["error"].as_str()), (422, Some("invalid_code")));
        assert_eq!(r.body["attempts_left"], left);
    }
    let fifth = app.post_json(&path, &json!({ "code": wrong })).await;
    assert_eq!((fifth.status, fifth.body["error"].as_str()), (409, Some("enrolment_abandoned")));
    assert_eq!(app.get("/v1/accounts/bob/factors").await.body["factors"], json!([]));
    assert_eq!(app.post_json(&path, &json!({ "code": right })).await.status, 404, "the enrolment is gone");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn backup_codes_need_a_fresh_password_check_and_are_shown_once() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.backup_codes.*", app.tenant)).await;
    let stale = json!({ "password_checked_at": verifyd_core::timestamp::now() - chrono::Duration::minutes(10) });
    let r = app.post_json("/v1/accounts/cy/backup-codes", &stale).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("fresh_password_check_required")));
    // A fallback for a factor: none before the first factor.
    let early = app
        .post_json("/v1/accounts/cy/backup-codes", &json!({ "password_checked_at": verifyd_core::timestamp::now() }))
        .await;
    assert_eq!((early.status, early.body["error"].as_str()), (409, Some("no_active_factor")));

    let proof = app.enrolled_authenticator("cy", None).await.first_proof();
    let fresh = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let generated = app.post_json("/v1/accounts/cy/backup-codes", &fresh).await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    assert_eq!(generated.headers["cache-control"], "no-store");
    let codes: Vec<String> =
        generated.body["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    assert!(codes.iter().all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_digit())));
    let mut distinct = codes.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10);
    assert_eq!(app.get("/v1/accounts/cy/backup-codes").await.body["remaining"], 10);
    let dump = db_dump(&app).await;
    for code in &codes {
        assert!(!dump.contains(code.as_str()), "a backup code in the database");
    }

    // The download: a header line, a blank line, one code per line. It is a new set.
    let response = app
        .client
        .post(app.url("/v1/accounts/cy/backup-codes"))
        .bearer_auth(&app.api_key)
        .header("Accept", "text/plain")
        .json(&fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-disposition"].to_str().unwrap().contains("backup-codes.txt"));
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("Backup codes for cy"), "{text}");
    assert_eq!((lines.len(), lines[1]), (12, ""), "{text}");
    assert!(lines[2..].iter().all(|l| !codes.contains(&l.to_string())), "a new set");

    let generated_event = events.wait_for_event("backup_codes.generated", Duration::from_secs(10)).await;
    assert_eq!(generated_event["remaining"], 10);
    assert_eq!(generated_event["account_id"], "cy");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_recovery_code_is_shown_once_in_groups_and_never_stored() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.recovery_code.*", app.tenant)).await;
    let stale = json!({ "password_checked_at": verifyd_core::timestamp::now() - chrono::Duration::minutes(6) });
    assert_eq!(app.post_json("/v1/accounts/eve/recovery-code", &stale).await.status, 403);

    let proof = app.enrolled_authenticator("eve", None).await.first_proof();
    let fresh = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let first = app.post_json("/v1/accounts/eve/recovery-code", &fresh).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let code = first.body["recovery_code"].as_str().unwrap().to_owned();
    assert_eq!((code.len(), code.matches('-').count()), (19, 3), "{code}");
    assert!(!db_dump(&app).await.contains(&code.replace('-', "")), "a recovery code in the database");
    events.wait_for_event("recovery_code.generated", Duration::from_secs(10)).await;
}

/// The fields of an event, sorted, without the ones every event has.
fn field_names(event: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = event.as_object().unwrap().keys().cloned().collect();
    names.retain(|k| !["event_id", "occurred_at"].contains(&k.as_str()));
    names.sort();
    names
}

/// A phone enrolled by verification is announced like an authenticator: an
/// account event without the verification's id, number or channel, audited
/// with the API key that asked for the code.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_phone_factor_added_by_verification_is_an_account_event_audited_with_its_key() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.factor.added", app.tenant)).await;
    let phone = "+14155550177";
    let created = app.create_verification("pia", phone, "sms").await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let code = app.code_sent_to(phone).await;
    let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked.body["status"], "approved");
    let by_phone = events.wait_for_event("factor.added", Duration::from_secs(10)).await;
    app.enrolled_authenticator("tom", None).await.first_proof();
    let all = events.drain(Duration::from_millis(1_500)).await;
    let by_app = all.iter().map(|m| m.json()).find(|e| e["account_id"] == "tom").expect("tom's factor.added");

    for absent in ["verification_id", "to", "channel", "status"] {
        assert!(by_phone.get(absent).is_none(), "{absent} in {by_phone}");
    }
    assert!(!by_phone.to_string().contains(phone), "the number in an account event: {by_phone}");
    assert_eq!((by_phone["factor_kind"].as_str(), by_phone["account_id"].as_str()), (Some("sms"), Some("pia")));
    assert_eq!(field_names(&by_phone), field_names(&by_app), "{by_phone} vs {by_app}");

    let audit = app.get("/v1/accounts/pia/audit").await;
    let entry = audit.body["entries"].as_array().unwrap().iter().find(|e| e["action"] == "factor.added").unwrap();
    assert_eq!(entry["actor"], "pia");
    let key_id = entry["api_key_id"].as_str().expect("the audit names the API key");
    assert!(key_id.starts_with("vk_") && app.api_key.starts_with(&format!("{key_id}.")), "{key_id}");
    assert!(!entry["detail"].to_string().contains(phone), "{entry}");
    let tom = app.get("/v1/accounts/tom/audit").await;
    let tom_entry = tom.body["entries"].as_array().unwrap().iter().find(|e| e["action"] == "factor.added").unwrap();
    assert_eq!(entry["api_key_id"], tom_entry["api_key_id"], "the same key as the authenticator's");
}

/// An authenticator never confirmed was never announced: deleting it
/// announces nothing either; deleting an active one does.
#[actix_rt::test(system = "verifyd::system::System")]
async fn deleting_an_authenticator_never_confirmed_publishes_no_factor_removed() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.factor.*", app.tenant)).await;
    let enrolled = app.post_json("/v1/accounts/una/factors/totp", &json!({})).await;
    assert_eq!(enrolled.status, 201, "{:?}", enrolled.body);
    let pending = enrolled.body["factor"]["id"].as_str().unwrap().to_owned();
    let removed = app.delete_json(&format!("/v1/accounts/una/factors/{pending}"), &json!({})).await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(app.get("/v1/accounts/una/factors").await.body["factors"], json!([]));
    let published: Vec<String> = events
        .drain(Duration::from_millis(1_500))
        .await
        .iter()
        .map(|m| m.json()["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(published.is_empty(), "nothing about a factor never added: {published:?}");
    let audit = app.get("/v1/accounts/una/audit").await;
    assert_eq!(audit.body["entries"], json!([]), "{:?}", audit.body);

    // Confirmed, then deleted: both announced.
    let proof = app.enrolled_authenticator("una", None).await.first_proof();
    let active = app.get("/v1/accounts/una/factors").await.body["factors"][0]["id"].as_str().unwrap().to_owned();
    let removed = app.delete_json(&format!("/v1/accounts/una/factors/{active}"), &json!({ "step_up": proof })).await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    let event = events.wait_for_event("factor.removed", Duration::from_secs(10)).await;
    assert_eq!(event["factor_id"], active.as_str());
}

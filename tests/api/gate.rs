//! The login gate, step-up, policy and admin reset, through the HTTP API: the
//! three seed experiences (SendGrid-style SMS, TOTP with backup codes and
//! policy, mandatory policy with a recovery code), single use under
//! concurrency, and two processes giving the same answers.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Authenticator, Reply, TestApp, authenticator_code, spawn_app};

const WAIT: Duration = Duration::from_secs(10);

async fn login(app: &TestApp, account: &str, body: Value) -> Reply {
    let r = app.post_json(&format!("/v1/accounts/{account}/login"), &body).await;
    assert_eq!(r.status, 200, "login of {account}: {:?}", r.body);
    r
}

async fn answer(app: &TestApp, account: &str, challenge: &str, code: &str) -> Reply {
    app.post_json(&format!("/v1/accounts/{account}/challenges/{challenge}/answer"), &json!({ "code": code })).await
}

fn challenge_id(r: &Reply) -> String {
    assert_eq!(r.body["decision"], "challenge", "{:?}", r.body);
    r.body["challenge"]["id"].as_str().unwrap().to_owned()
}

async fn set_policy(app: &TestApp, org: &str, body: Value) -> Reply {
    app.put_json(&format!("/v1/organisations/{org}/policy"), &body).await
}

async fn audit_actions(app: &TestApp, account: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/accounts/{account}/audit")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

/// Everything verifyd keeps about accounts, as text.
async fn db_dump(app: &TestApp) -> String {
    let mut dump = String::new();
    for table in ["factors", "backup_codes", "challenges", "audit_log", "outbox", "verifications"] {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&app.pool).await.unwrap();
        dump.push_str(&rows);
    }
    dump
}

/// (a) An SMS phone as second factor, as SendGrid does it: enrol with a 7-digit
/// code, log in with a code by SMS and by voice call, delete the factor with a
/// code sent to it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn seed_a_sms_factor_enrols_logs_in_by_sms_and_voice_and_is_deleted_with_its_code() {
    let app = spawn_app().await;
    let phone = "+14155550101";
    let mut events = app.capture_events(&format!("{}.factor.*", app.tenant)).await;

    // No factor yet, optional policy: the gate is open.
    assert_eq!(login(&app, "sam", json!({})).await.body["decision"], "open");

    // Enrolment: the phone verification approves and the phone becomes the default factor.
    let created = app.create_verification("sam", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(code.len(), 7);
    let checked = app.check(created.body["id"].as_str().unwrap(), &code).await;
    assert_eq!(checked.body["status"], "approved");
    let factors = app.get("/v1/accounts/sam/factors").await.body["factors"].clone();
    assert_eq!((factors[0]["kind"].as_str(), factors[0]["status"].as_str()), (Some("sms"), Some("active")));
    assert_eq!(factors[0]["default"], true);
    let factor_id = factors[0]["id"].as_str().unwrap().to_owned();
    events.wait_for_event("factor.added", WAIT).await;

    // Login by SMS: the challenge names the factors and where the code went.
    let r = login(&app, "sam", json!({})).await;
    let challenge = challenge_id(&r);
    assert_eq!(r.body["challenge"]["sent"]["channel"], "sms");
    assert_eq!(r.body["challenge"]["sent"]["to"], "+*********01");
    assert_eq!(r.body["challenge"]["factors"][0]["id"], factor_id.as_str());
    assert_eq!(r.body["challenge"]["factors"][0]["to"], "+*********01", "a challenge shows only the last digits");
    let code = app.next_code_to(phone, 1).await;
    let passed = answer(&app, "sam", &challenge, &code).await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    assert_eq!((passed.body["decision"].as_str(), passed.body["answered_by"].as_str()), (Some("open"), Some("phone")));
    let proof = passed.body["proof"].as_str().unwrap().to_owned();
    let verified = app.post_json("/v1/proofs/verify", &json!({ "proof": proof })).await;
    assert_eq!((verified.status, verified.body["account_id"].as_str()), (200, Some("sam")));
    let again = answer(&app, "sam", &challenge, &code).await;
    assert_eq!((again.status, again.body["challenge_status"].as_str()), (409, Some("passed")));

    // Login by voice call: the same phone, called; the digits are read out.
    let r = login(&app, "sam", json!({ "channel": "voice", "locale": "fr" })).await;
    let challenge = challenge_id(&r);
    assert_eq!(r.body["challenge"]["sent"]["channel"], "voice");
    let code = app.next_code_to(phone, 2).await;
    let calls = app.twilio.placed_calls().await;
    assert_eq!(calls.len(), 1, "one call placed");
    assert!(calls[0].twiml.contains("fr-FR") || calls[0].twiml.contains("language=\"fr"), "{}", calls[0].twiml);
    assert_eq!(answer(&app, "sam", &challenge, &code).await.body["answered_by"], "phone");

    // Deleting the factor takes a code sent to that factor.
    let r = app.post_json("/v1/accounts/sam/step-up", &json!({ "factor_id": factor_id })).await;
    let challenge = challenge_id(&r);
    let code = app.next_code_to(phone, 3).await;
    let wrong = if code == "0000000" { "1111111" } else { "0000000" };
    let path = format!("/v1/accounts/sam/factors/{factor_id}");
    let refused = app.delete_json(&path, &json!({ "challenge_id": challenge, "code": wrong })).await;
    assert_eq!((refused.status, refused.body["attempts_left"].as_i64()), (422, Some(4)), "{:?}", refused.body);
    let no_authority = app.delete_json(&path, &json!({})).await;
    assert_eq!((no_authority.status, no_authority.body["error"].as_str()), (403, Some("step_up_required")));
    let half = app.delete_json(&path, &json!({ "challenge_id": challenge })).await;
    assert_eq!(half.status, 422, "a challenge without its code");
    let removed = app.delete_json(&path, &json!({ "challenge_id": challenge, "code": code })).await;
    assert_eq!(removed.status, 200, "{:?}", removed.body);
    assert_eq!(app.get("/v1/accounts/sam/factors").await.body["factors"], json!([]));
    let event = events.wait_for_event("factor.removed", WAIT).await;
    assert_eq!((event["factor_id"].as_str(), event["factors_left"].as_i64()), (Some(factor_id.as_str()), Some(0)));
    assert_eq!(login(&app, "sam", json!({})).await.body["decision"], "open", "optional policy, no factor");

    let actions = audit_actions(&app, "sam").await;
    for action in ["factor.added", "challenge.passed", "factor.removed"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
    let entry = &app.get("/v1/accounts/sam/audit").await.body["entries"][0];
    assert_eq!((entry["action"].as_str(), entry["actor"].as_str()), (Some("factor.removed"), Some("sam")));
    assert!(entry["api_key_id"].as_str().unwrap().starts_with("vk_"));
    assert!(!db_dump(&app).await.contains(&code), "a challenge code at rest");
    let logs = crate::helpers::captured_logs();
    assert!(!logs.contains(&proof), "a proof in the logs");
    assert!(!logs.contains(&format!("\"{code}\"")) && !logs.contains(&format!("={code}")), "a code in the logs");
}

/// (b) An authenticator app with backup codes as the fallback, an organisation
/// that turns on `required`, and an admin reset.
#[actix_rt::test(system = "verifyd::system::System")]
async fn seed_b_totp_with_backup_codes_required_policy_and_admin_reset() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.#", app.tenant)).await;
    let Authenticator { uri, factor_id: totp_id, proof } = app.enrolled_authenticator("tess", None).await;
    let proof = proof.expect("a first factor's proof");

    // New backup codes get past the second factor: a fresh password and a step-up.
    let fresh = json!({ "password_checked_at": verifyd_core::timestamp::now() });
    let r = app.post_json("/v1/accounts/tess/backup-codes", &fresh).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("step_up_required")));
    let with_proof = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let generated = app.post_json("/v1/accounts/tess/backup-codes", &with_proof).await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    let codes: Vec<String> =
        generated.body["codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();

    // Login: an authenticator sends nothing; the challenge offers the backup codes.
    let r = login(&app, "tess", json!({ "organisation_id": "acme" })).await;
    let challenge = challenge_id(&r);
    assert_eq!(r.body["challenge"]["sent"], Value::Null);
    assert_eq!(r.body["challenge"]["backup_codes_left"], 10);
    assert_eq!(r.body["challenge"]["factors"][0]["kind"], "totp");
    let passed = answer(&app, "tess", &challenge, &codes[0]).await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    assert_eq!(passed.body["answered_by"], "backup_code");
    assert_eq!(passed.body["backup_codes_left"], 9);
    let backup_proof = passed.body["proof"].as_str().unwrap().to_owned();
    let used = events.wait_for_event("backup_codes.used", WAIT).await;
    assert_eq!(used["remaining"], 9);
    let reused = answer(&app, "tess", &challenge_id(&login(&app, "tess", json!({})).await), &codes[0]).await;
    assert_eq!((reused.status, reused.body["attempts_left"].as_i64()), (422, Some(4)), "a backup code works once");

    // The authenticator answers too (the next step: confirmation used this one).
    let r = login(&app, "tess", json!({ "organisation_id": "acme" })).await;
    let passed = answer(&app, "tess", &challenge_id(&r), &authenticator_code(&uri, 1)).await;
    assert_eq!(
        (passed.body["answered_by"].as_str(), passed.body["factor_id"].as_str()),
        (Some("totp"), Some(&*totp_id))
    );

    // The organisation requires two-factor: SSO goes off, and says so.
    let on = set_policy(&app, "acme", json!({ "policy": "required", "actor": "admin-1" })).await;
    assert_eq!(on.status, 200, "{:?}", on.body);
    assert_eq!((on.body["sso_enabled"].as_bool(), on.body["sso_disabled"].as_bool()), (Some(false), Some(true)));
    let event = events.wait_for_event("policy.changed", WAIT).await;
    assert_eq!((event["policy"].as_str(), event["sso_disabled"].as_bool()), (Some("required"), Some(true)));
    assert_eq!(event["organisation_id"], "acme");
    assert_eq!(app.get("/v1/organisations/acme/policy").await.body["sso_enabled"], false);
    let r = login(&app, "ulla", json!({ "organisation_id": "acme" })).await;
    assert_eq!(
        (r.body["decision"].as_str(), r.body["sso_enabled"].as_bool()),
        (Some("enrolment_required"), Some(false))
    );
    assert_eq!(login(&app, "ulla", json!({})).await.body["decision"], "open", "another organisation's policy");
    let factors = app.get("/v1/accounts/tess/factors").await.body["factors"].clone();
    assert_eq!(factors.as_array().unwrap().len(), 1, "a policy change leaves factors alone");

    // Admin reset: factors and codes gone, earlier proofs dead, enrolment required.
    let reset =
        app.post_json("/v1/accounts/tess/reset", &json!({ "actor": "admin-1", "attestation": "ID checked" })).await;
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!((reset.body["factors_removed"].as_i64(), reset.body["codes_invalidated"].as_i64()), (Some(1), Some(9)));
    let event = events.wait_for_event("account.reset", WAIT).await;
    assert_eq!((event["account_id"].as_str(), event["by"].as_str()), (Some("tess"), Some("admin-1")));
    let r = login(&app, "tess", json!({ "organisation_id": "acme" })).await;
    assert_eq!(r.body["decision"], "enrolment_required");
    let dead = app.post_json("/v1/proofs/verify", &json!({ "proof": backup_proof })).await;
    assert_eq!((dead.status, dead.body["error"].as_str()), (403, Some("invalid_proof")));
    app.enrolled_authenticator("tess", None).await;
    let r = login(&app, "tess", json!({ "organisation_id": "acme" })).await;
    assert_eq!(r.body["challenge"]["backup_codes_left"], 0);
    let refused = answer(&app, "tess", &challenge_id(&r), &codes[5]).await;
    assert_eq!(refused.status, 422, "backup codes die with the reset");

    // Turning the requirement off is restricted: the admin steps up first.
    let off = json!({ "policy": "optional", "actor": "admin-1" });
    let r = set_policy(&app, "acme", off.clone()).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("step_up_required")));
    let Authenticator { uri: admin_uri, .. } = app.enrolled_authenticator("admin-1", None).await;
    let step_up = app.post_json("/v1/accounts/admin-1/step-up", &json!({})).await;
    let passed = answer(&app, "admin-1", &challenge_id(&step_up), &authenticator_code(&admin_uri, 1)).await;
    let admin_proof = passed.body["proof"].as_str().unwrap();
    let r = set_policy(&app, "acme", json!({ "policy": "optional", "actor": "admin-1", "step_up": admin_proof })).await;
    assert_eq!((r.status, r.body["policy"].as_str()), (200, Some("optional")), "{:?}", r.body);
    assert_eq!(r.body["sso_enabled"], false, "SSO stays off until the organisation turns it on");
    assert_eq!(login(&app, "ulla", json!({ "organisation_id": "acme" })).await.body["decision"], "open");

    let org_audit = app.get("/v1/organisations/acme/audit").await;
    let entries = org_audit.body["entries"].as_array().unwrap();
    let changes: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["action"] == "policy.changed")
        .map(|e| (e["actor"].as_str().unwrap(), e["detail"]["policy"].as_str().unwrap()))
        .collect();
    assert_eq!(changes, [("admin-1", "optional"), ("admin-1", "required")], "newest first");
    assert!(entries.iter().any(|e| e["action"] == "challenge.passed"), "logins into the organisation are audited");
    let dump = db_dump(&app).await;
    for code in &codes {
        assert!(!dump.contains(code.as_str()), "a backup code at rest");
    }
}

/// (c) A `mandatory` organisation and a recovery code that logs in once and dies
/// when a new one is made.
#[actix_rt::test(system = "verifyd::system::System")]
async fn seed_c_mandatory_policy_and_a_recovery_code_that_works_once() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.#", app.tenant)).await;
    assert_eq!(set_policy(&app, "bank", json!({ "policy": "mandatory", "actor": "boss" })).await.status, 200);
    assert_eq!(login(&app, "vic", json!({ "organisation_id": "bank" })).await.body["decision"], "enrolment_required");

    let Authenticator { factor_id: totp_id, proof, .. } = app.enrolled_authenticator("vic", None).await;
    let proof = proof.expect("a first factor's proof");
    let made = app
        .post_json(
            "/v1/accounts/vic/recovery-code",
            &json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof }),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let old = made.body["recovery_code"].as_str().unwrap().to_owned();

    // The recovery code opens a login in place of the authenticator, once.
    let r = login(&app, "vic", json!({ "organisation_id": "bank" })).await;
    assert_eq!(r.body["challenge"]["recovery_code"], true);
    let passed = answer(&app, "vic", &challenge_id(&r), &old.to_lowercase()).await;
    assert_eq!((passed.status, passed.body["answered_by"].as_str()), (200, Some("recovery_code")), "{:?}", passed.body);
    let proof = passed.body["proof"].as_str().unwrap().to_owned();
    events.wait_for_event("recovery_code.used", WAIT).await;
    let r = login(&app, "vic", json!({ "organisation_id": "bank" })).await;
    assert_eq!(r.body["challenge"]["recovery_code"], false);
    assert_eq!(answer(&app, "vic", &challenge_id(&r), &old).await.status, 422, "used once");

    // Mandatory: the last factor stays, and the policy stays.
    let last = app.delete_json(&format!("/v1/accounts/vic/factors/{totp_id}"), &json!({ "step_up": proof })).await;
    assert_eq!((last.status, last.body["error"].as_str()), (409, Some("last_factor_mandatory")));
    let off = set_policy(&app, "bank", json!({ "policy": "optional", "actor": "boss" })).await;
    assert_eq!((off.status, off.body["error"].as_str()), (409, Some("policy_mandatory")));

    // A new recovery code (with the proof of the recovery login) kills the old one.
    let again = app
        .post_json(
            "/v1/accounts/vic/recovery-code",
            &json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof }),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    let new = again.body["recovery_code"].as_str().unwrap().to_owned();
    let r = login(&app, "vic", json!({ "organisation_id": "bank" })).await;
    let challenge = challenge_id(&r);
    assert_eq!(answer(&app, "vic", &challenge, &old).await.status, 422, "the old code is dead");
    let passed = answer(&app, "vic", &challenge, &new).await;
    assert_eq!(passed.body["answered_by"], "recovery_code");
    let generated = events.wait_for_event("recovery_code.generated", WAIT).await;
    assert_eq!(generated["account_id"], "vic");
    let dump = db_dump(&app).await;
    for code in [&old, &new] {
        assert!(!dump.contains(&code.replace('-', "")), "a recovery code at rest");
    }
}

/// Opens `n` login challenges for `account`; returns their ids.
async fn open_challenges(app: &TestApp, account: &str, n: usize) -> Vec<String> {
    let replies = join_all((0..n).map(|_| login(app, account, json!({})))).await;
    replies.iter().map(challenge_id).collect()
}

/// Answers each challenge with the same code at once; returns (passed, refused).
async fn answer_all(app: &TestApp, account: &str, challenges: &[String], code: &str) -> (usize, usize) {
    let replies = join_all(challenges.iter().map(|c| answer(app, account, c, code))).await;
    let passed = replies.iter().filter(|r| r.status == 200).count();
    let refused = replies.iter().filter(|r| r.status == 422 && r.body["error"] == "invalid_code").count();
    (passed, refused)
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn fifty_parallel_uses_of_one_totp_step_backup_code_or_recovery_code_pass_once_each() {
    // 147 wrong answers on purpose: the account's lockout is another test's.
    let app = crate::helpers::spawn_app_with(|c| c.gate.max_failures = 1_000).await;
    let Authenticator { uri, proof, .. } = app.enrolled_authenticator("wes", None).await;
    let proof = proof.expect("a first factor's proof");
    let body = json!({ "password_checked_at": verifyd_core::timestamp::now(), "step_up": proof });
    let backup =
        app.post_json("/v1/accounts/wes/backup-codes", &body).await.body["codes"][3].as_str().unwrap().to_owned();
    let recovery =
        app.post_json("/v1/accounts/wes/recovery-code", &body).await.body["recovery_code"].as_str().unwrap().to_owned();

    let step = authenticator_code(&uri, 1);
    let challenges = open_challenges(&app, "wes", 50).await;
    assert_eq!(answer_all(&app, "wes", &challenges, &step).await, (1, 49), "one TOTP time step, used once");
    let challenges = open_challenges(&app, "wes", 50).await;
    assert_eq!(answer_all(&app, "wes", &challenges, &backup).await, (1, 49), "one backup code, used once");
    assert_eq!(app.get("/v1/accounts/wes/backup-codes").await.body["remaining"], 9);
    let challenges = open_challenges(&app, "wes", 50).await;
    assert_eq!(answer_all(&app, "wes", &challenges, &recovery).await, (1, 49), "the recovery code, used once");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn five_wrong_answers_fail_a_challenge_and_tell_the_user() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.challenge.failed", app.tenant)).await;
    let Authenticator { uri, .. } = app.enrolled_authenticator("xia", None).await;
    let challenge = challenge_id(&login(&app, "xia", json!({})).await);
    // Opened before any wrong answer: the account's limit must still hold on it.
    let spare = challenge_id(&login(&app, "xia", json!({})).await);
    let right = authenticator_code(&uri, 1);
    let wrong: String = right.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    for left in (0..=4).rev() {
        let r = answer(&app, "xia", &challenge, &wrong).await;
        assert_eq!((r.status, r.body["attempts_left"].as_i64()), (422, Some(left)), "{:?}", r.body);
    }
    let closed = answer(&app, "xia", &challenge, &right).await;
    assert_eq!((closed.status, closed.body["challenge_status"].as_str()), (409, Some("failed")));
    let event = events.wait_for_event("challenge.failed", WAIT).await;
    assert_eq!((event["account_id"].as_str(), event["attempts"].as_i64()), (Some("xia"), Some(5)));
    let status = app.get(&format!("/v1/accounts/xia/challenges/{challenge}")).await;
    assert_eq!(status.body["status"], "failed");

    // Another challenge gets its own five tries; the account's limit (10 wrong
    // answers an hour, over all challenges) then closes the gate for a while.
    let challenge = challenge_id(&login(&app, "xia", json!({})).await);
    for _ in 0..5 {
        assert_eq!(answer(&app, "xia", &challenge, &wrong).await.status, 422);
    }
    let locked = app.post_json("/v1/accounts/xia/login", &json!({})).await;
    assert_eq!((locked.status, locked.body["scope"].as_str()), (429, Some("wrong_answers")), "{:?}", locked.body);
    assert!(locked.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() > 3000);
    let late = answer(&app, "xia", &spare, &right).await;
    assert_eq!((late.status, late.body["scope"].as_str()), (429, Some("wrong_answers")), "{:?}", late.body);

    // Step-up needs a factor to step up with.
    let none = app.post_json("/v1/accounts/nobody/step-up", &json!({})).await;
    assert_eq!((none.status, none.body["error"].as_str()), (409, Some("no_active_factor")));
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_default_factor_changes_only_with_a_step_up() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.factor.default_changed", app.tenant)).await;
    let Authenticator { factor_id: first, proof, .. } = app.enrolled_authenticator("yan", None).await;
    let proof = proof.expect("a first factor's proof");
    let Authenticator { factor_id: second, proof: none, .. } = app.enrolled_authenticator("yan", Some(&proof)).await;
    assert_eq!(none, None, "only the first factor's confirmation is a step-up");
    let defaults = || async {
        let factors = app.get("/v1/accounts/yan/factors").await.body["factors"].clone();
        let of = |id: &str| factors.as_array().unwrap().iter().find(|f| f["id"] == id).unwrap()["default"] == true;
        (of(&first), of(&second))
    };
    assert_eq!(defaults().await, (true, false), "the first factor is the default");

    let path = format!("/v1/accounts/yan/factors/{second}/default");
    let forged = format!("{}x", &proof[..proof.len() - 1]);
    let refused = app.put_json(&path, &json!({ "step_up": forged })).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (403, Some("invalid_proof")));
    let bare = app.put_json(&path, &json!({})).await;
    assert_eq!(
        (bare.status, bare.body["error"].as_str()),
        (403, Some("step_up_required")),
        "as every other restricted action answers without a proof"
    );
    let changed = app.put_json(&path, &json!({ "step_up": proof })).await;
    assert_eq!((changed.status, changed.body["factor"]["default"].as_bool()), (200, Some(true)), "{:?}", changed.body);
    assert_eq!(defaults().await, (false, true));
    assert_eq!(events.wait_for_event("factor.default_changed", WAIT).await["factor_id"], second.as_str());
    let back = app.put_json(&format!("/v1/accounts/yan/factors/{first}/default"), &json!({ "step_up": proof })).await;
    assert_eq!(back.status, 200, "and back again: {:?}", back.body);
    assert_eq!(defaults().await, (true, false));
}

/// Whoever can verify a phone or scan a QR code must not get past the factor
/// the account already has: a second factor needs a step-up from the first.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_second_factor_is_added_only_with_a_step_up_from_the_first() {
    let app = spawn_app().await;
    let Authenticator { uri, factor_id: totp_id, proof } = app.enrolled_authenticator("ivy", None).await;
    let proof = proof.expect("a first factor's proof");

    // Another authenticator: its right code alone is not enough.
    let enrolled = app.post_json("/v1/accounts/ivy/factors/totp", &json!({})).await;
    let other_uri = enrolled.body["otpauth_uri"].as_str().unwrap().to_owned();
    let path = format!("/v1/accounts/ivy/factors/{}/confirm", enrolled.body["factor"]["id"].as_str().unwrap());
    let r = app.post_json(&path, &json!({ "code": authenticator_code(&other_uri, 0) })).await;
    assert_eq!((r.status, r.body["error"].as_str()), (403, Some("step_up_required")));

    // A verified phone stays pending: it cannot answer a login until activated.
    let phone = "+14155550199";
    let created = app.create_verification("ivy", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");
    let factors = app.get("/v1/accounts/ivy/factors").await.body["factors"].clone();
    let sms = factors.as_array().unwrap().iter().find(|f| f["kind"] == "sms").unwrap().clone();
    assert_eq!(sms["status"], "pending");
    let r = login(&app, "ivy", json!({})).await;
    let offered: Vec<&str> =
        r.body["challenge"]["factors"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap()).collect();
    assert_eq!(offered, [totp_id.as_str()]);
    let step_up = app.post_json("/v1/accounts/ivy/step-up", &json!({ "factor_id": sms["id"] })).await;
    assert_eq!(step_up.status, 404, "a pending phone cannot be stepped up with");

    let activate = format!("/v1/accounts/ivy/factors/{}/activate", sms["id"].as_str().unwrap());
    let refused = app.post_json(&activate, &json!({ "step_up": "vp1.not-a-proof.x" })).await;
    assert_eq!((refused.status, refused.body["error"].as_str()), (403, Some("invalid_proof")));
    let passed = answer(&app, "ivy", &challenge_id(&r), &authenticator_code(&uri, 1)).await;
    let login_proof = passed.body["proof"].as_str().unwrap();
    let _ = proof;
    let activated = app.post_json(&activate, &json!({ "step_up": login_proof })).await;
    assert_eq!((activated.status, activated.body["factor"]["status"].as_str()), (200, Some("active")));
    assert_eq!(activated.body["factor"]["default"], false, "the authenticator stays the default");

    // A pending factor grants nothing, so it can be dropped without authority.
    let phone2 = "+14155550198";
    let created = app.create_verification("ivy", phone2, "voice").await;
    let code = app.code_sent_to(phone2).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");
    let factors = app.get("/v1/accounts/ivy/factors").await.body["factors"].clone();
    let voice = factors.as_array().unwrap().iter().find(|f| f["kind"] == "voice").unwrap().clone();
    assert_eq!(voice["status"], "pending");
    let path = format!("/v1/accounts/ivy/factors/{}", voice["id"].as_str().unwrap());
    assert_eq!(app.delete_json(&path, &json!({})).await.status, 200);
}

/// A throttled SMS does not lock the user out: the challenge opens without a
/// code and says why, and another factor can answer it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_throttled_code_still_opens_the_challenge() {
    let app = crate::helpers::spawn_app_with(|c| c.throttle.per_phone.count = 2).await;
    let phone = "+14155550142";
    let created = app.create_verification("kai", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");
    let first = login(&app, "kai", json!({})).await;
    assert!(first.body["challenge"]["sent"].is_object(), "{:?}", first.body);
    let second = login(&app, "kai", json!({})).await;
    assert_eq!(second.body["decision"], "challenge");
    assert_eq!(second.body["challenge"]["sent"], Value::Null);
    assert_eq!(second.body["challenge"]["send_throttled"]["scope"], "phone");
    assert!(second.body["challenge"]["send_throttled"]["retry_after"].as_u64().unwrap() > 0);
}

/// The tenant's own limit refuses the login code only after the code's rows
/// were written (shared buckets are taken last): the challenge still opens,
/// and nothing of the refused send is left behind or sent.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_tenant_limit_refusal_leaves_no_verification_behind() {
    let app = crate::helpers::spawn_app_with(|c| c.throttle.per_tenant.count = 1).await;
    let phone = "+14155550144";
    let created = app.create_verification("max", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");

    let r = login(&app, "max", json!({})).await;
    assert_eq!((r.status, r.body["decision"].as_str()), (200, Some("challenge")), "{:?}", r.body);
    assert_eq!(r.body["challenge"]["send_throttled"]["scope"], "tenant", "{:?}", r.body);
    assert_eq!(r.body["challenge"]["sent"], Value::Null);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications WHERE account_id = 'max'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1, "only the enrolment's verification is stored");
    let challenge = challenge_id(&r);
    let read = app.get(&format!("/v1/accounts/max/challenges/{challenge}")).await;
    assert_eq!(read.status, 200, "the challenge was committed: {:?}", read.body);
    app.delivery_settled().await;
    assert_eq!(app.twilio.sent_sms().await.len(), 1, "nothing went out for the refused code");
}

/// A phone the tenant may no longer text (geo permissions changed after it was
/// enrolled) does not fail the login: the challenge opens, says why no SMS
/// went, and a voice call to the same phone, which is still allowed, answers it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_refused_destination_still_opens_the_challenge() {
    let app = spawn_app().await;
    let phone = "+14155550143";
    let created = app.create_verification("lee", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");
    let geo = app.put_json("/v1/settings/geo-permissions", &json!({ "sms": ["GB"] })).await;
    assert_eq!(geo.status, 200, "{:?}", geo.body);

    let r = login(&app, "lee", json!({})).await;
    assert_eq!((r.status, r.body["decision"].as_str()), (200, Some("challenge")), "{:?}", r.body);
    assert_eq!(r.body["challenge"]["sent"], Value::Null);
    let refused = &r.body["challenge"]["send_refused"];
    assert_eq!(refused["error"], "destination_not_allowed", "{:?}", r.body);
    assert_eq!((refused["country"].as_str(), refused["channel"].as_str()), (Some("US"), Some("sms")));
    assert!(!r.body.to_string().contains("5550143"), "the number is not echoed: {:?}", r.body);
    assert_eq!(app.twilio.sent_sms().await.len(), 1, "only the enrolment SMS went out");

    let challenge = challenge_id(&r);
    let by_voice =
        app.post_json(&format!("/v1/accounts/lee/challenges/{challenge}/send"), &json!({ "channel": "voice" })).await;
    assert_eq!(
        (by_voice.status, by_voice.body["sent"]["channel"].as_str()),
        (202, Some("voice")),
        "{:?}",
        by_voice.body
    );
    let code = app.next_code_to(phone, 1).await;
    let passed = answer(&app, "lee", &challenge, &code).await;
    assert_eq!((passed.status, passed.body["answered_by"].as_str()), (200, Some("phone")), "{:?}", passed.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn two_serve_processes_give_the_same_gate_answers() {
    let mut app = spawn_app().await;
    let other = app.start_another_serve().await;
    assert_eq!(set_policy(&app, "corp", json!({ "policy": "required", "actor": "root" })).await.status, 200);
    let from_other = app.post_json_at(&other, "/v1/accounts/zed/login", &json!({ "organisation_id": "corp" })).await;
    assert_eq!(from_other.body["decision"], "enrolment_required", "{:?}", from_other.body);

    let Authenticator { uri, .. } = app.enrolled_authenticator("zed", None).await;
    let opened = app.post_json_at(&other, "/v1/accounts/zed/login", &json!({ "organisation_id": "corp" })).await;
    let challenge = challenge_id(&opened);
    let code = authenticator_code(&uri, 1);
    // Answered in the first process, the challenge the second one made passes once.
    let passed = answer(&app, "zed", &challenge, &code).await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    let proof = passed.body["proof"].as_str().unwrap();
    let checked = app.post_json_at(&other, "/v1/proofs/verify", &json!({ "proof": proof })).await;
    assert_eq!(checked.status, 200, "the other process accepts the proof");
    let replay = app
        .post_json_at(&other, &format!("/v1/accounts/zed/challenges/{challenge}/answer"), &json!({ "code": code }))
        .await;
    assert_eq!(replay.status, 409, "{:?}", replay.body);
    let fresh = challenge_id(&login(&app, "zed", json!({ "organisation_id": "corp" })).await);
    let replay = app
        .post_json_at(&other, &format!("/v1/accounts/zed/challenges/{fresh}/answer"), &json!({ "code": code }))
        .await;
    assert_eq!(replay.status, 422, "the time step was used in the other process");
}

/// A code right for another factor than the one that must answer is refused
/// exactly as a wrong code: the same 422, an attempt counted, nothing said of
/// where it was valid, and nothing spent (that factor's step still answers).
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_right_code_of_another_factor_is_refused_as_a_wrong_one_and_spends_nothing() {
    let app = spawn_app().await;
    let Authenticator { uri: uri_a, factor_id: id_a, proof } = app.enrolled_authenticator("otto", None).await;
    let proof = proof.expect("a first factor's proof");
    let Authenticator { uri: uri_b, factor_id: id_b, .. } = app.enrolled_authenticator("otto", Some(&proof)).await;

    let r = app.post_json("/v1/accounts/otto/step-up", &json!({ "factor_id": id_a })).await;
    let challenge = challenge_id(&r);
    let path = format!("/v1/accounts/otto/challenges/{challenge}/answer");
    // The code is right, for B; only A may answer.
    let code_b = authenticator_code(&uri_b, 1);
    let other = app.post_json(&path, &json!({ "code": code_b, "factor_id": id_a })).await;
    assert_eq!((other.status, other.body["attempts_left"].as_i64()), (422, Some(4)), "{:?}", other.body);
    let code_a = authenticator_code(&uri_a, 1);
    let wrong = if code_a == "000000" || code_b == "000000" { "999999" } else { "000000" };
    let plain = app.post_json(&path, &json!({ "code": wrong, "factor_id": id_a })).await;
    assert_eq!((plain.status, plain.body["attempts_left"].as_i64()), (422, Some(3)), "{:?}", plain.body);
    for field in ["type", "error", "title", "status", "detail"] {
        assert_eq!(other.body[field], plain.body[field], "{field}: {:?} vs {:?}", other.body, plain.body);
    }
    assert_eq!(other.body["error"], "invalid_code");
    assert!(!other.body.to_string().contains(&id_b), "the other factor is not named: {:?}", other.body);

    // B's step was not spent: B answers with it.
    let passed = app.post_json(&path, &json!({ "code": code_b, "factor_id": id_b })).await;
    assert_eq!(passed.status, 200, "{:?}", passed.body);
    assert_eq!(
        (passed.body["answered_by"].as_str(), passed.body["factor_id"].as_str()),
        (Some("totp"), Some(id_b.as_str()))
    );

    // Confirming a new authenticator with an active one's right code: the same refusal.
    let step_up = passed.body["proof"].as_str().unwrap().to_owned();
    let enrolled = app.post_json("/v1/accounts/otto/factors/totp", &json!({})).await;
    let id_c = enrolled.body["factor"]["id"].as_str().unwrap().to_owned();
    let confirm = format!("/v1/accounts/otto/factors/{id_c}/confirm");
    let r = app.post_json(&confirm, &json!({ "code": authenticator_code(&uri_a, 0), "step_up": step_up })).await;
    assert_eq!((r.status, r.body["attempts_left"].as_i64()), (422, Some(4)), "{:?}", r.body);
    assert_eq!(r.body["detail"], plain.body["detail"]);
    let c = app.get("/v1/accounts/otto/factors").await.body["factors"].clone();
    let c = c.as_array().unwrap().iter().find(|f| f["id"] == id_c.as_str()).unwrap().clone();
    assert_eq!(c["status"], "pending");
}

/// A login code asked for by voice for an SMS factor proves that factor: even
/// checked through the verification API it adds no voice factor, and no
/// factor.added (the channel asked for applies to that send only).
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_challenge_code_sent_by_voice_never_becomes_a_voice_factor() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.factor.*", app.tenant)).await;
    let phone = "+14155550161";
    let created = app.create_verification("vic", phone, "sms").await;
    let code = app.code_sent_to(phone).await;
    assert_eq!(app.check(created.body["id"].as_str().unwrap(), &code).await.body["status"], "approved");
    events.wait_for_event("factor.added", WAIT).await;

    let r = login(&app, "vic", json!({ "channel": "voice" })).await;
    challenge_id(&r);
    assert_eq!(r.body["challenge"]["sent"]["channel"], "voice");
    let vid = r.body["challenge"]["sent"]["verification_id"].as_str().unwrap().to_owned();
    let code = app.next_code_to(phone, 1).await;
    let checked = app.check(&vid, &code).await;
    assert_eq!(checked.body["status"], "approved", "{:?}", checked.body);
    // Past the reconcile pass too (every second in tests).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let factors = app.get("/v1/accounts/vic/factors").await.body["factors"].clone();
    let kinds: Vec<(&str, &str)> = factors
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap(), f["status"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [("sms", "active")]);
    let published = events.drain(Duration::from_millis(300)).await;
    assert_eq!(
        published.len(),
        1,
        "the enrolment's factor.added only: {:?}",
        published.iter().map(|m| m.text()).collect::<Vec<_>>()
    );
}

/// An admin reset tells the user how many of their factors went: the active
/// ones, not an authenticator enrolment never confirmed (never announced).
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_reset_counts_the_factors_the_user_had_not_pending_enrolments() {
    let app = spawn_app().await;
    let mut events = app.capture_events(&format!("{}.account.reset", app.tenant)).await;
    app.enrolled_authenticator("rhea", None).await;
    let pending = app.post_json("/v1/accounts/rhea/factors/totp", &json!({})).await;
    assert_eq!(pending.status, 201, "{:?}", pending.body);
    assert_eq!(app.get("/v1/accounts/rhea/factors").await.body["factors"].as_array().unwrap().len(), 2);

    let reset =
        app.post_json("/v1/accounts/rhea/reset", &json!({ "actor": "admin-1", "attestation": "ID checked" })).await;
    assert_eq!(reset.status, 200, "{:?}", reset.body);
    assert_eq!(reset.body["factors_removed"], 1);
    assert_eq!(app.get("/v1/accounts/rhea/factors").await.body["factors"], json!([]), "the pending one went too");
    let event = events.wait_for_event("account.reset", WAIT).await;
    assert_eq!(event["factors_removed"], 1);
}

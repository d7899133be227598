//! API key security: scopes, source networks (and trusted proxies), rotation,
//! revocation, listing, and keys kept out of the logs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{PG_ADMIN_URL, Reply, TestApp, captured_logs, concrete_path, spawn_app, spawn_app_with};

const ALL: [&str; 4] = ["verify", "enrol", "admin", "ops"];

/// A key made over HTTP with the app's own (all-scope) key.
async fn new_key(app: &TestApp, scopes: &[&str], cidrs: &[&str]) -> String {
    let made = app.post_json("/v1/api-keys", &json!({ "scopes": scopes, "allowed_cidrs": cidrs })).await;
    assert_eq!(made.status, 201, "{}", made.body);
    made.body["key"].as_str().unwrap().to_owned()
}

fn key_id(key: &str) -> &str {
    key.split_once('.').unwrap().0
}

async fn call(app: &TestApp, method: &str, path: &str, key: &str, forwarded: Option<&str>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.client.request(method, app.url(path)).bearer_auth(key);
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    app.send(req).await
}

/// A verification started with `key`: `Some(status)` of the answer.
async fn start_verification(app: &TestApp, key: &str, phone: &str, forwarded: Option<&str>) -> Reply {
    let body = json!({ "account_id": "keys-user", "phone": phone, "channel": "sms" });
    let mut req = app.client.post(app.url("/v1/verifications")).bearer_auth(key).json(&body);
    if let Some(f) = forwarded {
        req = req.header("X-Forwarded-For", f);
    }
    app.send(req).await
}

fn assert_forbidden_scope(reply: &Reply, scope: &str, key: &str) {
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.body["type"], "https://verifyd.dev/problems/forbidden_scope");
    assert_eq!(reply.body["required_scope"], scope);
    let detail = reply.body["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("`{scope}`")), "{detail}");
    assert!(!reply.body.to_string().contains(key_id(key)), "the problem names the key");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn each_scope_opens_its_own_routes_and_no_others() {
    let app = spawn_app().await;
    let verify = new_key(&app, &["verify"], &[]).await;
    let enrol = new_key(&app, &["enrol"], &[]).await;
    let admin = new_key(&app, &["admin"], &[]).await;
    let ops = new_key(&app, &["ops"], &[]).await;

    // verify
    assert_eq!(start_verification(&app, &verify, "+14155550301", None).await.status, 201);
    let login = app.post_json_as(&verify, "/v1/accounts/keys-user/login", &json!({})).await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert_forbidden_scope(&app.get_as(&verify, "/v1/accounts/keys-user/factors").await, "enrol", &verify);
    assert_forbidden_scope(&app.get_as(&verify, "/v1/api-keys").await, "admin", &verify);
    assert_forbidden_scope(&app.get_as(&verify, "/v1/ops/queues").await, "ops", &verify);

    // enrol
    let factors = app.get_as(&enrol, "/v1/accounts/keys-user/factors").await;
    assert_eq!(factors.status, 200, "{}", factors.body);
    let totp = app.post_json_as(&enrol, "/v1/accounts/keys-user/factors/totp", &json!({})).await;
    assert_eq!(totp.status, 201, "{}", totp.body);
    assert_forbidden_scope(&start_verification(&app, &enrol, "+14155550302", None).await, "verify", &enrol);
    assert_forbidden_scope(&app.get_as(&enrol, "/v1/organisations/acme/policy").await, "admin", &enrol);

    // admin
    assert_eq!(app.get_as(&admin, "/v1/organisations/acme/policy").await.status, 200);
    assert_eq!(app.get_as(&admin, "/v1/accounts/keys-user/audit").await.status, 200);
    assert_eq!(app.get_as(&admin, "/v1/api-keys").await.status, 200);
    assert_forbidden_scope(&app.get_as(&admin, "/v1/accounts/keys-user/factors").await, "enrol", &admin);
    assert_forbidden_scope(&app.get_as(&admin, "/v1/ops/queues").await, "ops", &admin);

    // ops
    let queues = app.get_as(&ops, "/v1/ops/queues").await;
    assert_eq!(queues.status, 200, "{}", queues.body);
    let names: Vec<&str> =
        queues.body["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
    assert!(names.iter().any(|n| n.starts_with(&app.topology.prefix)), "{names:?}");
    assert_forbidden_scope(&app.get_as(&ops, "/v1/api-keys").await, "admin", &ops);
    assert_forbidden_scope(&start_verification(&app, &ops, "+14155550303", None).await, "verify", &ops);

    // Nothing was sent for the refused requests.
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(sent, 1);
}

/// Every documented operation demands the one scope it documents: a key
/// holding all the others is refused, naming it.
#[actix_rt::test(system = "verifyd::system::System")]
async fn every_documented_operation_needs_the_scope_it_documents() {
    let app = spawn_app().await;
    let mut all_but = std::collections::HashMap::new();
    for scope in ALL {
        let others: Vec<&str> = ALL.into_iter().filter(|s| *s != scope).collect();
        all_but.insert(scope, new_key(&app, &others, &[]).await);
    }
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = std::collections::HashMap::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = concrete_path(path);
        for (method, operation) in operations.as_object().unwrap() {
            let Some(security) = operation.get("security") else { continue };
            let roles = security[0]["api_key"].as_array().unwrap();
            assert_eq!(roles.len(), 1, "{method} {path} must name exactly one scope: {roles:?}");
            let scope = roles[0].as_str().unwrap();
            let key = all_but.get(scope).unwrap_or_else(|| panic!("{method} {path}: unknown scope {scope}"));
            let reply = call(&app, &method.to_uppercase(), &concrete, key, None).await;
            assert_eq!(reply.status, 403, "{method} {path} documents `{scope}` but answered {}", reply.body);
            assert_eq!(reply.body["required_scope"], scope, "{method} {path}");
            *checked.entry(scope).or_insert(0) += 1;
        }
    }
    for scope in ALL {
        assert!(checked.get(scope).copied().unwrap_or(0) > 0, "no operation needs `{scope}`: {checked:?}");
    }
    assert!(checked.values().sum::<i32>() >= 28, "{checked:?}");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_key_cannot_grant_or_rotate_more_than_it_holds() {
    let app = spawn_app().await;
    let admin = new_key(&app, &["admin"], &[]).await;
    let made = app.post_json_as(&admin, "/v1/api-keys", &json!({ "scopes": ["admin", "ops"] })).await;
    assert_eq!(made.status, 403, "{}", made.body);
    assert_eq!(made.body["error"], "forbidden_scope");
    assert_eq!(made.body["required_scope"], "ops");
    assert!(made.body["detail"].as_str().unwrap().contains("cannot grant"));
    let made = app.post_json_as(&admin, "/v1/api-keys", &json!({ "scopes": ["admin"], "label": "ci" })).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["api_key"]["label"], "ci");
    assert_eq!(made.body["api_key"]["scopes"], json!(["admin"]));

    // Rotating a key with a scope the caller lacks would hand that scope over.
    let verify = new_key(&app, &["verify"], &[]).await;
    let rotate = app.post_json_as(&admin, &format!("/v1/api-keys/{}/rotate", key_id(&verify)), &json!({})).await;
    assert_eq!(rotate.status, 403, "{}", rotate.body);
    assert_eq!(rotate.body["required_scope"], "verify");

    // A key held to some networks cannot make one that works from anywhere.
    let local_admin = new_key(&app, &["admin", "verify"], &["127.0.0.0/8"]).await;
    let wide = app.post_json_as(&local_admin, "/v1/api-keys", &json!({ "scopes": ["verify"] })).await;
    assert_eq!(wide.status, 422, "{}", wide.body);
    assert_eq!(wide.body["field"], "allowed_cidrs");
    let narrow = app
        .post_json_as(&local_admin, "/v1/api-keys", &json!({ "scopes": ["verify"], "allowed_cidrs": ["127.0.0.1"] }))
        .await;
    assert_eq!(narrow.status, 201, "{}", narrow.body);
    assert_eq!(narrow.body["api_key"]["allowed_cidrs"], json!(["127.0.0.1/32"]));
    let rotate = app.post_json_as(&local_admin, &format!("/v1/api-keys/{}/rotate", key_id(&verify)), &json!({})).await;
    assert_eq!(rotate.status, 403, "{}", rotate.body);
    assert_eq!(rotate.body["error"], "forbidden_source");

    for (body, field) in [
        (json!({ "scopes": [] }), "scopes"),
        (json!({ "scopes": ["root"] }), "scopes"),
        (json!({ "scopes": ["verify"], "allowed_cidrs": ["10.0.0.0/33"] }), "allowed_cidrs"),
        (json!({ "scopes": ["verify"], "label": "" }), "label"),
    ] {
        let refused = app.post_json("/v1/api-keys", &body).await;
        assert_eq!(refused.status, 422, "{body}: {}", refused.body);
        assert_eq!(refused.body["field"], field);
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn a_key_is_refused_outside_its_networks() {
    let app = spawn_app().await;
    let tens = new_key(&app, &["verify"], &["10.0.0.0/8"]).await;
    let local = new_key(&app, &["verify"], &["127.0.0.0/8"]).await;

    let refused = start_verification(&app, &tens, "+14155550311", None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["type"], "https://verifyd.dev/problems/forbidden_source");
    // No proxy is trusted by default: the header is the caller's claim only.
    let spoofed = start_verification(&app, &tens, "+14155550311", Some("10.1.2.3")).await;
    assert_eq!(spoofed.status, 403, "{}", spoofed.body);
    assert_eq!(start_verification(&app, &local, "+14155550312", None).await.status, 201);
    assert_eq!(start_verification(&app, &local, "+14155550313", Some("198.51.100.7")).await.status, 201);
    let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM verifications").fetch_one(&app.pool).await.unwrap();
    assert_eq!(sent, 2, "the refused requests started nothing");
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let app = spawn_app_with(|c| c.http.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let tens = new_key(&app, &["verify"], &["10.0.0.0/8"]).await;
    let local = new_key(&app, &["verify"], &["127.0.0.0/8"]).await;

    // The proxy (127.0.0.1, trusted) says the client is 10.1.2.3.
    assert_eq!(start_verification(&app, &tens, "+14155550321", Some("10.1.2.3")).await.status, 201);
    // Without the header the client is the proxy itself.
    assert_eq!(start_verification(&app, &tens, "+14155550322", None).await.status, 403);
    // The right-most untrusted hop counts; what the client wrote further left does not.
    let spoofed = start_verification(&app, &tens, "+14155550323", Some("10.1.2.3, 198.51.100.7")).await;
    assert_eq!(spoofed.status, 403, "{}", spoofed.body);
    assert_eq!(start_verification(&app, &tens, "+14155550324", Some("198.51.100.7, 10.1.2.3")).await.status, 201);
    // And the proxy's own address no longer passes for the client's.
    let from_outside = start_verification(&app, &local, "+14155550325", Some("198.51.100.7")).await;
    assert_eq!(from_outside.status, 403, "{}", from_outside.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn rotation_keeps_both_keys_through_the_grace_then_only_the_new_one() {
    let app = spawn_app().await;
    let old = new_key(&app, &["verify", "enrol"], &["127.0.0.0/8"]).await;
    assert_eq!(app.get_as(&old, "/v1/accounts/rot/factors").await.status, 200, "the old key works (and is cached)");

    let rotated = app.post_json(&format!("/v1/api-keys/{}/rotate", key_id(&old)), &json!({ "grace_secs": 2 })).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(rotated.headers.get("cache-control").unwrap(), "no-store");
    let new = rotated.body["key"].as_str().unwrap().to_owned();
    assert_ne!(key_id(&new), key_id(&old));
    assert_eq!(rotated.body["api_key"]["scopes"], json!(["verify", "enrol"]));
    assert_eq!(rotated.body["api_key"]["allowed_cidrs"], json!(["127.0.0.0/8"]));
    assert_eq!(rotated.body["previous"]["key_id"], key_id(&old));
    let expires: DateTime<Utc> = rotated.body["previous"]["expires_at"].as_str().unwrap().parse().unwrap();
    let left = expires - verifyd_core::timestamp::now();
    assert!(left > chrono::TimeDelta::zero() && left <= chrono::TimeDelta::seconds(2), "{left}");

    // Both work during the grace.
    assert_eq!(app.get_as(&old, "/v1/accounts/rot/factors").await.status, 200);
    assert_eq!(app.get_as(&new, "/v1/accounts/rot/factors").await.status, 200);
    assert_forbidden_scope(&app.get_as(&new, "/v1/api-keys").await, "admin", &new);

    let wait = (expires - verifyd_core::timestamp::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    let after = app.get_as(&old, "/v1/accounts/rot/factors").await;
    assert_eq!(after.status, 401, "{}", after.body);
    assert_eq!(after.body["error"], "unauthenticated");
    assert_eq!(app.get_as(&new, "/v1/accounts/rot/factors").await.status, 200);
    // An expired key cannot be rotated again.
    let again = app.post_json(&format!("/v1/api-keys/{}/rotate", key_id(&old)), &json!({})).await;
    assert_eq!(again.status, 404, "{}", again.body);
    let too_long =
        app.post_json(&format!("/v1/api-keys/{}/rotate", key_id(&new)), &json!({ "grace_secs": 31 * 86400 })).await;
    assert_eq!(too_long.status, 422);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn revocation_over_http_takes_effect_at_once() {
    // A key cache of an hour: only the eviction can make the revocation immediate.
    let app = spawn_app_with(|c| c.http.key_cache_secs = 3600).await;
    let key = new_key(&app, &["verify"], &[]).await;
    assert_eq!(start_verification(&app, &key, "+14155550331", None).await.status, 201);

    let revoked = call(&app, "DELETE", &format!("/v1/api-keys/{}", key_id(&key)), &app.api_key, None).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["revoked"]["key_id"], key_id(&key));
    let revoked_at = revoked.body["revoked"]["revoked_at"].clone();
    assert!(revoked_at.is_string());
    let refused = start_verification(&app, &key, "+14155550332", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);

    // Revoking again changes nothing; an unknown id is 404.
    let again = call(&app, "DELETE", &format!("/v1/api-keys/{}", key_id(&key)), &app.api_key, None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["revoked"]["revoked_at"], revoked_at);
    assert_eq!(call(&app, "DELETE", "/v1/api-keys/vk_000000000000", &app.api_key, None).await.status, 404);
    assert_eq!(call(&app, "DELETE", "/v1/api-keys/not-a-key", &app.api_key, None).await.status, 404);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn revocation_by_the_cli_takes_effect_within_the_cache_period() {
    let app = spawn_app_with(|c| c.http.key_cache_secs = 1).await;
    let key = new_key(&app, &["verify"], &[]).await;
    assert_eq!(start_verification(&app, &key, "+14155550341", None).await.status, 201);

    let revoked = verifyd::api_keys::revoke_any(&app.pool, key_id(&key), &verifyd::api_keys::console_operator())
        .await
        .unwrap()
        .expect("the key exists");
    assert!(revoked.revoked_at.is_some());
    assert!(
        verifyd::api_keys::revoke_any(&app.pool, "vk_000000000000", &verifyd::api_keys::console_operator())
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let refused = start_verification(&app, &key, "+14155550342", None).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn another_tenants_keys_cannot_be_seen_rotated_or_revoked() {
    let app = spawn_app().await;
    let other = app.other_tenant(&format!("{}-other", app.tenant)).await;
    let other_id = key_id(&other).to_owned();

    let rotate = app.post_json(&format!("/v1/api-keys/{other_id}/rotate"), &json!({})).await;
    assert_eq!(rotate.status, 404, "{}", rotate.body);
    let revoke = call(&app, "DELETE", &format!("/v1/api-keys/{other_id}"), &app.api_key, None).await;
    assert_eq!(revoke.status, 404, "{}", revoke.body);
    let listed = app.get("/v1/api-keys").await;
    assert!(!listed.body.to_string().contains(&other_id));
    // The other tenant's key still works, and sees only its own key.
    let theirs = app.get_as(&other, "/v1/api-keys").await;
    assert_eq!(theirs.status, 200);
    let ids: Vec<&str> =
        theirs.body["api_keys"].as_array().unwrap().iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [other_id.as_str()]);
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn listing_shows_keys_but_never_a_secret() {
    let app = spawn_app().await;
    let made = app
        .post_json("/v1/api-keys", &json!({ "scopes": ["verify"], "allowed_cidrs": ["10.1.2.3/8"], "label": "web" }))
        .await;
    assert_eq!(made.status, 201);
    let key = made.body["key"].as_str().unwrap().to_owned();
    let listed = app.get("/v1/api-keys").await;
    assert_eq!(listed.status, 200);
    let keys = listed.body["api_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{}", listed.body);
    let own = keys.iter().find(|k| k["key_id"] == key_id(&app.api_key)).unwrap();
    assert_eq!(own["scopes"], json!(ALL));
    assert_eq!(own["allowed_cidrs"], json!([]));
    assert!(own["last_used_at"].is_string(), "the listing request itself used it: {own}");
    let web = keys.iter().find(|k| k["key_id"] == key_id(&key)).unwrap();
    assert_eq!(web["label"], "web");
    assert_eq!(web["allowed_cidrs"], json!(["10.0.0.0/8"]));
    assert_eq!(web["last_used_at"], Value::Null);
    assert_eq!(web["revoked_at"], Value::Null);
    let mut fields: Vec<&String> = web.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        ["allowed_cidrs", "created_at", "expires_at", "key_id", "label", "last_used_at", "revoked_at", "scopes"]
    );
    let text = listed.body.to_string();
    for secret in [&app.api_key, &key] {
        assert!(!text.contains(secret.split_once('.').unwrap().1), "a secret is listed");
    }
}

#[actix_rt::test(system = "verifyd::system::System")]
async fn keys_stay_out_of_the_logs_on_every_refusal() {
    let app = spawn_app_with(|c| c.http.key_cache_secs = 3600).await;
    let revoked = new_key(&app, &["verify"], &[]).await;
    let elsewhere = new_key(&app, &["verify"], &["10.0.0.0/8"]).await;
    assert_eq!(start_verification(&app, &revoked, "+14155550351", None).await.status, 201);
    assert_eq!(
        call(&app, "DELETE", &format!("/v1/api-keys/{}", key_id(&revoked)), &app.api_key, None).await.status,
        200
    );
    let (id, secret) = app.api_key.split_once('.').unwrap();
    let wrong = format!("{id}.{}", secret.chars().rev().collect::<String>());
    let garbage = format!("not-a-key-{}", Uuid::new_v4().simple());

    let path = format!("/v1/verifications/{}", Uuid::new_v4());
    for key in [&wrong, &revoked, &garbage] {
        assert_eq!(call(&app, "GET", &path, key, None).await.status, 401);
    }
    assert_eq!(call(&app, "GET", &path, &elsewhere, None).await.status, 403);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let logs = captured_logs();
    let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&path)).collect();
    assert!(lines.iter().filter(|l| l.contains(" 401 ")).count() >= 3, "the refusals were logged: {lines:?}");
    assert!(logs.contains(&format!("key_id={}", key_id(&elsewhere))), "the refused source was logged by key id");
    for key in [&app.api_key, &wrong, &revoked, &garbage, &elsewhere] {
        assert!(!logs.contains(key.as_str()), "a presented key is in the logs");
        if let Some((_, secret)) = key.split_once('.') {
            assert!(!logs.contains(secret), "a key's secret is in the logs");
        }
    }
}

/// Keys made before scopes existed keep all four after the migration, so an
/// upgrade breaks no caller.
#[actix_rt::test(system = "verifyd::system::System")]
async fn keys_from_before_the_migration_keep_every_scope() {
    let name = format!("verifyd_test_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(PG_ADMIN_URL).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
    let pool = sqlx::PgPool::connect(&format!("postgres://postgres@127.0.0.1:5432/{name}")).await.unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let (before, from): (Vec<_>, Vec<_>) =
        files.into_iter().partition(|p| p.file_name().unwrap().to_str().unwrap() < "20261123000004");
    for file in &before {
        sqlx::raw_sql(sqlx::AssertSqlSafe(std::fs::read_to_string(file).unwrap())).execute(&pool).await.unwrap();
    }
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'old')").bind(Uuid::new_v4()).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, label)
         SELECT 'vk_0123456789ab', id, '\\x00', 'legacy' FROM tenants",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(std::fs::read_to_string(&from[0]).unwrap())).execute(&pool).await.unwrap();
    let (scopes, cidrs): (Vec<String>, Vec<String>) =
        sqlx::query_as("SELECT scopes, allowed_cidrs FROM api_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(scopes, ALL);
    assert!(cidrs.is_empty());
    // New rows must state their scopes.
    let unscoped = sqlx::query(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash) SELECT 'vk_0123456789ac', id, '\\x00' FROM tenants",
    )
    .execute(&pool)
    .await;
    assert!(unscoped.is_err());
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).execute(&admin).await.unwrap();
}

/// Every change to a tenant's keys is in its audit trail (`GET /v1/audit`):
/// which key or console operator made it, which key it touched, what that key
/// may do, and never a secret. A repeated revocation adds nothing.
#[actix_rt::test(system = "verifyd::system::System")]
async fn key_changes_are_audited_with_who_made_them_and_no_secret() {
    let app = spawn_app().await;
    // A key grants and rotates only what it holds: this one can do both for `verify`.
    let admin = new_key(&app, &["admin", "verify"], &[]).await;
    let body = json!({ "scopes": ["verify"], "label": "checkout" });
    let made = app.send(app.client.post(app.url("/v1/api-keys")).bearer_auth(&admin).json(&body)).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let checkout = made.body["key"].as_str().unwrap().to_owned();
    let rotate = format!("/v1/api-keys/{}/rotate", key_id(&checkout));
    let rotated =
        app.send(app.client.post(app.url(&rotate)).bearer_auth(&admin).json(&json!({ "grace_secs": 60 }))).await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let successor = rotated.body["key"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let path = format!("/v1/api-keys/{}", key_id(&successor));
        assert_eq!(call(&app, "DELETE", &path, &admin, None).await.status, 200);
    }
    let operator = verifyd::api_keys::console_operator();
    verifyd::api_keys::revoke_any(&app.pool, key_id(&admin), &operator).await.unwrap().expect("the key exists");

    let trail = app.get("/v1/audit").await;
    assert_eq!(trail.status, 200, "{}", trail.body);
    let entries = trail.body["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, Option<&str>, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["api_key_id"].as_str(),
                e["detail"]["key_id"].as_str().unwrap(),
            )
        })
        .collect();
    let cli = operator.actor.as_str();
    let app_key = key_id(&app.api_key);
    assert_eq!(
        seen,
        vec![
            ("api_key.revoked", cli, None, key_id(&admin)),
            ("api_key.revoked", key_id(&admin), Some(key_id(&admin)), key_id(&successor)),
            ("api_key.rotated", key_id(&admin), Some(key_id(&admin)), key_id(&checkout)),
            ("api_key.created", key_id(&admin), Some(key_id(&admin)), key_id(&checkout)),
            ("api_key.created", app_key, Some(app_key), key_id(&admin)),
            ("api_key.created", cli, None, app_key),
        ],
        "newest first, one revocation each"
    );
    let rotation = &entries[2]["detail"];
    assert_eq!(rotation["new_key_id"], key_id(&successor));
    assert!(rotation["expires_at"].is_string(), "the old key's end is recorded: {rotation}");
    assert_eq!(
        (entries[3]["detail"]["label"].as_str(), &entries[3]["detail"]["scopes"]),
        (Some("checkout"), &json!(["verify"]))
    );
    let text = trail.body.to_string();
    for key in [&admin, &checkout, &successor] {
        let secret = key.split_once('.').unwrap().1;
        assert!(!text.contains(secret), "a key's secret in the audit trail");
    }
    let forbidden = call(&app, "GET", "/v1/audit", &new_key(&app, &["ops"], &[]).await, None).await;
    assert_eq!(forbidden.status, 403, "the trail needs the admin scope");
}

//! The OpenAPI document: served, committed, and true to the routes.

use serde_json::Value;

use crate::helpers::{concrete_path, spawn_app};

const REGENERATE: &str = "regenerate it: cargo run -p verifyd -- openapi > docs/openapi.json";

#[actix_rt::test(system = "verifyd::system::System")]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
        .expect("docs/openapi.json is in the repository");
    assert!(served == committed, "docs/openapi.json is out of date; {REGENERATE}");
}

/// Every documented operation exists: without an API key it answers 401, not
/// 404 or 405.
#[actix_rt::test(system = "verifyd::system::System")]
async fn every_documented_operation_is_routed() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let concrete = concrete_path(path);
        for (method, operation) in operations.as_object().unwrap() {
            if operation.get("security").is_none() {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let status = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap().status();
            assert_eq!(status, 401, "{method} {path} is documented but answers {status}; {REGENERATE}");
            checked += 1;
        }
    }
    assert!(checked >= 24, "only {checked} operations documented");
}

/// Credentials are settled before anything else is read: with no key, an
/// unknown one or a revoked one, every documented operation answers 401, even
/// to a body that is not what it expects (which must not teach a stranger the
/// API's schemas).
#[actix_rt::test(system = "verifyd::system::System")]
async fn a_bad_key_is_401_whatever_else_is_wrong_with_the_request() {
    let app = spawn_app().await;
    let revoked = app.other_tenant("revoked-co").await;
    let revoked_id = revoked.split_once('.').unwrap().0.to_owned();
    let gone = app.client.delete(app.url(&format!("/v1/api-keys/{revoked_id}"))).bearer_auth(&revoked).send().await;
    assert!(gone.unwrap().status().is_success(), "the key revokes itself");
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let unknown = "vk_0123456789ab.0123456789abcdef0123456789abcdef0123456789abcdef";
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            if operation.get("security").is_none() {
                continue;
            }
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            for key in [None, Some(unknown), Some(revoked.as_str())] {
                for body in ["[1, 2]", "{\"surely_not_a_field\": 1}", "{"] {
                    let mut req = app
                        .client
                        .request(method.clone(), app.url(&concrete_path(path)))
                        .header("content-type", "application/json")
                        .body(body);
                    if let Some(key) = key {
                        req = req.bearer_auth(key);
                    }
                    let r = app.send(req).await;
                    let who = key.map_or("no key", |k| if k == unknown { "an unknown key" } else { "a revoked key" });
                    assert_eq!(r.status, 401, "{method} {path} with {who} and body {body}: {:?}", r.body);
                    assert_eq!(r.body["error"], "unauthenticated");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} operations checked");
}

/// A path verifyd serves, asked with a method it does not take, is 405 with
/// `Allow` and a problem document; an unknown path is a 404 problem document.
#[actix_rt::test(system = "verifyd::system::System")]
async fn wrong_methods_are_405_and_unknown_paths_404_as_problems() {
    let app = spawn_app().await;
    let doc: Value = app.client.get(app.url("/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut checked = 0;
    for (path, operations) in doc["paths"].as_object().unwrap() {
        let documented: Vec<String> = operations.as_object().unwrap().keys().map(|m| m.to_uppercase()).collect();
        for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
            if documented.iter().any(|m| m == method) {
                continue;
            }
            let req = app
                .client
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), app.url(&concrete_path(path)))
                .bearer_auth(&app.api_key);
            let r = app.send(req).await;
            assert_eq!(r.status, 405, "{method} {path}: {:?}", r.body);
            assert_eq!(r.headers["content-type"], "application/problem+json", "{method} {path}");
            assert_eq!(r.body["error"], "method_not_allowed");
            let mut allow: Vec<&str> = r.headers["allow"].to_str().unwrap().split(", ").collect();
            allow.sort();
            let mut expected: Vec<&str> = documented.iter().map(String::as_str).collect();
            expected.sort();
            assert_eq!(allow, expected, "Allow of {path}");
            checked += 1;
        }
    }
    assert!(checked >= 100, "only {checked} wrong methods tried");
    for path in ["/v2/verifications", "/v1/verifications/x/y/z", "/healthz/more", "/ops/nothing"] {
        let r = app.get(path).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
        assert_eq!(r.headers["content-type"], "application/problem+json", "{path}");
        assert_eq!(r.body["error"], "not_found");
    }
}

//! The OpenAPI document: served, committed, and true to the routes.

use serde_json::Value;

use crate::helpers::{concrete_path, spawn_app};

const REGENERATE: &str = "regenerate it: cargo run -p verifyd -- openapi > docs/openapi.json";

#[actix_rt::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let served = app.client.get(app.url("/openapi.json")).send().await.unwrap().text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
        .expect("docs/openapi.json is in the repository");
    assert!(served == committed, "docs/openapi.json is out of date; {REGENERATE}");
}

/// Every documented operation exists: without an API key it answers 401, not
/// 404 or 405.
#[actix_rt::test]
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

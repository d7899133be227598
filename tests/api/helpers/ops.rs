//! What an operator reads: dead letters, waited for until they appear.

use std::time::Duration;

use serde_json::Value;

use super::TestApp;

impl TestApp {
    /// The dead letters `key` sees (every status), newest first, as an
    /// operator lists them.
    pub async fn dead_letters_as(&self, key: &str) -> Vec<Value> {
        let page = self.get_as(key, "/v1/ops/dead-letters?status=all&limit=200").await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        page.body["dead_letters"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (10 s) for a dead letter `key` can see that `matches`, and
    /// returns it opened (`GET /v1/ops/dead-letters/{id}`).
    pub async fn wait_for_dead_letter(&self, key: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(found) = self.dead_letters_as(key).await.into_iter().find(|l| matches(l)) {
                let id = found["id"].as_str().expect("letter id");
                let opened = self.get_as(key, &format!("/v1/ops/dead-letters/{id}")).await;
                assert_eq!(opened.status, 200, "{:?}", opened.body);
                return opened.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no such dead letter within 10 s: {:?}",
                self.dead_letters_as(key).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

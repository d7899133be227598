//! Calling the app as a backend does: requests with the test key, and what
//! comes back.

use serde_json::Value;

use super::TestApp;

/// What a backend reads back from an HTTP call.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let response = req.send().await.expect("request reaches verifyd");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, headers, body }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post_json_as(&self.api_key, path, body).await
    }

    pub async fn post_json_as(&self, key: &str, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(self.url(path)).bearer_auth(key).json(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.put(self.url(path)).bearer_auth(&self.api_key).json(body)).await
    }

    pub async fn delete_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.client.delete(self.url(path)).bearer_auth(&self.api_key).json(body)).await
    }

    /// A POST to another process of the same deployment (see `start_another_serve`).
    pub async fn post_json_at(&self, base: &str, path: &str, body: &Value) -> Reply {
        self.send(self.client.post(format!("{base}{path}")).bearer_auth(&self.api_key).json(body)).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let req = self.client.post(self.url(path)).bearer_auth(&self.api_key).header("Content-Type", content_type);
        self.send(req.body(body)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_as(&self.api_key, path).await
    }

    pub async fn get_as(&self, key: &str, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(key)).await
    }
}

//! Flows a test needs to get to the point it checks: a code sent, a phone
//! verified, an authenticator enrolled, each through the real API.

use std::time::Duration;

use serde_json::{Value, json};

use super::TestApp;
use super::http::Reply;

impl TestApp {
    /// The next code sent to `phone`, once more than `seen` deliveries reached it.
    pub async fn next_code_to(&self, phone: &str, seen: usize) -> String {
        self.twilio
            .wait_for_next_code(phone, seen, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no new code reached Twilio for {phone} within 10 s"))
    }

    pub async fn create_verification(&self, account: &str, phone: &str, channel: &str) -> Reply {
        let body = serde_json::json!({ "account_id": account, "phone": phone, "channel": channel });
        self.post_json("/v1/verifications", &body).await
    }

    /// A verification's delivery attempts as (provider, outcome), oldest
    /// first, once `n` are recorded (or after 10 s): a message can reach a
    /// mock before its attempt's row is committed.
    pub async fn attempts_of(&self, id: &str, n: usize) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.get(&format!("/v1/verifications/{id}/attempts")).await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            let seen: Vec<(String, String)> = reply.body["attempts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| {
                    (a["provider"].as_str().unwrap_or("-").to_owned(), a["outcome"].as_str().unwrap_or("").to_owned())
                })
                .collect();
            if seen.len() >= n || std::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A verification as `GET /v1/verifications/{id}` reads it, once
    /// `until` holds (panics after 10 s with the last read).
    pub async fn wait_for_verification(
        &self,
        id: &str,
        until: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reply = self.get(&format!("/v1/verifications/{id}")).await;
            assert_eq!(reply.status, 200, "{:?}", reply.body);
            if until(&reply.body) {
                return reply.body;
            }
            assert!(std::time::Instant::now() < deadline, "verification {id} never got there: {:?}", reply.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every row of every table of the test's database, as text: what a
    /// scan for a leaked code reads.
    pub async fn database_dump(&self) -> String {
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_all(&self.pool)
                .await
                .expect("table names");
        let mut dump = String::new();
        for table in &tables {
            let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
            let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await.expect("rows");
            dump.push_str(&rows);
        }
        dump
    }

    pub async fn check(&self, id: &str, code: &str) -> Reply {
        self.post_json(&format!("/v1/verifications/{id}/check"), &serde_json::json!({ "code": code })).await
    }

    /// The code the mocked Twilio received for `phone` (SMS body or TwiML digits).
    pub async fn code_sent_to(&self, phone: &str) -> String {
        self.twilio
            .wait_for_code(phone, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("no code reached Twilio for {phone} within 10 s"))
    }
}

/// A phone verified for an account: the check that approved it.
pub struct VerifiedPhone {
    pub verification_id: String,
    /// The check's answer (`approved`, with a step-up `proof` when the phone
    /// became the account's first factor).
    pub approval: Reply,
}

/// An authenticator app enrolled and confirmed for an account.
pub struct Authenticator {
    /// Its `otpauth://` URI, as the person scanned it.
    pub uri: String,
    pub factor_id: String,
    /// The step-up proof its confirmation gave (the account's first factor only).
    pub proof: Option<String>,
}

impl Authenticator {
    /// The proof of a first factor's confirmation.
    pub fn first_proof(&self) -> String {
        self.proof.clone().expect("the first factor's confirmation gives a step-up proof")
    }
}

/// What an authenticator app with this `otpauth://` URI shows `ahead` steps from now.
pub fn authenticator_code(uri: &str, ahead: u64) -> String {
    let totp = totp_rs::Totp::from_url(uri).expect("a valid otpauth URI");
    let now = u64::try_from(verifyd_core::timestamp::now().timestamp()).expect("after 1970");
    totp.generate(now + 30 * ahead).to_string()
}

impl TestApp {
    /// Runs a verification of `phone` for `account` by SMS to `approved`: the
    /// code is the one the mocked Twilio received.
    pub async fn verified_phone(&self, account: &str, phone: &str) -> VerifiedPhone {
        let seen = self.twilio.sent_sms().await.iter().filter(|s| s.to == phone).count();
        let created = self.create_verification(account, phone, "sms").await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let verification_id = created.body["id"].as_str().expect("an id").to_owned();
        let code = self.next_code_to(phone, seen).await;
        let approval = self.check(&verification_id, &code).await;
        assert_eq!((approval.status, approval.body["status"].as_str()), (200, Some("approved")), "{:?}", approval.body);
        VerifiedPhone { verification_id, approval }
    }

    /// Enrols an authenticator app for `account` and confirms it with its
    /// current code; `step_up` when the account holds a factor already.
    pub async fn enrolled_authenticator(&self, account: &str, step_up: Option<&str>) -> Authenticator {
        let enrolled = self.post_json(&format!("/v1/accounts/{account}/factors/totp"), &json!({})).await;
        assert_eq!(enrolled.status, 201, "{:?}", enrolled.body);
        let uri = enrolled.body["otpauth_uri"].as_str().expect("a URI").to_owned();
        let factor_id = enrolled.body["factor"]["id"].as_str().expect("an id").to_owned();
        let mut body = json!({ "code": authenticator_code(&uri, 0) });
        if let Some(proof) = step_up {
            body["step_up"] = Value::from(proof);
        }
        let confirmed = self.post_json(&format!("/v1/accounts/{account}/factors/{factor_id}/confirm"), &body).await;
        assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
        let proof = confirmed.body["proof"].as_str().map(str::to_owned);
        Authenticator { uri, factor_id, proof }
    }
}

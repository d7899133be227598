//! Codes shown once, as a file to keep: the answer that makes them carries the
//! file's text too (`download`), so a page offers "download" without asking
//! again, which would make a new set and kill the one on screen; and
//! `Accept: text/plain` answers with the file itself.

use actix_web::http::header::{self, Accept, Header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// The file as it would be downloaded.
#[derive(Serialize, ToSchema)]
pub struct Download {
    /// A name to save it under, e.g. `backup-codes.txt`.
    pub filename: &'static str,
    /// `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    /// The file: a header line, a blank line, then one code per line.
    pub text: String,
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Download {
    /// `what` names the codes ("Backup codes", "Recovery code"), `advice` says how to use them.
    pub fn of(
        filename: &'static str,
        what: &str,
        account: &str,
        advice: &str,
        generated_at: DateTime<Utc>,
        codes: &[&str],
    ) -> Self {
        let mut text =
            format!("{what} for {account} (generated {}). {advice}\n\n", generated_at.format("%Y-%m-%d %H:%M UTC"));
        for code in codes {
            text.push_str(code);
            text.push('\n');
        }
        Download { filename, content_type: TEXT, text }
    }

    /// The answer with the file as its body.
    pub fn respond(self, mut response: HttpResponseBuilder) -> HttpResponse {
        response
            .content_type(TEXT)
            .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{}\"", self.filename)))
            .body(self.text)
    }
}

/// Whether the caller ranks `text/plain` above JSON in its `Accept` header
/// (an absent or unreadable header means JSON).
pub fn prefers_text(req: &HttpRequest) -> bool {
    let Ok(accept) = Accept::parse(req) else { return false };
    accept
        .ranked()
        .into_iter()
        .find_map(|mime| match (mime.type_().as_str(), mime.subtype().as_str()) {
            ("text", "plain") | ("text", "*") => Some(true),
            ("application", "json") | ("application", "*") | ("*", "*") => Some(false),
            _ => None,
        })
        .unwrap_or(false)
}

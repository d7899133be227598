//! The "dev inbox": a provider that appends each SMS, call and email, **code
//! included, in clear**, as one JSON line to a local file, and a reader that
//! gets the codes back. For development and tests without any network.
//!
//! **Development only.** Anyone who can read the file can read every code sent
//! through it: never configure it for a deployment that real people use
//! (verifyd refuses it in production mode). The file is created readable by
//! its owner only (mode 0600 on Unix).
//!
//! Each line is one message:
//!
//! ```json
//! {"id":"inbox-5f0c…","reference":"att_1","channel":"sms","to":"+14155552671","text":"Your code is 8302947","code":"8302947","sent_at":"2026-03-02T10:00:00Z"}
//! {"id":"inbox-9a41…","reference":"att_2","channel":"voice","to":"+14155552671","script":"Your code is 8, 3, 0, 2, 9, 4, 7 ... Your code is 8, 3, 0, 2, 9, 4, 7","code":"8302947","sent_at":"2026-03-02T10:00:01Z"}
//! ```
//!
//! `code` is the call's code, or for an SMS the last run of 4 to 10 digits of
//! its text (`null` when there is none). A line is written with a single
//! `write` on a file opened in append mode, under a lock: lines from concurrent
//! sends (and from several processes appending to the same file) never
//! interleave.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::domain::Channel;
use crate::provider::{Email, PermanentKind, Provider, ProviderError, Sent, Sms, VoiceCall, WhatsApp};

const NAME: &str = "inbox";
pub const DEFAULT_PATH: &str = "verifyd-inbox.jsonl";
/// How often [`InboxReader::wait_for_code`] reads the file again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Settings of the dev inbox (`path` defaults to `verifyd-inbox.jsonl`, in the
/// working directory).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    #[serde(default = "default_path")]
    pub path: PathBuf,
}

impl InboxConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        InboxConfig { path: path.into() }
    }
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig { path: default_path() }
    }
}

fn default_path() -> PathBuf {
    PathBuf::from(DEFAULT_PATH)
}

/// One line of the inbox file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxMessage {
    /// The message id this provider returned (`inbox-` and 16 hex digits).
    pub id: String,
    /// verifyd's reference of the delivery attempt.
    pub reference: String,
    pub channel: Channel,
    /// `+E.164`.
    pub to: String,
    /// The SMS text (SMS only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// What a text-to-speech engine would say (calls only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    pub code: Option<String>,
    /// RFC 3339, UTC.
    pub sent_at: String,
}

/// Appends every SMS and call to the inbox file. Development only: see the
/// module documentation.
#[derive(Debug)]
pub struct InboxProvider {
    path: PathBuf,
    /// Serialises this process's appends; `O_APPEND` takes care of others.
    write: Mutex<()>,
}

impl InboxProvider {
    /// Creates the file (mode 0600) if it does not exist, so a path that cannot
    /// be written is reported at startup rather than at the first code.
    pub fn new(config: InboxConfig) -> io::Result<Self> {
        open_for_append(&config.path)?;
        tracing::warn!(
            path = %config.path.display(),
            "inbox provider: every code is written in clear to this file; development only"
        );
        Ok(InboxProvider { path: config.path, write: Mutex::new(()) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A reader of this provider's file.
    pub fn reader(&self) -> InboxReader {
        InboxReader::new(&self.path)
    }

    fn append(&self, message: &InboxMessage) -> Result<Sent, ProviderError> {
        let mut line = serde_json::to_vec(message).map_err(|_| {
            ProviderError::permanent(NAME, PermanentKind::Configuration, "cannot encode the message as JSON", None)
        })?;
        line.push(b'\n');
        {
            let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
            // Opened for each line: a developer may delete or move the file.
            let mut file = open_for_append(&self.path).map_err(|e| io_error(&self.path, &e))?;
            file.write_all(&line).map_err(|e| io_error(&self.path, &e))?;
        }
        Ok(Sent { provider: NAME.to_owned(), message_id: message.id.clone() })
    }
}

fn open_for_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

#[async_trait]
impl Provider for InboxProvider {
    fn name(&self) -> &str {
        NAME
    }

    fn supports(&self, channel: Channel) -> bool {
        matches!(channel, Channel::Sms | Channel::Voice | Channel::Email | Channel::Whatsapp)
    }

    async fn send_sms(&self, sms: &Sms) -> Result<Sent, ProviderError> {
        let message = InboxMessage {
            id: message_id(),
            reference: sms.reference.clone(),
            channel: Channel::Sms,
            to: sms.to.e164().to_owned(),
            text: Some(sms.body.clone()),
            script: None,
            code: code_in_text(&sms.body),
            sent_at: now_rfc3339(),
        };
        tracing::debug!(to = %sms.to.masked(), reference = %sms.reference, "inbox: writing SMS");
        self.append(&message)
    }

    async fn place_call(&self, call: &VoiceCall) -> Result<Sent, ProviderError> {
        let message = InboxMessage {
            id: message_id(),
            reference: call.reference.clone(),
            channel: Channel::Voice,
            to: call.to.e164().to_owned(),
            text: None,
            script: Some(script(call)),
            code: Some(call.code.expose().to_owned()),
            sent_at: now_rfc3339(),
        };
        tracing::debug!(to = %call.to.masked(), reference = %call.reference, "inbox: writing call");
        self.append(&message)
    }

    /// The template's text as WhatsApp presets it.
    async fn send_whatsapp(&self, message: &WhatsApp) -> Result<Sent, ProviderError> {
        let code = message.code.expose().to_owned();
        let line = InboxMessage {
            id: message_id(),
            reference: message.reference.clone(),
            channel: Channel::Whatsapp,
            to: message.to.e164().to_owned(),
            text: Some(format!("*{code}* is your verification code.")),
            script: None,
            code: Some(code),
            sent_at: now_rfc3339(),
        };
        tracing::debug!(to = %message.to.masked(), reference = %message.reference, "inbox: writing WhatsApp message");
        self.append(&line)
    }

    /// The plain-text part is the line's `text`.
    async fn send_email(&self, email: &Email) -> Result<Sent, ProviderError> {
        let message = InboxMessage {
            id: message_id(),
            reference: email.reference.clone(),
            channel: Channel::Email,
            to: email.to.as_str().to_owned(),
            text: Some(email.text.clone()),
            script: None,
            code: code_in_text(&email.text),
            sent_at: now_rfc3339(),
        };
        tracing::debug!(to = %email.to.masked(), reference = %email.reference, "inbox: writing email");
        self.append(&message)
    }
}

fn message_id() -> String {
    let id: u64 = rand::rng().random();
    format!("inbox-{id:016x}")
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What a text-to-speech engine would say: the intro and the digits, `repeat`
/// times (at least once).
fn script(call: &VoiceCall) -> String {
    let reading = format!("{} {}", call.intro.trim(), call.spoken_digits());
    vec![reading.trim().to_owned(); usize::from(call.repeat.max(1))].join(" ... ")
}

/// The last run of 4 to 10 consecutive ASCII digits: the code in an SMS text.
fn code_in_text(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).rfind(|run| (4..=10).contains(&run.len())).map(str::to_owned)
}

/// Failures that another attempt will not fix (a wrong path, no permission)
/// need an operator; others (a full disk) may pass.
fn io_error(path: &Path, error: &io::Error) -> ProviderError {
    let reason = format!("cannot append to {}: {error}", path.display());
    match error.kind() {
        ErrorKind::PermissionDenied
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::NotFound
        | ErrorKind::ReadOnlyFilesystem
        | ErrorKind::InvalidInput
        | ErrorKind::InvalidFilename => ProviderError::permanent(NAME, PermanentKind::Configuration, reason, None),
        _ => ProviderError::retryable(NAME, reason, None, None),
    }
}

/// Reads an inbox file back: for tests, and for developers who want the code
/// they were just sent.
#[derive(Debug, Clone)]
pub struct InboxReader {
    path: PathBuf,
}

impl InboxReader {
    pub fn new(path: impl AsRef<Path>) -> Self {
        InboxReader { path: path.as_ref().to_owned() }
    }

    /// Every message in the file, oldest first; none when the file does not
    /// exist. A line that is not a message (a partial last line, a stray edit)
    /// is skipped.
    pub fn messages(&self) -> io::Result<Vec<InboxMessage>> {
        let content = match std::fs::read(&self.path) {
            Ok(content) => content,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        Ok(content
            .split_inclusive(|b| *b == b'\n')
            .filter(|line| line.ends_with(b"\n"))
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }

    /// The messages to `to`, oldest first: a phone compared by digits (so "+1
    /// 415 555 2671" finds "+14155552671"), an email address whole.
    pub fn messages_to(&self, to: &str) -> io::Result<Vec<InboxMessage>> {
        let is_to = |m: &InboxMessage| match to.contains('@') {
            true => m.to.eq_ignore_ascii_case(to),
            false => !m.to.contains('@') && digits_of(&m.to) == digits_of(to),
        };
        Ok(self.messages()?.into_iter().filter(is_to).collect())
    }

    /// The code of the latest message to `phone`.
    pub fn code_sent_to(&self, phone: &str) -> io::Result<Option<String>> {
        Ok(self.messages_to(phone)?.pop().and_then(|m| m.code))
    }

    /// How many messages reached `phone` so far.
    pub fn deliveries_to(&self, phone: &str) -> io::Result<usize> {
        Ok(self.messages_to(phone)?.len())
    }

    /// Reads the file every 20 ms until a message to `phone` shows up or
    /// `timeout` passes, and returns its code. Needs a tokio runtime (actix's
    /// is one).
    pub async fn wait_for_code(&self, phone: &str, timeout: Duration) -> io::Result<Option<String>> {
        self.wait_for_next_code(phone, 0, timeout).await
    }

    /// Waits for a message to `phone` beyond the first `seen` ones (see
    /// [`deliveries_to`](Self::deliveries_to)) and returns its code: the way
    /// to read the *next* code sent to a number that already got one.
    pub async fn wait_for_next_code(&self, phone: &str, seen: usize, timeout: Duration) -> io::Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut messages = self.messages_to(phone)?;
            if messages.len() > seen {
                return Ok(messages.pop().and_then(|m| m.code));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(POLL_EVERY.min(deadline - now)).await;
        }
    }
}

fn digits_of(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_code_in_a_text() {
        assert_eq!(code_in_text("Your code is 8302947. Valid 10 min").as_deref(), Some("8302947"));
        assert_eq!(code_in_text("Call 123"), None);
    }

    #[test]
    fn only_lasting_failures_need_an_operator() {
        let path = Path::new("inbox.jsonl");
        for kind in [ErrorKind::PermissionDenied, ErrorKind::IsADirectory, ErrorKind::NotFound] {
            let error = io_error(path, &io::Error::from(kind));
            assert!(matches!(error, ProviderError::Permanent { kind: PermanentKind::Configuration, .. }), "{error}");
        }
        for kind in [ErrorKind::StorageFull, ErrorKind::Interrupted, ErrorKind::Other] {
            assert!(io_error(path, &io::Error::from(kind)).is_retryable(), "{kind:?}");
        }
    }

    #[test]
    fn path_defaults_to_the_working_directory() {
        let config: InboxConfig = serde_json::from_value(serde_json::json!({})).unwrap();
        assert_eq!(config.path, PathBuf::from("verifyd-inbox.jsonl"));
        assert_eq!(InboxConfig::default().path, config.path);
    }
}

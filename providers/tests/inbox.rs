//! The dev inbox: what it writes, that concurrent sends never tear a line, and
//! reading codes back.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use verifyd_providers::domain::{Channel, Code, Locale, PhoneNumber};
use verifyd_providers::inbox::{InboxConfig, InboxMessage, InboxProvider, InboxReader};
use verifyd_providers::{PermanentKind, Provider, ProviderError, Sms, VoiceCall};

const TO: &str = "+14155552671";

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let id: u64 = rand_id();
        let dir = std::env::temp_dir().join(format!("verifyd-inbox-{name}-{}-{id:x}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("inbox.jsonl")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn provider(dir: &TempDir) -> InboxProvider {
    InboxProvider::new(InboxConfig::new(dir.file())).expect("the inbox file can be created")
}

fn sms(to: &str, code: &str, reference: &str) -> Sms {
    Sms {
        to: PhoneNumber::parse(to).unwrap(),
        body: format!("Your verifyd code is {code}. It expires in 10 minutes."),
        validity: Duration::from_secs(600),
        reference: reference.to_owned(),
    }
}

fn call(code: &str) -> VoiceCall {
    VoiceCall {
        to: PhoneNumber::parse(TO).unwrap(),
        intro: "Your code is".to_owned(),
        code: Code::parse(code).unwrap(),
        repeat: 2,
        locale: Locale::parse("en").unwrap(),
        reference: "att_2".to_owned(),
        script_url: None,
    }
}

fn lines(dir: &TempDir) -> Vec<Value> {
    let content = std::fs::read_to_string(dir.file()).unwrap();
    assert!(content.is_empty() || content.ends_with('\n'), "every line is complete");
    content.lines().map(|line| serde_json::from_str(line).expect("each line is JSON")).collect()
}

#[tokio::test]
async fn an_sms_is_one_json_line_with_its_code() {
    let dir = TempDir::new("sms");
    let inbox = provider(&dir);
    assert_eq!(lines(&dir), Vec::<Value>::new(), "created empty at startup");

    let sent = inbox.send_sms(&sms(TO, "8302947", "att_1")).await.unwrap();

    assert_eq!(sent.provider, "inbox");
    let hex = sent.message_id.strip_prefix("inbox-").unwrap();
    assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()), "{sent:?}");
    let mut lines = lines(&dir);
    assert_eq!(lines.len(), 1);
    let sent_at = lines[0].as_object_mut().unwrap().remove("sent_at").unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(sent_at.as_str().unwrap()).is_ok(), "{sent_at}");
    assert_eq!(
        lines[0],
        json!({
            "id": sent.message_id,
            "reference": "att_1",
            "channel": "sms",
            "to": TO,
            "text": "Your verifyd code is 8302947. It expires in 10 minutes.",
            "code": "8302947",
        })
    );
}

#[tokio::test]
async fn a_call_is_written_with_its_script_and_code() {
    let dir = TempDir::new("call");
    let inbox = provider(&dir);

    let sent = inbox.place_call(&call("0571")).await.unwrap();

    let message = inbox.reader().messages().unwrap().pop().unwrap();
    assert_eq!(
        message,
        InboxMessage {
            id: sent.message_id,
            reference: "att_2".to_owned(),
            channel: Channel::Voice,
            to: TO.to_owned(),
            text: None,
            script: Some("Your code is 0, 5, 7, 1 ... Your code is 0, 5, 7, 1".to_owned()),
            code: Some("0571".to_owned()),
            sent_at: message.sent_at.clone(),
        }
    );
    assert!(inbox.supports(Channel::Sms) && inbox.supports(Channel::Voice));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_sends_leave_fifty_intact_lines() {
    let dir = TempDir::new("concurrent");
    let inbox = Arc::new(provider(&dir));
    // A long body makes a torn write visible.
    let padding = "x".repeat(4000);

    let sends = (0..50).map(|i| {
        let inbox = Arc::clone(&inbox);
        let mut sms = sms(TO, &format!("{:06}", 100_000 + i), &format!("att_{i}"));
        sms.body = format!("{padding} code {:06}", 100_000 + i);
        tokio::spawn(async move { inbox.send_sms(&sms).await })
    });
    for send in sends.collect::<Vec<_>>() {
        send.await.unwrap().unwrap();
    }

    let lines = lines(&dir);
    assert_eq!(lines.len(), 50);
    let mut codes: Vec<String> = lines.iter().map(|l| l["code"].as_str().unwrap().to_owned()).collect();
    codes.sort();
    let expected: Vec<String> = (0..50).map(|i| format!("{:06}", 100_000 + i)).collect();
    assert_eq!(codes, expected);
    for line in &lines {
        assert!(line["text"].as_str().unwrap().ends_with(line["code"].as_str().unwrap()));
    }
}

#[tokio::test]
async fn codes_are_read_back_by_number() {
    let dir = TempDir::new("read");
    let inbox = provider(&dir);
    let reader = InboxReader::new(dir.file());
    assert_eq!(reader.code_sent_to(TO).unwrap(), None);

    inbox.send_sms(&sms(TO, "4820193", "att_1")).await.unwrap();
    inbox.send_sms(&sms("+447400123456", "1111", "att_2")).await.unwrap();

    assert_eq!(reader.code_sent_to(TO).unwrap().as_deref(), Some("4820193"));
    assert_eq!(reader.code_sent_to("+1 415 555 2671").unwrap().as_deref(), Some("4820193"));
    assert_eq!(reader.code_sent_to("+447400123456").unwrap().as_deref(), Some("1111"));
    assert_eq!(reader.code_sent_to("+14155550000").unwrap(), None);
    assert_eq!(reader.deliveries_to(TO).unwrap(), 1);

    inbox.place_call(&call("0571")).await.unwrap();
    assert_eq!(reader.code_sent_to(TO).unwrap().as_deref(), Some("0571"), "the latest wins");
    assert_eq!(reader.messages_to(TO).unwrap().len(), 2);
    assert_eq!(reader.messages().unwrap().len(), 3);
}

#[tokio::test]
async fn wait_for_code_sees_a_concurrent_send_and_gives_up_in_time() {
    let dir = TempDir::new("wait");
    let inbox = Arc::new(provider(&dir));
    let reader = inbox.reader();

    let started = std::time::Instant::now();
    assert_eq!(reader.wait_for_code(TO, Duration::from_millis(100)).await.unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(100));

    let sender = Arc::clone(&inbox);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(60)).await;
        sender.send_sms(&sms(TO, "2468013", "att_1")).await.unwrap();
    });
    assert_eq!(reader.wait_for_code(TO, Duration::from_secs(2)).await.unwrap().as_deref(), Some("2468013"));

    let seen = reader.deliveries_to(TO).unwrap();
    assert_eq!(reader.wait_for_next_code(TO, seen, Duration::from_millis(50)).await.unwrap(), None);
    let sender = Arc::clone(&inbox);
    tokio::spawn(async move { sender.send_sms(&sms(TO, "1357924", "att_3")).await.unwrap() });
    let next = reader.wait_for_next_code(TO, seen, Duration::from_secs(2)).await.unwrap();
    assert_eq!(next.as_deref(), Some("1357924"));
}

#[test]
fn a_missing_file_reads_as_empty_and_torn_or_foreign_lines_are_skipped() {
    let dir = TempDir::new("skip");
    let reader = InboxReader::new(dir.file());
    assert!(reader.messages().unwrap().is_empty());

    let good = r#"{"id":"inbox-1","reference":"r","channel":"sms","to":"+14155552671","text":"code 1234","code":"1234","sent_at":"2026-03-02T10:00:00Z"}"#;
    let content = format!("{good}\nnot json\n{{\"id\":\"x\"}}\n{good}\n{}", &good[..40]);
    std::fs::write(dir.file(), content).unwrap();
    let messages = reader.messages().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].code.as_deref(), Some("1234"));
}

#[tokio::test]
async fn a_directory_or_a_missing_directory_is_a_configuration_error() {
    let dir = TempDir::new("errors");
    assert!(InboxProvider::new(InboxConfig::new(&dir.0)).is_err(), "refused at startup");

    // Checked at startup, then made unusable: each send reports it.
    let inbox = provider(&dir);
    std::fs::remove_file(dir.file()).unwrap();
    std::fs::create_dir(dir.file()).unwrap();
    let error = inbox.send_sms(&sms(TO, "4820193", "att_1")).await.unwrap_err();
    assert_configuration(&error);
    std::fs::remove_dir(dir.file()).unwrap();
    std::fs::remove_dir(&dir.0).unwrap();
    let error = inbox.place_call(&call("0571")).await.unwrap_err();
    assert_configuration(&error);
}

fn assert_configuration(error: &ProviderError) {
    match error {
        ProviderError::Permanent { provider, kind: PermanentKind::Configuration, .. } => {
            assert_eq!(provider, "inbox");
            let shown = error.to_string();
            assert!(shown.contains("inbox.jsonl"), "the path is named: {shown}");
            assert!(!shown.contains("4820193") && !shown.contains("0571"), "{shown}");
        }
        other => panic!("expected a configuration error, got {other}"),
    }
}

#[cfg(unix)]
#[test]
fn the_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("mode");
    provider(&dir);
    let mode = std::fs::metadata(dir.file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

//! [`SmtpSink`]: a real SMTP server on localhost that accepts every message
//! (ESMTP, no TLS, no login) and keeps it for the test to read: envelope,
//! headers, and the decoded text and HTML parts. Failures are answered at
//! `RCPT TO` with the reply a relay gives (`451`, `450`, `550 5.1.1`, `530`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Failure, Faults, Inbox, Received, SentMessage, base64_decode, random_id};
use crate::domain::EmailAddress;
use crate::smtp::{SmtpConfig, SmtpTls};

const PROVIDER: &str = "smtp";
/// Longer messages are refused (a code email is a few kilobytes).
const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// One message the sink accepted (`250` after `DATA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEmail {
    /// The queue id it answered with.
    pub id: String,
    /// `MAIL FROM`.
    pub envelope_from: String,
    /// `RCPT TO`, in order.
    pub recipients: Vec<String>,
    /// Top-level headers, unfolded, in order.
    pub headers: Vec<(String, String)>,
    /// `Subject`, encoded words decoded.
    pub subject: String,
    /// The text/plain part, transfer encoding undone.
    pub text: String,
    /// The text/html part, transfer encoding undone.
    pub html: String,
    /// The message as received, dot-stuffing undone.
    pub raw: String,
}

impl SmtpEmail {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Received for SmtpEmail {
    fn message(&self) -> SentMessage {
        let to = self.recipients.first().cloned().unwrap_or_default();
        SentMessage::email(PROVIDER, &self.id, &to, &self.text)
    }
}

/// An SMTP server on a free port of 127.0.0.1; stops when dropped.
pub struct SmtpSink {
    port: u16,
    inbox: Inbox<SmtpEmail>,
    faults: Faults,
    task: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("SmtpSink: cannot bind 127.0.0.1");
        Self::on(listener)
    }

    /// Starts on `listener` (a standalone sink on a known port).
    pub fn start_on(listener: std::net::TcpListener) -> Self {
        listener.set_nonblocking(true).expect("SmtpSink: listener cannot be made non-blocking");
        Self::on(TcpListener::from_std(listener).expect("SmtpSink: listener needs a tokio runtime"))
    }

    fn on(listener: TcpListener) -> Self {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let inbox = Inbox::default();
        let faults = Faults::default();
        let session = Arc::new(Session { inbox: inbox.clone(), faults: faults.clone() });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let session = session.clone();
                tokio::spawn(async move {
                    let _ = session.serve(stream).await;
                });
            }
        });
        SmtpSink { port, inbox, faults, task }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// A config for verifyd's SMTP provider that sends here in plain text.
    pub fn config(&self, from: &str) -> SmtpConfig {
        let from = EmailAddress::parse(from).unwrap_or_else(|e| panic!("SmtpSink::config: {from:?}: {e}"));
        SmtpConfig {
            port: Some(self.port),
            tls: SmtpTls::None,
            timeout: Duration::from_secs(5),
            ..SmtpConfig::new("127.0.0.1", from)
        }
    }

    /// The next `n` messages are refused at `RCPT TO` as a relay refuses
    /// `failure` (`Unavailable`: 451, `Throttled`: 450, `InvalidNumber`: 550
    /// 5.1.1, `Unauthorized`: 530, `Code { status, code }`: "status code").
    pub async fn fail_next(&self, n: u64, failure: Failure) {
        self.faults.fail_next(n, failure);
    }

    /// Every message for `duration` gets `failure`.
    pub fn fail_for(&self, duration: Duration, failure: Failure) {
        self.faults.fail_for(duration, failure);
    }

    /// Answers each `DATA` after `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.set_latency(latency);
    }

    pub async fn clear(&self) {
        self.inbox.clear();
        self.faults.clear();
    }

    /// Every message accepted, oldest first, with envelope and headers.
    pub async fn received(&self) -> Vec<SmtpEmail> {
        self.inbox.all()
    }

    reads_codes_from_its_inbox!();
}

struct Session {
    inbox: Inbox<SmtpEmail>,
    faults: Faults,
}

/// A relay's refusal of `recipient` (Postfix quotes it, as most relays do).
fn reply_for(failure: &Failure, recipient: &str) -> String {
    match failure {
        Failure::Unavailable => "451 4.3.0 Temporary local problem, try again later".to_owned(),
        Failure::Throttled { .. } => "450 4.7.1 Rate limit exceeded, try again later".to_owned(),
        Failure::InvalidNumber => format!("550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"),
        Failure::Unauthorized => "530 5.7.0 Authentication required".to_owned(),
        Failure::Code { status, code } => format!("{status} {code}"),
    }
}

/// The address inside `MAIL FROM:<…>` / `RCPT TO:<…>`.
fn path_of(argument: &str) -> String {
    let inner = argument.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(path, _)| path);
    inner.unwrap_or(argument).trim().to_owned()
}

impl Session {
    async fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read);
        write.write_all(b"220 127.0.0.1 verifyd SmtpSink ESMTP\r\n").await?;
        let (mut from, mut recipients) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let command = line.trim_end();
            let verb = command.split([' ', ':']).next().unwrap_or_default().to_ascii_uppercase();
            let answer = match verb.as_str() {
                "EHLO" => "250-127.0.0.1 greets you\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 1048576".to_owned(),
                "HELO" => "250 127.0.0.1".to_owned(),
                "MAIL" => {
                    from = path_of(&command[4..]);
                    recipients.clear();
                    "250 2.1.0 Ok".to_owned()
                }
                "RCPT" => match self.faults.take() {
                    Some(failure) => reply_for(&failure, &path_of(&command[4..])),
                    None => {
                        recipients.push(path_of(&command[4..]));
                        "250 2.1.5 Ok".to_owned()
                    }
                },
                "DATA" if recipients.is_empty() => "554 5.5.1 Error: no valid recipients".to_owned(),
                "DATA" => {
                    write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                    let raw = read_data(&mut lines).await?;
                    tokio::time::sleep(self.faults.latency()).await;
                    match raw {
                        Some(raw) => {
                            let id = random_id("", 12).to_ascii_uppercase();
                            self.inbox.push(parse(&id, &from, std::mem::take(&mut recipients), raw));
                            format!("250 2.0.0 Ok: queued as {id}")
                        }
                        None => "552 5.3.4 Message too big".to_owned(),
                    }
                }
                "RSET" => {
                    recipients.clear();
                    "250 2.0.0 Ok".to_owned()
                }
                "NOOP" => "250 2.0.0 Ok".to_owned(),
                "QUIT" => {
                    write.write_all(b"221 2.0.0 Bye\r\n").await?;
                    return Ok(());
                }
                _ => "502 5.5.2 Error: command not recognized".to_owned(),
            };
            write.write_all(format!("{answer}\r\n").as_bytes()).await?;
        }
    }
}

/// Lines up to the lone `.`, dot-stuffing undone; `None` when too long.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut R) -> std::io::Result<Option<String>> {
    let mut raw = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok((raw.len() <= MAX_MESSAGE_BYTES).then_some(raw));
        }
        raw.push_str(content.strip_prefix('.').unwrap_or(content));
        raw.push_str("\r\n");
    }
}

/// Headers (unfolded) and the body after the blank line.
fn split_headers(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn parse(id: &str, from: &str, recipients: Vec<String>, raw: String) -> SmtpEmail {
    let (headers, body) = split_headers(&raw);
    let subject = decode_words(header(&headers, "Subject").unwrap_or_default());
    let (mut text, mut html) = (String::new(), String::new());
    let content_type = header(&headers, "Content-Type").unwrap_or_default();
    match boundary(content_type) {
        Some(boundary) => {
            for part in body.split(&format!("--{boundary}")).skip(1) {
                let part = part.strip_prefix("\r\n").unwrap_or(part);
                let (part_headers, part_body) = split_headers(part);
                let decoded = decode_body(&part_headers, part_body);
                let kind = header(&part_headers, "Content-Type").unwrap_or_default().to_ascii_lowercase();
                if kind.starts_with("text/plain") {
                    text = decoded;
                } else if kind.starts_with("text/html") {
                    html = decoded;
                }
            }
        }
        None => text = decode_body(&headers, body),
    }
    SmtpEmail {
        id: id.to_owned(),
        envelope_from: from.to_owned(),
        recipients,
        headers: headers.clone(),
        subject,
        text,
        html,
        raw,
    }
}

fn boundary(content_type: &str) -> Option<String> {
    let at = content_type.to_ascii_lowercase().find("boundary=")?;
    let value = &content_type[at + "boundary=".len()..];
    let value = value.split(';').next().unwrap_or_default().trim().trim_matches('"');
    Some(value.to_owned())
}

fn decode_body(headers: &[(String, String)], body: &str) -> String {
    let body = body.trim_end_matches("\r\n");
    match header(headers, "Content-Transfer-Encoding").map(str::to_ascii_lowercase).as_deref() {
        Some("quoted-printable") => quoted_printable(body),
        Some("base64") => {
            let joined: String = body.split_whitespace().collect();
            String::from_utf8_lossy(&base64_decode(&joined).unwrap_or_default()).into_owned()
        }
        _ => body.to_owned(),
    }
}

fn quoted_printable(body: &str) -> String {
    let mut bytes = Vec::with_capacity(body.len());
    let text = body.replace("=\r\n", "");
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (raw[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'=', Some(byte)) => {
                bytes.push(byte);
                i += 3;
            }
            (byte, _) => {
                bytes.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`), UTF-8 only.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    for word in value.split_whitespace() {
        let parts: Vec<&str> =
            word.strip_prefix("=?").and_then(|w| w.strip_suffix("?=")).map_or(vec![], |w| w.split('?').collect());
        match parts.as_slice() {
            [_, encoding, text] if encoding.eq_ignore_ascii_case("b") => {
                out.push_str(&String::from_utf8_lossy(&base64_decode(text).unwrap_or_default()));
            }
            [_, encoding, text] if encoding.eq_ignore_ascii_case("q") => {
                out.push_str(&quoted_printable(&text.replace('_', " ")));
            }
            _ => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(word);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_multipart_message_back() {
        let raw = "Subject: =?utf-8?b?VHUgY8OzZGlnbw==?=\r\nContent-Type: multipart/alternative;\r\n boundary=\"XyZ\"\r\n\r\n--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nC=C3=B3digo 1234567 =\r\nfin\r\n--XyZ\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<b>1234567</b>\r\n--XyZ--\r\n";
        let email = parse("ID", "a@b.example", vec!["c@d.example".into()], raw.to_owned());
        assert_eq!(email.subject, "Tu código");
        assert_eq!(email.text, "Código 1234567 fin");
        assert_eq!(email.html, "<b>1234567</b>");
        assert_eq!(email.message().code().as_deref(), Some("1234567"));
    }
}

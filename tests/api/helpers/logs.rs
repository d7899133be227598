//! What every verifyd in this test binary logged, kept for tests that read
//! logs (secrecy, start-up lines); `TEST_LOG=1` also prints it.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything every verifyd in this test binary logged (debug level and up).
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

pub(super) fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer_buffer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,hyper_util=info,h2=info,rustls=info,wiremock=info")
            .with_writer(move || LogWriter(writer_buffer.clone()))
            .with_ansi(false)
            .finish();
        // try_init also forwards the `log` crate (actix-web's access log, …).
        let _ = tracing_subscriber::util::SubscriberInitExt::try_init(subscriber);
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` holds `code` as a word of its own (not inside a longer run
/// of letters and digits). The captured logs of the whole test binary run to
/// megabytes of timestamps, ids and hashes, where any 7 digits appear by
/// chance; a leaked code stands between spaces, quotes or punctuation.
pub fn mentions(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric()) && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn a_code_is_found_as_a_word_and_not_inside_an_id() {
        assert!(mentions("Your Acme code is 1234567.", "1234567"));
        assert!(mentions("body=\"1234567\"", "1234567"));
        assert!(!mentions("job_id=a1234567b-44", "1234567"));
        assert!(!mentions("at 2026-12-03T06:49:58.12345678Z", "1234567"));
    }
}

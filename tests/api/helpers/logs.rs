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

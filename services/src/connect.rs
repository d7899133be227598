//! Connecting to PostgreSQL and RabbitMQ at start, saying why each attempt
//! failed. Every attempt is logged with its cause (connection refused, DNS,
//! authentication, TLS, timeout); a cause that waiting cannot fix (wrong
//! credentials, an unknown database or virtual host) stops at once; otherwise
//! the process tries `connect_attempts` times with backoff, then gives up with
//! one line that names the address, the cause and the attempts made.

use std::error::Error as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Why a connection attempt failed, as an operator acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    Refused,
    Dns,
    Authentication(String),
    NotFound(String),
    Tls(String),
    Timeout,
    Other(String),
}

impl Cause {
    /// Causes that another attempt will not fix.
    pub fn is_final(&self) -> bool {
        matches!(self, Cause::Authentication(_) | Cause::NotFound(_))
    }

    fn of_io(error: &std::io::Error) -> Cause {
        use std::io::ErrorKind;
        let text = error.to_string();
        match error.kind() {
            ErrorKind::ConnectionRefused => Cause::Refused,
            ErrorKind::TimedOut => Cause::Timeout,
            _ if looks_like_dns(&text) => Cause::Dns,
            _ if looks_like_tls(&text) => Cause::Tls(text),
            _ => Cause::Other(text),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Refused => f.write_str("connection refused (nothing listens there: is it running?)"),
            Cause::Dns => f.write_str("the host name does not resolve (DNS)"),
            Cause::Authentication(why) => write!(f, "authentication failed: {why} (check the user and password)"),
            Cause::NotFound(why) => write!(f, "{why}"),
            Cause::Tls(why) => write!(f, "TLS failed: {why}"),
            Cause::Timeout => f.write_str("no answer in time"),
            Cause::Other(why) => f.write_str(why),
        }
    }
}

fn looks_like_dns(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("failed to lookup address")
        || t.contains("name or service not known")
        || t.contains("dns")
        || t.contains("nodename nor servname")
}

fn looks_like_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("tls") || t.contains("certificate") || t.contains("handshake")
}

/// Where a URL points, without its password.
pub fn address(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    host.split(['/', '?']).next().unwrap_or(host).to_owned()
}

/// 0.5 s, 1 s, 2 s, 4 s, then 5 s between attempts.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.clamp(1, 5).saturating_sub(1))).min(Duration::from_secs(5))
}

#[derive(Debug, thiserror::Error)]
#[error("{service} at {address}: {cause} (gave up after {attempts} attempt{plural}{hint})", plural = if *.attempts == 1 { "" } else { "s" })]
pub struct GaveUp {
    pub service: &'static str,
    pub address: String,
    pub cause: Cause,
    pub attempts: u32,
    pub hint: String,
}

/// Tries `connect` up to `attempts` times, logging each failure with its cause.
async fn attempt<T, F, Fut>(
    service: &'static str,
    address: &str,
    attempts: u32,
    hint: &str,
    mut connect: F,
) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Cause>>,
{
    let attempts = attempts.max(1);
    let mut n = 0;
    loop {
        n += 1;
        match connect().await {
            Ok(connected) => {
                if n > 1 {
                    tracing::info!(service, address, attempt = n, "connected");
                }
                return Ok(connected);
            }
            Err(cause) if cause.is_final() || n >= attempts => {
                let hint = if cause.is_final() || hint.is_empty() { String::new() } else { format!("; {hint}") };
                return Err(GaveUp { service, address: address.to_owned(), cause, attempts: n, hint });
            }
            Err(cause) => {
                let wait = backoff(n);
                tracing::warn!(service, address, attempt = n, of = attempts, %cause, retry_in = ?wait,
                    "connection attempt failed");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn pg_cause(error: &sqlx::Error) -> Cause {
    match error {
        sqlx::Error::Io(io) => Cause::of_io(io),
        sqlx::Error::Tls(tls) => Cause::Tls(tls.to_string()),
        sqlx::Error::PoolTimedOut => Cause::Timeout,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => Cause::Authentication(db.message().to_owned()),
            // invalid_catalog_name: the database does not exist (and could not be created)
            Some("3D000") => Cause::NotFound(db.message().to_owned()),
            _ => Cause::Other(db.message().to_owned()),
        },
        other => {
            let mut text = other.to_string();
            let mut source = other.source();
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            if looks_like_dns(&text) {
                Cause::Dns
            } else if text.contains("password authentication failed") {
                Cause::Authentication(text)
            } else {
                Cause::Other(text)
            }
        }
    }
}

/// A pool on `url`, connected once at least. The database is created first if
/// it is missing and `create` is set.
pub async fn postgres(url: &str, max_connections: u32, attempts: u32, create: bool) -> Result<PgPool, GaveUp> {
    let address = address(url);
    let hint =
        "start it (pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start) or fix database.url";
    attempt("PostgreSQL", &address, attempts, hint, || async {
        if create {
            use sqlx::migrate::MigrateDatabase;
            let exists = sqlx::Postgres::database_exists(url).await.map_err(|e| pg_cause(&e))?;
            if !exists {
                sqlx::Postgres::create_database(url).await.map_err(|e| pg_cause(&e))?;
                tracing::info!(address, "database created");
            }
        }
        let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| Cause::Other(e.to_string()))?;
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| pg_cause(&e))
    })
    .await
}

fn amqp_cause(error: &lapin::Error) -> Cause {
    use lapin::ErrorKind as K;
    match error.kind() {
        K::IOError(io) => Cause::of_io(io),
        K::ProtocolError(amqp) => {
            let text = amqp.to_string();
            let upper = text.to_ascii_uppercase();
            if upper.contains("ACCESS_REFUSED") || upper.contains("ACCESS-REFUSED") || upper.contains("LOGIN") {
                Cause::Authentication(text)
            } else if upper.contains("NOT_ALLOWED") || upper.contains("NOT-ALLOWED") || upper.contains("VHOST") {
                Cause::NotFound(format!("{text} (does the virtual host in amqp.url exist, and may the user use it?)"))
            } else {
                Cause::Other(text)
            }
        }
        K::InvalidConnectionState(state) => {
            // The broker closed the connection during the handshake: how
            // RabbitMQ answers a refused login.
            Cause::Authentication(format!("the broker closed the connection during the login ({state:?})"))
        }
        _ => {
            let text = error.to_string();
            if looks_like_dns(&text) {
                Cause::Dns
            } else if looks_like_tls(&text) {
                Cause::Tls(text)
            } else {
                Cause::Other(text)
            }
        }
    }
}

/// Connects to RabbitMQ: each attempt is a plain connection (no retries of its
/// own, so its cause is seen), then the lasting connection is opened with
/// `properties` (which recover in place after later outages).
pub async fn rabbitmq(
    url: &str,
    attempts: u32,
    properties: lapin::ConnectionProperties,
) -> Result<lapin::Connection, GaveUp> {
    let address = address(url);
    let hint = "start it (rabbitmq-server -detached) or fix amqp.url";
    let probe = attempt("RabbitMQ", &address, attempts, hint, || async {
        let connect = lapin::Connection::connect(url, lapin::ConnectionProperties::default());
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(amqp_cause(&e)),
            Err(_) => Err(Cause::Timeout),
        }
    })
    .await?;
    let _ = probe.close(200, "probe".into()).await;
    let connect = lapin::Connection::connect(url, properties);
    match tokio::time::timeout(Duration::from_secs(30), connect).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            Err(GaveUp { service: "RabbitMQ", address, cause: amqp_cause(&e), attempts: 1, hint: String::new() })
        }
        Err(_) => Err(GaveUp { service: "RabbitMQ", address, cause: Cause::Timeout, attempts: 1, hint: String::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_drop_credentials_and_paths() {
        assert_eq!(address("postgres://app:pw@db.internal:5432/verifyd"), "db.internal:5432");
        assert_eq!(address("amqp://guest:guest@127.0.0.1:5672/%2f"), "127.0.0.1:5672");
        assert_eq!(address("amqp://mq"), "mq");
    }

    #[test]
    fn causes_read_as_what_to_do() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::of_io(&refused), Cause::Refused);
        let dns = std::io::Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(Cause::of_io(&dns), Cause::Dns);
        assert!(Cause::Authentication("x".into()).is_final() && !Cause::Refused.is_final());
        assert!(Cause::Refused.to_string().contains("connection refused"));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(9), Duration::from_secs(5));
    }
}

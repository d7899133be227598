//! What a process says when it starts: its mode and role, the providers of
//! each channel and every route, its consumers, where it listens, and — loudly
//! — whether it runs on the development secrets committed in
//! `verifyd.dev.toml` (refused in production mode, see `Config::validate`).

use verifyd_actors::routing::Routes;
use verifyd_actors::runtime::Role;

use crate::config::{Config, Mode};

/// The secrets committed in `verifyd.dev.toml`: public, so never for real data.
pub const DEV_CODE_HMAC_KEY: &str = "qS+OEAO603L8NZlbmPgN6ZyUsGtWNZlv49glBuzdKi0=";
pub const DEV_ENCRYPTION_KEY: &str = "Rysc7MMesm/JBiYWUKVrzzOAm5IIuFROYmPNQziNyw4=";

pub fn uses_dev_secrets(config: &Config) -> bool {
    use secrecy::ExposeSecret;
    let s = &config.secrets;
    s.code_hmac_key.expose_secret().trim() == DEV_CODE_HMAC_KEY
        || s.encryption_key.expose_secret().trim() == DEV_ENCRYPTION_KEY
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Serve => "serve",
        Role::Worker => "worker",
    }
}

/// Logs the start-up summary.
pub fn announce(config: &Config, role: Role, routes: &Routes, listening: Option<&str>) {
    let mode = match config.mode {
        Mode::Development => "development",
        Mode::Production => "production",
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), role = role_name(role), mode,
        database = %crate::connect::address(&config.database.url), rabbitmq = %crate::connect::address(&config.amqp.url),
        prefix = %config.amqp.prefix, "verifyd starting");
    for line in routes.describe() {
        tracing::info!(route = %line, "providers");
    }
    for (provider, tps) in routes.paced() {
        tracing::info!(provider, tps, "provider paced");
    }
    let requests = if role == Role::Serve { config.amqp.request_consumers } else { 0 };
    tracing::info!(
        dispatch_per_channel = config.amqp.dispatch_consumers,
        requests,
        dead_letters = config.amqp.dead_letter_consumers,
        prefetch = config.amqp.prefetch,
        "queue consumers"
    );
    if let Some(address) = listening {
        tracing::info!(address, "listening");
    }
    if uses_dev_secrets(config) {
        tracing::warn!(
            "!!! DEVELOPMENT SECRETS IN USE: secrets.code_hmac_key / secrets.encryption_key are the public values \
             committed in verifyd.dev.toml. Anything stored with them is readable by anyone. Never use them outside \
             a developer's machine: set VERIFYD_SECRETS__CODE_HMAC_KEY and VERIFYD_SECRETS__ENCRYPTION_KEY from a \
             secret store (head -c32 /dev/urandom | base64). !!!"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_dev_secrets_are_recognised() {
        let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../verifyd.dev.toml"));
        let config = Config::load(Some(file)).expect("verifyd.dev.toml loads");
        assert!(uses_dev_secrets(&config), "the constants are the file's values");
        let fresh = Config::local("postgres://db/v", "amqp://mq/%2f", "p.");
        assert!(!uses_dev_secrets(&fresh));
    }
}

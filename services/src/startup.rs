//! What a process says when it starts: its mode and role, the providers of
//! each channel and every route, its consumers, where it listens, and — loudly
//! — whether it runs on the development secrets committed in
//! `verifyd.dev.toml` (refused in production mode, see `Config::validate`).

use verifyd_core::delivery::routing::Routes;
use verifyd_core::infra::amqp::{DeclareError, Inequivalent, Topology};
use verifyd_core::runtime::{Role, StartError};

use crate::config::{Config, Mode};

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
    if config.uses_dev_secrets() {
        tracing::warn!(
            "!!! DEVELOPMENT SECRETS IN USE: secrets.code_hmac_key / secrets.encryption_key are the public values \
             committed in verifyd.dev.toml. Anything stored with them is readable by anyone. Never use them outside \
             a developer's machine: set VERIFYD_SECRETS__CODE_HMAC_KEY and VERIFYD_SECRETS__ENCRYPTION_KEY from a \
             secret store (head -c32 /dev/urandom | base64). !!!"
        );
    }
}

/// A start that failed, said so that an operator can act on it: a queue
/// RabbitMQ holds with other arguments than this configuration declares is
/// named with the argument, both values, the setting behind it and the fix.
pub fn explain_start(config: &Config, topology: &Topology, error: StartError) -> anyhow::Error {
    match error {
        StartError::Topology(DeclareError::Inequivalent(refused)) => {
            let lines: Vec<String> = refused.iter().map(|r| explain_inequivalent(config, topology, r)).collect();
            anyhow::anyhow!(
                "RabbitMQ refused {} declaration{} (406 PRECONDITION_FAILED: an existing queue's arguments cannot \
                 change in place):\n{}",
                refused.len(),
                if refused.len() == 1 { "" } else { "s" },
                lines.join("\n")
            )
        }
        other => other.into(),
    }
}

/// One refused declaration: what differs, which setting drives it, the fix.
pub fn explain_inequivalent(config: &Config, topology: &Topology, refused: &Inequivalent) -> String {
    let Inequivalent { kind, name, vhost, argument, existing, wanted } = refused;
    let what = format!("{kind} '{name}' exists with {argument} = {existing}, this configuration declares {wanted}");
    let setting = match (argument.as_str(), topology.retry_level_of(name)) {
        ("x-message-ttl", Some(level)) => {
            format!("set by amqp.retry_delays_ms (delay {} of {:?}, in ms)", level + 1, config.amqp.retry_delays_ms)
        }
        ("x-message-ttl", None) if topology.webhook_retry_level_of(name).is_some() => {
            format!("set by webhooks.retry_delays_ms ({:?}, in ms)", config.webhooks.retry_delays_ms)
        }
        ("x-dead-letter-exchange" | "x-dead-letter-routing-key", _) => {
            "derived from amqp.prefix and the queue's channel: no setting changes it for this name, so another \
             program (or another verifyd version) declared it"
                .to_owned()
        }
        ("x-queue-type", _) => "verifyd declares quorum queues and no setting changes it: the queue was made \
                                 by another program (or another verifyd version)"
            .to_owned(),
        _ => "no verifyd setting changes it for this name: another program (or another verifyd version) declared it"
            .to_owned(),
    };
    if kind.as_str() != "queue" {
        return format!(
            "  {what}; {setting}. Fix: delete the {kind} (management UI or `rabbitmqadmin delete {kind} \
             name={name}`{}) and restart verifyd, which declares it anew.",
            if vhost.as_str() == "/" { String::new() } else { format!(" --vhost={vhost}") }
        );
    }
    let vhost_flag = if vhost.as_str() == "/" { String::new() } else { format!(" -p {vhost}") };
    let keep = if argument.as_str() == "x-message-ttl" && topology.retry_level_of(name).is_some() {
        " (or keep the old delay in amqp.retry_delays_ms)"
    } else {
        ""
    };
    format!(
        "  {what}; {setting}. Fix{keep}: stop the verifyd processes still running with the old value, let the \
         queue drain (a retry queue empties itself within its old delay, its jobs going back to dispatch), check \
         it is empty (`verifyd queues`, or `rabbitmqctl list_queues{vhost_flag} name messages`: what is left in \
         it is lost), delete it with `rabbitmqctl delete_queue{vhost_flag} {name}`, then start verifyd again: it \
         declares the queue with the new arguments."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_retry_delay_names_the_setting_both_values_and_the_fix() {
        let mut config = Config::local("postgres://db/v", "amqp://mq/%2f", "p.");
        config.amqp.retry_delays_ms = vec![300, 400];
        let topology = Topology::new("p.", config.retry_delays());
        let refused = Inequivalent {
            kind: "queue".into(),
            name: "p.dispatch.sms.retry.1".into(),
            vhost: "staging".into(),
            argument: "x-message-ttl".into(),
            existing: "200".into(),
            wanted: "300".into(),
        };
        let text = explain_inequivalent(&config, &topology, &refused);
        for expected in [
            "queue 'p.dispatch.sms.retry.1' exists with x-message-ttl = 200, this configuration declares 300",
            "amqp.retry_delays_ms (delay 1 of [300, 400], in ms)",
            "rabbitmqctl delete_queue -p staging p.dispatch.sms.retry.1",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        let classic = Inequivalent { argument: "x-queue-type".into(), vhost: "/".into(), ..refused };
        let text = explain_inequivalent(&config, &topology, &classic);
        assert!(text.contains("quorum") && text.contains("rabbitmqctl delete_queue p.dispatch.sms.retry.1"), "{text}");
    }

    #[test]
    fn the_committed_dev_secrets_are_recognised() {
        let file = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../verifyd.dev.toml"));
        let config = Config::load(Some(file)).expect("verifyd.dev.toml loads");
        assert!(config.uses_dev_secrets(), "the constants are the file's values");
        let fresh = Config::local("postgres://db/v", "amqp://mq/%2f", "p.");
        assert!(!fresh.uses_dev_secrets());
    }
}

//! Builds the provider clients named in configuration, once each, and the

use std::collections::HashMap;
use std::sync::Arc;

use verifyd_core::delivery::routing::Routes;
use verifyd_providers::Provider;
use verifyd_providers::console::ConsoleProvider;
use verifyd_providers::domain::Channel;
use verifyd_providers::inbox::InboxProvider;
use verifyd_providers::meta::Meta;
use verifyd_providers::plivo::Plivo;
use verifyd_providers::sendgrid::SendGrid;
use verifyd_providers::sinch::Sinch;
use verifyd_providers::smtp::Smtp;
use verifyd_providers::telnyx::Telnyx;
use verifyd_providers::twilio::Twilio;
use verifyd_providers::vonage::Vonage;
use verifyd_providers::webhook::Webhook;

use crate::config::{Config, ConfigError, Mode, development_only};

/// Provider clients by name, each built on first use.
struct Registry<'a> {
    config: &'a Config,
    built: HashMap<String, Arc<dyn Provider>>,
}

impl Registry<'_> {
    fn get(&mut self, name: &str) -> Result<Arc<dyn Provider>, ConfigError> {
        if let Some(provider) = self.built.get(name) {
            return Ok(provider.clone());
        }
        if self.config.mode == Mode::Production
            && let Some(name) = development_only(name)
        {
            return Err(ConfigError::DevelopmentOnly(name));
        }
        let providers = &self.config.providers;
        let provider: Arc<dyn Provider> = match name {
            "console" => Arc::new(ConsoleProvider::new()),
            "inbox" => client("inbox", &providers.inbox, InboxProvider::new)?,
            "meta" => client("meta", &providers.meta, Meta::new)?,
            "plivo" => client("plivo", &providers.plivo, Plivo::new)?,
            "sendgrid" => client("sendgrid", &providers.sendgrid, SendGrid::new)?,
            "sinch" => client("sinch", &providers.sinch, Sinch::new)?,
            "smtp" => client("smtp", &providers.smtp, Smtp::new)?,
            "telnyx" => client("telnyx", &providers.telnyx, Telnyx::new)?,
            "twilio" => client("twilio", &providers.twilio, Twilio::new)?,
            "vonage" => client("vonage", &providers.vonage, Vonage::new)?,
            "webhook" => client("webhook", &providers.webhook, Webhook::new)?,
            other => return Err(ConfigError::UnknownProvider(other.to_owned())),
        };
        self.built.insert(name.to_owned(), provider.clone());
        Ok(provider)
    }
}

/// Builds one provider's client from its configuration section, which must be there.
fn client<C: Clone, P: Provider + 'static, E: std::fmt::Display>(
    name: &'static str,
    section: &Option<C>,
    new: impl FnOnce(C) -> Result<P, E>,
) -> Result<Arc<dyn Provider>, ConfigError> {
    let config = section.clone().ok_or_else(|| ConfigError::MissingProvider(name.to_owned()))?;
    Ok(Arc::new(new(config).map_err(|e| ConfigError::Client(name, e.to_string()))?))
}

pub fn build(config: &Config) -> Result<Routes, ConfigError> {
    let providers = &config.providers;
    let mut registry = Registry { config, built: HashMap::new() };
    let mut routes = Routes::new(providers.breaker);
    let defaults = [
        (Channel::Sms, &providers.sms),
        (Channel::Voice, &providers.voice),
        (Channel::Email, &providers.email),
        (Channel::Whatsapp, &providers.whatsapp),
    ];
    for (channel, names) in defaults {
        for name in names {
            routes.add(channel, registry.get(name)?)?;
        }
    }
    for route in &providers.routes {
        let list = route.providers.iter().map(|name| registry.get(name)).collect::<Result<Vec<_>, _>>()?;
        routes.add_route(route.channel, &route.prefix, list)?;
    }
    for (name, tps) in &providers.tps {
        routes.pace(name, *tps)?;
    }
    if providers.fallback_to_voice && !routes.serves(Channel::Voice) {
        return Err(ConfigError::Invalid("providers.fallback_to_voice needs a voice provider"));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use verifyd_providers::domain::PhoneNumber;
    use verifyd_providers::twilio::TwilioConfig;
    use verifyd_providers::vonage::VonageConfig;

    use super::*;
    use crate::config::RouteConfig;

    fn config() -> Config {
        let mut config = Config::local("postgres://x@127.0.0.1/x", "amqp://127.0.0.1", "t.");
        config.providers.twilio = Some(TwilioConfig::new("AC1", "token", "+15005550006"));
        config.providers.vonage = Some(VonageConfig::new("key", "secret", "Acme"));
        config.providers.sms = vec!["twilio".into(), "vonage".into()];
        config.providers.voice = vec!["twilio".into()];
        config
    }

    #[test]
    fn routes_by_prefix_with_the_defaults_behind() {
        let mut config = config();
        config.providers.routes =
            vec![RouteConfig { channel: Channel::Sms, prefix: "+44".into(), providers: vec!["vonage".into()] }];
        let routes = build(&config).unwrap();
        let names = |phone: &str| -> Vec<String> {
            let to = PhoneNumber::parse(phone).unwrap().into();
            routes.for_destination(Channel::Sms, &to).iter().map(|p| p.name().to_owned()).collect()
        };
        assert_eq!(names("+447911123456"), ["vonage"]);
        assert_eq!(names("+14155552671"), ["twilio", "vonage"]);
    }

    #[test]
    fn refuses_what_cannot_run() {
        let mut unknown = config();
        unknown.providers.sms.push("carrier-pigeon".into());
        assert!(matches!(build(&unknown), Err(ConfigError::UnknownProvider(_))));

        let mut missing = config();
        missing.providers.twilio = None;
        assert!(matches!(build(&missing), Err(ConfigError::MissingProvider(_))));

        let mut console = config();
        console.mode = Mode::Production;
        console.providers.voice = vec!["console".into()];
        assert!(matches!(console.validate(), Err(ConfigError::DevelopmentOnly("console"))));
        assert!(matches!(build(&console), Err(ConfigError::DevelopmentOnly("console"))), "whoever skips loading");

        let mut plivo_without_url = config();
        plivo_without_url.providers.plivo =
            Some(verifyd_providers::plivo::PlivoConfig::new("MA1", "token", "+14155550100"));
        plivo_without_url.providers.voice = vec!["plivo".into()];
        assert!(matches!(plivo_without_url.validate(), Err(ConfigError::Invalid(_))));
        plivo_without_url.http.public_url = Some("http://verifyd.example.com".into());
        assert!(plivo_without_url.validate().is_ok());
        plivo_without_url.mode = Mode::Production;
        plivo_without_url.providers.sms = vec!["twilio".into()];
        assert!(matches!(plivo_without_url.validate(), Err(ConfigError::Invalid(_))), "https only in production");

        let mut no_retry_queue = config();
        no_retry_queue.amqp.retry_delays_ms = vec![];
        assert!(matches!(no_retry_queue.validate(), Err(ConfigError::RetryDelays)));

        let mut bad_prefix = config();
        bad_prefix.providers.routes =
            vec![RouteConfig { channel: Channel::Sms, prefix: "44".into(), providers: vec!["twilio".into()] }];
        assert!(matches!(build(&bad_prefix), Err(ConfigError::Route(_))));
    }
}

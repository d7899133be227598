//! Which providers deliver a message, in which order. Per channel, the route
//! whose E.164 prefix is the longest match for the destination wins; a
//! destination no route matches uses the channel's default list. Every
//! provider has one circuit breaker (`breaker.rs`), whichever routes list it.

use std::collections::HashMap;
use std::sync::Arc;

use verifyd_providers::Provider;
use verifyd_providers::domain::{Channel, Destination, DestinationKind};

use crate::delivery::breaker::{Breaker, BreakerSettings};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("route prefix {0:?} must be \"+\" followed by 1 to 6 digits (a country code, optionally more)")]
    Prefix(String),
    #[error("provider {provider:?} cannot deliver {channel}")]
    Unsupported { provider: String, channel: Channel },
    #[error("routes by prefix are for phone channels (sms, voice, whatsapp); {0} uses its default list only")]
    NotByPrefix(Channel),
    #[error("the route for {channel} {prefix} lists no provider")]
    Empty { channel: Channel, prefix: String },
    #[error("providers.tps names {0:?}, which no channel or route uses")]
    UnknownPaced(String),
    #[error("providers.tps for {0:?} must be at least 1")]
    ZeroTps(String),
}

struct PrefixRoute {
    channel: Channel,
    /// Digits after the `+`.
    digits: String,
    providers: Vec<Arc<dyn Provider>>,
}

pub struct Routes {
    defaults: HashMap<Channel, Vec<Arc<dyn Provider>>>,
    /// Longest prefix first.
    by_prefix: Vec<PrefixRoute>,
    breakers: HashMap<String, Arc<Breaker>>,
    breaker_settings: BreakerSettings,
    /// Messages per second, over all processes, for paced providers.
    tps: HashMap<String, u32>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new(BreakerSettings::default())
    }
}

impl Routes {
    pub fn new(breaker_settings: BreakerSettings) -> Self {
        Routes {
            defaults: HashMap::new(),
            by_prefix: Vec::new(),
            breakers: HashMap::new(),
            breaker_settings,
            tps: HashMap::new(),
        }
    }

    fn register(&mut self, provider: &Arc<dyn Provider>, channel: Channel) -> Result<(), RouteError> {
        if !provider.supports(channel) {
            return Err(RouteError::Unsupported { provider: provider.name().to_owned(), channel });
        }
        self.breakers
            .entry(provider.name().to_owned())
            .or_insert_with(|| Arc::new(Breaker::new(self.breaker_settings)));
        Ok(())
    }

    /// Appends `provider` to the channel's default list.
    pub fn add(&mut self, channel: Channel, provider: Arc<dyn Provider>) -> Result<(), RouteError> {
        self.register(&provider, channel)?;
        self.defaults.entry(channel).or_default().push(provider);
        Ok(())
    }

    /// Destinations of `channel` whose number starts with `prefix` (`+44`,
    /// `+1415`) use `providers`, in this order.
    pub fn add_route(
        &mut self,
        channel: Channel,
        prefix: &str,
        providers: Vec<Arc<dyn Provider>>,
    ) -> Result<(), RouteError> {
        if channel.destination() != DestinationKind::Phone {
            return Err(RouteError::NotByPrefix(channel));
        }
        let digits = prefix.strip_prefix('+').unwrap_or_default();
        if !(1..=6).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RouteError::Prefix(prefix.to_owned()));
        }
        if providers.is_empty() {
            return Err(RouteError::Empty { channel, prefix: prefix.to_owned() });
        }
        for provider in &providers {
            self.register(provider, channel)?;
        }
        self.by_prefix.push(PrefixRoute { channel, digits: digits.to_owned(), providers });
        self.by_prefix.sort_by_key(|route| std::cmp::Reverse(route.digits.len()));
        Ok(())
    }

    /// The providers to try for a message to `to`, in order. Prefix routes
    /// are for phones; an email address takes its channel's default list.
    pub fn for_destination(&self, channel: Channel, to: &Destination) -> &[Arc<dyn Provider>] {
        let number = to.phone().map(|p| p.e164().trim_start_matches('+'));
        self.by_prefix
            .iter()
            .find(|route| route.channel == channel && number.is_some_and(|n| n.starts_with(&route.digits)))
            .map(|route| route.providers.as_slice())
            .or_else(|| self.defaults.get(&channel).map(Vec::as_slice))
            .unwrap_or_default()
    }

    /// The breaker of a provider this set routes to.
    pub fn breaker(&self, provider: &str) -> Option<&Arc<Breaker>> {
        self.breakers.get(provider)
    }

    /// Paces a provider used by some route at `tps` messages per second.
    pub fn pace(&mut self, provider: &str, tps: u32) -> Result<(), RouteError> {
        if !self.breakers.contains_key(provider) {
            return Err(RouteError::UnknownPaced(provider.to_owned()));
        }
        if tps == 0 {
            return Err(RouteError::ZeroTps(provider.to_owned()));
        }
        self.tps.insert(provider.to_owned(), tps);
        Ok(())
    }

    /// The provider's pace, when it has one.
    pub fn tps(&self, provider: &str) -> Option<u32> {
        self.tps.get(provider).copied()
    }

    /// Every provider routed to, with its breaker, by name.
    pub fn breakers(&self) -> impl Iterator<Item = (&str, &Arc<Breaker>)> {
        let mut all: Vec<_> = self.breakers.iter().map(|(name, b)| (name.as_str(), b)).collect();
        all.sort_by_key(|(name, _)| *name);
        all.into_iter()
    }

    /// Every paced provider and its rate.
    pub fn paced(&self) -> &HashMap<String, u32> {
        &self.tps
    }

    /// The routing in words, for the start-up log: each channel's default list,
    /// then each prefix route.
    pub fn describe(&self) -> Vec<String> {
        let names = |list: &[Arc<dyn Provider>]| list.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ");
        let mut lines = Vec::new();
        for channel in verifyd_providers::domain::Channel::ALL {
            match self.defaults.get(&channel) {
                Some(list) if !list.is_empty() => lines.push(format!("{channel}: {}", names(list))),
                _ => lines.push(format!("{channel}: no provider")),
            }
        }
        for route in &self.by_prefix {
            lines.push(format!("{} +{}: {}", route.channel, route.digits, names(&route.providers)));
        }
        lines
    }

    /// Whether any route or default list of `channel` has a provider.
    pub fn serves(&self, channel: Channel) -> bool {
        self.defaults.get(&channel).is_some_and(|list| !list.is_empty())
            || self.by_prefix.iter().any(|route| route.channel == channel)
    }
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;
    use verifyd_providers::domain::{EmailAddress, PhoneNumber};
    use verifyd_providers::{ProviderError, Sent, Sms, VoiceCall};

    use super::*;

    struct Named(&'static str, bool);

    #[async_trait]
    impl Provider for Named {
        fn name(&self) -> &str {
            self.0
        }
        fn supports(&self, channel: Channel) -> bool {
            channel == Channel::Sms || self.1
        }
        async fn send_sms(&self, _: &Sms) -> Result<Sent, ProviderError> {
            unreachable!("routing never sends")
        }
        async fn place_call(&self, _: &VoiceCall) -> Result<Sent, ProviderError> {
            unreachable!("routing never sends")
        }
    }

    fn p(name: &'static str) -> Arc<dyn Provider> {
        Arc::new(Named(name, true))
    }

    fn names(list: &[Arc<dyn Provider>]) -> Vec<&str> {
        list.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn the_longest_prefix_of_the_channel_wins_else_the_default_list() {
        let mut routes = Routes::default();
        routes.add(Channel::Sms, p("twilio")).unwrap();
        routes.add(Channel::Sms, p("vonage")).unwrap();
        routes.add_route(Channel::Sms, "+44", vec![p("vonage"), p("twilio")]).unwrap();
        routes.add_route(Channel::Sms, "+447911", vec![p("sinch")]).unwrap();
        routes.add_route(Channel::Voice, "+33", vec![p("plivo")]).unwrap();

        routes.add(Channel::Email, p("smtp")).unwrap();
        let phone = |n: &str| Destination::from(PhoneNumber::parse(n).unwrap());
        let (uk, uk_other, us, fr) =
            (phone("+447911123456"), phone("+447400123456"), phone("+14155552671"), phone("+33612345678"));
        assert_eq!(names(routes.for_destination(Channel::Sms, &uk)), ["sinch"]);
        assert_eq!(names(routes.for_destination(Channel::Sms, &uk_other)), ["vonage", "twilio"]);
        assert_eq!(names(routes.for_destination(Channel::Sms, &us)), ["twilio", "vonage"]);
        assert_eq!(names(routes.for_destination(Channel::Sms, &fr)), ["twilio", "vonage"]);
        assert_eq!(names(routes.for_destination(Channel::Voice, &fr)), ["plivo"]);
        assert!(routes.for_destination(Channel::Voice, &us).is_empty());
        // An address matches no phone prefix: its channel's default list.
        let ada = Destination::from(EmailAddress::parse("ada@example.com").unwrap());
        assert_eq!(names(routes.for_destination(Channel::Email, &ada)), ["smtp"]);
        assert!(routes.serves(Channel::Voice));
        // One breaker per provider, shared by every route listing it.
        assert!(Arc::ptr_eq(routes.breaker("vonage").unwrap(), routes.breaker("vonage").unwrap()));
        assert!(routes.breaker("plivo").is_some());
    }

    #[test]
    fn bad_routes_are_refused() {
        let mut routes = Routes::default();
        assert_eq!(routes.add_route(Channel::Sms, "44", vec![p("x")]), Err(RouteError::Prefix("44".into())));
        assert_eq!(routes.add_route(Channel::Sms, "+4a", vec![p("x")]), Err(RouteError::Prefix("+4a".into())));
        assert!(matches!(routes.add_route(Channel::Sms, "+44", vec![]), Err(RouteError::Empty { .. })));
        assert_eq!(routes.add_route(Channel::Email, "+44", vec![p("x")]), Err(RouteError::NotByPrefix(Channel::Email)));
        let sms_only: Arc<dyn Provider> = Arc::new(Named("sms-only", false));
        assert!(matches!(routes.add(Channel::Voice, sms_only), Err(RouteError::Unsupported { .. })));
    }
}

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a code reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Voice,
    Email,
    /// A WhatsApp authentication template to the phone's WhatsApp account.
    Whatsapp,
}

/// What a channel delivers to: a phone number (SMS, voice) or an email address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Phone,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Sms, Channel::Voice, Channel::Email, Channel::Whatsapp];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
            Channel::Email => "email",
            Channel::Whatsapp => "whatsapp",
        }
    }

    /// What this channel's destination is.
    pub fn destination(self) -> DestinationKind {
        match self {
            Channel::Sms | Channel::Voice | Channel::Whatsapp => DestinationKind::Phone,
            Channel::Email => DestinationKind::Email,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("channel must be \"sms\", \"voice\", \"email\" or \"whatsapp\"")]
pub struct ChannelParseError;

impl FromStr for Channel {
    type Err = ChannelParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Channel::Sms),
            "voice" => Ok(Channel::Voice),
            "email" => Ok(Channel::Email),
            "whatsapp" => Ok(Channel::Whatsapp),
            _ => Err(ChannelParseError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>(), Ok(c));
        }
        assert_eq!("SMS".parse::<Channel>(), Err(ChannelParseError));
        assert_eq!("WhatsApp".parse::<Channel>(), Err(ChannelParseError));
        assert_eq!(Channel::Whatsapp.destination(), DestinationKind::Phone);
        assert_eq!(Channel::Email.destination(), DestinationKind::Email);
        assert_eq!(Channel::Voice.destination(), DestinationKind::Phone);
    }
}

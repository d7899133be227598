use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a code reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Voice,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Sms, Channel::Voice];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("channel must be \"sms\" or \"voice\"")]
pub struct ChannelParseError;

impl FromStr for Channel {
    type Err = ChannelParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sms" => Ok(Channel::Sms),
            "voice" => Ok(Channel::Voice),
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
        assert_eq!("email".parse::<Channel>(), Err(ChannelParseError));
    }
}

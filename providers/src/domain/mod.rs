//! Types that cross every crate boundary. Each one is parsed once, at the edge,
//! so nothing behind the edge validates them again.

mod channel;
mod code;
mod destination;
mod email;
mod locale;
mod phone;

pub use channel::{Channel, ChannelParseError, DestinationKind};
pub use code::{Code, CodeLength, CodeParseError};
pub use destination::{Destination, DestinationParseError};
pub use email::{EmailAddress, EmailParseError, mask_addresses};
pub use locale::{Locale, LocaleParseError};
pub use phone::{PhoneNumber, PhoneParseError};

//! How often codes may be asked for and tried: the throttle buckets, in
//! memory and in PostgreSQL (`throttle`), and the lockout after wrong codes in
//! a row (`lockout`).

pub mod lockout;
pub mod throttle;

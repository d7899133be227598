//! What operators see and act on: dead letters kept as records (`keeper`,
//! `letters`), what each process reports of itself (`reporter`), and the
//! overview built from all of it and from the delivery statistics every
//! process adds up (`overview`; the counts and the metrics catalogue are
//! `crate::telemetry`).
//!
//! A deployment operator sees everything; a tenant's `ops` key sees the same
//! pages cut down to its own tenant ([`crate::ids::View`]).

pub mod keeper;
pub mod letters;
pub mod overview;
pub mod reporter;

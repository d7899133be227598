//! What operators see and act on: dead letters kept as records (`keeper`,
//! `letters`), what each process reports of itself (`reporter`), delivery
//! statistics every process adds up (`stats`), the overview built from all of
//! it (`overview`), and the catalogue of metrics (`catalog`).
//!
//! A deployment operator sees everything; a tenant's `ops` key sees the same
//! pages cut down to its own tenant ([`crate::ids::View`]).

pub mod catalog;
pub mod keeper;
pub mod letters;
pub mod overview;
pub mod reporter;
pub mod stats;

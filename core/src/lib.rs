//! verifyd's core, organised by flow: `verification` (the service and its pure
//! lifecycle, expiry), `codes` (keys, TOTP, recovery codes), `account`
//! (factors, enrolment, the login gate, challenges, proofs, policy, reset),
//! `limits` (throttles, lockout), `abuse` (geo permissions, number types,
//! the pumping guard), `delivery` (dispatch, routing, receipts, texts),
//! `outbox` (the outbox table, its relay, the queue contract), `webhooks`, `ops` (dead letters,
//! health, metrics), `store` (the SQL), and `infra` (RabbitMQ, consumers,
//! shards and the order they keep), which the flows stand on. `runtime` is the
//! composition root: it starts a process's actors and consumers and wires the
//! flows together, so it knows every flow and no flow knows it. `domain` (the
//! words rows hold: statuses, kinds, purposes, policies), `ids`, `timestamp`
//! and `dead_letter` (why a message was set aside) are the vocabulary they
//! share.
//!
//! Every actor holds only what it can recompute from PostgreSQL: any number of
//! `serve` and `worker` processes may run side by side.

pub mod abuse;
pub mod account;
pub mod codes;
pub mod dead_letter;
pub mod delivery;
pub mod domain;
pub mod ids;
pub mod infra;
pub mod limits;
pub mod ops;
pub mod outbox;
pub mod runtime;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod verification;
pub mod webhooks;

/// Migrations of the whole service, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

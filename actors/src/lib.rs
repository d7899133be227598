//! verifyd's actors and what they stand on: the verification lifecycle, the code
//! keys, PostgreSQL storage, the RabbitMQ topology and the transactional outbox.
//!
//! Every actor holds only what it can recompute from PostgreSQL: any number of
//! `serve` and `worker` processes may run side by side.

pub mod abuse;
pub mod account_state;
pub mod amqp;
pub mod branding;
pub mod breaker;
pub mod consumer;
pub mod contract;
pub mod delivery_status;
pub mod dispatch;
pub mod expiry;
pub mod gate;
pub mod gsm7;
pub mod ids;
pub mod keys;
pub mod lifecycle;
pub mod lockout;
pub mod ops;
pub mod outbox;
pub mod pacing;
pub mod policy;
pub mod proof;
pub mod receipts;
pub mod recovery;
pub mod relay;
pub mod render;
pub mod routing;
pub mod runtime;
pub mod shards;
pub mod store;
pub mod template;
pub mod throttle;
pub mod timestamp;
pub mod totp;
pub mod verification;
pub mod voice_script;
pub mod webhooks;

/// Migrations of the whole service, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

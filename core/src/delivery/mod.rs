//! Getting a code to a person and hearing how it went: the dispatch consumer
//! (`dispatch`) and its routing over providers (`routing`, with each
//! provider's circuit `breaker` and `pacing`), the texts it sends (`render`,
//! `template`, `gsm7`, the tenant's `branding`, Plivo's `voice_script`),
//! delivery receipts (`receipts`, and `parked` for those that overtake
//! the record of their send), and what a backend reads of it
//! (`status`). Jobs and events reach RabbitMQ through `crate::outbox`.

pub mod branding;
pub mod breaker;
pub mod dispatch;
pub mod gsm7;
pub mod pacing;
pub mod parked;
pub mod receipts;
pub mod recorder;
pub mod render;
pub mod routing;
pub mod status;
pub mod template;
pub mod voice_script;

//! The `verifyd` service: configuration, HTTP API, AMQP intake, wiring and ops
//! commands. `main.rs` is the CLI on top.

pub mod api_keys;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod connect;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_targets;
pub mod http;
pub mod intake;
pub mod mock_provider;
pub mod ops;
pub mod routes;
pub mod startup;
pub mod system;
pub mod telemetry;

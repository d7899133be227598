//! Integration tests: the real verifyd against the real PostgreSQL and RabbitMQ,
//! with only the SMS/voice provider (Twilio) mocked by wiremock.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod abuse;
mod amqp_requests;
mod api_keys;
mod branding;
mod concurrency;
mod console;
mod delivery;
mod delivery_status;
mod dev_messages;
mod email;
mod enrolment;
mod errors;
mod faults;
mod formats;
mod gate;
mod helpers;
mod isolation;
mod limits;
mod metrics;
mod mock_provider;
mod openapi;
mod operations;
mod processes;
mod providers;
mod routing;
mod secrecy;
mod seed_flows;
mod soak;
mod startup;
mod strict_config;
mod testkit_example;
mod throttling;
mod try_it;
mod verification_flow;
mod webhooks;
mod whatsapp;

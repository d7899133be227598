//! What the flows run on: the RabbitMQ topology and publishing (`amqp`), queue
//! consumers with their recovery (`consumer`), actor shards (`shards`), the
//! per-key order each shard keeps (`lanes`) and actors' periodic jobs (`sweep`). It knows no flow; the process's
//! runtime that starts them all is the top-level `runtime` module.

pub mod amqp;
pub mod consumer;
pub mod lanes;
pub mod shards;
pub mod sweep;

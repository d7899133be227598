//! What the flows run on: the RabbitMQ topology and publishing (`amqp`), queue
//! consumers with their recovery (`consumer`), actor shards (`shards`), and
//! the process's runtime that starts them all (`runtime`).

pub mod amqp;
pub mod consumer;
pub mod runtime;
pub mod shards;

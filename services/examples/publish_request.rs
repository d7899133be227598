//! Publishes one verification request to verifyd over RabbitMQ, as a backend
//! would, and prints the events that come back on a private reply queue.
//!
//! ```sh
//! cargo run -p verifyd --example publish_request -- \
//!     --tenant acme --account user-42 --phone +14155552671 --channel sms
//! cargo run -p verifyd --example publish_request -- \
//!     --tenant acme --account user-42 --email ada@example.com
//! ```
//! Then check the code over HTTP (see README); the `verification.approved` event
//! arrives on the same reply queue. Ctrl-C or `--wait-secs` ends it.

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// verifyd's `amqp.prefix`.
    #[arg(long, default_value = "verifyd.")]
    prefix: String,
    /// Your tenant name: the routing key of the request.
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    account: String,
    /// The phone a code goes to by `--channel sms` (the default) or `voice`.
    #[arg(long, required_unless_present = "email", conflicts_with = "email")]
    phone: Option<String>,
    /// The address a code goes to by email (`--channel` is then `email`).
    #[arg(long)]
    email: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let conn = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;

    // A private queue for the replies. verifyd only replies to queues named
    // <prefix>reply.<tenant>.<anything> (or amq.rabbitmq.reply-to).
    let reply_name = format!("{}reply.{}.{}", args.prefix, args.tenant, uuid::Uuid::new_v4().simple());
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let reply_queue = ch.queue_declare(reply_name.as_str().into(), exclusive, FieldTable::default()).await?;
    let mut replies = ch
        .basic_consume(
            reply_queue.name().clone(),
            "".into(),
            BasicConsumeOptions { no_ack: true, ..Default::default() },
            FieldTable::default(),
        )
        .await?;

    let request = match (&args.phone, &args.email) {
        (_, Some(email)) => serde_json::json!({
            "account_id": args.account,
            "email": email,
            "channel": args.channel.as_deref().unwrap_or("email"),
        }),
        (phone, None) => serde_json::json!({
            "account_id": args.account,
            "phone": phone,
            "channel": args.channel.as_deref().unwrap_or("sms"),
        }),
    };
    let message_id = uuid::Uuid::new_v4().to_string();
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_message_id(message_id.as_str().into())
        .with_correlation_id(message_id.as_str().into())
        .with_reply_to(reply_queue.name().clone());
    let exchange = format!("{}requests", args.prefix);
    let confirm = ch
        .basic_publish(
            exchange.as_str().into(),
            args.tenant.as_str().into(),
            BasicPublishOptions::default(),
            request.to_string().as_bytes(),
            props,
        )
        .await?
        .await?;
    println!("published request {message_id} to {exchange} with routing key {:?}: {confirm:?}", args.tenant);

    let deadline = tokio::time::sleep(Duration::from_secs(args.wait_secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            next = replies.next() => match next {
                Some(Ok(delivery)) => println!("{}", String::from_utf8_lossy(&delivery.data)),
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
        }
    }
    Ok(())
}

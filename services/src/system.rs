//! The actix system `main` and the integration tests run in
//! (`#[actix_rt::main(system = "verifyd::system::System")]`).
//!
//! Tasks still running when the system's future returns (the outbox relay's
//! batch or the expiry sweep's transaction, a process report being written)
//! are dropped with it, and a dropped pool connection hands itself back by
//! spawning a task. actix-rt drops its `LocalSet` before its tokio runtime and
//! outside it, so sqlx panicked there ("this functionality requires a Tokio
//! context") on an operator's terminal after a SIGTERM. This drops the system
//! with its runtime entered: the connection's task is spawned onto the dying
//! runtime, which discards it, and the socket closes (PostgreSQL rolls back
//! the open transaction, as when the process exits).

use std::future::Future;

pub struct System(actix_rt::SystemRunner);

impl Default for System {
    fn default() -> Self {
        System(actix_rt::System::new())
    }
}

impl System {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn block_on<F: Future>(self, future: F) -> F::Output {
        let output = self.0.block_on(future);
        let runtime = self.0.runtime().tokio_runtime().handle().clone();
        let _entered = runtime.enter();
        drop(self);
        output
    }
}

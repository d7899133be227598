//! Group commit of the final attempts dispatch records for jobs that end no
//! verification (sent, or skipped). Each such message ended with one
//! statement that records its attempt and queues the event announcing it
//! (`attempts::record`); written alone, each paid its own statement and its
//! own commit. This actor owns the attempts waiting to be
//! written: while one batch is being written, the next gathers, and it is
//! written, in one statement and one commit (`attempts::record_many`), as
//! soon as the first is done. A lone attempt is written at once, so under
//! light load nothing waits; under load many share a commit. Decision 191.
//!
//! Each caller is answered after the commit that holds its attempt, so a
//! consumer acknowledges its message only once its outcome is durable, as
//! before. A batch that fails is written again one attempt at a time, so one
//! bad attempt fails alone; a connection the pool cannot give at once is
//! asked for again before the batch gives up (its messages were sent: each
//! one requeued would be sent again after its claim's lease).
//!
//! An attempt's insert takes a key-share lock on its verification's row, so
//! a batch waits for a transaction holding one of its verifications `FOR
//! UPDATE` (a check, a cancel: milliseconds) and the batches behind it wait
//! with it.

use std::sync::Arc;

use actix::prelude::*;
use sqlx::PgPool;
use tokio::sync::oneshot;

use crate::store::attempts::{self, Recording};

/// The most attempts one statement writes.
pub const MOST_AT_ONCE: usize = 128;

/// Tries for a connection before a batch fails, and the wait after the first.
const CONNECTION_TRIES: u32 = 3;
const CONNECTION_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// Records `0` and answers whether it was recorded (false: another copy of
/// its job recorded the job's final attempt first).
#[derive(Message)]
#[rtype(result = "Result<bool, RecordError>")]
pub struct Record(pub Recording);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// No connection for the batch (shared by every attempt in it).
    #[error("database: {0}")]
    NoConnection(Arc<sqlx::Error>),
    #[error("the attempt recorder stopped before writing the attempt")]
    Stopped,
}

type Answer = oneshot::Sender<Result<bool, RecordError>>;

pub struct AttemptRecorder {
    pool: PgPool,
    pending: Vec<(Recording, Answer)>,
    writing: bool,
}

impl AttemptRecorder {
    pub fn new(pool: PgPool) -> Self {
        AttemptRecorder { pool, pending: Vec::new(), writing: false }
    }

    fn write(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        self.writing = true;
        let take = self.pending.len().min(MOST_AT_ONCE);
        let (recordings, answers): (Vec<Recording>, Vec<Answer>) = self.pending.drain(..take).unzip();
        let pool = self.pool.clone();
        ctx.spawn(async move { write(&pool, &recordings).await }.into_actor(self).map(move |results, act, ctx| {
            for (answer, result) in answers.into_iter().zip(results) {
                // A caller that went away (its consumer stopped) needs no answer.
                let _ = answer.send(result);
            }
            act.writing = false;
            act.write(ctx);
        }));
    }
}

/// One result per recording, in order: the batch in one statement, or, if
/// that fails, each on its own.
async fn write(pool: &PgPool, recordings: &[Recording]) -> Vec<Result<bool, RecordError>> {
    let mut tries = 0;
    let mut conn = loop {
        tries += 1;
        match pool.acquire().await {
            Ok(conn) => break conn,
            Err(error) if tries < CONNECTION_TRIES => {
                tracing::warn!(%error, attempts = recordings.len(), "attempt batch: no database connection; trying again");
                tokio::time::sleep(CONNECTION_BACKOFF * tries).await;
            }
            Err(e) => {
                let e = Arc::new(e);
                return recordings.iter().map(|_| Err(RecordError::NoConnection(e.clone()))).collect();
            }
        }
    };
    match attempts::record_many(&mut conn, recordings).await {
        Ok(recorded) => recorded.into_iter().map(Ok).collect(),
        Err(error) if recordings.len() > 1 => {
            tracing::warn!(%error, attempts = recordings.len(), "attempt batch not written; writing each alone");
            let mut results = Vec::with_capacity(recordings.len());
            for recording in recordings {
                let one = attempts::record_many(&mut conn, std::slice::from_ref(recording)).await;
                results.push(one.map(|r| r.first().copied().unwrap_or(false)).map_err(RecordError::from));
            }
            results
        }
        Err(error) => vec![Err(error.into())],
    }
}

impl Actor for AttemptRecorder {
    type Context = Context<Self>;
}

impl Handler<Record> for AttemptRecorder {
    type Result = ResponseFuture<Result<bool, RecordError>>;

    fn handle(&mut self, Record(recording): Record, ctx: &mut Self::Context) -> Self::Result {
        let (answer, answered) = oneshot::channel();
        self.pending.push((recording, answer));
        self.write(ctx);
        Box::pin(async move { answered.await.unwrap_or(Err(RecordError::Stopped)) })
    }
}

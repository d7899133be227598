//! A periodic job of an actor that never overlaps itself: a tick that finds
//! the previous run still going is skipped, and a failed run is logged and
//! left to the next tick.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use actix::prelude::*;

/// Runs the future `work` makes every `interval`, unless the last one is
/// still running. `what` names the job in the log line of a failure.
pub fn every<A, F, Fut, T, E>(ctx: &mut Context<A>, interval: Duration, what: &'static str, mut work: F)
where
    A: Actor<Context = Context<A>>,
    F: FnMut(&mut A) -> Fut + 'static,
    Fut: Future<Output = Result<T, E>> + 'static,
    E: std::fmt::Display + 'static,
{
    let busy = Rc::new(Cell::new(false));
    ctx.run_interval(interval, move |act, ctx| {
        if busy.replace(true) {
            return;
        }
        let busy = busy.clone();
        ctx.spawn(actix::fut::wrap_future::<_, A>(work(act)).map(move |result, _, _| {
            busy.set(false);
            if let Err(error) = result {
                tracing::warn!(%error, "{what} failed; next tick retries");
            }
        }));
    });
}

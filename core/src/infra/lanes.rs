//! Order per key inside one actor: a message for a key starts only when every
//! earlier message for that key on this actor has finished, while messages for
//! other keys run concurrently. A shard owns one `Lanes` and so really orders
//! an account's (or a verification's) requests in process; PostgreSQL's locks
//! stay the truth across processes, and a request waiting its turn here holds
//! no database connection.
//!
//! Plain data with no mailbox: `enter` is called from a handler (in arrival
//! order, on the actor's thread), the returned [`Turn`] is awaited by the
//! handler's future, and `leave` is called back on the actor when it ends.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use actix::prelude::*;
use tokio::sync::oneshot;

/// An actor that keeps its requests in order per lane.
pub trait Ordered: Actor<Context = Context<Self>> {
    type Lane: Hash + Eq + Clone + Unpin + 'static;

    fn lanes(&mut self) -> &mut Lanes<Self::Lane>;

    /// Runs `work` once every earlier request for `lane` on this actor has
    /// finished, without holding up other lanes. The work runs as a task of
    /// its own (as a plain `ResponseFuture` would), so a panic fails that one
    /// request (answered as a closed mailbox) and leaves the actor and its
    /// other lanes running.
    fn in_order<T: 'static, E: From<MailboxError> + 'static>(
        &mut self,
        lane: Self::Lane,
        work: impl Future<Output = Result<T, E>> + 'static,
    ) -> ResponseActFuture<Self, Result<T, E>> {
        let mut turn = self.lanes().enter(lane.clone());
        let ticket = turn.ticket();
        let task = actix::spawn(async move {
            turn.ready().await;
            let out = work.await;
            drop(turn);
            out
        });
        let joined = async move {
            task.await.unwrap_or_else(|error| {
                tracing::error!(%error, "a request's task failed; it is answered as a closed mailbox");
                Err(E::from(MailboxError::Closed))
            })
        };
        Box::pin(joined.into_actor(self).map(move |out, act, _| {
            act.lanes().leave(&lane, ticket);
            out
        }))
    }
}

/// The tail of each key's lane: the ticket of the last message entered and
/// the signal that it has finished.
pub struct Lanes<K> {
    tails: HashMap<K, (u64, oneshot::Receiver<()>)>,
    next_ticket: u64,
}

impl<K> Default for Lanes<K> {
    fn default() -> Self {
        Lanes { tails: HashMap::new(), next_ticket: 0 }
    }
}

/// One message's place in its lane. Dropping it (the work is done, or was
/// dropped) lets the next message for the key start.
pub struct Turn {
    before: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
    ticket: u64,
}

impl<K: Hash + Eq> Lanes<K> {
    /// Queues a message for `key` behind the ones entered before it.
    pub fn enter(&mut self, key: K) -> Turn {
        let (done, finished) = oneshot::channel();
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let before = self.tails.insert(key, (ticket, finished)).map(|(_, before)| before);
        Turn { before, _done: done, ticket }
    }

    /// Forgets `key` when the message holding `ticket` was its last, so the map
    /// holds only keys with work in flight.
    pub fn leave(&mut self, key: &K, ticket: u64) {
        if self.tails.get(key).is_some_and(|(tail, _)| *tail == ticket) {
            self.tails.remove(key);
        }
    }

    /// Keys with a message running or waiting.
    pub fn len(&self) -> usize {
        self.tails.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tails.is_empty()
    }
}

impl Turn {
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Resolves once the message before this one (for the same key) has finished.
    pub async fn ready(&mut self) {
        if let Some(before) = self.before.take() {
            // An error only means the earlier turn was dropped: it has finished too.
            let _ = before.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::*;

    type Log = Rc<RefCell<Vec<String>>>;

    /// Does `work` in its turn, recording when it starts and ends; `yields`
    /// stands for how long the work takes (a current-thread runtime runs
    /// every other ready task at each yield).
    async fn run(mut turn: Turn, name: &'static str, yields: usize, log: Log) {
        turn.ready().await;
        log.borrow_mut().push(format!("{name} starts"));
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        log.borrow_mut().push(format!("{name} ends"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_key_runs_in_arrival_order_even_when_the_first_is_slowest() {
        let local = tokio::task::LocalSet::new();
        let log = Log::default();
        let mut lanes = Lanes::default();
        let turns = [("a", 20), ("b", 0), ("c", 5)].map(|(name, yields)| (lanes.enter("alice"), name, yields));
        let tasks: Vec<_> = turns
            .into_iter()
            .map(|(turn, name, yields)| local.spawn_local(run(turn, name, yields, log.clone())))
            .collect();
        local.run_until(futures_util::future::join_all(tasks)).await;
        assert_eq!(*log.borrow(), ["a starts", "a ends", "b starts", "b ends", "c starts", "c ends"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn other_keys_do_not_wait() {
        let local = tokio::task::LocalSet::new();
        let mut lanes = Lanes::default();
        let (bob_done, bob_finished) = oneshot::channel::<()>();
        // Alice's work can only end after Bob's: if keys shared one lane, this would never finish.
        let mut alice = lanes.enter("alice");
        let alice = local.spawn_local(async move {
            alice.ready().await;
            bob_finished.await.is_ok()
        });
        let mut bob = lanes.enter("bob");
        let bob = local.spawn_local(async move {
            bob.ready().await;
            bob_done.send(()).is_ok()
        });
        let both = local.run_until(futures_util::future::join(alice, bob));
        let (alice, bob) = tokio::time::timeout(Duration::from_secs(5), both).await.expect("keys run concurrently");
        assert!(alice.unwrap() && bob.unwrap());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_turn_lets_the_next_one_start() {
        let mut lanes = Lanes::default();
        let first = lanes.enter("alice");
        let mut second = lanes.enter("alice");
        drop(first);
        tokio::time::timeout(Duration::from_secs(5), second.ready()).await.expect("the second turn starts");
    }

    /// An actor that keeps its requests in order, for the tests below.
    struct Shard {
        lanes: Lanes<&'static str>,
    }

    impl Actor for Shard {
        type Context = Context<Self>;
    }

    impl Ordered for Shard {
        type Lane = &'static str;

        fn lanes(&mut self) -> &mut Lanes<&'static str> {
            &mut self.lanes
        }
    }

    /// Do `work` for `account`; a request named "boom" panics.
    #[derive(Message)]
    #[rtype(result = "Result<&'static str, MailboxError>")]
    struct Work {
        account: &'static str,
        name: &'static str,
    }

    impl Handler<Work> for Shard {
        type Result = ResponseActFuture<Self, Result<&'static str, MailboxError>>;

        fn handle(&mut self, msg: Work, _: &mut Self::Context) -> Self::Result {
            self.in_order(msg.account, async move {
                tokio::task::yield_now().await;
                assert_ne!(msg.name, "boom", "this request fails");
                Ok(msg.name)
            })
        }
    }

    #[actix_rt::test]
    async fn a_request_that_panics_fails_alone_and_its_lane_goes_on() {
        let shard = Shard { lanes: Lanes::default() }.start();
        let boom = shard.send(Work { account: "alice", name: "boom" });
        let next = shard.send(Work { account: "alice", name: "next" });
        let other = shard.send(Work { account: "bob", name: "other" });
        let (boom, next, other) = futures_util::future::join3(boom, next, other).await;
        assert!(matches!(boom, Ok(Err(MailboxError::Closed))), "the panicking request alone fails");
        assert_eq!(next.unwrap(), Ok("next"), "the next request in its lane still runs");
        assert_eq!(other.unwrap(), Ok("other"));
        let later = shard.send(Work { account: "alice", name: "later" }).await;
        assert_eq!(later.unwrap(), Ok("later"), "the shard is still alive");
    }

    #[test]
    fn a_key_is_forgotten_only_when_its_last_turn_leaves() {
        let mut lanes = Lanes::default();
        let first = lanes.enter("alice");
        let second = lanes.enter("alice");
        lanes.leave(&"alice", first.ticket());
        assert_eq!(lanes.len(), 1, "the second turn still holds the lane");
        lanes.leave(&"alice", second.ticket());
        assert!(lanes.is_empty());
    }
}

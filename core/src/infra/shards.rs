//! A fixed set of actor instances, each on its own arbiter (thread), addressed by
//! a hash of a key: work for one account always lands on the same instance while
//! different accounts spread over all cores.

use std::hash::{DefaultHasher, Hash, Hasher};

use actix::{Actor, Addr, Arbiter, Context};

pub struct Shards<A: Actor> {
    addrs: Vec<Addr<A>>,
    _arbiters: Vec<Arbiter>,
}

impl<A: Actor> Clone for Shards<A> {
    fn clone(&self) -> Self {
        // Arbiters are owned by the first instance; clones only address the actors.
        Shards { addrs: self.addrs.clone(), _arbiters: Vec::new() }
    }
}

impl<A> Shards<A>
where
    A: Actor<Context = Context<A>> + Send,
{
    /// Starts `count` instances (at least one), each built by `make` on its own thread.
    pub fn start<F>(count: usize, make: F) -> Self
    where
        F: Fn(usize) -> A,
    {
        let count = count.max(1);
        let mut addrs = Vec::with_capacity(count);
        let mut arbiters = Vec::with_capacity(count);
        for index in 0..count {
            let arbiter = Arbiter::new();
            let actor = make(index);
            addrs.push(A::start_in_arbiter(&arbiter.handle(), move |_| actor));
            arbiters.push(arbiter);
        }
        Shards { addrs, _arbiters: arbiters }
    }
}

impl<A: Actor> Shards<A> {
    pub fn pick(&self, key: &impl Hash) -> &Addr<A> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let index = (h.finish() % self.addrs.len() as u64) as usize;
        &self.addrs[index]
    }
}

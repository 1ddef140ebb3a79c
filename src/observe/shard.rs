//! Per-thread shards for the figures every worker updates on every request (histograms, request
//! counters, the in-flight gauge, the rolling window), and for the shared values whose reference
//! counts every request would otherwise raise and drop ([`Sharded::from_fn`]).
//!
//! A figure that both workers update on every request passes its cache line back and forth
//! between their cores. Such a figure keeps one copy per shard instead, each on 128 bytes of its
//! own (a line and the neighbour the CPU fetches with it), and a thread always writes the same
//! shard; a read adds the shards up. Threads take shards in turn, so the workers (started
//! together) get shards of their own; threads beyond [`SHARDS`] share.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Copies of each sharded figure.
pub const SHARDS: usize = 8;

/// The shard the current thread writes.
pub fn current() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

/// A value alone on its 128 bytes.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One `T` per shard.
#[derive(Debug)]
pub struct Sharded<T>(Box<[Padded<T>]>);

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self((0..SHARDS).map(|_| Padded::default()).collect())
    }
}

impl<T> Sharded<T> {
    /// A copy per shard, each made by `make`.
    ///
    /// With `T = Arc<U>` and a new `Arc` from each call, this gives every shard a reference
    /// count of its own: a request can hold a clone of its thread's (a count only that thread
    /// raises and drops) where a clone of one shared `Arc` would pass its count's cache line
    /// between the workers twice per request.
    pub fn from_fn(mut make: impl FnMut() -> T) -> Self {
        Self((0..SHARDS).map(|_| Padded(make())).collect())
    }

    /// The current thread's copy.
    pub fn local(&self) -> &T {
        &self.0[current()].0
    }

    /// Every copy, to add up.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|padded| &padded.0)
    }
}

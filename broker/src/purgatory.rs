//! The delayed-operation purgatory, keyed by partition (Kafka's
//! `DelayedOperationPurgatory` watch lists): a request that waits for a
//! partition to change (a long-polling fetch, an acks=all produce, a group
//! coordinator's write) registers a [`Waiter`] with that partition's
//! [`Watchers`], and only a change of that partition wakes it. Before this,
//! one broker-wide signal woke every waiting request on every
//! high-watermark move.
//!
//! Lost wake-ups cannot happen: a waiter registers before it checks its
//! condition, and `tokio::sync::Notify::notify_one` stores a permit when
//! nobody is waiting yet, so a change between the check and the wait ends
//! the wait at once.

use std::sync::{Arc, Mutex, Weak};
use tokio::sync::Notify;

/// One waiting request's wake-up, registered with every partition it
/// waits on.
#[derive(Debug, Default, Clone)]
pub struct Waiter(Arc<Notify>);

impl Waiter {
    /// A new waiter, registered nowhere yet.
    pub fn new() -> Waiter {
        Waiter::default()
    }

    /// Waits until a partition it watches changes, or `deadline`; returns
    /// whether it was woken (false: the deadline passed).
    pub async fn wait_until(&self, deadline: tokio::time::Instant) -> bool {
        tokio::time::timeout_at(deadline, self.0.notified())
            .await
            .is_ok()
    }
}

/// The requests waiting on one kind of change of one partition. Held
/// weakly: a request that finished (or was dropped with its connection)
/// leaves nothing behind but a dead entry, removed at the next wake-up or
/// registration.
#[derive(Debug, Default)]
pub struct Watchers {
    list: Mutex<Vec<Weak<Notify>>>,
}

/// Registrations kept before dead entries are swept on registration, so a
/// partition nobody changes cannot accumulate them without bound.
const SWEEP_AT: usize = 64;

impl Watchers {
    /// Registers `waiter` for the next change.
    pub fn watch(&self, waiter: &Waiter) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() >= SWEEP_AT {
            list.retain(|w| w.strong_count() > 0);
        }
        list.push(Arc::downgrade(&waiter.0));
    }

    /// Wakes every registered waiter; each must register again to hear of
    /// the next change (it re-checks its condition first).
    pub fn wake_all(&self) {
        let woken = std::mem::take(&mut *self.list.lock().unwrap_or_else(|e| e.into_inner()));
        for w in woken.iter().filter_map(Weak::upgrade) {
            w.notify_one();
        }
    }

    /// Registered entries, live or not (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.list.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_not_lost() {
        let (watchers, waiter) = (Watchers::default(), Waiter::new());
        watchers.watch(&waiter);
        watchers.wake_all();
        assert!(waiter.wait_until(soon()).await);
    }

    #[tokio::test]
    async fn only_the_watched_partition_wakes_a_waiter() {
        let (a, b, waiter) = (Watchers::default(), Watchers::default(), Waiter::new());
        a.watch(&waiter);
        b.wake_all();
        assert!(
            !waiter.wait_until(soon()).await,
            "woken by another partition"
        );
        a.wake_all();
        assert!(waiter.wait_until(soon()).await);
    }

    #[tokio::test]
    async fn a_wake_up_is_used_once_and_a_waiter_registers_again() {
        let (watchers, waiter) = (Watchers::default(), Waiter::new());
        watchers.watch(&waiter);
        watchers.wake_all();
        watchers.wake_all(); // nobody registered: nothing stored
        assert!(waiter.wait_until(soon()).await);
        assert!(
            !waiter.wait_until(soon()).await,
            "a second wake-up appeared"
        );
    }

    #[tokio::test]
    async fn one_waiter_on_many_partitions_wakes_on_any() {
        let parts: Vec<Watchers> = (0..3).map(|_| Watchers::default()).collect();
        let waiter = Waiter::new();
        for p in &parts {
            p.watch(&waiter);
        }
        parts[2].wake_all();
        assert!(waiter.wait_until(soon()).await);
    }

    #[test]
    fn finished_requests_are_swept() {
        let watchers = Watchers::default();
        for _ in 0..10 * SWEEP_AT {
            watchers.watch(&Waiter::new()); // dropped at once
        }
        assert!(watchers.len() <= SWEEP_AT + 1, "{}", watchers.len());
        let kept = Waiter::new();
        watchers.watch(&kept);
        watchers.wake_all();
        assert_eq!(watchers.len(), 0);
    }
}

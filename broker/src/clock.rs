//! The broker's clock, injected: monotonic milliseconds for decisions
//! (ISR lag, the leader's follower tracking) and wall-clock milliseconds for
//! what is written down (batch timestamps, retention, serve windows).
//! Handlers, the group coordinator, the fetchers and maintenance all read
//! time here, so a test can hand the broker a [`ManualClock`].

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// Where the broker reads time.
pub trait Clock: Send + Sync + Debug {
    /// Milliseconds on a monotonic clock since an arbitrary start.
    fn monotonic_ms(&self) -> u64;
    /// Wall-clock milliseconds since the Unix epoch.
    fn wall_ms(&self) -> i64;
}

/// The operating system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// Monotonic time counts from now.
    pub fn new() -> SystemClock {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn monotonic_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn wall_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    monotonic: AtomicU64,
    wall: AtomicI64,
}

impl ManualClock {
    /// Both clocks at the given readings.
    pub fn at(monotonic_ms: u64, wall_ms: i64) -> ManualClock {
        ManualClock {
            monotonic: AtomicU64::new(monotonic_ms),
            wall: AtomicI64::new(wall_ms),
        }
    }

    /// Moves both clocks forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.monotonic.fetch_add(ms, Ordering::SeqCst);
        self.wall.fetch_add(ms as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn monotonic_ms(&self) -> u64 {
        self.monotonic.load(Ordering::SeqCst)
    }

    fn wall_ms(&self) -> i64 {
        self.wall.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = ManualClock::at(10, 1_000);
        assert_eq!((clock.monotonic_ms(), clock.wall_ms()), (10, 1_000));
        clock.advance(5);
        assert_eq!((clock.monotonic_ms(), clock.wall_ms()), (15, 1_005));
    }

    #[test]
    fn the_system_clock_is_monotonic_and_near_the_wall() {
        let clock = SystemClock::new();
        let (a, b) = (clock.monotonic_ms(), clock.monotonic_ms());
        assert!(b >= a);
        // 2020-01-01 in ms: the wall clock reads Unix time.
        assert!(clock.wall_ms() > 1_577_836_800_000);
    }
}

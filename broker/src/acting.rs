//! Claim 2 at the instant a request takes effect. A lease check and the
//! effect it allows (an append, a read, an acknowledgment) are separate
//! instructions, and a process can be frozen between any two of them
//! (`docker pause`, SIGSTOP, a long GC-like stall): checked once, before, a
//! leader thawed after its lease ended would still append or answer (found
//! by the fault campaign's pause fault as two brokers serving one partition
//! at overlapping times).
//!
//! So every effect runs between two checks. The lease is one interval per
//! epoch: if this broker leads in the same epoch at both checks, the effect
//! happened inside it. The serve-window time is read after the effect and
//! before the second check, so it lies inside the lease too. If the second
//! check fails, the effect is reported as NOT_LEADER_OR_FOLLOWER: an append
//! is never acknowledged (and, never replicated, is a divergent tail the
//! next leader's epoch truncates), a read is never returned.

use kafka_protocol::ResponseError;

/// What one check found: the leader epoch this broker leads in now.
pub trait Standing {
    /// The epoch led.
    fn leader_epoch(&self) -> i32;
}

impl Standing for crate::state::Led {
    fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }
}

/// Runs `act` between two leadership checks (`check`), and only when both
/// find the same epoch reports its result and calls `served` with the wall
/// time read between the effect and the second check.
pub fn between_checks<L: Standing, T>(
    check: impl Fn() -> Result<L, ResponseError>,
    wall_ms: impl FnOnce() -> i64,
    act: impl FnOnce(&L) -> Result<T, ResponseError>,
    served: impl FnOnce(&L, i64),
) -> Result<T, ResponseError> {
    let led = check()?;
    let out = act(&led)?;
    let at = wall_ms();
    match check() {
        Ok(again) if again.leader_epoch() == led.leader_epoch() => {
            served(&led, at);
            Ok(out)
        }
        // The effect may have happened after the lease ended (or after a
        // newer epoch began): nothing of it may reach a client.
        _ => Err(ResponseError::NotLeaderOrFollower),
    }
}

/// Claim 3: an epoch a client sends is checked only when it is 1 or more
/// (0 and -1 mean "none known"). Older than the partition's: fenced;
/// newer: unknown.
pub fn check_epoch(sent: i32, current: i32) -> Result<(), ResponseError> {
    match sent {
        ..=0 => Ok(()),
        e if e < current => Err(ResponseError::FencedLeaderEpoch),
        e if e > current => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    struct Epoch(i32);

    impl Standing for Epoch {
        fn leader_epoch(&self) -> i32 {
            self.0
        }
    }

    /// A broker's standing as the test changes it: `None` is "may not lead".
    struct Fake {
        epoch: Cell<Option<i32>>,
        served: RefCell<Vec<(i32, i64)>>,
    }

    impl Fake {
        fn leading(epoch: Option<i32>) -> Fake {
            Fake {
                epoch: Cell::new(epoch),
                served: RefCell::new(Vec::new()),
            }
        }

        /// Acts as leader; `during` runs as the effect, standing for all
        /// that can happen while the thread is frozen.
        fn act(&self, during: impl FnOnce(&Fake)) -> Result<&'static str, ResponseError> {
            between_checks(
                || {
                    self.epoch
                        .get()
                        .map(Epoch)
                        .ok_or(ResponseError::NotLeaderOrFollower)
                },
                || 1_000,
                |_| {
                    during(self);
                    Ok("appended")
                },
                |led, at| self.served.borrow_mut().push((led.0, at)),
            )
        }
    }

    #[test]
    fn an_effect_counts_only_when_leadership_holds_on_both_sides_of_it() {
        type During = fn(&Fake);
        let cases: [(&str, Option<i32>, During, bool); 5] = [
            ("lease live throughout", Some(5), |_| {}, true),
            ("not leader before", None, |_| {}, false),
            (
                "frozen past the lease's end (the campaign's pause)",
                Some(5),
                |f| f.epoch.set(None),
                false,
            ),
            (
                "frozen while a newer epoch was given back to it",
                Some(5),
                |f| f.epoch.set(Some(7)),
                false,
            ),
            (
                "an unrelated stall inside the lease",
                Some(5),
                |f| f.epoch.set(Some(5)),
                true,
            ),
        ];
        for (name, before, during, allowed) in cases {
            let fake = Fake::leading(before);
            let result = fake.act(during);
            assert_eq!(result.is_ok(), allowed, "{name}: {result:?}");
            let served = fake.served.borrow().clone();
            match allowed {
                true => assert_eq!(served, vec![(5, 1_000)], "{name}"),
                false => assert!(served.is_empty(), "{name}: recorded {served:?}"),
            }
            if !allowed && before.is_some() {
                assert_eq!(result, Err(ResponseError::NotLeaderOrFollower), "{name}");
            }
        }
    }

    #[test]
    fn a_refused_effect_reports_its_own_error_and_records_nothing() {
        let fake = Fake::leading(Some(3));
        let result: Result<(), _> = between_checks(
            || {
                fake.epoch
                    .get()
                    .map(Epoch)
                    .ok_or(ResponseError::NotLeaderOrFollower)
            },
            || 1,
            |_| Err(ResponseError::CorruptMessage),
            |_, _| panic!("a refused effect is not served"),
        );
        assert_eq!(result, Err(ResponseError::CorruptMessage));
    }
}

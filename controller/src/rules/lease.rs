//! The leader lease (CLAIMS.md, claim 2), both halves, as pure functions of
//! monotonic milliseconds passed in.
//!
//! - The broker may serve until `sent_at + session_timeout - drift_margin`
//!   on its own clock, where `sent_at` is when it *sent* the last heartbeat
//!   the controller acknowledged.
//! - The controller may fence the broker (and elect successors) once
//!   `session_timeout` has passed on its clock since it *received* that
//!   broker's last heartbeat, and never sooner than `session_timeout` after
//!   it became the active controller (it cannot know what its predecessor
//!   received).
//!
//! Why it is safe: the heartbeat was sent before it was received, so with
//! both clocks exact the broker stops `drift_margin` before the controller
//! may act. If the broker's clock runs slow by factor `r` and the
//! controller's fast by `q`, the broker's `T - m` local ms take `(T - m)/r`
//! real ms and the controller's `T` take `T/q`; the broker stops first while
//! `m >= T * (1 - r/q)`. With both rates within `1 ± ρ`, the worst case is
//! `r/q = (1-ρ)/(1+ρ)`, so `m = T * 2ρ/(1+ρ)`, rounded up, plus one
//! millisecond for clock granularity: [`drift_margin_ms`].

/// The default `broker.session.timeout.ms`: short enough that a dead
/// leader is replaced within a second (the failover benchmark's p99), with
/// heartbeats every 200 ms, so four in a row must be lost to fence a live
/// broker. Kafka's own default is 9 s (18 s before 3.0's KRaft).
pub const DEFAULT_SESSION_TIMEOUT_MS: u64 = 800;

/// Lease settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// `broker.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// The largest clock-rate error assumed between any two nodes, in parts
    /// per million (`max.clock.drift.ppm`).
    pub max_clock_drift_ppm: u64,
}

/// A lease setting that cannot be made safe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lease config: {0}")]
pub struct LeaseConfigError(pub String);

impl LeaseConfig {
    /// Checks that the margin leaves a usable lease.
    pub fn validate(&self) -> Result<(), LeaseConfigError> {
        if self.session_timeout_ms == 0 {
            return Err(LeaseConfigError("session timeout must be positive".into()));
        }
        if self.max_clock_drift_ppm >= 100_000 {
            return Err(LeaseConfigError(
                "clock drift of 10% or more leaves no safe lease".into(),
            ));
        }
        if drift_margin_ms(self) >= self.session_timeout_ms {
            return Err(LeaseConfigError(
                "the drift margin consumes the whole session timeout".into(),
            ));
        }
        Ok(())
    }
}

/// How much earlier than the session timeout a broker stops serving.
///
/// Session timeout 1000 ms, drift 1% (10,000 ppm): `1000 * 0.02/1.01` =
/// 19.8, rounded up to 20, plus 1: 21 ms.
pub fn drift_margin_ms(c: &LeaseConfig) -> u64 {
    let (t, p) = (
        u128::from(c.session_timeout_ms),
        u128::from(c.max_clock_drift_ppm),
    );
    let margin = (t * 2 * p).div_ceil(1_000_000 + p);
    margin as u64 + 1
}

/// Broker side: its lease ends at this instant of its monotonic clock.
pub fn lease_expiry_ms(c: &LeaseConfig, acked_heartbeat_sent_at_ms: u64) -> u64 {
    acked_heartbeat_sent_at_ms + c.session_timeout_ms - drift_margin_ms(c)
}

/// Broker side: whether it may serve as leader at `now_ms`, given when it
/// sent the last heartbeat the controller acknowledged (`None`: none yet).
pub fn may_serve(c: &LeaseConfig, acked_heartbeat_sent_at_ms: Option<u64>, now_ms: u64) -> bool {
    acked_heartbeat_sent_at_ms.is_some_and(|sent| now_ms < lease_expiry_ms(c, sent))
}

/// Controller side: the instant of its monotonic clock from which it may
/// fence a broker whose last heartbeat it received at `received_at_ms`
/// (`None`: none since it became active at `active_since_ms`).
pub fn fence_deadline_ms(
    c: &LeaseConfig,
    received_at_ms: Option<u64>,
    active_since_ms: u64,
) -> u64 {
    received_at_ms
        .unwrap_or(active_since_ms)
        .max(active_since_ms)
        + c.session_timeout_ms
}

/// Controller side: whether the broker's session has expired at `now_ms`.
pub fn session_expired(
    c: &LeaseConfig,
    received_at_ms: Option<u64>,
    active_since_ms: u64,
    now_ms: u64,
) -> bool {
    now_ms >= fence_deadline_ms(c, received_at_ms, active_since_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const C: LeaseConfig = LeaseConfig {
        session_timeout_ms: 1000,
        max_clock_drift_ppm: 10_000,
    };

    #[test]
    fn margin_and_deadlines_table() {
        assert_eq!(drift_margin_ms(&C), 21);
        assert_eq!(
            drift_margin_ms(&LeaseConfig {
                max_clock_drift_ppm: 0,
                ..C
            }),
            1
        );
        assert_eq!(lease_expiry_ms(&C, 5_000), 5_979);
        // (sent_at of last acked heartbeat, now, may serve)
        for (sent, now, expected) in [
            (None, 0, false),
            (Some(5_000), 5_000, true),
            (Some(5_000), 5_978, true),
            (Some(5_000), 5_979, false),
        ] {
            assert_eq!(may_serve(&C, sent, now), expected, "{sent:?} at {now}");
        }
        // (received_at, active since, now, expired)
        let cases = [
            (Some(5_000), 0, 5_999, false),
            (Some(5_000), 0, 6_000, true),
            (None, 7_000, 7_999, false), // new controller waits a full timeout
            (None, 7_000, 8_000, true),
            (Some(5_000), 7_000, 7_500, false), // heard before it was active: still waits
            (Some(7_200), 7_000, 8_100, false),
            (Some(7_200), 7_000, 8_200, true),
        ];
        for (received, active, now, expected) in cases {
            assert_eq!(
                session_expired(&C, received, active, now),
                expected,
                "{received:?} {active} {now}"
            );
        }
    }

    #[test]
    fn unsafe_configs_are_refused() {
        assert!(C.validate().is_ok());
        assert!(LeaseConfig {
            session_timeout_ms: 0,
            ..C
        }
        .validate()
        .is_err());
        assert!(LeaseConfig {
            max_clock_drift_ppm: 200_000,
            ..C
        }
        .validate()
        .is_err());
        assert!(LeaseConfig {
            session_timeout_ms: 2,
            max_clock_drift_ppm: 99_999
        }
        .validate()
        .is_err());
    }

    proptest! {
        /// Claim 2 under drift: the broker's last serving instant (real time)
        /// comes before the instant the controller may fence it, for any
        /// clock rates within the bound, any offsets, and any delay of the
        /// heartbeat, including a controller that became active late.
        #[test]
        fn broker_stops_before_controller_may_elect(
            timeout in 50u64..20_000,
            drift_ppm in 0u64..50_000,
            broker_rate_ppm in -1_000_000i64..=1_000_000,
            controller_rate_ppm in -1_000_000i64..=1_000_000,
            send_real in 0u64..1_000_000,
            delay in 0u64..5_000,
            active_lag in 0u64..10_000,
            broker_offset in 0u64..1_000_000,
            controller_offset in 0u64..1_000_000,
        ) {
            let c = LeaseConfig { session_timeout_ms: timeout, max_clock_drift_ppm: drift_ppm };
            prop_assume!(c.validate().is_ok());
            // Rates in [1 - ρ, 1 + ρ], scaled from the generated fractions.
            let rho = drift_ppm as f64 / 1e6;
            let r = 1.0 + rho * broker_rate_ppm as f64 / 1e6;
            let q = 1.0 + rho * controller_rate_ppm as f64 / 1e6;
            // Local clocks: local(t) = offset + rate * t, in real ms t.
            let broker_local = |t: f64| broker_offset as f64 + r * t;
            let controller_local = |t: f64| controller_offset as f64 + q * t;
            let sent_local = broker_local(send_real as f64).floor() as u64;
            let received_real = (send_real + delay) as f64;
            let received_local = controller_local(received_real).floor() as u64;
            let active_since_local = controller_local(send_real as f64 - active_lag as f64).floor().max(0.0) as u64;
            // Real instant the broker stops: its clock reaches the expiry.
            let expiry_local = lease_expiry_ms(&c, sent_local) as f64;
            let broker_stop_real = (expiry_local + 1.0 - broker_offset as f64) / r;
            // Real instant the controller may fence.
            let deadline_local = fence_deadline_ms(&c, Some(received_local), active_since_local) as f64;
            let fence_real = (deadline_local - controller_offset as f64) / q;
            prop_assert!(broker_stop_real <= fence_real + 1e-6,
                "broker serves until {broker_stop_real}, controller may fence at {fence_real}");
        }
    }
}

//! A circuit breaker per provider, per process: after `failures_to_open`
//! retryable failures in a row the provider is skipped for `open_for`, so
//! traffic goes straight to the next provider of the route instead of waiting
//! on timeouts. Then one trial request is let through (half-open): its success
//! closes the circuit, its failure opens it again.
//!
//! Each process keeps its own breakers (a provider's health as this process
//! sees it); nothing here must agree across processes, so nothing is stored.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Retryable failures in a row that open the circuit.
    pub failures_to_open: u32,
    /// How long an open circuit skips the provider before one trial request.
    #[serde(rename = "open_for_ms", deserialize_with = "millis")]
    pub open_for: Duration,
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings { failures_to_open: 5, open_for: Duration::from_secs(30) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial request is out since `since`. If it never reports (its task
    /// was cancelled), another trial is allowed after `open_for`.
    HalfOpen {
        since: Instant,
    },
}

/// What a breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send.
    Send,
    /// Half-open: send this one as the trial.
    Trial,
    /// Open: skip this provider.
    Skip,
}

/// A circuit as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Circuit {
    /// Sending; `failures` retryable failures in a row so far.
    Closed { failures: u32 },
    /// Skipped until a trial is let through in `reopens_in`.
    Open { reopens_in: Duration },
    /// One trial request decides (or its time came and none was sent yet).
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed { .. } => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen => "half_open",
        }
    }

    /// The value of the `verifyd_provider_circuit_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            Circuit::Closed { .. } => 0.0,
            Circuit::HalfOpen => 1.0,
            Circuit::Open { .. } => 2.0,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker { settings, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admission::Send,
            State::Open { until } | State::HalfOpen { since: until } if now < until => Admission::Skip,
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now + self.settings.open_for };
                Admission::Trial
            }
        }
    }

    /// The provider answered (accepted, or refused this message for a reason of
    /// its own): it is up.
    pub fn succeeded(&self) {
        *self.state() = State::Closed { failures: 0 };
    }

    /// The provider failed in a retryable way (5xx, 429, timeout). Returns true
    /// when this failure opened the circuit.
    pub fn failed(&self, now: Instant) -> bool {
        let mut state = self.state();
        let open = State::Open { until: now + self.settings.open_for };
        match *state {
            State::Closed { failures } if failures + 1 < self.settings.failures_to_open.max(1) => {
                *state = State::Closed { failures: failures + 1 };
                false
            }
            State::Closed { .. } | State::HalfOpen { .. } => {
                *state = open;
                true
            }
            // A request sent before the circuit opened came back: keep it open.
            State::Open { .. } => false,
        }
    }

    /// How long until an open circuit lets a trial through (zero when closed).
    pub fn opens_in(&self, now: Instant) -> Duration {
        match *self.state() {
            State::Closed { .. } => Duration::ZERO,
            State::Open { until } | State::HalfOpen { since: until } => until.saturating_duration_since(now),
        }
    }

    /// What the circuit is now, for operators.
    pub fn circuit(&self, now: Instant) -> Circuit {
        match *self.state() {
            State::Closed { failures } => Circuit::Closed { failures },
            State::Open { until } if now < until => Circuit::Open { reopens_in: until - now },
            State::Open { .. } => Circuit::HalfOpen,
            State::HalfOpen { .. } => Circuit::HalfOpen,
        }
    }

    pub fn is_open(&self, now: Instant) -> bool {
        match *self.state() {
            State::Closed { .. } => false,
            State::Open { until } => now < until,
            State::HalfOpen { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings { failures_to_open: 3, open_for: Duration::from_secs(30) })
    }

    #[test]
    fn opens_after_failures_in_a_row_and_skips_until_the_trial() {
        let b = breaker();
        let t0 = Instant::now();
        assert!(!b.failed(t0));
        assert!(!b.failed(t0));
        assert_eq!(b.admit(t0), Admission::Send);
        assert!(b.failed(t0), "the third failure in a row opens the circuit");
        assert_eq!(b.admit(t0 + Duration::from_secs(29)), Admission::Skip);
        assert!(b.is_open(t0 + Duration::from_secs(29)));
        assert_eq!(b.opens_in(t0 + Duration::from_secs(29)), Duration::from_secs(1));
        // After open_for: exactly one trial, the others still skip.
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(t1), Admission::Trial);
        assert_eq!(b.admit(t1), Admission::Skip);
        assert_eq!(b.circuit(t1), Circuit::HalfOpen);
        b.succeeded();
        assert_eq!(b.admit(t1), Admission::Send);
        assert!(!b.is_open(t1));
        assert_eq!(b.circuit(t1), Circuit::Closed { failures: 0 });
        b.failed(t1);
        assert_eq!(b.circuit(t1), Circuit::Closed { failures: 1 });
        b.failed(t1);
        b.failed(t1);
        assert_eq!(b.circuit(t1 + Duration::from_secs(10)), Circuit::Open { reopens_in: Duration::from_secs(20) });
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker();
        let t0 = Instant::now();
        b.failed(t0);
        b.failed(t0);
        b.succeeded();
        assert!(!b.failed(t0));
        assert!(!b.failed(t0));
        assert_eq!(b.admit(t0), Admission::Send);
    }

    #[test]
    fn a_failed_trial_opens_again_and_a_lost_trial_is_replaced() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            b.failed(t0);
        }
        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.admit(t1), Admission::Trial);
        assert!(b.failed(t1));
        assert_eq!(b.admit(t1 + Duration::from_secs(1)), Admission::Skip);
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(b.admit(t2), Admission::Trial);
        // The trial never reports back: another one after open_for.
        assert_eq!(b.admit(t2 + Duration::from_secs(29)), Admission::Skip);
        assert_eq!(b.admit(t2 + Duration::from_secs(30)), Admission::Trial);
    }
}

//! The verification lifecycle, as pure functions of the state and `now`.
//!
//! ```text
//!            check(right code, before deadline)
//!   pending ─────────────────────────────────────▶ approved
//!      │  check(wrong code) → attempts += 1; stays pending while attempts < max
//!      ├────────────────────────────────────────▶ max_attempts_reached  (the max-th wrong try)
//!      ├────────────────────────────────────────▶ expired               (deadline passed: on the
//!      │                                          next check, or by the expiry sweep)
//!      ├────────────────────────────────────────▶ canceled              (the backend called it off)
//!      └────────────────────────────────────────▶ failed                (its latest delivery failed for
//!                                                 good; a dead-letter replay may reopen it)
//! ```
//!
//! Every state but `pending` is terminal, and a verification past its deadline
//! is expired from that instant: whether the sweep has written it yet changes
//! no answer (`State::effective_status`, `CheckOutcome::ended`). A resend keeps the code and the deadline:
//! resending never extends the time a code can be guessed, nor the attempts.

use std::time::Duration;

use crate::domain::verification::{State, Status};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Approved,
    /// Wrong code; the verification stays pending.
    Wrong {
        attempts: i32,
    },
    /// Wrong code and it was the last try allowed.
    MaxAttemptsReached {
        attempts: i32,
    },
    /// The deadline passed; the code is not even compared.
    Expired,
    /// Already terminal: nothing changes.
    NotPending(Status),
}

impl CheckOutcome {
    /// The status of a verification the check could not decide because it had
    /// ended: already terminal, or past its deadline (expired by this check,
    /// or earlier by the sweep: the caller answers the same either way).
    pub fn ended(self) -> Option<Status> {
        match self {
            CheckOutcome::NotPending(s) => Some(s),
            CheckOutcome::Expired => Some(Status::Expired),
            _ => None,
        }
    }

    /// The status after the check.
    pub fn status(self) -> Status {
        match self {
            CheckOutcome::Approved => Status::Approved,
            CheckOutcome::Wrong { .. } => Status::Pending,
            CheckOutcome::MaxAttemptsReached { .. } => Status::MaxAttemptsReached,
            CheckOutcome::Expired => Status::Expired,
            CheckOutcome::NotPending(s) => s,
        }
    }
}

/// Decides a check. `code_matches` is computed by the caller in constant time;
/// it is ignored when the verification cannot be approved any more.
pub fn check(state: &State, code_matches: bool, now: DateTime<Utc>) -> CheckOutcome {
    if state.status != Status::Pending {
        return CheckOutcome::NotPending(state.status);
    }
    if now >= state.expires_at {
        return CheckOutcome::Expired;
    }
    if state.attempts >= state.max_attempts {
        return CheckOutcome::MaxAttemptsReached { attempts: state.attempts };
    }
    if code_matches {
        return CheckOutcome::Approved;
    }
    let attempts = state.attempts + 1;
    if attempts >= state.max_attempts {
        CheckOutcome::MaxAttemptsReached { attempts }
    } else {
        CheckOutcome::Wrong { attempts }
    }
}

/// Limits on resending one verification.
#[derive(Debug, Clone, Copy)]
pub struct ResendPolicy {
    /// Sends in all, the first one included.
    pub max_sends: i32,
    /// Minimum time between two sends of the same verification.
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResendRefusal {
    NotPending(Status),
    TooSoon { retry_after: Duration },
    TooManySends,
}

pub fn resend(state: &State, policy: &ResendPolicy, now: DateTime<Utc>) -> Result<(), ResendRefusal> {
    let status = state.effective_status(now);
    if status != Status::Pending {
        return Err(ResendRefusal::NotPending(status));
    }
    if state.sends >= policy.max_sends {
        return Err(ResendRefusal::TooManySends);
    }
    let next_allowed = state.last_sent_at + policy.interval;
    if now < next_allowed {
        let wait = (next_allowed - now).to_std().unwrap_or_default();
        return Err(ResendRefusal::TooSoon { retry_after: wait });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn fresh(now: DateTime<Utc>) -> State {
        State {
            status: Status::Pending,
            attempts: 0,
            max_attempts: 5,
            sends: 1,
            expires_at: now + TimeDelta::minutes(10),
            last_sent_at: now,
        }
    }

    #[test]
    fn right_code_approves() {
        let now = crate::timestamp::now();
        assert_eq!(check(&fresh(now), true, now), CheckOutcome::Approved);
    }

    #[test]
    fn fifth_wrong_try_ends_it() {
        let now = crate::timestamp::now();
        let mut s = fresh(now);
        for n in 1..5 {
            assert_eq!(check(&s, false, now), CheckOutcome::Wrong { attempts: n });
            s.attempts = n;
        }
        assert_eq!(check(&s, false, now), CheckOutcome::MaxAttemptsReached { attempts: 5 });
        s.status = Status::MaxAttemptsReached;
        s.attempts = 5;
        // Even the right code does nothing now.
        assert_eq!(check(&s, true, now), CheckOutcome::NotPending(Status::MaxAttemptsReached));
    }

    #[test]
    fn deadline_beats_a_right_code() {
        let now = crate::timestamp::now();
        let s = fresh(now);
        let later = now + TimeDelta::minutes(10);
        assert_eq!(check(&s, true, later - TimeDelta::milliseconds(1)), CheckOutcome::Approved);
        assert_eq!(check(&s, true, later), CheckOutcome::Expired);
        assert_eq!(s.effective_status(later), Status::Expired);
        assert_eq!(s.effective_status(now), Status::Pending);
    }

    #[test]
    fn terminal_states_stay() {
        let now = crate::timestamp::now();
        let mut s = fresh(now);
        s.status = Status::Approved;
        assert_eq!(check(&s, true, now), CheckOutcome::NotPending(Status::Approved));
    }

    #[test]
    fn resend_respects_interval_count_and_deadline() {
        let now = crate::timestamp::now();
        let policy = ResendPolicy { max_sends: 3, interval: Duration::from_secs(30) };
        let mut s = fresh(now);
        assert_eq!(
            resend(&s, &policy, now + TimeDelta::seconds(10)),
            Err(ResendRefusal::TooSoon { retry_after: Duration::from_secs(20) })
        );
        assert_eq!(resend(&s, &policy, now + TimeDelta::seconds(30)), Ok(()));
        s.sends = 3;
        assert_eq!(resend(&s, &policy, now + TimeDelta::seconds(60)), Err(ResendRefusal::TooManySends));
        s.sends = 1;
        assert_eq!(resend(&s, &policy, now + TimeDelta::minutes(11)), Err(ResendRefusal::NotPending(Status::Expired)));
    }
}

//! Lifecycle states and the closed list of drop reasons.
//!
//! An event is `received` once (the recorder's durable record), may be
//! `routed` once, and then each delivery to a target moves through
//! `in_transit → delivered → processed | failed | expired | dropped |
//! dead_lettered`. [`Delivery`] is the per-target state machine that delivery
//! components use, so an impossible sequence is a bug caught where it happens.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A recorded state of an event or of one of its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Durably recorded at ingress; the producer may now be acknowledged.
    Received,
    /// Matched against triggers and subscriptions; detail says how many.
    Routed,
    /// Queued for, or being sent to, a target.
    InTransit,
    /// The target has it: written (QoS 0) or acknowledged (QoS 1/2, a function started).
    Delivered,
    /// A function handled it successfully.
    Processed,
    /// A function or delivery attempt failed; may be retried.
    Failed,
    /// Its time-to-live passed before delivery.
    Expired,
    /// Discarded on purpose; detail holds a [`DropReason`].
    Dropped,
    /// Given up on after failures or by a guard; kept for replay.
    DeadLettered,
}

impl State {
    pub const ALL: [State; 9] = [
        State::Received,
        State::Routed,
        State::InTransit,
        State::Delivered,
        State::Processed,
        State::Failed,
        State::Expired,
        State::Dropped,
        State::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Received => "received",
            State::Routed => "routed",
            State::InTransit => "in_transit",
            State::Delivered => "delivered",
            State::Processed => "processed",
            State::Failed => "failed",
            State::Expired => "expired",
            State::Dropped => "dropped",
            State::DeadLettered => "dead_lettered",
        }
    }

    /// A stable small number for compact storage; never renumber.
    pub fn code(self) -> u8 {
        match self {
            State::Received => 0,
            State::Routed => 1,
            State::InTransit => 2,
            State::Delivered => 3,
            State::Processed => 4,
            State::Failed => 5,
            State::Expired => 6,
            State::Dropped => 7,
            State::DeadLettered => 8,
        }
    }

    pub fn from_code(code: u8) -> Option<State> {
        State::ALL.get(code as usize).copied()
    }

    /// No further state may follow for the same target.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Processed | State::Expired | State::Dropped | State::DeadLettered)
    }

    /// Whether `self` may follow `previous` for one target (`None`: the
    /// target has no state yet, the event is only `received`/`routed`).
    pub fn may_follow(self, previous: Option<State>) -> bool {
        use State::*;
        match (previous, self) {
            (_, Received | Routed) => false,
            (None, InTransit | Expired | Dropped | DeadLettered) => true,
            (Some(InTransit), Delivered | Failed | Expired | Dropped) => true,
            // A function run without a separate delivery step.
            (Some(InTransit), Processed) => true,
            (Some(Delivered), Processed | Failed) => true,
            // A retry, or giving up.
            (Some(Failed), InTransit | DeadLettered | Dropped) => true,
            _ => false,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            let names: Vec<_> = State::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown state {s:?}; expected one of: {}", names.join(", "))
        })
    }
}

/// The state machine of one delivery (one event to one target).
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    current: Option<State>,
}

/// A transition the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid lifecycle transition: {to} may not follow {}", from.map_or("received", State::as_str))]
pub struct InvalidTransition {
    pub from: Option<State>,
    pub to: State,
}

impl Delivery {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> Option<State> {
        self.current
    }

    /// Moves to `next`, or says why it may not.
    pub fn advance(&mut self, next: State) -> Result<(), InvalidTransition> {
        if !next.may_follow(self.current) {
            return Err(InvalidTransition { from: self.current, to: next });
        }
        self.current = Some(next);
        Ok(())
    }
}

/// Why an event or a delivery was dropped. A closed list: every drop names
/// one, so nothing disappears silently. Documented in `docs/events.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A bounded queue was full (offline queue, function queue, export queue).
    QueueFull,
    /// A message expiry or time-to-live passed before delivery.
    Expired,
    /// A topic ACL or permission denied it.
    AclDenied,
    /// Its `hop` exceeded the recursion limit.
    RecursionLimit,
    /// A cost budget for its function or feature is exhausted.
    BudgetExceeded,
    /// Nothing was subscribed or triggered.
    NoSubscriber,
    /// A rate limit refused it.
    RateLimited,
    /// Larger than a configured maximum (packet, payload, output).
    TooLarge,
    /// It could not be parsed or failed validation after acceptance.
    Malformed,
    /// Its device is disabled or unknown.
    DeviceDisabled,
    /// A function tried to reach a host outside its egress allow-list.
    EgressDenied,
    /// The subscriber's session ended and it asked for no persistence.
    SessionEnded,
    /// The server shut down before delivery and the message was not persistent.
    Shutdown,
    /// The subscriber was offline and the message was QoS 0 (only QoS 1
    /// and 2 are queued for offline sessions).
    Offline,
    /// An operator cleared the queue it waited in.
    Cleared,
    /// Not kept as a retained message: its publisher or the broker is at its
    /// retained-message limit (the message itself was delivered).
    RetainedLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 16] = [
        DropReason::QueueFull,
        DropReason::Expired,
        DropReason::AclDenied,
        DropReason::RecursionLimit,
        DropReason::BudgetExceeded,
        DropReason::NoSubscriber,
        DropReason::RateLimited,
        DropReason::TooLarge,
        DropReason::Malformed,
        DropReason::DeviceDisabled,
        DropReason::EgressDenied,
        DropReason::SessionEnded,
        DropReason::Shutdown,
        DropReason::Offline,
        DropReason::Cleared,
        DropReason::RetainedLimit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Expired => "expired",
            DropReason::AclDenied => "acl_denied",
            DropReason::RecursionLimit => "recursion_limit",
            DropReason::BudgetExceeded => "budget_exceeded",
            DropReason::NoSubscriber => "no_subscriber",
            DropReason::RateLimited => "rate_limited",
            DropReason::TooLarge => "too_large",
            DropReason::Malformed => "malformed",
            DropReason::DeviceDisabled => "device_disabled",
            DropReason::EgressDenied => "egress_denied",
            DropReason::SessionEnded => "session_ended",
            DropReason::Shutdown => "shutdown",
            DropReason::Offline => "offline",
            DropReason::Cleared => "cleared",
            DropReason::RetainedLimit => "retained_limit",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DropReason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DropReason::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown drop reason {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn walk(states: &[State]) -> Result<(), InvalidTransition> {
        let mut delivery = Delivery::new();
        states.iter().try_for_each(|s| delivery.advance(*s))
    }

    #[test]
    fn function_delivery_processed() {
        walk(&[InTransit, Delivered, Processed]).unwrap();
        walk(&[InTransit, Processed]).unwrap();
    }

    #[test]
    fn subscriber_delivery_ends_delivered() {
        walk(&[InTransit, Delivered]).unwrap();
    }

    #[test]
    fn failure_retried_then_dead_lettered() {
        walk(&[InTransit, Failed, InTransit, Delivered, Failed, DeadLettered]).unwrap();
        walk(&[InTransit, Failed, Dropped]).unwrap();
    }

    #[test]
    fn expiry_and_drop_before_or_in_transit() {
        walk(&[Expired]).unwrap();
        walk(&[InTransit, Expired]).unwrap();
        walk(&[Dropped]).unwrap();
        walk(&[InTransit, Dropped]).unwrap();
    }

    #[test]
    fn recursion_guard_dead_letters_before_delivery() {
        walk(&[DeadLettered]).unwrap();
    }

    #[test]
    fn terminal_states_admit_nothing() {
        for terminal in [Processed, Expired, Dropped, DeadLettered] {
            assert!(terminal.is_terminal());
            for next in State::ALL {
                assert!(!next.may_follow(Some(terminal)), "{next} after {terminal}");
            }
        }
    }

    #[test]
    fn impossible_sequences_are_refused() {
        assert_eq!(walk(&[Delivered]), Err(InvalidTransition { from: None, to: Delivered }));
        assert!(walk(&[InTransit, Received]).is_err());
        assert!(walk(&[InTransit, Delivered, Delivered]).is_err());
        assert!(walk(&[Processed]).is_err());
        let err = walk(&[Delivered]).unwrap_err();
        assert_eq!(err.to_string(), "invalid lifecycle transition: delivered may not follow received");
    }

    #[test]
    fn names_and_codes_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
            assert_eq!(State::from_code(state.code()), Some(state));
        }
        for reason in DropReason::ALL {
            assert_eq!(reason.as_str().parse::<DropReason>(), Ok(reason));
        }
        assert!("lost".parse::<State>().unwrap_err().contains("expected one of"));
    }
}

//! Budgets: a limit on what a function, a feature or a device group may
//! use in a window (invocations, CPU milliseconds or cost), what happens
//! when it is reached (`alert`, `throttle`, `stop`), and the percentages
//! at which it is announced. The model and its parsing, with errors that
//! name what to fix; the dispatcher enforces it (`glassbox-functions`),
//! and its changes are recorded as [`BudgetSet`] and [`BudgetDeleted`],
//! each with the [`Principal`] who made it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Principal;
use crate::events::Payload;

/// A budget was set, new or replacing one on the same target (data: [`BudgetSet`]).
pub const BUDGET_SET: &str = "budget.set";
/// A budget was deleted (data: [`BudgetDeleted`]).
pub const BUDGET_DELETED: &str = "budget.deleted";
/// A budget's use in its window reached one of its `at` percentages (data: [`ThresholdReached`]).
pub const BUDGET_THRESHOLD_REACHED: &str = "budget.threshold_reached";

/// The longest feature or group name a target may carry.
const TARGET_NAME_MAX: usize = 128;
/// The most thresholds one budget may announce.
pub const THRESHOLDS_MAX: usize = 10;

/// The rule for a function's name (1-64 letters, digits, `-`, `_`, `.`),
/// shared by deploys and budget targets.
pub fn is_function_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// What a budget is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetTarget {
    /// A function, by name: its invocations.
    Function(String),
    /// `feature:NAME`: the invocations of every function deployed with that feature.
    Feature(String),
    /// `group:NAME`: invocations on events of the devices of that group, or
    /// (with the `messages` measure) the MQTT messages its devices publish,
    /// all together.
    Group(String),
    /// `device:ID`: the MQTT messages one device publishes (`messages` only).
    Device(String),
}

impl BudgetTarget {
    /// The device a `device:` target names.
    pub fn device(&self) -> Option<&str> {
        match self {
            BudgetTarget::Device(id) => Some(id),
            _ => None,
        }
    }
}

/// Why a budget could not be read: names the part and what it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadBudget(pub String);

impl FromStr for BudgetTarget {
    type Err = BadBudget;

    fn from_str(text: &str) -> Result<Self, BadBudget> {
        let (kind, name) = match text.split_once(':') {
            Some((kind, name)) => (Some(kind), name),
            None => (None, text),
        };
        let named = |what: &str| -> Result<String, BadBudget> {
            let fits = !name.is_empty()
                && name.len() <= TARGET_NAME_MAX
                && name.chars().all(|c| !c.is_whitespace() && !c.is_control());
            match fits {
                true => Ok(name.to_string()),
                false => Err(BadBudget(format!(
                    "budget target {text:?}: the {what} name must be 1-{TARGET_NAME_MAX} characters without spaces"
                ))),
            }
        };
        match kind {
            None => match is_function_name(name) {
                true => Ok(BudgetTarget::Function(name.to_string())),
                false => {
                    Err(BadBudget(format!("budget target {text:?}: a function name is 1-64 letters, digits, - _ or .")))
                }
            },
            Some("feature") => Ok(BudgetTarget::Feature(named("feature")?)),
            Some("group") => Ok(BudgetTarget::Group(named("group")?)),
            Some("device") => Ok(BudgetTarget::Device(named("device")?)),
            Some(other) => Err(BadBudget(format!(
                "budget target {text:?}: unknown kind {other:?}; use a function name, feature:NAME, group:NAME or device:ID"
            ))),
        }
    }
}

impl fmt::Display for BudgetTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetTarget::Function(name) => f.write_str(name),
            BudgetTarget::Feature(name) => write!(f, "feature:{name}"),
            BudgetTarget::Group(name) => write!(f, "group:{name}"),
            BudgetTarget::Device(id) => write!(f, "device:{id}"),
        }
    }
}

impl Serialize for BudgetTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BudgetTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Invocations admitted to run (counted at dispatch, so a burst stops at the limit).
    Invocations,
    /// CPU milliseconds of the invocations that ran (counted when each ends).
    CpuMs,
    /// Cost under the `[cost]` prices of the invocations that ran (counted when each ends).
    Cost,
    /// MQTT messages a device (or a group's devices) published, counted by
    /// the gateway at PUBLISH, before anything is recorded or run.
    Messages,
}

impl Measure {
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Invocations => "invocations",
            Measure::CpuMs => "cpu_ms",
            Measure::Cost => "cost",
            Measure::Messages => "messages",
        }
    }
}

/// How much of a measure a window allows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub measure: Measure,
    /// More than zero; a whole number for invocations and CPU milliseconds.
    pub amount: f64,
}

impl Limit {
    /// A limit, refused when not a positive finite amount (whole for counts).
    pub fn new(measure: Measure, amount: f64) -> Result<Self, BadBudget> {
        let m = measure.as_str();
        if !amount.is_finite() || amount <= 0.0 {
            return Err(BadBudget(format!("the {m} limit must be more than zero, not {amount}")));
        }
        if measure != Measure::Cost && amount.fract() != 0.0 {
            return Err(BadBudget(format!("the {m} limit is a whole number, not {amount}")));
        }
        Ok(Self { measure, amount })
    }
}

/// The window a budget's use is counted over: fixed windows aligned to the
/// epoch (a `1m` window starts on the minute), so every node agrees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Per {
    Minute,
    Hour,
    Day,
    ThirtyDays,
}

impl Per {
    pub const ALL: [Per; 4] = [Per::Minute, Per::Hour, Per::Day, Per::ThirtyDays];

    pub fn as_str(self) -> &'static str {
        match self {
            Per::Minute => "1m",
            Per::Hour => "1h",
            Per::Day => "1d",
            Per::ThirtyDays => "30d",
        }
    }

    pub fn duration(self) -> Duration {
        let seconds = match self {
            Per::Minute => 60,
            Per::Hour => 3600,
            Per::Day => 86_400,
            Per::ThirtyDays => 30 * 86_400,
        };
        Duration::from_secs(seconds)
    }

    /// The start (Unix seconds) of the window holding `unix_seconds`.
    pub fn start_of(self, unix_seconds: u64) -> u64 {
        let length = self.duration().as_secs();
        unix_seconds - unix_seconds % length
    }
}

impl FromStr for Per {
    type Err = BadBudget;

    fn from_str(text: &str) -> Result<Self, BadBudget> {
        Per::ALL
            .into_iter()
            .find(|p| p.as_str() == text)
            .ok_or_else(|| BadBudget(format!("window {text:?}: use one of 1m, 1h, 1d, 30d")))
    }
}

impl fmt::Display for Per {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Per {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Per {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// What happens once a window's budget is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing is refused; each `at` percentage reached is recorded.
    Alert,
    /// Events past the budget wait (a bounded queue) for the next window; past the bound, dropped.
    Throttle,
    /// Events past the budget are dropped (`budget_exceeded`) until the window rolls over.
    Stop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Throttle => "throttle",
            Action::Stop => "stop",
        }
    }
}

impl FromStr for Action {
    type Err = BadBudget;

    fn from_str(text: &str) -> Result<Self, BadBudget> {
        match text {
            "alert" => Ok(Action::Alert),
            "throttle" => Ok(Action::Throttle),
            "stop" => Ok(Action::Stop),
            _ => Err(BadBudget(format!("action {text:?}: use one of alert, throttle, stop"))),
        }
    }
}

/// A budget as set: on what, how much per window, and what then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub target: BudgetTarget,
    pub limit: Limit,
    pub per: Per,
    pub action: Action,
    /// Percentages of the limit recorded as `budget.threshold_reached` when
    /// reached, once per window each; ascending, 1 to 1000.
    pub at: Vec<u16>,
}

impl Budget {
    /// The thresholds when none are given.
    pub const AT_DEFAULT: [u16; 3] = [50, 80, 100];

    /// Checks what serde cannot: the limit's amount, that the measure fits
    /// the target, and the thresholds.
    pub fn validate(&self) -> Result<(), BadBudget> {
        Limit::new(self.limit.measure, self.limit.amount)?;
        self.check_measure()?;
        check_thresholds(&self.at)
    }

    /// Whether this budget counts MQTT messages (checked by the gateway)
    /// rather than invocations (checked at dispatch).
    pub fn on_messages(&self) -> bool {
        self.limit.measure == Measure::Messages
    }

    /// Messages are a device's or a group's; a device has nothing else to
    /// count, and a message cannot be held, so `throttle` is refused.
    fn check_measure(&self) -> Result<(), BadBudget> {
        let target = &self.target;
        match (target, self.on_messages()) {
            (BudgetTarget::Device(_), false) => {
                Err(BadBudget(format!("budget on {target}: a device budget counts messages; use --messages N")))
            }
            (BudgetTarget::Function(_) | BudgetTarget::Feature(_), true) => Err(BadBudget(format!(
                "budget on {target}: messages are counted per device:ID or group:NAME, not per function or feature"
            ))),
            (_, true) if self.action == Action::Throttle => {
                Err(BadBudget(format!("budget on {target}: a message cannot be held back; use --action stop or alert")))
            }
            _ => Ok(()),
        }
    }
}

/// `50,80,100`: ascending percentages, 1 to 1000, at most [`THRESHOLDS_MAX`].
pub fn parse_thresholds(text: &str) -> Result<Vec<u16>, BadBudget> {
    let at = text
        .split(',')
        .map(|part| {
            part.trim().parse::<u16>().map_err(|_| {
                BadBudget(format!("thresholds {text:?}: {part:?} is not a whole percentage (like 50,80,100)"))
            })
        })
        .collect::<Result<Vec<u16>, BadBudget>>()?;
    check_thresholds(&at)?;
    Ok(at)
}

fn check_thresholds(at: &[u16]) -> Result<(), BadBudget> {
    if at.len() > THRESHOLDS_MAX {
        return Err(BadBudget(format!("at most {THRESHOLDS_MAX} thresholds, not {}", at.len())));
    }
    if let Some(bad) = at.iter().find(|p| **p == 0 || **p > 1000) {
        return Err(BadBudget(format!("threshold {bad}%: each is 1 to 1000 percent")));
    }
    if at.windows(2).any(|w| w[0] >= w[1]) {
        return Err(BadBudget(format!("thresholds {at:?}: list them ascending, each once")));
    }
    Ok(())
}

/// The data of a [`BUDGET_SET`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetSet {
    /// Who set it, as a label (`admin`, `token:ops`).
    pub actor: String,
    pub principal: Principal,
    pub budget: Budget,
    /// The budget it replaced on the same target, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Budget>,
}

/// The data of a [`BUDGET_DELETED`] record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetDeleted {
    pub actor: String,
    pub principal: Principal,
    /// The budget as it was.
    pub budget: Budget,
}

/// The data of a [`BUDGET_THRESHOLD_REACHED`] record: recorded once per
/// window for each `at` percentage, when use reaches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdReached {
    pub target: BudgetTarget,
    /// The percentage reached (one of the budget's `at`).
    pub percent: u16,
    pub measure: Measure,
    /// Use in the window when it was reached, in the measure's unit.
    pub used: f64,
    pub limit: f64,
    pub per: Per,
    pub action: Action,
    /// The window's start.
    pub window: DateTime<Utc>,
}

impl Payload for BudgetSet {
    const TYPE: &'static str = BUDGET_SET;
}

impl Payload for BudgetDeleted {
    const TYPE: &'static str = BUDGET_DELETED;
}

impl Payload for ThresholdReached {
    const TYPE: &'static str = BUDGET_THRESHOLD_REACHED;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;

    #[test]
    fn targets_read_as_function_feature_or_group_and_print_back() {
        for text in ["fan", "feature:billing", "group:greenhouse"] {
            assert_eq!(text.parse::<BudgetTarget>().unwrap().to_string(), text);
        }
        assert_eq!("fan".parse::<BudgetTarget>().unwrap(), BudgetTarget::Function("fan".into()));
        let unknown = "tenant:x".parse::<BudgetTarget>().unwrap_err().to_string();
        assert!(unknown.contains("unknown kind \"tenant\""), "{unknown}");
        assert!("feature:".parse::<BudgetTarget>().is_err(), "a name is needed");
        assert!("has space".parse::<BudgetTarget>().is_err());
        assert!("group:a b".parse::<BudgetTarget>().is_err());
        assert_eq!("device:d-1".parse::<BudgetTarget>().unwrap(), BudgetTarget::Device("d-1".into()));
        assert_eq!("device:d-1".parse::<BudgetTarget>().unwrap().to_string(), "device:d-1");
    }

    #[test]
    fn messages_are_counted_for_devices_and_groups_only_and_never_held() {
        let budget = |target: &str, measure, action| Budget {
            target: target.parse().unwrap(),
            limit: Limit { measure, amount: 20.0 },
            per: Per::Minute,
            action,
            at: vec![100],
        };
        assert!(budget("device:d-1", Measure::Messages, Action::Stop).validate().is_ok());
        assert!(budget("group:barn", Measure::Messages, Action::Alert).validate().is_ok());
        assert!(budget("group:barn", Measure::Invocations, Action::Stop).validate().is_ok());
        let refused = |b: Budget| b.validate().unwrap_err().to_string();
        assert!(refused(budget("device:d-1", Measure::Invocations, Action::Stop)).contains("use --messages N"));
        assert!(refused(budget("fan", Measure::Messages, Action::Stop)).contains("per device:ID or group:NAME"));
        assert!(refused(budget("device:d-1", Measure::Messages, Action::Throttle)).contains("cannot be held"));
    }

    #[test]
    fn limits_must_be_positive_and_whole_for_counts() {
        assert!(Limit::new(Measure::Invocations, 50.0).is_ok());
        assert!(Limit::new(Measure::Cost, 0.25).is_ok());
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            let refused = Limit::new(Measure::Invocations, bad).unwrap_err().to_string();
            assert!(refused.contains("more than zero"), "{refused}");
        }
        assert!(Limit::new(Measure::CpuMs, 1.5).unwrap_err().to_string().contains("whole number"));
    }

    #[test]
    fn windows_are_the_four_named_ones_aligned_to_the_epoch() {
        assert_eq!("1h".parse::<Per>().unwrap(), Per::Hour);
        let refused = "2m".parse::<Per>().unwrap_err().to_string();
        assert!(refused.contains("1m, 1h, 1d, 30d"), "{refused}");
        assert_eq!(Per::Minute.start_of(125), 120);
        assert_eq!(Per::Day.start_of(86_400 * 3 + 5), 86_400 * 3);
    }

    #[test]
    fn thresholds_are_ascending_percentages() {
        assert_eq!(parse_thresholds("50,80,100").unwrap(), [50, 80, 100]);
        assert_eq!(parse_thresholds(" 90 ").unwrap(), [90]);
        for bad in ["", "50,x", "80,50", "50,50", "0", "1001", "-5"] {
            assert!(parse_thresholds(bad).is_err(), "{bad:?} is refused");
        }
        assert!(parse_thresholds("1,2,3,4,5,6,7,8,9,10,11").unwrap_err().to_string().contains("at most"));
        assert!("stopp".parse::<Action>().unwrap_err().to_string().contains("alert, throttle, stop"));
    }

    #[test]
    fn a_budget_change_round_trips() {
        let budget = Budget {
            target: BudgetTarget::Feature("billing".into()),
            limit: Limit { measure: Measure::Invocations, amount: 50.0 },
            per: Per::Minute,
            action: Action::Stop,
            at: vec![50, 100],
        };
        let principal = Principal::admin(AuthMethod::BearerToken, None);
        let set = BudgetSet { actor: principal.label(), principal, budget, previous: None };
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["budget"]["target"], "feature:billing");
        assert_eq!(json["budget"]["per"], "1m");
        assert_eq!(json["budget"]["limit"]["measure"], "invocations");
        assert_eq!(serde_json::from_value::<BudgetSet>(json).unwrap(), set);
        let bad = serde_json::json!({"target": "x", "limit": {"measure": "cost", "amount": 1.0}, "per": "5m",
            "action": "stop", "at": []});
        assert!(serde_json::from_value::<Budget>(bad).unwrap_err().to_string().contains("1m, 1h, 1d, 30d"));
    }
}

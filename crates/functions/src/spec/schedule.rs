//! `schedule:` triggers: five-field cron expressions (UTC) and `@every`
//! intervals, parsed with the rest of the trigger spec. The scheduler that
//! fires them is `scheduler.rs`; it depends on this, not the other way.

use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};

/// When a scheduled function runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `@every 30s`: at this interval from when it was deployed or loaded.
    Every(Duration),
    /// `M H DoM Mon DoW` (UTC), each field `*`, `*/n`, `a`, `a-b`, `a-b/n` or lists of them.
    Cron(Cron),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// Whether day-of-month and day-of-week were both restricted (then
    /// either may match, as in classic cron).
    either_day: bool,
}

/// The shortest `@every` interval.
const EVERY_MIN: Duration = Duration::from_secs(1);

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let named = match text {
            "@hourly" => Some("0 * * * *"),
            "@daily" | "@midnight" => Some("0 0 * * *"),
            "@weekly" => Some("0 0 * * 0"),
            "@monthly" => Some("0 0 1 * *"),
            _ => None,
        };
        if let Some(every) = text.strip_prefix("@every") {
            let interval = humantime::parse_duration(every.trim())
                .map_err(|e| format!("@every {:?}: {e}; use e.g. @every 30s or @every 5m", every.trim()))?;
            if interval < EVERY_MIN {
                return Err("@every must be at least 1s".into());
            }
            return Ok(Schedule::Every(interval));
        }
        Cron::parse(named.unwrap_or(text)).map(Schedule::Cron)
    }

    /// The first time after `after` it comes due.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(interval) => Some(after + chrono::Duration::from_std(*interval).ok()?),
            Schedule::Cron(cron) => cron.next_after(after),
        }
    }
}

impl Cron {
    fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields.as_slice() else {
            return Err(format!(
                "{text:?} is not a schedule: give five cron fields (minute hour day-of-month month day-of-week, UTC), \
                 e.g. \"*/5 * * * *\", or @hourly, @daily, @every 30s"
            ));
        };
        let weekdays = field(dow, 0, 7, "day-of-week")?;
        Ok(Self {
            minutes: field(m, 0, 59, "minute")?,
            hours: field(h, 0, 23, "hour")?,
            days: field(dom, 1, 31, "day-of-month")?,
            months: field(mon, 1, 12, "month")?,
            // 7 is Sunday too.
            weekdays: (weekdays | (weekdays >> 7)) & 0x7f,
            either_day: *dom != "*" && *dow != "*",
        })
    }

    fn day_matches(&self, at: DateTime<Utc>) -> bool {
        let dom = self.days & (1 << at.day()) != 0;
        let dow = self.weekdays & (1 << at.weekday().num_days_from_sunday()) != 0;
        if self.either_day { dom || dow } else { dom && dow }
    }

    /// The first whole minute after `after` that matches; within four years.
    fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut at = after.with_second(0)?.with_nanosecond(0)? + chrono::Duration::minutes(1);
        let limit = after + chrono::Duration::days(4 * 366);
        while at < limit {
            if self.months & (1 << at.month()) == 0 || !self.day_matches(at) {
                at = (at + chrono::Duration::days(1)).with_hour(0)?.with_minute(0)?;
            } else if self.hours & (1 << at.hour()) == 0 {
                at = (at + chrono::Duration::hours(1)).with_minute(0)?;
            } else if self.minutes & (1 << at.minute()) == 0 {
                at += chrono::Duration::minutes(1);
            } else {
                return Some(at);
            }
        }
        None
    }
}

/// One cron field as a bit set of the values it allows.
fn field(text: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let bad = |why: String| format!("cron {name} field {text:?}: {why}");
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad(format!("step {step:?} is not a positive number")))?,
            ),
            None => (part, 1),
        };
        let (low, high) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a, &bad)?, number(b, &bad)?),
                None if part.contains('/') => (number(r, &bad)?, max),
                None => (number(r, &bad)?, number(r, &bad)?),
            },
        };
        if low < min || high > max || low > high {
            return Err(bad(format!("{low}-{high} is outside {min}-{max}")));
        }
        for value in (low..=high).step_by(step as usize) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

fn number(text: &str, bad: &impl Fn(String) -> String) -> Result<u32, String> {
    text.parse().map_err(|_| bad(format!("{text:?} is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    fn next(schedule: &str, after: &str) -> String {
        Schedule::parse(schedule).unwrap().next_after(at(after)).unwrap().to_rfc3339()
    }

    #[test]
    fn cron_fields_and_names() {
        assert_eq!(next("*/15 * * * *", "2026-11-25T10:07:30Z"), "2026-11-25T10:15:00+00:00");
        assert_eq!(next("0 3 * * *", "2026-11-25T10:07:30Z"), "2026-11-26T03:00:00+00:00");
        assert_eq!(next("30 9 * * 1-5", "2026-11-27T10:00:00Z"), "2026-11-30T09:30:00+00:00", "Friday → Monday");
        assert_eq!(next("0 0 29 2 *", "2026-03-01T00:00:00Z"), "2028-02-29T00:00:00+00:00", "leap day");
        assert_eq!(next("0 12 * * 7", "2026-11-25T00:00:00Z"), "2026-11-29T12:00:00+00:00", "7 is Sunday");
        assert_eq!(next("@hourly", "2026-11-25T10:07:30Z"), "2026-11-25T11:00:00+00:00");
        assert_eq!(next("@every 30s", "2026-11-25T10:07:30Z"), "2026-11-25T10:08:00+00:00");
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        assert!(Schedule::parse("* * *").unwrap_err().contains("five cron fields"));
        assert!(Schedule::parse("61 * * * *").unwrap_err().contains("minute field"));
        assert!(Schedule::parse("*/0 * * * *").unwrap_err().contains("step"));
        assert!(Schedule::parse("@every 10ms").unwrap_err().contains("at least 1s"));
        assert!(Schedule::parse("@every soon").unwrap_err().contains("@every"));
    }
}

//! What a deploy asks for: triggers and limits, validated with messages
//! that say what to fix.

use std::time::Duration;

use glassbox_core::topic::{matches, parse_filter};
use glassbox_core::{DEVICE_MESSAGE, SCHEDULE_FIRED, TypePattern};
use serde::{Deserialize, Serialize};

mod schedule;

pub use schedule::Schedule;

/// Bounds a deploy may ask for.
const TIMEOUT_MAX: Duration = Duration::from_secs(300);
const MEMORY_MAX: u64 = 512 << 20;
const CONCURRENCY_MAX: u32 = 256;
const REUSE_MAX: u32 = 1_000_000;
/// The recursion guard when none is given.
pub const HOP_LIMIT_DEFAULT: u32 = 16;

/// A version's spec, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub triggers: Vec<String>,
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    pub concurrency: u32,
    pub hop_limit: u32,
    #[serde(default)]
    pub feature: Option<String>,
    /// Runs after the first that failed, with backoff, before dead-lettering.
    #[serde(default = "retries_default")]
    pub retries: u32,
    /// No retry starts once the event is this old (milliseconds).
    #[serde(default = "max_age_default")]
    pub max_age_ms: u64,
    /// Invocations started per second at most; more wait their turn (in
    /// the bounded queue). None: no rate limit.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// Egress rules: where its outbound HTTP may go (`api.example.com`:
    /// https on 443, `*.example.com`, `http://10.0.0.5:8080`, `10.0.0.0/8`);
    /// none: every request is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<String>,
    /// Hosts that also get the chain's `traceparent` header (allowed too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress_trace: Vec<String>,
    /// Invocations a warm instance serves before it is retired; 1: a fresh
    /// instance for every event (nothing kept between events).
    #[serde(default = "reuse_default")]
    pub reuse: u32,
    /// HTTP routes: keep request bodies (up to 16 KiB) in `http.request`
    /// events, so requests with a body can be replayed. Off: only the size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_body: bool,
    /// HTTP routes: request headers kept verbatim in `http.request` events
    /// besides the default few (`content-type`, `user-agent`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub record_headers: Vec<String>,
    /// The app (manifest) that deployed it: `glassbox apply` manages only
    /// its own app's functions, and removes those its manifest dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

fn reuse_default() -> u32 {
    glassbox_runtime::Reuse::default().invocations
}

fn retries_default() -> u32 {
    2
}

fn max_age_default() -> u64 {
    3_600_000
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            triggers: Vec::new(),
            timeout_ms: 5000,
            memory_bytes: 64 << 20,
            concurrency: 8,
            hop_limit: HOP_LIMIT_DEFAULT,
            feature: None,
            retries: retries_default(),
            max_age_ms: max_age_default(),
            rate_per_second: None,
            egress: Vec::new(),
            egress_trace: Vec::new(),
            reuse: reuse_default(),
            record_body: false,
            record_headers: Vec::new(),
            app: None,
        }
    }
}

/// What makes a function run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// `mqtt:<filter>`: device messages on matching topics.
    Mqtt(String),
    /// `event:<type pattern>`: recorded events of matching types.
    Event(TypePattern),
    /// `schedule:<cron>` or `schedule:@every 30s`: the scheduler's
    /// `schedule.fired` events for this function.
    Schedule(Schedule),
    /// `http:<METHOD> <path>`: HTTP requests to the path, served by a
    /// `wasi:http/proxy` component.
    Http(Route),
}

/// Paths the server's own routes use: no function route may start with them.
const RESERVED_PATHS: [&str; 4] = ["/api/", "/healthz", "/readyz", "/metrics"];
/// Methods a route may name (`*` or `ANY`: every method).
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Whether `path` is the server's own: never a function's, even under a
/// prefix route like `/*`.
pub fn reserved(path: &str) -> bool {
    RESERVED_PATHS.iter().any(|r| {
        let r = r.trim_end_matches('/');
        path == r || path.starts_with(&format!("{r}/"))
    })
}

/// An HTTP route: a method (or any) and a path, exact or, ending in `/*`,
/// every path under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// None: any method.
    pub method: Option<String>,
    /// The path; for a prefix route, without the trailing `*` (ends in `/`).
    pub path: String,
    pub prefix: bool,
}

impl Route {
    fn parse(text: &str) -> Result<Self, String> {
        let (method, path) =
            text.trim().split_once(' ').ok_or("give a method and a path, e.g. http:POST /hooks/github")?;
        let method = match method.to_ascii_uppercase().as_str() {
            "*" | "ANY" => None,
            m if METHODS.contains(&m) => Some(m.to_string()),
            other => return Err(format!("method {other:?} is not one of {} or * (any)", METHODS.join(", "))),
        };
        let path = path.trim();
        if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains(['?', '#']) {
            return Err(format!("path {path:?} must start with / and hold no spaces, ? or #"));
        }
        if path.contains("//") || path.split('/').any(|s| s == ".." || s == ".") {
            return Err(format!("path {path:?} must not hold empty, . or .. segments"));
        }
        let (path, prefix) = match path.strip_suffix('*') {
            Some(base) if base.ends_with('/') => (base.to_string(), true),
            Some(_) => return Err(format!("path {path:?}: * goes only at the end, after a / (e.g. /hooks/*)")),
            None if path.contains('*') => return Err(format!("path {path:?}: * goes only at the end (e.g. /hooks/*)")),
            None => (path.to_string(), false),
        };
        if reserved(&path) {
            return Err(format!("path {path:?} is the server's own ({})", RESERVED_PATHS.join(", ")));
        }
        Ok(Self { method, path, prefix })
    }

    /// Whether a request of `method` to `path` is for this route.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self.method.as_deref().is_none_or(|m| m == method || (m == "GET" && method == "HEAD"));
        let path_ok = match self.prefix {
            true => path.starts_with(&self.path) || path == self.path.trim_end_matches('/'),
            false => path == self.path,
        };
        method_ok && path_ok
    }

    /// How specific a match is: exact paths first, then longer prefixes,
    /// then a named method over any.
    pub fn rank(&self) -> (bool, usize, bool) {
        (!self.prefix, self.path.len(), self.method.is_some())
    }

    /// Whether two routes would take the same requests (same path and
    /// kind, methods overlapping).
    pub fn clashes(&self, other: &Route) -> bool {
        let methods = match (&self.method, &other.method) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        methods && self.path == other.path && self.prefix == other.prefix
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let star = if self.prefix { "*" } else { "" };
        write!(f, "{} {}{star}", self.method.as_deref().unwrap_or("*"), self.path)
    }
}

impl Trigger {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (kind, rest) = spec.split_once(':').ok_or_else(|| {
            format!("trigger {spec:?} must be mqtt:<topic filter>, event:<type pattern>, http:<METHOD> <path> or schedule:<cron>")
        })?;
        match kind {
            "mqtt" => match parse_filter(rest) {
                Ok(f) if f.share.is_none() => Ok(Trigger::Mqtt(rest.to_string())),
                Ok(_) => Err(format!("trigger {spec:?}: shared subscriptions ($share/…) are not triggers")),
                Err(e) => Err(format!("trigger {spec:?}: {e}")),
            },
            "event" if !rest.is_empty() => Ok(Trigger::Event(TypePattern::parse(rest))),
            "event" => Err(format!("trigger {spec:?}: give a type or a prefix pattern like device.*")),
            "schedule" => Schedule::parse(rest).map(Trigger::Schedule).map_err(|e| format!("trigger {spec:?}: {e}")),
            "http" => Route::parse(rest).map(Trigger::Http).map_err(|e| format!("trigger {spec:?}: {e}")),
            other => Err(format!("trigger {spec:?}: unknown kind {other:?}; use mqtt:, event:, schedule: or http:")),
        }
    }

    /// Whether the trigger of `function` fires for an event of type `ty` on `subject`.
    pub fn fires(&self, function: &str, ty: &str, subject: Option<&str>) -> bool {
        match self {
            Trigger::Mqtt(filter) => ty == DEVICE_MESSAGE && subject.is_some_and(|topic| matches(filter, topic)),
            Trigger::Event(pattern) => pattern.matches(ty),
            Trigger::Schedule(_) => ty == SCHEDULE_FIRED && subject == Some(function),
            // Requests come from the HTTP listener, not from recorded events.
            Trigger::Http(_) => false,
        }
    }
}

impl Spec {
    /// The runtime limits of one invocation.
    pub fn limits(&self) -> glassbox_runtime::Limits {
        glassbox_runtime::Limits {
            timeout: Duration::from_millis(self.timeout_ms),
            memory_bytes: self.memory_bytes as usize,
            ..glassbox_runtime::Limits::default()
        }
    }

    /// When its instances are reused: up to `reuse` invocations each, as
    /// many kept idle as may run at once.
    pub fn reuse(&self) -> glassbox_runtime::Reuse {
        glassbox_runtime::Reuse {
            invocations: self.reuse,
            idle_max: self.concurrency as usize,
            ..glassbox_runtime::Reuse::default()
        }
    }

    /// What the function's outbound requests may reach, passing on
    /// `traceparent` to the hosts that opted in. Rules were checked by
    /// [`Spec::validate`]; one that does not parse allows nothing.
    pub fn outbound(&self, traceparent: Option<String>) -> glassbox_runtime::Outbound {
        let rules = |list: &[String]| list.iter().filter_map(|h| glassbox_runtime::HostRule::parse(h).ok()).collect();
        glassbox_runtime::Outbound {
            allow: rules(&self.egress),
            trace: rules(&self.egress_trace),
            traceparent,
            dry_run: false,
        }
    }

    /// Checks the spec; returns its parsed triggers.
    pub fn validate(&self) -> Result<Vec<Trigger>, String> {
        if self.triggers.is_empty() {
            return Err("give at least one --trigger (e.g. mqtt:devices/+/telemetry or event:order.*)".into());
        }
        let triggers = self.triggers.iter().map(|t| Trigger::parse(t)).collect::<Result<Vec<_>, _>>()?;
        for host in self.egress.iter().chain(&self.egress_trace) {
            glassbox_runtime::HostRule::parse(host)?;
        }
        if self.egress.len() + self.egress_trace.len() > 100 {
            return Err("at most 100 egress hosts".into());
        }
        if self.record_headers.len() > 20 {
            return Err("at most 20 recorded headers".into());
        }
        if let Some(bad) =
            self.record_headers.iter().find(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_err())
        {
            return Err(format!("recorded header {bad:?} is not a header name"));
        }
        let timeout = Duration::from_millis(self.timeout_ms);
        if timeout.is_zero() || timeout > TIMEOUT_MAX {
            return Err(format!("timeout must be more than 0 and at most {}", humantime::format_duration(TIMEOUT_MAX)));
        }
        if !(1 << 20..=MEMORY_MAX).contains(&self.memory_bytes) {
            return Err(format!("memory must be between 1 MiB and {} MiB", MEMORY_MAX >> 20));
        }
        if !(1..=CONCURRENCY_MAX).contains(&self.concurrency) {
            return Err(format!("concurrency must be between 1 and {CONCURRENCY_MAX}"));
        }
        if !(1..=REUSE_MAX).contains(&self.reuse) {
            return Err(format!("reuse must be between 1 (a fresh instance every time) and {REUSE_MAX}"));
        }
        if self.retries > 10 {
            return Err("retries must be at most 10".into());
        }
        if self.max_age_ms == 0 {
            return Err("max age must be more than 0".into());
        }
        if let Some(rate) = self.rate_per_second
            && !(rate.is_finite() && (0.001..=1_000_000.0).contains(&rate))
        {
            return Err("rate must be between 0.001 and 1000000 per second (e.g. 100/s, 30/m)".into());
        }
        if !(1..=1000).contains(&self.hop_limit) {
            return Err("hop limit must be between 1 and 1000".into());
        }
        if let Some(app) = &self.app
            && !is_name(app)
        {
            return Err(format!("app name {app:?} must be 1-64 letters, digits, - _ or ."));
        }
        Ok(triggers)
    }
}

/// A function's or an app's name: 1-64 letters, digits, `-`, `_` or `.`.
pub fn is_name(name: &str) -> bool {
    glassbox_core::budget::is_function_name(name)
}

/// `64MiB`, `512KiB`, `1048576`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = t.find(|c: char| !c.is_ascii_digit()).map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number.parse().map_err(|_| format!("{text:?} is not a size like 64MiB"))?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?}; use KiB, MiB or GiB")),
    };
    Ok(n * scale)
}

/// `100/s`, `30/m`, `1000/h` (or a bare number: per second) → per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("rate {text:?}: per {other:?}? use /s, /m or /h (e.g. 100/s)")),
    };
    let count: f64 =
        count.trim().parse().map_err(|_| format!("rate {text:?}: {count:?} is not a number (e.g. 100/s)"))?;
    Ok(count / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_parse_or_say_what_is_wrong() {
        assert_eq!(Trigger::parse("mqtt:devices/+/t"), Ok(Trigger::Mqtt("devices/+/t".into())));
        assert!(Trigger::parse("event:order.*").unwrap().fires("f", "order.created", None));
        assert!(Trigger::parse("mqtt:devices/#").unwrap().fires("f", "device.message", Some("devices/a/b")));
        assert!(!Trigger::parse("mqtt:devices/#").unwrap().fires("f", "order.created", Some("devices/a/b")));
        let nightly = Trigger::parse("schedule:0 3 * * *").unwrap();
        assert!(nightly.fires("report", SCHEDULE_FIRED, Some("report")));
        assert!(!nightly.fires("report", SCHEDULE_FIRED, Some("other")), "only its own function's");
        assert!(Trigger::parse("schedule:every day").unwrap_err().contains("five cron fields"));
        assert!(Trigger::parse("mqtt:a/#/b").unwrap_err().contains("mqtt:a/#/b"));
        let hook = Trigger::parse("http:POST /hooks/github").unwrap();
        assert!(!hook.fires("f", "http.request", Some("/hooks/github")), "requests do not come from the bus");
        let Trigger::Http(route) = hook else { panic!() };
        assert!(route.matches("POST", "/hooks/github") && !route.matches("GET", "/hooks/github"));
        assert!(!route.matches("POST", "/hooks/github/x"));
        let Ok(Trigger::Http(under)) = Trigger::parse("http:* /hooks/*") else { panic!() };
        assert!(Trigger::parse("http:GET /*").is_ok() && reserved("/api/v1/events") && !reserved("/apis"));
        assert!(
            under.matches("GET", "/hooks/a/b") && under.matches("DELETE", "/hooks") && !under.matches("GET", "/hook")
        );
        assert!(route.rank() > under.rank(), "an exact path before a prefix");
        assert!(route.clashes(&Route::parse("* /hooks/github").unwrap()));
        assert!(!route.clashes(&Route::parse("GET /hooks/github").unwrap()));
        assert_eq!(under.to_string(), "* /hooks/*");
        for (bad, says) in [
            ("http:/x", "method and a path"),
            ("http:FETCH /x", "not one of"),
            ("http:GET x", "must start with /"),
            ("http:GET /a/*/b", "only at the end"),
            ("http:GET /api/v1/x", "server's own"),
            ("http:GET /a/../b", ".."),
        ] {
            assert!(Trigger::parse(bad).unwrap_err().contains(says), "{bad}: {:?}", Trigger::parse(bad));
        }
        let egress = Spec { triggers: vec!["event:x".into()], egress: vec!["x.com/hook".into()], ..Spec::default() };
        assert!(egress.validate().unwrap_err().contains("no path"));
        assert!(Trigger::parse("cron").unwrap_err().contains("must be"));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_rate("30/m"), Ok(0.5));
        assert_eq!(parse_rate("100"), Ok(100.0));
        assert!(parse_rate("5/fortnight").unwrap_err().contains("/s, /m or /h"));
        assert!(parse_bytes("lots").is_err());
        let spec = Spec { triggers: vec!["mqtt:x".into()], concurrency: 0, ..Spec::default() };
        assert!(spec.validate().unwrap_err().contains("concurrency"));
        let spec = Spec { triggers: vec!["mqtt:x".into()], reuse: 0, ..Spec::default() };
        assert!(spec.validate().unwrap_err().contains("reuse must be between 1"));
        let old: Spec = serde_json::from_str(
            r#"{"triggers":["mqtt:x"],"timeout_ms":5000,"memory_bytes":1048576,
            "concurrency":4,"hop_limit":16}"#,
        )
        .unwrap();
        assert_eq!((old.reuse, old.reuse().idle_max), (1000, 4), "versions stored before reuse existed reuse");
    }
}

//! What one client may ask of the HTTP server: requests per second per
//! client and per public function route (token buckets), and exponential
//! back-off after failed logins, per peer and per presented token prefix.
//! Every table is bounded ([`KEYS_MAX`]): a flood of new addresses or
//! tokens cannot grow memory.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys one table holds at most. When full, idle keys are forgotten first;
/// a newcomer that still finds no room shares one overflow entry.
pub const KEYS_MAX: usize = 10_000;
/// Failed logins from one peer (or with one token prefix) that cost nothing.
pub const LOGIN_FAILURES_FREE: u32 = 3;
/// The first back-off after the free failures; each further failure doubles it.
pub const LOGIN_BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest back-off.
pub const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Characters of a presented token its back-off is keyed by (`gbx_` and 8 hex digits).
const TOKEN_PREFIX_CHARS: usize = 12;
/// The key newcomers share when a table is full of active keys.
const OVERFLOW: &str = "overflow";

/// The key a peer is limited by: its IPv4 address, or its IPv6 /64 (one
/// host usually holds a whole /64).
pub fn client_key(peer: SocketAddr) -> String {
    match peer.ip().to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The key a presented token's failures are counted under.
pub fn token_key(token: &str) -> String {
    format!("token:{}", token.chars().take(TOKEN_PREFIX_CHARS).collect::<String>())
}

/// Token buckets: `per_second` requests per second per key, in bursts of
/// up to one second's worth.
pub struct Rates {
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Rates {
    /// `per_second` 0: no limit.
    pub fn new(per_second: u32) -> Self {
        Self { per_second: f64::from(per_second), buckets: Mutex::default() }
    }

    /// Takes one request's token for `key`, or says how long until one is free.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = self.per_second.max(1.0);
        if !buckets.contains_key(key) && buckets.len() >= KEYS_MAX {
            let rate = self.per_second;
            // Forget the keys that have refilled: they are idle.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let key = match buckets.contains_key(key) || buckets.len() < KEYS_MAX {
            true => key,
            false => OVERFLOW,
        };
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
    }
}

/// Failed logins per key, and until when the key is refused.
#[derive(Default)]
pub struct Backoff {
    entries: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    until: Instant,
    last: Instant,
}

impl Backoff {
    /// Whether `key` may try now; if not, how long until it may.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key).map(|f| f.until.saturating_duration_since(Instant::now())) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Counts a failure for `key`: past the free ones, it is refused for
    /// a back-off that doubles with each failure, up to the maximum.
    pub fn failed(&self, key: &str) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if !entries.contains_key(key) && entries.len() >= KEYS_MAX {
            make_room(&mut entries, now);
        }
        let key = match entries.contains_key(key) || entries.len() < KEYS_MAX {
            true => key,
            false => OVERFLOW,
        };
        let failures = entries.entry(key.to_string()).or_insert(Failures { count: 0, until: now, last: now });
        failures.count = failures.count.saturating_add(1);
        failures.last = now;
        if let Some(backoff) = backoff_after(failures.count) {
            failures.until = now + backoff;
        }
    }

    /// A successful login forgets `key`'s failures.
    pub fn succeeded(&self, key: &str) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The back-off after `count` failures: none for the free ones, then
/// doubling from the start to the maximum.
fn backoff_after(count: u32) -> Option<Duration> {
    let over = count.checked_sub(LOGIN_FAILURES_FREE + 1)?;
    Some(LOGIN_BACKOFF_START.saturating_mul(1 << over.min(16)).min(LOGIN_BACKOFF_MAX))
}

/// Forgets entries whose back-off ended and whose last failure is older
/// than the longest back-off; if none, the one failed longest ago.
fn make_room(entries: &mut HashMap<String, Failures>, now: Instant) {
    entries.retain(|_, f| f.until > now || now.duration_since(f.last) < LOGIN_BACKOFF_MAX);
    if entries.len() >= KEYS_MAX
        && let Some(oldest) = entries.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone())
    {
        entries.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_says_when_to_retry() {
        let rates = Rates::new(2);
        assert!(rates.take("a").is_ok() && rates.take("a").is_ok());
        let wait = rates.take("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(rates.take("b").is_ok(), "another key has its own bucket");
        assert!(Rates::new(0).take("a").is_ok(), "0: no limit");
    }

    #[test]
    fn tables_stay_bounded_under_a_flood_of_keys() {
        let rates = Rates::new(1);
        for i in 0..KEYS_MAX + 500 {
            let _ = rates.take(&format!("peer{i}"));
        }
        assert!(rates.buckets.lock().unwrap().len() <= KEYS_MAX + 1);
        let backoff = Backoff::default();
        for i in 0..KEYS_MAX + 500 {
            backoff.failed(&format!("token:{i}"));
        }
        assert!(backoff.entries.lock().unwrap().len() <= KEYS_MAX + 1);
    }

    #[test]
    fn failures_past_the_free_ones_back_off_exponentially() {
        let free = LOGIN_FAILURES_FREE;
        assert_eq!(backoff_after(free), None);
        assert_eq!(backoff_after(free + 1), Some(LOGIN_BACKOFF_START));
        assert_eq!(backoff_after(free + 2), Some(LOGIN_BACKOFF_START * 2));
        assert_eq!(backoff_after(free + 40), Some(LOGIN_BACKOFF_MAX));
        let backoff = Backoff::default();
        for _ in 0..free {
            backoff.failed("peer");
            assert!(backoff.check("peer").is_ok());
        }
        backoff.failed("peer");
        assert!(backoff.check("peer").is_err());
        backoff.succeeded("peer");
        assert!(backoff.check("peer").is_ok());
    }

    #[test]
    fn ipv6_peers_share_their_64() {
        let a: SocketAddr = "[2001:db8:1:2:3::1]:5".parse().unwrap();
        let b: SocketAddr = "[2001:db8:1:2:ffff::9]:6".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_eq!(client_key("127.0.0.1:9".parse().unwrap()), "127.0.0.1");
    }
}

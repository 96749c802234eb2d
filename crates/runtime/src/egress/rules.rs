//! The allow rules of outbound requests (`[http://|https://]host[:port]`,
//! `*.domain`, addresses and ranges) and which addresses are not public:
//! what a request may reach, decided before it is sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One allow rule: a scheme, a host or address, and a port.
///
/// `api.example.com` allows https on 443; other ports and plain http only
/// when written: `api.example.com:8443` (https), `http://api.example.com`
/// (port 80), `http://10.0.0.5:8080`. `*.example.com` is any subdomain. An
/// IP literal (`127.0.0.1`, `[::1]:8443`) or range (`10.0.0.0/8`,
/// `[fd00::/8]`) is also the only way to let a request reach an address
/// that is not public (loopback, private, link-local, …; see [`reserved`]):
/// such an address is allowed when any rule names it, whatever its scheme
/// and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    target: Target,
    /// `http` or `https`.
    scheme: &'static str,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A lowercase host name; for a wildcard, the suffix after `*.`.
    Name { host: String, wildcard: bool },
    /// An address (a prefix as long as the address) or a range.
    Net { addr: IpAddr, prefix: u8 },
}

impl HostRule {
    /// Parses a rule, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "egress host {text:?}: {why} (e.g. api.example.com, *.example.com, api.example.com:8443, \
                 http://10.0.0.5:8080, 10.0.0.0/8)"
            )
        };
        let t = text.trim().to_ascii_lowercase();
        let (scheme, rest) = match t.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) => ("http", rest),
            Some(_) => return Err(bad("the scheme is http:// or https://")),
            None => ("https", t.as_str()),
        };
        let (host, port) = split_port(rest).map_err(&bad)?;
        let port = match port {
            None => default_port(scheme),
            Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?,
        };
        let target = match host.split_once('/') {
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| bad("give a host, not a URL (no path)"))?;
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                let prefix =
                    prefix.parse::<u8>().ok().filter(|p| *p <= bits).ok_or_else(|| bad("a bad prefix length"))?;
                Target::Net { addr, prefix }
            }
            None => match host.parse::<IpAddr>() {
                Ok(addr) => Target::Net { addr, prefix: if addr.is_ipv4() { 32 } else { 128 } },
                Err(_) => name(host).map_err(&bad)?,
            },
        };
        Ok(Self { target, scheme, port })
    }

    /// Whether a request to `host:port` under `scheme` falls under this rule.
    pub fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme == scheme && self.port == port && self.matches_host(host)
    }

    /// Whether this rule is about `host`, whatever the scheme and port.
    pub(super) fn matches_host(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
        match &self.target {
            Target::Name { host: suffix, wildcard: true } => {
                host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"))
            }
            Target::Name { host: name, wildcard: false } => host == *name,
            Target::Net { .. } => host.parse().is_ok_and(|addr| self.contains(addr)),
        }
    }

    /// Whether this rule names `addr` (as an address or a range holding it).
    pub(super) fn contains(&self, addr: IpAddr) -> bool {
        let Target::Net { addr: net, prefix } = self.target else { return false };
        match (net, canonical(addr)) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(addr) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(addr)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(addr) & mask
            }
            _ => false,
        }
    }
}

/// What an allow rule opens beyond one public host over https, for the
/// perimeter view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exposure {
    /// One public host (or address) over https.
    Narrow,
    /// Wider, and maybe meant: a wildcard, plain http, an internal network.
    Wide(String),
    /// Every address, or the cloud metadata address (credentials live there).
    Dangerous(String),
}

impl HostRule {
    /// How far this rule reaches, judged from what it names.
    pub fn exposure(&self) -> Exposure {
        let plaintext = (self.scheme == "http").then(|| "plain http: what is sent can be read on the way".to_string());
        match &self.target {
            Target::Net { prefix: 0, .. } => Exposure::Dangerous("every address".into()),
            Target::Net { .. } if self.contains(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254))) => {
                Exposure::Dangerous("reaches the cloud metadata address, where instance credentials live".into())
            }
            Target::Net { addr, prefix } => {
                let (bits, narrow) = if addr.is_ipv4() { (32, 24) } else { (128, 64) };
                match reserved(*addr) {
                    Some(kind) => Exposure::Wide(format!("reaches {kind} ({addr}/{prefix}): an internal network")),
                    None if *prefix < narrow => {
                        Exposure::Wide(format!("a public range of 2^{} addresses", bits - prefix))
                    }
                    None => plaintext.map_or(Exposure::Narrow, Exposure::Wide),
                }
            }
            Target::Name { host, wildcard: true } => Exposure::Wide(format!("every subdomain of {host}")),
            Target::Name { .. } => plaintext.map_or(Exposure::Narrow, Exposure::Wide),
        }
    }
}

/// The port a scheme means when none is written.
pub(super) fn default_port(scheme: &str) -> u16 {
    if scheme == "http" { 80 } else { 443 }
}

/// Splits `host[:port]`, `[v6]:port`, `[v6/len]`, `[v6]/len` or a bare IPv6
/// address (no port) into host and port.
fn split_port(text: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or("unclosed [")?;
        return match after {
            "" => Ok((inner, None)),
            p if p.starts_with(':') => Ok((inner, Some(&p[1..]))),
            // `[fd00::]/8`: the prefix written after the bracket.
            _ => Err("write an IPv6 range as [fd00::/8], with its port after the ]"),
        };
    }
    if text.matches(':').count() > 1 {
        return Ok((text, None));
    }
    Ok(match text.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (text, None),
    })
}

/// A host name rule (`api.example.com`, `*.example.com`).
fn name(host: &str) -> Result<Target, &'static str> {
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (host, false),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if wildcard && host.parse::<IpAddr>().is_ok() {
        return Err("a wildcard needs a domain");
    }
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("not a host name");
    }
    Ok(Target::Name { host: host.to_string(), wildcard })
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, or NAT64's
/// `64:ff9b::7f00:1`) as the IPv4 address it reaches.
fn canonical(addr: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = addr else { return addr };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    match v6.segments() {
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => addr,
    }
}

/// What kind of non-public address `addr` is, if it is one: reached only
/// when a rule names it.
pub fn reserved(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(v4) => reserved_v4(v4),
        IpAddr::V6(v6) => reserved_v6(v6),
    }
}

fn reserved_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = v4.octets();
    Some(if v4 == Ipv4Addr::new(169, 254, 169, 254) {
        "the cloud metadata address"
    } else if v4.is_loopback() {
        "a loopback address"
    } else if a == 0 {
        "an unspecified (0.0.0.0/8) address"
    } else if v4.is_private() {
        "a private (RFC 1918) address"
    } else if v4.is_link_local() {
        "a link-local address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (CGNAT, 100.64.0.0/10) address"
    } else if v4.is_multicast() || a >= 240 {
        "a multicast, broadcast or reserved address"
    } else {
        return None;
    })
}

fn reserved_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let first = v6.segments()[0];
    Some(if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        "the cloud metadata address"
    } else if v6.is_loopback() {
        "a loopback address"
    } else if v6.is_unspecified() {
        "the unspecified address"
    } else if first & 0xfe00 == 0xfc00 {
        "a unique local (RFC 4193, fc00::/7) address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if v6.is_multicast() {
        "a multicast address"
    } else {
        return None;
    })
}

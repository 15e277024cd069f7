//! Where the operator may send a request on a policy's behalf. URLs are judged by a real URL
//! parser (the `url` crate, WHATWG rules), never by string slicing:
//! - `https://`, or plain `http://` only to loopback (an IP literal or `localhost`, which must
//!   resolve to loopback when called);
//! - no credentials in the URL (userinfo): they belong in Secrets;
//! - link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, and IPv4
//!   ones written as IPv6: mapped, compatible or NAT64) are refused for every scheme unless the
//!   policy sets `allowLinkLocalAddresses`.
//!
//! The `deprovisioner` crate's `egress::GuardedResolver` applies the same address rules to
//! whatever a host name resolves to at call time, so a DNS name cannot lead a call where a
//! literal address could not.

use std::net::{IpAddr, Ipv6Addr};

use url::{Host, Url};

/// What a call may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Egress {
    /// Plain `http://`: only loopback addresses.
    pub loopback_only: bool,
    /// Link-local and metadata addresses allowed (the policy opted in).
    pub allow_link_local: bool,
}

/// The AWS IPv6 metadata address.
const EC2_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// The IPv4 address an IPv6 address carries, if it carries one: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`, which a NAT64 gateway routes to
/// that IPv4 address).
fn embedded_v4(v6: Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let s = v6.segments();
    let nat64 = s[0] == 0x64 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0);
    let compatible = s[..6].iter().all(|&x| x == 0) && (s[6] != 0 || s[7] > 1); // not :: or ::1
    match () {
        _ if nat64 || compatible => {
            Some(std::net::Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8))
        }
        _ => v6.to_ipv4_mapped(),
    }
}

/// The address as IPv4 when it is an IPv6 address carrying one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback: 127.0.0.0/8 or ::1 (also IPv4-mapped; not the other IPv6 forms, which do not reach
/// this host's loopback).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Link-local (169.254.0.0/16, fe80::/10) or a cloud metadata address.
pub fn is_link_local(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6 == EC2_METADATA_V6 || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

impl Egress {
    /// Why the call may not go to `ip`, or `None` when it may.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        if self.loopback_only && !is_loopback(ip) {
            Some("plain http:// is only allowed to loopback; use https://")
        } else if !self.allow_link_local && is_link_local(ip) {
            Some("link-local and cloud metadata addresses are refused (set allowLinkLocalAddresses to allow them)")
        } else {
            None
        }
    }
}

/// Checks a URL (or URL template: `{{field}}` only after the host) and says what it may reach.
pub fn check_url(raw: &str, allow_link_local: bool) -> Result<(Url, Egress), String> {
    let authority = raw.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.contains("{{") {
        return Err(format!("{raw:?} must name its host literally"));
    }
    let url = Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    let loopback_only = match url.scheme() {
        "https" => false,
        "http" => true,
        _ => return Err(format!("{raw:?} must start with https://")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{raw:?} carries credentials (userinfo); put them in a Secret"));
    }
    let egress = Egress { loopback_only, allow_link_local };
    let refused = match url.host() {
        None => return Err(format!("{raw:?} names no host")),
        // The parser also reads `https:{{..}}`, `https:/{{..}}` and backslashes as an authority.
        Some(Host::Domain(d)) if d.contains("{{") || d.contains("}}") => {
            return Err(format!("{raw:?} must name its host literally"));
        }
        Some(Host::Ipv4(ip)) => egress.refuses(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => egress.refuses(IpAddr::V6(ip)),
        // Only `localhost` may be a name for loopback; it is held to loopback again when resolved.
        Some(Host::Domain(d)) if loopback_only && !d.eq_ignore_ascii_case("localhost") => {
            Some("plain http:// is only allowed to loopback; use https://")
        }
        Some(Host::Domain(_)) => None,
    };
    match refused {
        Some(why) => Err(format!("{raw:?}: {why}")),
        None => Ok((url, egress)),
    }
}

#[cfg(test)]
mod tests;

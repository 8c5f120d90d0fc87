//! Who is calling: the socket's address, or — only when that peer is a trusted proxy — the
//! client named in `X-Forwarded-For`. And address ranges (`TRUSTED_PROXIES`, `NEVER_BLOCK`).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::HeaderMap;

/// An address or a CIDR range: `10.0.0.0/8`, `192.168.1.7`, `::1`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has a prefix length that is not 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// A comma-separated list of ranges.
pub fn parse_list(s: &str) -> Result<Vec<IpNet>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(IpNet::parse)
        .collect()
}

pub fn any_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address. `X-Forwarded-For` is believed only from a trusted proxy, and then the
/// right-most address in it that is not itself a trusted proxy (the one that proxy saw).
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !any_contains(trusted, peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(canonical)
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|a| !any_contains(trusted, *a))
            .unwrap_or(peer),
    )
}

/// The client's address for a request, as text (for the audit log: only refusals and admin
/// changes ask, so it is worked out when asked rather than on every request).
pub fn client_addr(parts: &Parts, trusted: &[IpNet]) -> Option<String> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip());
    client_ip(peer, &parts.headers, trusted).map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        let nets = parse_list("10.0.0.0/8, 192.168.1.7 ,fd00::/8").unwrap();
        assert!(any_contains(&nets, ip("10.200.3.4")));
        assert!(any_contains(&nets, ip("192.168.1.7")));
        assert!(!any_contains(&nets, ip("192.168.1.8")));
        assert!(any_contains(&nets, ip("fd12::1")));
        assert!(any_contains(&nets, ip("::ffff:10.1.1.1")), "IPv4-mapped");
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("nope").is_err());
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted = parse_list("10.0.0.0/8").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "198.51.100.1, 203.0.113.7, 10.0.0.5".parse().unwrap(),
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &h, &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_ip(Some(ip("192.0.2.9")), &h, &trusted),
            Some(ip("192.0.2.9")),
            "spoofed header ignored"
        );
        assert_eq!(
            client_ip(Some(ip("10.0.0.2")), &HeaderMap::new(), &trusted),
            Some(ip("10.0.0.2"))
        );
        assert_eq!(client_ip(None, &h, &trusted), None);
    }
}

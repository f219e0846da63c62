//! Client addresses (SPEC §10): the TCP peer, or, when the peer is one of
//! `server.trusted_proxies`, the address the proxies forwarded, read right to
//! left through trusted hops; and the buckets per-address limits count in
//! (IPv4 addresses as they are, IPv6 by /64).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address block such as `10.0.0.0/8`, `2001:db8::/32` or a single address.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Cidr, String> {
        let bad = || format!("`{text}` is not an address block such as 10.0.0.0/8 or 2001:db8::/32");
        let (addr, bits) = match text.trim().split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (text.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { net, bits })
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = ((bits / 8) as usize, bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: `peer` itself unless it is a trusted proxy; then
/// the forwarded chain is read from the right, each trusted hop giving way to
/// the address it forwarded for, and the first untrusted address is the
/// client. `X-Forwarded-For` is read when present, else `Forwarded` (RFC
/// 7239); a hop that is not an address ends the walk at the proxy before it.
pub fn client_address(peer: IpAddr, x_forwarded_for: &[&str], forwarded: &[&str], trusted: &[Cidr]) -> IpAddr {
    let mut addr = canonical(peer);
    if !trusted.iter().any(|c| c.contains(addr)) {
        return addr;
    }
    let hops: Vec<&str> = if !x_forwarded_for.is_empty() {
        x_forwarded_for.iter().flat_map(|h| h.split(',')).collect()
    } else {
        forwarded
            .iter()
            .flat_map(|h| h.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                    .map_or("", |(_, v)| v)
            })
            .collect()
    };
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        addr = canonical(ip);
        if !trusted.iter().any(|c| c.contains(addr)) {
            break;
        }
    }
    addr
}

/// `192.0.2.7`, `192.0.2.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711`, quoted or not.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(v6) = hop.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

/// The bucket an address counts in for per-address limits: IPv4 as is, IPv6
/// by its /64 (one subscriber's prefix), `-` when there is none.
pub fn ip_bucket(ip: Option<&str>) -> String {
    match ip.map(str::parse::<IpAddr>) {
        Some(Ok(ip)) => match canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
            v4 => v4.to_string(),
        },
        Some(Err(_)) => ip.unwrap_or("-").to_string(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_parse_and_contain() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(ip("10.200.1.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped is the IPv4 address");
        let c: Cidr = "2001:db8:1::/48".parse().unwrap();
        assert!(c.contains(ip("2001:db8:1:ffff::1")));
        assert!(!c.contains(ip("2001:db8:2::1")));
        let c: Cidr = "192.0.2.7".parse().unwrap();
        assert!(c.contains(ip("192.0.2.7")) && !c.contains(ip("192.0.2.8")));
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains(ip("172.31.255.255")) && !c.contains(ip("172.32.0.0")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        // From a trusted proxy: the address it saw.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["198.51.100.9"], &[], &trusted),
            ip("198.51.100.9")
        );
        // From anyone else: the peer, whatever the header says.
        assert_eq!(
            client_address(ip("203.0.113.1"), &["198.51.100.9"], &[], &trusted),
            ip("203.0.113.1")
        );
        // Right to left: a client-written entry left of the proxy's own is ignored.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["1.2.3.4, 198.51.100.9"], &[], &trusted),
            ip("198.51.100.9")
        );
        // Through two trusted hops (and two header lines).
        assert_eq!(
            client_address(ip("10.0.0.5"), &["1.2.3.4, 198.51.100.9", "10.9.9.9"], &[], &trusted),
            ip("198.51.100.9")
        );
        // Every hop trusted: the leftmost.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["10.1.1.1"], &[], &trusted),
            ip("10.1.1.1")
        );
        // A line that is not text is still read (the proxy's hop is at its end).
        assert_eq!(
            client_address(ip("10.0.0.5"), &["\u{FFFD}, 198.51.100.9"], &["for=1.2.3.4"], &trusted),
            ip("198.51.100.9")
        );
        // A hop that is not an address: the proxy before it.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["198.51.100.9, unknown"], &[], &trusted),
            ip("10.0.0.5")
        );
        // No header: the proxy itself.
        assert_eq!(client_address(ip("10.0.0.5"), &[], &[], &trusted), ip("10.0.0.5"));
        // IPv4-mapped peers are their IPv4 address, trusted or not.
        assert_eq!(client_address(ip("::ffff:192.0.2.7"), &[], &[], &[]), ip("192.0.2.7"));
    }

    #[test]
    fn forwarded_header_and_ports_are_read() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        assert_eq!(
            client_address(
                ip("10.0.0.5"),
                &[],
                &["for=1.2.3.4, for=\"[2001:db8:cafe::17]:4711\";proto=https;by=10.0.0.5"],
                &trusted
            ),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(
            client_address(ip("10.0.0.5"), &["198.51.100.9:5555"], &[], &trusted),
            ip("198.51.100.9")
        );
        // X-Forwarded-For wins when both are present.
        assert_eq!(
            client_address(ip("10.0.0.5"), &["198.51.100.9"], &["for=1.2.3.4"], &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(
            ip_bucket(Some("2001:db8:1:2:aaaa::1")),
            ip_bucket(Some("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(ip_bucket(Some("2001:db8:1:2::1")), ip_bucket(Some("2001:db8:1:3::1")));
        assert_eq!(ip_bucket(Some("::ffff:192.0.2.7")), "192.0.2.7");
        assert_eq!(ip_bucket(Some("192.0.2.7")), "192.0.2.7");
        assert_eq!(ip_bucket(None), "-");
    }
}

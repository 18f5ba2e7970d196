//! Longest-prefix match over IPv4 and IPv6 networks: one hash map per prefix length,
//! probed from the longest length present to the shortest. A lookup costs one hash probe
//! per distinct length in the table (a feed of host addresses: one probe).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use foldhash::fast::FixedState;

type Map<K, V> = HashMap<K, V, FixedState>;

#[derive(Debug, Clone)]
pub struct PrefixTable<V> {
    v4: Vec<(u8, Map<u32, V>)>,
    v6: Vec<(u8, Map<u128, V>)>,
    len: usize,
}

impl<V> Default for PrefixTable<V> {
    fn default() -> Self {
        Self { v4: Vec::new(), v6: Vec::new(), len: 0 }
    }
}

fn mask4(a: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        a & (u32::MAX << (32 - len as u32))
    }
}

fn mask6(a: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        a & (u128::MAX << (128 - len as u32))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.0/24`, `2001:db8::/32`, `::ffff:1.2.3.4` → network address and
/// prefix length (host bits are cleared: feeds often write `10.1.2.3/8`).
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let s = s.trim();
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let (ip, len) = match (ip, len) {
        (IpAddr::V6(v6), l) if v6.to_ipv4_mapped().is_some() => {
            let l = l.unwrap_or(128);
            if !(96..=128).contains(&l) {
                return Some((IpAddr::V6(Ipv6Addr::from(mask6(u128::from(v6), l))), l));
            }
            (IpAddr::V4(v6.to_ipv4_mapped()?), l - 96)
        }
        (IpAddr::V4(_), l) => (ip, l.unwrap_or(32)),
        (IpAddr::V6(_), l) => (ip, l.unwrap_or(128)),
    };
    Some(match ip {
        IpAddr::V4(v4) if len <= 32 => (IpAddr::V4(Ipv4Addr::from(mask4(u32::from(v4), len))), len),
        IpAddr::V6(v6) if len <= 128 => (IpAddr::V6(Ipv6Addr::from(mask6(u128::from(v6), len))), len),
        _ => return None,
    })
}

/// The map of prefix length `len`, made in its place (longest first) when missing.
fn slot<K, V>(maps: &mut Vec<(u8, Map<K, V>)>, len: u8) -> &mut Map<K, V> {
    let i = match maps.iter().position(|(l, _)| *l <= len) {
        Some(i) if maps[i].0 == len => i,
        Some(i) => {
            maps.insert(i, (len, Map::default()));
            i
        }
        None => {
            maps.push((len, Map::default()));
            maps.len() - 1
        }
    };
    &mut maps[i].1
}

/// Whether `ip` is in the network `net`/`len` (IPv4-mapped IPv6 counts as IPv4).
pub fn net_contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (canonical(net), canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => len <= 32 && mask4(u32::from(a), len) == mask4(u32::from(n), len),
        (IpAddr::V6(n), IpAddr::V6(a)) => len <= 128 && mask6(u128::from(a), len) == mask6(u128::from(n), len),
        _ => false,
    }
}

impl<V> PrefixTable<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts a network (the address is masked to `len`); returns the value it replaced.
    pub fn insert(&mut self, net: IpAddr, len: u8, value: V) -> Option<V> {
        let old = match canonical(net) {
            IpAddr::V4(a) => {
                let len = len.min(32);
                slot(&mut self.v4, len).insert(mask4(u32::from(a), len), value)
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                slot(&mut self.v6, len).insert(mask6(u128::from(a), len), value)
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The most specific network holding `ip`, with its prefix length.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<(u8, &V)> {
        match canonical(ip) {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.v4.iter().find_map(|(l, m)| m.get(&mask4(a, *l)).map(|v| (*l, v)))
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.v6.iter().find_map(|(l, m)| m.get(&mask6(a, *l)).map(|v| (*l, v)))
            }
        }
    }

    /// Every network with its length and value (for diffs between two loads).
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, u8, &V)> {
        let v4 = self.v4.iter().flat_map(|(l, m)| m.iter().map(move |(a, v)| (IpAddr::V4(Ipv4Addr::from(*a)), *l, v)));
        let v6 = self.v6.iter().flat_map(|(l, m)| m.iter().map(move |(a, v)| (IpAddr::V6(Ipv6Addr::from(*a)), *l, v)));
        v4.chain(v6)
    }

    pub fn contains_net(&self, net: IpAddr, len: u8) -> bool {
        match canonical(net) {
            IpAddr::V4(a) => self.v4.iter().any(|(l, m)| *l == len && m.contains_key(&mask4(u32::from(a), len))),
            IpAddr::V6(a) => self.v6.iter().any(|(l, m)| *l == len && m.contains_key(&mask6(u128::from(a), len))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_v4_and_v6() {
        let mut t = PrefixTable::new();
        t.insert(ip("10.0.0.0"), 8, "eight");
        t.insert(ip("10.1.0.0"), 16, "sixteen");
        t.insert(ip("10.1.2.3"), 32, "host");
        t.insert(ip("0.0.0.0"), 0, "default");
        t.insert(ip("2001:db8::"), 32, "doc");
        t.insert(ip("2001:db8:1::"), 48, "doc48");
        assert_eq!(t.lookup(ip("10.1.2.3")), Some((32, &"host")));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some((16, &"sixteen")));
        assert_eq!(t.lookup(ip("10.2.0.1")), Some((8, &"eight")));
        assert_eq!(t.lookup(ip("11.0.0.1")), Some((0, &"default")));
        assert_eq!(t.lookup(ip("::ffff:10.1.2.3")), Some((32, &"host")), "IPv4-mapped IPv6 is the IPv4 address");
        assert_eq!(t.lookup(ip("2001:db8:1:2::5")), Some((48, &"doc48")));
        assert_eq!(t.lookup(ip("2001:db8:2::5")), Some((32, &"doc")));
        assert_eq!(t.lookup(ip("2001:db9::1")), None, "no IPv6 default route");
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn cidr_parsing_masks_host_bits_and_rejects_garbage() {
        assert_eq!(parse_cidr("10.1.2.3/8"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(parse_cidr("192.0.2.7"), Some((ip("192.0.2.7"), 32)));
        assert_eq!(parse_cidr("::ffff:192.0.2.0/120"), Some((ip("192.0.2.0"), 24)));
        assert_eq!(parse_cidr("2001:db8::1/32"), Some((ip("2001:db8::"), 32)));
        assert_eq!(parse_cidr("10.0.0.0/33"), None);
        assert_eq!(parse_cidr("10.0.0/8"), None);
        assert_eq!(parse_cidr("2001:db8::/129"), None);
        assert_eq!(parse_cidr("evil.com"), None);
    }
}

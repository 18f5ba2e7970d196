//! The SSRF guard of webhooks: addresses inside the host's or its neighbours' networks
//! (loopback, private, shared, link-local — where cloud metadata services answer —,
//! unspecified, multicast, broadcast, and IPv6 forms that embed such an IPv4 address) are
//! refused unless a destination allows them. The guard is the resolver of the HTTP client,
//! so the address checked is the address connected to; a URL whose host is an address (in
//! any spelling the URL standard reads: decimal, octal, hex, IPv4-mapped IPv6) is checked
//! before the request.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use crate::event::prefix::net_contains;

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || o[0] == 0 => "unspecified",
        _ if ip.is_link_local() => "link-local (cloud metadata)",
        _ if ip.is_private() => "private",
        [100, b, ..] if (64..128).contains(&b) => "shared (carrier-grade NAT)",
        [192, 0, 0, _] => "IETF protocol assignments",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() || o[0] >= 240 => "reserved",
        _ => return None,
    })
}

/// Why `ip` is refused by default (`None`: a public address).
pub fn refused_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_reason(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form embed IPv4.
            if (s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4]) || (s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified()) {
                let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                return v4_reason(v4).or(Some("IPv6 form of an IPv4 address"));
            }
            Some(match v6 {
                _ if v6.is_loopback() => "loopback",
                _ if v6.is_unspecified() => "unspecified",
                _ if (s[0] & 0xfe00) == 0xfc00 => "private (unique local)",
                _ if (s[0] & 0xffc0) == 0xfe80 => "link-local",
                _ if v6.is_multicast() => "multicast",
                _ if s[0] == 0x2002 => "6to4 (embeds an IPv4 address)",
                _ if s[0] == 0x2001 && s[1] == 0 => "Teredo (embeds an IPv4 address)",
                _ => return None,
            })
        }
    }
}

/// Addresses refused unless allow-listed.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    pub allow: Vec<(IpAddr, u8)>,
}

impl Guard {
    /// `Err` names why `ip` may not be reached.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.allow.iter().any(|(net, len)| net_contains(*net, *len, canonical) || net_contains(*net, *len, ip)) {
            return Ok(());
        }
        match refused_reason(ip) {
            Some(why) => Err(format!("{ip} is {why}: refused (add its network to the destination's `allow` to reach it)")),
            None => Ok(()),
        }
    }

    /// Checks a URL's host when it is an address; names are checked when resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        match url.scheme() {
            "http" | "https" => {}
            s => return Err(format!("scheme `{s}` is not http or https")),
        }
        match url.host() {
            Some(url::Host::Ipv4(a)) => self.check(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => self.check(IpAddr::V6(a)),
            Some(url::Host::Domain(_)) => Ok(()),
            None => Err("the URL has no host".into()),
        }
    }
}

/// The HTTP client's resolver: the system's answers, without refused addresses.
pub struct Resolver(pub Arc<Guard>);

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let answer = tokio::task::spawn_blocking(move || -> Result<Vec<SocketAddr>, String> {
                let all: Vec<SocketAddr> = (host.as_str(), 0).to_socket_addrs().map_err(|e| format!("{host}: {e}"))?.collect();
                let mut why = Vec::new();
                let ok: Vec<SocketAddr> = all
                    .into_iter()
                    .filter(|a| match guard.check(a.ip()) {
                        Ok(()) => true,
                        Err(e) => {
                            why.push(e);
                            false
                        }
                    })
                    .collect();
                if ok.is_empty() {
                    return Err(format!("{host}: {}", if why.is_empty() { "no address".to_string() } else { why.join("; ") }));
                }
                Ok(ok)
            })
            .await
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.to_string().into() })?;
            match answer {
                Ok(v) => Ok(Box::new(v.into_iter()) as reqwest::dns::Addrs),
                Err(e) => Err(e.into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).unwrap()
    }

    #[test]
    fn every_spelling_of_loopback_and_metadata_is_refused() {
        let g = Guard::default();
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://127.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
        ] {
            assert!(g.check_url(&url(u)).is_err(), "{u} allowed");
        }
        assert!(g.check_url(&url("https://93.184.215.14/")).is_ok());
        assert!(g.check_url(&url("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/")).is_ok());
        assert!(g.check_url(&url("file:///etc/passwd")).is_err());
        let allowed = Guard { allow: vec![("127.0.0.0".parse().unwrap(), 8)] };
        assert!(allowed.check_url(&url("http://127.0.0.1:8080/")).is_ok());
        assert!(allowed.check_url(&url("http://[::ffff:127.0.0.1]/")).is_ok());
        assert!(allowed.check_url(&url("http://169.254.169.254/")).is_err());
    }
}

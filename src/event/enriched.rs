//! What enrichment found for an alert: GeoIP and AS of both sides, the asset they belong
//! to, indicators matched, what was seen before, and the JSON texts of the `intel` and
//! `enrichment` columns. Produced by `enrich`, read by scoring, the outputs and the tables.

use std::sync::Arc;

use super::json::JsonObject;

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Ip,
    Domain,
    Url,
    Md5,
    Sha1,
    Sha256,
    Ja3,
    Ja4,
    Sni,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Ja3 => "ja3",
            Kind::Ja4 => "ja4",
            Kind::Sni => "sni",
        }
    }

    /// Type names used by feeds (CSV `type` columns, config `type`).
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "ip" | "ipv4" | "ipv6" | "cidr" | "ip-src" | "ip-dst" | "ipv4-addr" | "ipv6-addr" | "network" => Kind::Ip,
            "domain" | "hostname" | "fqdn" | "domain-name" | "host" => Kind::Domain,
            "url" | "uri" => Kind::Url,
            "md5" => Kind::Md5,
            "sha1" | "sha-1" => Kind::Sha1,
            "sha256" | "sha-256" => Kind::Sha256,
            "ja3" | "ja3-fingerprint-md5" => Kind::Ja3,
            "ja4" | "ja4-fingerprint" => Kind::Ja4,
            "sni" | "tls-sni" => Kind::Sni,
            _ => return None,
        })
    }

    pub const NAMES: &'static str = "ip, domain, url, md5, sha1, sha256, ja3, ja4, sni";
}

/// What a City/Country database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Place {
    pub country: Option<Box<str>>,
    pub country_name: Option<Box<str>>,
    pub continent: Option<Box<str>>,
    pub subdivision: Option<Box<str>>,
    pub city: Option<Box<str>>,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub accuracy_radius: Option<u16>,
    pub time_zone: Option<Box<str>>,
    pub registered_country: Option<Box<str>>,
}

/// What an ASN database says about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AsInfo {
    pub number: Option<u32>,
    pub organization: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    /// The network as written (masked): `10.1.0.0/16`, `192.0.2.10`.
    pub network: Box<str>,
    pub name: Box<str>,
    pub owner: Option<Box<str>>,
    /// `low`, `medium`, `high`, `critical` (or the inventory's own word).
    pub criticality: Option<Box<str>>,
    pub tags: Vec<Box<str>>,
}

impl Asset {
    /// 1 (low) … 4 (critical), 0 when unknown; numbers 0–4 are taken as they are.
    pub fn criticality_level(&self) -> i64 {
        match self.criticality.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("low") => 1,
            Some("medium") | Some("moderate") => 2,
            Some("high") => 3,
            Some("critical") | Some("crown-jewel") => 4,
            Some(n) => n.parse::<i64>().ok().filter(|n| (0..=4).contains(n)).unwrap_or(0),
            None => 0,
        }
    }
}

/// One analyst judgement of an earlier alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `true_positive`, `false_positive`, `benign`, … as the analyst said.
    pub verdict: String,
    pub at_us: i64,
    pub analyst: String,
}

/// Counts before the current alert.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub last_24h: u64,
    pub last_7d: u64,
    pub first_time: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryInfo {
    pub signature: Seen,
    pub src: Seen,
    pub dest: Seen,
    pub pair: Seen,
    pub verdicts: Vec<Verdict>,
}

/// GeoIP of one address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoHit {
    pub place: Option<Place>,
    pub asn: Option<AsInfo>,
}

/// One side of an alert (source or destination).
#[derive(Debug, Clone, Default)]
pub struct Side {
    pub geo: Option<Arc<GeoHit>>,
    pub asset: Option<Arc<Asset>>,
}

/// One indicator an alert matched.
#[derive(Debug, Clone, PartialEq)]
pub struct IntelHit {
    pub feed: Arc<str>,
    /// The feed's version that held the indicator.
    pub feed_version: Arc<str>,
    pub indicator: Arc<str>,
    pub kind: Kind,
    /// Where the value was: `src_ip`, `dest_ip`, `dns.rrname`, `dns.answer`,
    /// `http.hostname`, `http.url`, `tls.sni`, `tls.ja3`, `tls.ja4`, `fileinfo.md5`,
    /// `fileinfo.sha1`, `fileinfo.sha256`.
    pub field: &'static str,
    pub value: Box<str>,
    pub confidence: u8,
    pub description: Option<Box<str>>,
}

/// Everything enrichment found for one alert.
#[derive(Debug, Clone, Default)]
pub struct Enrichment {
    pub src: Side,
    pub dest: Side,
    pub intel: Vec<IntelHit>,
    pub history: Option<HistoryInfo>,
    pub versions: Arc<[Arc<str>]>,
}

impl Enrichment {
    /// The `enrichment` column: geo, AS, asset of both sides, and history.
    pub fn details_json(&self) -> Option<String> {
        if self.src.geo.is_none() && self.dest.geo.is_none() && self.src.asset.is_none() && self.dest.asset.is_none() && self.history.is_none() {
            return None;
        }
        let mut out = String::with_capacity(256);
        let mut o = JsonObject::open(&mut out);
        for (name, side) in [("src", &self.src), ("dest", &self.dest)] {
            if side.geo.is_none() && side.asset.is_none() {
                continue;
            }
            let mut s = JsonObject::open(o.key(name));
            if let Some(p) = side.geo.as_ref().and_then(|g| g.place.as_ref()) {
                let mut g = JsonObject::open(s.key("geo"));
                for (k, v) in [
                    ("country", &p.country),
                    ("country_name", &p.country_name),
                    ("continent", &p.continent),
                    ("subdivision", &p.subdivision),
                    ("city", &p.city),
                    ("time_zone", &p.time_zone),
                    ("registered_country", &p.registered_country),
                ] {
                    if let Some(v) = v {
                        g.str(k, v);
                    }
                }
                if let (Some(lat), Some(lon)) = (p.latitude, p.longitude) {
                    g.raw("latitude", &lat.to_string());
                    g.raw("longitude", &lon.to_string());
                }
                g.opt_int("accuracy_radius", p.accuracy_radius.map(i64::from));
                g.close();
            }
            if let Some(a) = side.geo.as_ref().and_then(|g| g.asn.as_ref()) {
                let mut g = JsonObject::open(s.key("as"));
                g.opt_int("number", a.number.map(i64::from));
                if let Some(org) = &a.organization {
                    g.str("organization", org);
                }
                g.close();
            }
            if let Some(a) = &side.asset {
                let mut g = JsonObject::open(s.key("asset"));
                g.str("network", &a.network);
                g.str("name", &a.name);
                if let Some(x) = &a.owner {
                    g.str("owner", x);
                }
                if let Some(x) = &a.criticality {
                    g.str("criticality", x);
                }
                g.strs("tags", &a.tags);
                g.close();
            }
            s.close();
        }
        if let Some(h) = &self.history {
            let mut g = JsonObject::open(o.key("history"));
            for (k, seen) in [("signature", &h.signature), ("src", &h.src), ("dest", &h.dest), ("pair", &h.pair)] {
                let mut x = JsonObject::open(g.key(k));
                x.int("last_24h", seen.last_24h as i64);
                x.int("last_7d", seen.last_7d as i64);
                x.raw("first_time", if seen.first_time { "true" } else { "false" });
                x.close();
            }
            if !h.verdicts.is_empty() {
                let v: Vec<String> = h.verdicts.iter().map(|v| v.verdict.clone()).collect();
                g.strs("verdicts", &v);
            }
            g.close();
        }
        o.close();
        Some(out)
    }

    /// The `intel` column: the matches as a JSON list.
    pub fn intel_json(&self) -> Option<String> {
        (!self.intel.is_empty()).then(|| hits_json(&self.intel))
    }
}
/// Matches as a JSON list (the `intel` column, `matches` of `intel_alert` lines).
pub fn hits_json(hits: &[IntelHit]) -> String {
    crate::event::json::json_list(hits, |o, h| {
        o.str("feed", &h.feed);
        o.str("feed_version", &h.feed_version);
        o.str("indicator", &h.indicator);
        o.str("type", h.kind.as_str());
        o.str("field", h.field);
        o.str("value", &h.value);
        o.int("confidence", h.confidence as i64);
        if let Some(d) = &h.description {
            o.str("description", d);
        }
    })
}

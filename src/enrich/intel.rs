//! Threat-intel indicator sets: IPs and CIDRs (longest-prefix), domains (a name matches
//! its own entry or any parent's), URLs, file hashes, JA3/JA4 fingerprints and TLS SNI.
//! Loaded from plain lists, CSV, MISP JSON event exports and STIX 2.1 bundles; a load
//! either yields a whole set or a clear error (the previous set stays in use).

use super::LoadError;
use std::borrow::Cow;
use std::net::IpAddr;

use foldhash::fast::FixedState;

use super::prefix::{parse_cidr, PrefixTable};

pub use crate::event::enriched::Kind;

/// The file formats a feed can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One indicator per line; `#` starts a comment.
    List,
    Csv,
    Misp,
    Stix,
}

impl Format {
    pub fn from_name(s: &str) -> Option<Format> {
        Some(match s {
            "list" | "txt" => Format::List,
            "csv" => Format::Csv,
            "misp" => Format::Misp,
            "stix" => Format::Stix,
            _ => return None,
        })
    }

    /// From a file name: `.csv`, `.json` with a MISP or STIX shape, else a list.
    pub fn guess(path: &std::path::Path, head: &[u8]) -> Format {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let head = String::from_utf8_lossy(&head[..head.len().min(4096)]);
        match ext.as_str() {
            "csv" => Format::Csv,
            "json" if head.contains("\"bundle\"") || head.contains("\"spec_version\"") => Format::Stix,
            "json" => Format::Misp,
            _ => Format::List,
        }
    }
}

/// One indicator of a set (borrowed from the set).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Indicator<'a> {
    /// As normalized for matching (lowercase host, no scheme, masked network).
    pub value: &'a str,
    pub kind: Kind,
    /// 0–100.
    pub confidence: u8,
    pub description: Option<&'a str>,
}

/// How an indicator is stored: its text is a span of the set's one string.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: u32,
    len: u32,
    /// Index into `descriptions`, `u32::MAX` for none.
    desc: u32,
    kind: Kind,
    confidence: u8,
}

/// How a feed is read.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub format: Format,
    /// Every entry of a list has this type (else it is recognized from its shape).
    pub kind: Option<Kind>,
    /// Confidence of indicators that do not carry one.
    pub confidence: u8,
    /// MISP: only attributes marked for detection (`to_ids`).
    pub to_ids_only: bool,
    /// STIX: indicators whose `valid_until` is before this are left out.
    pub now_us: i64,
    /// A feed with more indicators is rejected (memory is bounded by configuration).
    pub max_indicators: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { format: Format::List, kind: None, confidence: 50, to_ids_only: true, now_us: 0, max_indicators: 10_000_000 }
    }
}

/// Entries that were well-formed but not usable as indicators, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped(pub Vec<(String, u64)>);

impl Skipped {
    pub(crate) fn add(&mut self, reason: impl Into<String>) {
        let reason = reason.into();
        match self.0.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.0.push((reason, 1)),
        }
    }

    pub fn total(&self) -> u64 {
        self.0.iter().map(|(_, n)| n).sum()
    }
}

/// Indices of entries, found by the hash of their text (4 bytes a slot: a million
/// indicators cost their text plus a few bytes each, not an allocation each).
type Exact = hashbrown::HashTable<u32>;

/// The exact-match tables, by [`Kind`] (networks are in the prefix table).
const DOMAINS: usize = 0;
const SNI: usize = 1;
const URLS: usize = 2;
/// md5, sha1 and sha256 (their lengths differ).
const HASHES: usize = 3;
const JA3: usize = 4;
const JA4: usize = 5;

fn table_of(kind: Kind) -> usize {
    match kind {
        Kind::Domain => DOMAINS,
        Kind::Sni => SNI,
        Kind::Url => URLS,
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => HASHES,
        Kind::Ja3 => JA3,
        Kind::Ja4 => JA4,
        Kind::Ip => unreachable!("networks go to the prefix table"),
    }
}

/// An immutable indicator set (one feed, one load).
#[derive(Debug, Clone, Default)]
pub struct IndicatorSet {
    /// Every indicator's normalized text, one after another.
    text: String,
    entries: Vec<Entry>,
    descriptions: Vec<Box<str>>,
    ips: PrefixTable<u32>,
    exact: [Exact; 6],
    pub skipped: Skipped,
    /// At most this many indicators (0: no limit).
    cap: usize,
}

fn hash_str(s: &str) -> u64 {
    use std::hash::BuildHasher;
    FixedState::default().hash_one(s)
}

/// A value an event offered for matching, and where it came from.
#[derive(Debug, Clone, Copy)]
pub enum Probe<'a> {
    Ip(IpAddr),
    Domain(&'a str),
    /// HTTP host and url (`/path?q` or absolute).
    Url(Option<&'a str>, &'a str),
    Hash(&'a str),
    Ja3(&'a str),
    Ja4(&'a str),
    Sni(&'a str),
}

fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A domain as matched: lowercase, no trailing dot, no leading `*.`.
pub fn normalize_domain(s: &str) -> Option<String> {
    let s = s.trim().trim_end_matches('.');
    let s = s.strip_prefix("*.").unwrap_or(s);
    let s = s.to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    ok.then_some(s)
}

/// A URL as matched: no scheme, no credentials, lowercase host, a path (`/` when none),
/// no fragment: `evil.example/dl/x.exe?a=1`.
pub fn normalize_url(s: &str) -> Option<String> {
    let s = s.trim();
    let rest = match s.find("://") {
        Some(i) if s[..i].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.') => &s[i + 3..],
        _ => s,
    };
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    if host.is_empty() || host.contains(char::is_whitespace) || path.contains(char::is_whitespace) {
        return None;
    }
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Some(format!("{}{}", host.to_ascii_lowercase(), path))
}

/// JA4: `t13d1516h2_8daaf6152771_02713d6af862` (three parts, protocol letter first).
fn looks_like_ja4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('_').collect();
    parts.len() == 3
        && parts[0].len() == 10
        && matches!(parts[0].as_bytes()[0], b't' | b'q' | b'd')
        && parts[1].len() == 12
        && parts[2].len() == 12
        && is_hex(parts[1])
        && is_hex(parts[2])
}

/// The type of an untyped entry, from its shape. A 32-hex-digit value is an MD5 (a JA3
/// has the same shape: give the feed `type = "ja3"`).
pub fn detect(s: &str) -> Option<Kind> {
    let s = s.trim();
    if parse_cidr(s).is_some() {
        Some(Kind::Ip)
    } else if is_hex(s) && matches!(s.len(), 32 | 40 | 64) {
        Some(match s.len() {
            32 => Kind::Md5,
            40 => Kind::Sha1,
            _ => Kind::Sha256,
        })
    } else if looks_like_ja4(s) {
        Some(Kind::Ja4)
    } else if s.contains("://") || s.contains('/') {
        Some(Kind::Url)
    } else if normalize_domain(s).is_some() && s.contains('.') {
        Some(Kind::Domain)
    } else {
        None
    }
}

impl IndicatorSet {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn text_of<'t>(text: &'t str, e: &Entry) -> &'t str {
        &text[e.start as usize..(e.start + e.len) as usize]
    }

    pub fn indicator(&self, i: u32) -> Indicator<'_> {
        let e = &self.entries[i as usize];
        Indicator {
            value: Self::text_of(&self.text, e),
            kind: e.kind,
            confidence: e.confidence,
            description: self.descriptions.get(e.desc as usize).map(|d| &**d),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Indicator<'_>> {
        (0..self.entries.len() as u32).map(|i| self.indicator(i))
    }

    /// The exact table `t` entry for `key`.
    #[inline]
    fn find(&self, t: usize, key: &str) -> Option<u32> {
        let table = &self.exact[t];
        if table.is_empty() {
            return None;
        }
        let (text, entries) = (&self.text, &self.entries);
        table.find(hash_str(key), |&i| Self::text_of(text, &entries[i as usize]) == key).copied()
    }

    /// Adds one indicator of a known type; `Err` says why the value is not one.
    pub fn add(&mut self, kind: Kind, value: &str, confidence: u8, description: Option<&str>) -> Result<(), LoadError> {
        self.room()?;
        let v = value.trim();
        let bad = || LoadError::BadValue { value: cut(v).to_string(), what: format!("a valid {}", kind.as_str()) };
        let norm: String = match kind {
            Kind::Ip => {
                let (net, len) = parse_cidr(v).ok_or_else(bad)?;
                self.add_net(net, len, v, confidence, description);
                return Ok(());
            }
            Kind::Domain | Kind::Sni => normalize_domain(v).ok_or_else(bad)?,
            Kind::Url => normalize_url(v).ok_or_else(bad)?,
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
                let want = match kind {
                    Kind::Md5 => 32,
                    Kind::Sha1 => 40,
                    _ => 64,
                };
                if v.len() != want || !is_hex(v) {
                    return Err(bad());
                }
                v.to_ascii_lowercase()
            }
            Kind::Ja3 => {
                if v.len() != 32 || !is_hex(v) {
                    return Err(bad());
                }
                v.to_ascii_lowercase()
            }
            Kind::Ja4 => {
                let l = v.to_ascii_lowercase();
                if !looks_like_ja4(&l) {
                    return Err(bad());
                }
                l
            }
        };
        self.add_exact(kind, norm, confidence, description);
        Ok(())
    }

    fn room(&self) -> Result<(), LoadError> {
        if self.cap > 0 && self.entries.len() >= self.cap {
            return Err(LoadError::TooMany(self.cap));
        }
        Ok(())
    }

    /// Adds an entry whose type is recognized from its shape (`None`: not an indicator).
    fn add_detected(&mut self, v: &str, confidence: u8, description: Option<&str>) -> Option<()> {
        if let Some((net, len)) = parse_cidr(v) {
            self.add_net(net, len, v, confidence, description);
            return Some(());
        }
        let kind = match detect(v)? {
            Kind::Domain => {
                self.add_exact(Kind::Domain, normalize_domain(v)?, confidence, description);
                return Some(());
            }
            k => k,
        };
        self.add(kind, v, confidence, description).ok()
    }

    fn add_net(&mut self, net: IpAddr, len: u8, text: &str, confidence: u8, description: Option<&str>) {
        let host = (net.is_ipv4() && len == 32) || (net.is_ipv6() && len == 128);
        if let Some((l, &prev)) = self.ips.lookup(net) {
            if l == len {
                self.raise(prev, confidence);
                return;
            }
        }
        let idx = self.entries.len() as u32;
        self.ips.insert(net, len, idx);
        // A plain IPv4 address is kept as written (it is canonical); others are formatted.
        if host && net.is_ipv4() && !text.contains('/') {
            self.push(text, Kind::Ip, confidence, description);
        } else if host {
            self.push(&net.to_string(), Kind::Ip, confidence, description);
        } else {
            self.push(&format!("{net}/{len}"), Kind::Ip, confidence, description);
        }
    }

    fn add_exact(&mut self, kind: Kind, norm: String, confidence: u8, description: Option<&str>) {
        let t = table_of(kind);
        if let Some(prev) = self.find(t, &norm) {
            self.raise(prev, confidence);
            return;
        }
        let idx = self.entries.len() as u32;
        self.push(&norm, kind, confidence, description);
        let (text, entries) = (&self.text, &self.entries);
        self.exact[t].insert_unique(hash_str(&norm), idx, |&i| hash_str(Self::text_of(text, &entries[i as usize])));
    }

    /// The same indicator listed twice keeps its highest confidence.
    fn raise(&mut self, i: u32, confidence: u8) {
        let e = &mut self.entries[i as usize];
        e.confidence = e.confidence.max(confidence.min(100));
    }

    fn push(&mut self, value: &str, kind: Kind, confidence: u8, description: Option<&str>) {
        let start = self.text.len() as u32;
        self.text.push_str(value);
        let desc = match description.filter(|d| !d.is_empty()) {
            // Feeds repeat one description over many entries.
            Some(d) if self.descriptions.last().is_some_and(|l| **l == *cut(d)) => self.descriptions.len() as u32 - 1,
            Some(d) => {
                self.descriptions.push(cut(d).into());
                self.descriptions.len() as u32 - 1
            }
            None => u32::MAX,
        };
        self.entries.push(Entry { start, len: value.len() as u32, desc, kind, confidence: confidence.min(100) });
    }

    /// The indicator an event value matches, if any.
    #[inline]
    pub fn lookup(&self, p: Probe<'_>) -> Option<u32> {
        match p {
            Probe::Ip(ip) => {
                if self.ips.is_empty() {
                    return None;
                }
                self.ips.lookup(ip).map(|(_, &i)| i)
            }
            Probe::Domain(d) => self.lookup_domain(DOMAINS, d),
            Probe::Sni(d) => {
                let d = lower(d.trim_end_matches('.'));
                self.find(SNI, &d).or_else(|| self.lookup_domain(DOMAINS, &d))
            }
            Probe::Url(host, url) => {
                if self.exact[URLS].is_empty() {
                    return None;
                }
                let full = match (host, url.starts_with('/')) {
                    (Some(h), true) => format!("{}{}", h.to_ascii_lowercase(), url),
                    _ => normalize_url(url)?,
                };
                self.find(URLS, &full).or_else(|| {
                    // An indicator without a query matches the URL with any query.
                    let (base, _) = full.split_once('?')?;
                    self.find(URLS, base)
                })
            }
            Probe::Hash(h) => self.find(HASHES, &lower(h)),
            Probe::Ja3(h) => self.find(JA3, &lower(h)),
            Probe::Ja4(h) => self.find(JA4, &lower(h)),
        }
    }

    /// `a.b.evil.example` matches an entry for itself, `b.evil.example` or `evil.example`.
    fn lookup_domain(&self, t: usize, name: &str) -> Option<u32> {
        if self.exact[t].is_empty() {
            return None;
        }
        let name = lower(name.trim_end_matches('.'));
        let mut s: &str = &name;
        loop {
            if let Some(i) = self.find(t, s) {
                return Some(i);
            }
            match s.find('.') {
                Some(i) => s = &s[i + 1..],
                None => return None,
            }
        }
    }

    /// Indicators of `self` that `old` did not have (what a retro-hunt looks for).
    pub fn added_since(&self, old: &IndicatorSet) -> IndicatorSet {
        let mut out = IndicatorSet::default();
        for ind in self.iter() {
            let known = match ind.kind {
                Kind::Ip => parse_cidr(ind.value).is_some_and(|(n, l)| old.ips.contains_net(n, l)),
                k => old.find(table_of(k), ind.value).is_some(),
            };
            if !known {
                let _ = out.add(ind.kind, ind.value, ind.confidence, ind.description);
            }
        }
        out
    }

    /// Reads a feed. Structural problems (not JSON, a truncated CSV row, an invalid
    /// indicator or STIX pattern) reject the whole feed; well-formed entries of types
    /// alertflow does not match are skipped and counted.
    pub fn load(bytes: &[u8], o: &LoadOptions) -> Result<IndicatorSet, LoadError> {
        let text = std::str::from_utf8(bytes).map_err(|e| LoadError::NotUtf8(e.to_string()))?;
        let mut set = IndicatorSet { cap: o.max_indicators, ..Default::default() };
        match o.format {
            Format::List => load_list(&mut set, text, o)?,
            Format::Csv => load_csv(&mut set, text, o)?,
            Format::Misp => load_misp(&mut set, text, o)?,
            Format::Stix => super::stix::load(&mut set, text, o)?,
        }
        if set.is_empty() {
            return Err(LoadError::Format(if set.skipped.total() > 0 {
                format!(
                    "no usable indicator ({} entries skipped: {})",
                    set.skipped.total(),
                    set.skipped.0.iter().map(|(r, n)| format!("{n} {r}")).collect::<Vec<_>>().join(", ")
                )
            } else {
                "the feed has no indicators".into()
            }));
        }
        Ok(set)
    }
}

fn cut(s: &str) -> &str {
    let mut end = s.len().min(200);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn load_list(set: &mut IndicatorSet, text: &str, o: &LoadOptions) -> Result<(), LoadError> {
    set.entries.reserve(memchr::memchr_iter(b'\n', text.as_bytes()).count());
    set.text.reserve(text.len());
    for (n, line) in text.lines().enumerate() {
        let (value, comment) = match line.split_once('#') {
            Some((v, c)) => (v.trim(), Some(c.trim())),
            None => (line.trim(), None),
        };
        if value.is_empty() {
            continue;
        }
        // Some lists put a value per line followed by other columns.
        let value = value.split([' ', '\t', ',', ';']).next().unwrap_or(value);
        match o.kind {
            Some(kind) => set.add(kind, value, o.confidence, comment).map_err(|e| e.at(format!("line {}", n + 1)))?,
            None => {
                set.room().map_err(|e| e.at(format!("line {}", n + 1)))?;
                if set.add_detected(value, o.confidence, comment).is_none() {
                    return Err(LoadError::Format(format!(
                        "line {}: `{}` is not an IP, CIDR, domain, URL, hash or JA4 (set `type` for the feed if it is)",
                        n + 1,
                        cut(value)
                    )));
                }
            }
        }
    }
    Ok(())
}

fn load_csv(set: &mut IndicatorSet, text: &str, o: &LoadOptions) -> Result<(), LoadError> {
    let mut r = csv::ReaderBuilder::new().comment(Some(b'#')).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = r.headers().map_err(|e| LoadError::Format(format!("CSV header: {e}")))?.clone();
    let find = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)));
    let value_col = find(&["indicator", "value", "ioc", "observable"])
        .ok_or_else(|| LoadError::Format(format!("CSV header has no `indicator` (or `value`, `ioc`) column: {:?}", headers.iter().collect::<Vec<_>>())))?;
    let type_col = find(&["type", "kind", "indicator_type"]);
    let conf_col = find(&["confidence", "score"]);
    let desc_col = find(&["description", "comment", "threat", "tags"]);
    for rec in r.records() {
        let rec = rec.map_err(|e| LoadError::Format(format!("CSV: {e}")))?;
        let line = rec.position().map_or(0, |p| p.line());
        let value = rec.get(value_col).unwrap_or("");
        if value.is_empty() {
            continue;
        }
        let kind = match type_col.and_then(|c| rec.get(c)).filter(|t| !t.is_empty()) {
            Some(t) => match Kind::from_name(t) {
                Some(k) => Some(k),
                None => {
                    set.skipped.add(format!("type {t}"));
                    continue;
                }
            },
            None => o.kind.or_else(|| detect(value)),
        };
        let Some(kind) = kind else {
            return Err(LoadError::Format(format!("line {line}: `{}` is not an IP, CIDR, domain, URL, hash or JA4", cut(value))));
        };
        let confidence = match conf_col.and_then(|c| rec.get(c)).filter(|c| !c.is_empty()) {
            Some(c) => match c.parse::<f64>() {
                Ok(x) if (0.0..=100.0).contains(&x) => x.round() as u8,
                _ => return Err(LoadError::Format(format!("line {line}: confidence `{}` is not a number from 0 to 100", cut(c)))),
            },
            None => o.confidence,
        };
        set.add(kind, value, confidence, desc_col.and_then(|c| rec.get(c))).map_err(|e| e.at(format!("line {line}")))?;
    }
    Ok(())
}

/// MISP attribute type → what to match (a composite `a|b` type yields both halves).
fn misp_kinds(t: &str) -> Option<(Option<Kind>, Option<Kind>)> {
    let single = |k| Some((Some(k), None));
    match t {
        "ip-src" | "ip-dst" => single(Kind::Ip),
        "ip-src|port" | "ip-dst|port" => Some((Some(Kind::Ip), None)),
        "domain" | "hostname" => single(Kind::Domain),
        "domain|ip" => Some((Some(Kind::Domain), Some(Kind::Ip))),
        "hostname|port" => Some((Some(Kind::Domain), None)),
        "url" | "uri" | "link" => single(Kind::Url),
        "md5" => single(Kind::Md5),
        "sha1" => single(Kind::Sha1),
        "sha256" => single(Kind::Sha256),
        "filename|md5" => Some((None, Some(Kind::Md5))),
        "filename|sha1" => Some((None, Some(Kind::Sha1))),
        "filename|sha256" => Some((None, Some(Kind::Sha256))),
        "ja3-fingerprint-md5" => single(Kind::Ja3),
        "ja4-fingerprint" | "ja4" => single(Kind::Ja4),
        _ => None,
    }
}

/// The parts of a MISP export that are read, borrowed from the file's text where no
/// escape forces a copy (a `Value` tree of a million attributes weighed gigabytes).
mod misp {
    use serde::Deserialize;
    use std::borrow::Cow;

    /// `{"Event": …}` or `{"response": [{"Event": …}]}`.
    #[derive(Deserialize, Default)]
    pub struct Top<'a> {
        #[serde(rename = "Event", borrow, default)]
        pub event: Option<Event<'a>>,
        #[serde(borrow, default)]
        pub response: Option<Vec<Top<'a>>>,
    }

    #[derive(Deserialize)]
    pub struct Event<'a> {
        #[serde(borrow, default)]
        pub threat_level_id: Option<StrOrNum<'a>>,
        #[serde(borrow, default)]
        pub info: Option<Cow<'a, str>>,
        #[serde(rename = "Attribute", borrow, default)]
        pub attributes: Vec<Attribute<'a>>,
        #[serde(rename = "Object", borrow, default)]
        pub objects: Vec<Object<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Object<'a> {
        #[serde(rename = "Attribute", borrow, default)]
        pub attributes: Vec<Attribute<'a>>,
    }

    #[derive(Deserialize)]
    pub struct Attribute<'a> {
        #[serde(rename = "type", borrow, default)]
        pub kind: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub value: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        pub to_ids: Option<StrOrNum<'a>>,
        #[serde(borrow, default)]
        pub comment: Option<Cow<'a, str>>,
    }

    /// MISP writes flags and levels as booleans, numbers or strings.
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub enum StrOrNum<'a> {
        Bool(bool),
        Num(u64),
        Str(#[serde(borrow)] Cow<'a, str>),
    }

    impl StrOrNum<'_> {
        pub fn number(&self) -> Option<u64> {
            match self {
                StrOrNum::Num(n) => Some(*n),
                StrOrNum::Str(s) => s.parse().ok(),
                StrOrNum::Bool(_) => None,
            }
        }
        pub fn truthy(&self) -> bool {
            match self {
                StrOrNum::Bool(b) => *b,
                StrOrNum::Num(n) => *n == 1,
                StrOrNum::Str(s) => s == "1" || s == "true",
            }
        }
    }
}

fn load_misp(set: &mut IndicatorSet, text: &str, o: &LoadOptions) -> Result<(), LoadError> {
    let bad = |e: serde_json::Error| LoadError::Format(format!("MISP export is not JSON of MISP events: {e}"));
    // `{"Event": …}`, `{"response": [{"Event": …}]}`, or a list of either.
    let tops: Vec<misp::Top<'_>> =
        if text.trim_start().starts_with('[') { serde_json::from_str(text).map_err(bad)? } else { vec![serde_json::from_str(text).map_err(bad)?] };
    let mut events = Vec::new();
    fn collect<'t, 'a>(tops: &'t [misp::Top<'a>], out: &mut Vec<&'t misp::Event<'a>>) {
        for t in tops {
            if let Some(e) = &t.event {
                out.push(e);
            }
            if let Some(r) = &t.response {
                collect(r, out);
            }
        }
    }
    collect(&tops, &mut events);
    if events.is_empty() {
        return Err(LoadError::Format("MISP export has no `Event` object".into()));
    }
    for ev in events {
        // threat_level_id: 1 high, 2 medium, 3 low, 4 undefined.
        let conf = match ev.threat_level_id.as_ref().and_then(misp::StrOrNum::number) {
            Some(1) => 90,
            Some(2) => 70,
            Some(3) => 50,
            _ => o.confidence,
        };
        let info = ev.info.as_deref();
        for a in ev.attributes.iter().chain(ev.objects.iter().flat_map(|obj| obj.attributes.iter())) {
            let (Some(t), Some(v)) = (a.kind.as_deref(), a.value.as_deref()) else {
                return Err(LoadError::Format(format!(
                    "MISP attribute without `type` and `value` (type {:?}, value {:?})",
                    a.kind.as_deref().map(cut),
                    a.value.as_deref().map(cut)
                )));
            };
            let to_ids = a.to_ids.as_ref().is_none_or(misp::StrOrNum::truthy);
            if o.to_ids_only && !to_ids {
                set.skipped.add("not to_ids");
                continue;
            }
            let Some((k1, k2)) = misp_kinds(t) else {
                set.skipped.add(format!("type {t}"));
                continue;
            };
            let (v1, v2) = match v.split_once('|') {
                Some((a, b)) => (a, Some(b)),
                None => (v, None),
            };
            let desc = a.comment.as_deref().filter(|c| !c.is_empty()).or(info);
            if let Some(k) = k1 {
                set.add(k, v1, conf, desc).map_err(|e| e.at(format!("MISP attribute {t}")))?;
            }
            if let (Some(k), Some(v2)) = (k2, v2) {
                set.add(k, v2, conf, desc).map_err(|e| e.at(format!("MISP attribute {t}")))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str, kind: Option<Kind>) -> Result<IndicatorSet, LoadError> {
        IndicatorSet::load(text.as_bytes(), &LoadOptions { format: Format::List, kind, ..Default::default() })
    }

    #[test]
    fn detects_types_and_matches_each() {
        let s = list("# feed\n203.0.113.5\n198.51.100.0/24 # scanners\n2001:db8:bad::/48\nevil.example\nhttp://dl.example/x.exe\n44d88612fea8a8f36de82e1278abb02f\n3395856ce81f2b7382dee72602f798b642f14140\n275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\nt13d1516h2_8daaf6152771_02713d6af862\n", None).unwrap();
        assert_eq!(s.len(), 9);
        let hit = |p| s.lookup(p).map(|i| s.indicator(i).value.to_string());
        assert_eq!(hit(Probe::Ip("203.0.113.5".parse().unwrap())).as_deref(), Some("203.0.113.5"));
        assert_eq!(hit(Probe::Ip("198.51.100.77".parse().unwrap())).as_deref(), Some("198.51.100.0/24"));
        assert_eq!(hit(Probe::Ip("2001:db8:bad:1::1".parse().unwrap())).as_deref(), Some("2001:db8:bad::/48"));
        assert_eq!(hit(Probe::Ip("2001:db8:bae::1".parse().unwrap())), None);
        assert_eq!(hit(Probe::Domain("WWW.Evil.Example.")).as_deref(), Some("evil.example"), "parent domain, any case, trailing dot");
        assert_eq!(hit(Probe::Domain("notevil.example")), None, "a suffix that is not a parent label does not match");
        assert_eq!(hit(Probe::Sni("cdn.evil.example")).as_deref(), Some("evil.example"), "SNI matches domain indicators");
        assert_eq!(hit(Probe::Url(Some("DL.example"), "/x.exe")).as_deref(), Some("dl.example/x.exe"));
        assert_eq!(hit(Probe::Url(Some("dl.example"), "/x.exe?id=7")).as_deref(), Some("dl.example/x.exe"), "query ignored when the indicator has none");
        assert_eq!(hit(Probe::Url(None, "http://dl.example/x.exe")).as_deref(), Some("dl.example/x.exe"), "absolute URL");
        assert_eq!(hit(Probe::Url(Some("dl.example"), "/y.exe")), None);
        assert!(hit(Probe::Hash("44D88612FEA8A8F36DE82E1278ABB02F")).is_some());
        assert!(hit(Probe::Hash("3395856ce81f2b7382dee72602f798b642f14140")).is_some());
        assert!(hit(Probe::Hash("275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f")).is_some());
        assert!(hit(Probe::Ja4("t13d1516h2_8daaf6152771_02713d6af862")).is_some());
        assert_eq!(s.indicator(s.lookup(Probe::Ip("198.51.100.1".parse().unwrap())).unwrap()).description, Some("scanners"));
    }

    #[test]
    fn typed_list_ja3_and_sni() {
        let s = list("e7d705a3286e19ea42f587b344ee6865\n", Some(Kind::Ja3)).unwrap();
        assert!(s.lookup(Probe::Ja3("E7D705A3286E19EA42F587B344EE6865")).is_some());
        assert!(s.lookup(Probe::Hash("e7d705a3286e19ea42f587b344ee6865")).is_none(), "a JA3 is not a file hash");
        let s = list("login.bank.example\n", Some(Kind::Sni)).unwrap();
        assert!(s.lookup(Probe::Sni("login.bank.example")).is_some());
        assert!(s.lookup(Probe::Sni("x.login.bank.example")).is_none(), "SNI indicators are exact");
        assert!(s.lookup(Probe::Domain("login.bank.example")).is_none(), "SNI indicators match TLS SNI only");
    }

    #[test]
    fn broken_lines_reject_the_feed_with_their_line() {
        let e = list("1.2.3.4\n1.2.3.\n", Some(Kind::Ip)).unwrap_err();
        assert_eq!(e, LoadError::BadValue { value: "1.2.3.".into(), what: "a valid ip".into() }.at("line 2"));
        assert_eq!(e.to_string(), "line 2: `1.2.3.` is not a valid ip");
        let e = list("1.2.3.4\nnot a thing at all!\n", None).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert_eq!(list("# nothing\n\n", None).unwrap_err().to_string(), "the feed has no indicators");
        let e = IndicatorSet::load(b"10.0.0.1\n10.0.0.2\n10.0.0.3\n", &LoadOptions { max_indicators: 2, ..Default::default() }).unwrap_err();
        assert_eq!(e.to_string(), "line 3: more than 2 indicators (enrich.max_indicators_per_feed)");
        assert_eq!(e.innermost(), &LoadError::TooMany(2));
    }

    #[test]
    fn csv_with_types_confidence_and_truncation() {
        let o = LoadOptions { format: Format::Csv, ..Default::default() };
        let s =
            IndicatorSet::load(b"indicator,type,confidence,description\n203.0.113.9,ip,80,c2\nbad.example,domain,,phishing\nuser@example.com,email,10,x\n", &o)
                .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.skipped, Skipped(vec![("type email".into(), 1)]));
        let i = s.lookup(Probe::Ip("203.0.113.9".parse().unwrap())).unwrap();
        assert_eq!((s.indicator(i).confidence, s.indicator(i).description), (80, Some("c2")));
        assert_eq!(s.indicator(s.lookup(Probe::Domain("bad.example")).unwrap()).confidence, 50);
        let e = IndicatorSet::load(b"indicator,type,confidence\n203.0.113.9,ip,80\nbad.exa", &o).unwrap_err();
        let e = e.to_string();
        assert!(e.contains("CSV") && e.contains("3"), "a truncated last row: {e}");
        let e = IndicatorSet::load(b"indicator,type,confidence\n203.0.113.9,ip,800\n", &o).unwrap_err().to_string();
        assert!(e.contains("confidence"), "{e}");
    }

    /// The three shapes of a MISP export, flags as booleans, numbers or strings, escaped
    /// values (copied, not borrowed), and a broken attribute named in the error.
    #[test]
    fn misp_shapes_and_flag_spellings() {
        let o = LoadOptions { format: Format::Misp, to_ids_only: true, ..Default::default() };
        let attr = |t: &str, v: &str, ids: &str| format!(r#"{{"type":"{t}","value":"{v}","to_ids":{ids},"uuid":"x","deleted":false}}"#);
        let event =
            |level: &str, attrs: &[String]| format!(r#"{{"Event":{{"threat_level_id":{level},"info":"i","Attribute":[{}],"Object":[]}}}}"#, attrs.join(","));
        let plain = event("\"1\"", &[attr("ip-dst", "203.0.113.1", "true"), attr("domain", "a.example", "\"0\"")]);
        let s = IndicatorSet::load(plain.as_bytes(), &o).unwrap();
        assert_eq!(s.len(), 1, "to_ids \"0\" skipped");
        assert_eq!(s.indicator(s.lookup(Probe::Ip("203.0.113.1".parse().unwrap())).unwrap()).confidence, 90);
        let wrapped = format!(r#"{{"response":[{}]}}"#, event("2", &[attr("hostname", "b.example", "1"), attr("url", r"http:\/\/c.example\/x", "1")]));
        let s = IndicatorSet::load(wrapped.as_bytes(), &o).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.indicator(s.lookup(Probe::Domain("b.example")).unwrap()).confidence, 70, "numeric threat level");
        assert!(s.lookup(Probe::Url(Some("c.example"), "/x")).is_some(), "an escaped value");
        let list = format!("[{},{}]", event("3", &[attr("ip-src", "198.51.100.1", "1")]), event("4", &[attr("ip-src", "198.51.100.2", "1")]));
        assert_eq!(IndicatorSet::load(list.as_bytes(), &o).unwrap().len(), 2);
        let broken = event("1", &[r#"{"type":"ip-dst"}"#.to_string()]);
        let e = IndicatorSet::load(broken.as_bytes(), &o).unwrap_err().to_string();
        assert!(e.contains("without `type` and `value`") && e.contains("ip-dst"), "{e}");
        let e = IndicatorSet::load(br#"{"Event":{"Attribute":"no"}}"#, &o).unwrap_err().to_string();
        assert!(e.contains("MISP export"), "{e}");
    }
}

//! Flow context: the traffic around an alert, gathered as it streams by.
//!
//! Every flow, dns, http, tls, fileinfo and anomaly event is remembered under its
//! `flow_id` (a few fields each, see [`ContextKind::slots`]), and every DNS query under the
//! host that asked it. An alert then gets a compact summary of its flow (what was looked
//! up, which host and URL, which TLS name, which files, the flow's counters once it ended)
//! and of its endpoints' recent lookups — what an analyst would otherwise collect by
//! hand. When a flow that raised alerts ends, a final summary goes out as an update.
//!
//! Memory is bounded: at most `max_flows` flows and `max_hosts` hosts, `max_items`
//! items per flow, values cut to `max_value_bytes`, everything within `max_bytes`
//! (least recently seen flows go first, counted), and entries expire `ttl` of event
//! time after their last event.

use std::collections::VecDeque;

use serde_json::{Map, Value};

use crate::event::batch::{context_kind, decode_context, encode_context};
use crate::event::json::JsonObject;
use crate::event::{ContextKind, ContextView};

use super::slab_lru::SlabLru;

#[derive(Debug, Clone)]
pub struct ContextConfig {
    pub enabled: bool,
    pub ttl_us: i64,
    pub max_flows: usize,
    pub max_hosts: usize,
    pub max_items: usize,
    pub host_lookups: usize,
    pub max_value_bytes: usize,
    pub max_bytes: usize,
}

impl Default for ContextConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ttl_us: 600_000_000,
            max_flows: 200_000,
            max_hosts: 100_000,
            max_items: 16,
            host_lookups: 16,
            max_value_bytes: 256,
            max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContextCounts {
    /// Context events remembered.
    pub events: u64,
    /// Items not kept because their flow already held `max_items`.
    pub items_dropped: u64,
    /// Flows and hosts evicted before their time to stay within the caps.
    pub evicted: u64,
    /// Flows and hosts expired after `ttl` without events.
    pub expired: u64,
    /// Alerts that found context for their flow or endpoints.
    pub alerts_with_context: u64,
    /// Flows forgotten at their end because they raised no alert.
    pub ended: u64,
}

/// One context event, kept as its encoding (see `event::batch::encode_context`): one
/// allocation, compared and measured as a string.
#[derive(Debug, Clone, PartialEq)]
struct Item {
    enc: Box<str>,
}

impl Item {
    /// From an encoded context, values cut to `max` bytes.
    fn new(enc: &str, c: &ContextView<'_>, max: usize) -> Self {
        if c.text.iter().flatten().all(|t| t.len() <= max) {
            return Self { enc: enc.into() };
        }
        let cut_view = ContextView { kind: c.kind, text: c.text.map(|t| t.map(|t| cut(t, max))), num: c.num };
        let mut s = String::new();
        encode_context(&cut_view, &mut s);
        Self { enc: s.into() }
    }

    fn view(&self) -> ContextView<'_> {
        decode_context(&self.enc).unwrap_or(ContextView { kind: ContextKind::Anomaly, text: [None; 5], num: [None; 4] })
    }

    fn kind(&self) -> ContextKind {
        context_kind(&self.enc).unwrap_or(ContextKind::Anomaly)
    }

    fn bytes(&self) -> usize {
        32 + self.enc.len()
    }

    /// The item as a JSON object of its named slots.
    fn write_json(&self, out: &mut String) {
        let v = self.view();
        let (texts, nums) = v.kind.slots();
        let mut o = JsonObject::open(out);
        for (name, t) in texts.iter().zip(&v.text) {
            if let (false, Some(t)) = (name.is_empty(), t) {
                o.str(name, t);
            }
        }
        for (name, n) in nums.iter().zip(&v.num) {
            if let (false, Some(n)) = (name.is_empty(), n) {
                o.int(name, *n);
            }
        }
        o.close();
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

#[derive(Debug, Default)]
struct Flow {
    last_us: i64,
    items: Vec<Item>,
    /// The `flow` event, once the flow ended.
    end: Option<Item>,
    /// Items not kept (over `max_items`).
    dropped: u32,
    /// Alerts raised on this flow (at most [`MAX_FLOW_ALERTS`]): they get the final
    /// summary when the flow ends.
    alerts: Vec<String>,
    bytes: usize,
}

const MAX_FLOW_ALERTS: usize = 16;

#[derive(Debug, Default)]
struct Host {
    /// (time, name) of recent lookups, newest last, no repeats.
    lookups: VecDeque<(i64, String)>,
    bytes: usize,
}

/// A flow that raised alerts has ended: its final summary.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowEnded {
    pub flow_id: i64,
    pub alert_ids: Vec<String>,
    /// JSON object text, as [`FlowContext::summary`].
    pub summary: String,
}

pub struct FlowContext {
    cfg: ContextConfig,
    flows: SlabLru<i64, Flow>,
    hosts: SlabLru<String, Host>,
    bytes: usize,
    pub counts: ContextCounts,
}

impl FlowContext {
    pub fn new(cfg: ContextConfig) -> Self {
        Self { cfg, flows: SlabLru::default(), hosts: SlabLru::default(), bytes: 0, counts: ContextCounts::default() }
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    /// Bytes held (an estimate of the heap the entries use).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Takes one context event. Returns the final summary when it ends a flow that raised
    /// alerts.
    pub fn observe(&mut self, ts_us: i64, flow_id: Option<i64>, src_ip: Option<&str>, dest_ip: Option<&str>, c: &ContextView<'_>) -> Option<FlowEnded> {
        let mut enc = String::new();
        encode_context(c, &mut enc);
        self.observe_encoded(ts_us, flow_id, src_ip, dest_ip, &enc)
    }

    /// [`FlowContext::observe`] with the context as the parse stage encoded it.
    pub fn observe_encoded(&mut self, ts_us: i64, flow_id: Option<i64>, src_ip: Option<&str>, dest_ip: Option<&str>, enc: &str) -> Option<FlowEnded> {
        if !self.cfg.enabled {
            return None;
        }
        // A flow that ends without an alert needs no context any more (and most events
        // are such ends): settled before decoding.
        if let (true, Some(id)) = (enc.starts_with('l'), flow_id) {
            // One lookup for a flow nothing was kept for (the usual case), two to drop one.
            let settled = match self.flows.peek(&id) {
                None => true,
                Some(f) if f.alerts.is_empty() => {
                    if let Some(f) = self.flows.pop(&id) {
                        self.bytes -= f.bytes;
                    }
                    true
                }
                Some(_) => false,
            };
            if settled {
                self.counts.ended += 1;
                return None;
            }
        }
        let c = &decode_context(enc)?;
        self.counts.events += 1;
        if c.kind == ContextKind::Dns {
            self.note_lookup(ts_us, src_ip, dest_ip, c);
        }
        let flow_id = flow_id?;
        let item = Item::new(enc, c, self.cfg.max_value_bytes);
        self.make_room_for(flow_id);
        let f = self.flows.get_or_insert_mut(&flow_id, Flow::default);
        f.last_us = f.last_us.max(ts_us);
        let added = item.bytes();
        if c.kind == ContextKind::Flow {
            let old = f.end.replace(item).map_or(0, |i| i.bytes());
            f.bytes = f.bytes + added - old;
            self.bytes = self.bytes + added - old;
        } else if f.items.contains(&item) {
            return None;
        } else if f.items.len() >= self.cfg.max_items {
            f.dropped += 1;
            self.counts.items_dropped += 1;
            return None;
        } else {
            f.items.push(item);
            f.bytes += added;
            self.bytes += added;
        }
        self.shrink();
        if c.kind != ContextKind::Flow {
            return None;
        }
        let f = self.flows.peek(&flow_id)?;
        if f.alerts.is_empty() {
            return None;
        }
        let alert_ids = f.alerts.clone();
        Some(FlowEnded { flow_id, alert_ids, summary: self.summary(Some(flow_id), src_ip, dest_ip).unwrap_or_else(|| "{}".into()) })
    }

    fn note_lookup(&mut self, ts_us: i64, src_ip: Option<&str>, dest_ip: Option<&str>, c: &ContextView<'_>) {
        let Some(name) = c.text[0] else { return };
        // A query is asked by its source; an answer goes to its destination.
        let answer = matches!(c.text[2], Some("answer" | "response"));
        let Some(host) = (if answer { dest_ip } else { src_ip }) else { return };
        let name = cut(name, self.cfg.max_value_bytes);
        if self.hosts.len() >= self.cfg.max_hosts && !self.hosts.contains(host) {
            if let Some((k, h)) = self.hosts.pop_lru() {
                self.bytes -= h.bytes + k.len();
                self.counts.evicted += 1;
            }
        }
        let cap = self.cfg.host_lookups;
        // One lookup for a known host, and its key is copied only when it is new.
        let mut new = false;
        let h = self.hosts.get_or_insert_mut(host, || {
            new = true;
            Host::default()
        });
        if new {
            self.bytes += host.len();
        }
        let mut freed = 0;
        if let Some(i) = h.lookups.iter().position(|(_, n)| n == name) {
            let (_, n) = h.lookups.remove(i).expect("position found");
            freed += n.len() + 16;
        }
        h.lookups.push_back((ts_us, name.to_owned()));
        let added = name.len() + 16;
        while h.lookups.len() > cap {
            if let Some((_, n)) = h.lookups.pop_front() {
                freed += n.len() + 16;
            }
        }
        h.bytes = h.bytes + added - freed;
        self.bytes = self.bytes + added - freed;
        self.shrink();
    }

    /// Evicts least recent flows until flow `id`, if new, fits under `max_flows` (its
    /// membership is tested only when the flows are full: the only time it matters).
    fn make_room_for(&mut self, id: i64) {
        if self.flows.len() < self.cfg.max_flows || self.flows.contains(&id) {
            return;
        }
        while self.flows.len() >= self.cfg.max_flows && !self.flows.is_empty() {
            self.evict_flow();
        }
    }

    fn evict_flow(&mut self) {
        if let Some((_, f)) = self.flows.pop_lru() {
            self.bytes -= f.bytes;
            self.counts.evicted += 1;
        }
    }

    /// Keeps the byte budget: flows first, then hosts, least recent first.
    fn shrink(&mut self) {
        while self.bytes > self.cfg.max_bytes {
            if self.flows.len() > 1 {
                self.evict_flow();
            } else if let Some((k, h)) = self.hosts.pop_lru() {
                self.bytes -= h.bytes + k.len();
                self.counts.evicted += 1;
            } else {
                break;
            }
        }
    }

    /// Remembers that `alert_id` was raised on `flow_id`.
    pub fn note_alert(&mut self, ts_us: i64, flow_id: Option<i64>, alert_id: &str) {
        let Some(id) = flow_id.filter(|_| self.cfg.enabled) else { return };
        // Context may come after the alert: keep the flow so its end is reported.
        self.make_room_for(id);
        let f = self.flows.get_or_insert_mut(&id, Flow::default);
        f.last_us = f.last_us.max(ts_us);
        if f.alerts.len() < MAX_FLOW_ALERTS && !f.alerts.iter().any(|a| a == alert_id) {
            let added = alert_id.len() + 24;
            f.alerts.push(alert_id.to_owned());
            f.bytes += added;
            self.bytes += added;
        }
    }

    /// The context of an alert on `flow_id` between `src` and `dest` as JSON object text:
    /// `None` when nothing is known. Written directly (no intermediate tree): this runs
    /// for every alert.
    pub fn summary(&self, flow_id: Option<i64>, src: Option<&str>, dest: Option<&str>) -> Option<String> {
        if !self.cfg.enabled {
            return None;
        }
        let flow = flow_id.and_then(|id| self.flows.peek(&id)).filter(|f| !f.items.is_empty() || f.end.is_some());
        let hosts: Vec<(&str, &Host)> = {
            let mut v: Vec<(&str, &Host)> = Vec::new();
            for ip in [src, dest].into_iter().flatten() {
                if let Some(h) = self.hosts.peek(ip) {
                    if !v.iter().any(|(x, _)| *x == ip) {
                        v.push((ip, h));
                    }
                }
            }
            v
        };
        if flow.is_none() && hosts.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(256);
        let mut o = JsonObject::open(&mut out);
        if let Some(f) = flow {
            for kind in ContextKind::ALL {
                let mut items = f.items.iter().filter(|it| it.kind() == kind).peekable();
                if items.peek().is_none() {
                    continue;
                }
                let list = o.key(kind.event_type());
                list.push('[');
                for (j, it) in items.enumerate() {
                    if j > 0 {
                        list.push(',');
                    }
                    it.write_json(list);
                }
                list.push(']');
            }
            if let Some(end) = &f.end {
                end.write_json(o.key("flow"));
            }
            if f.dropped > 0 {
                o.int("more_events", f.dropped.into());
            }
        }
        if !hosts.is_empty() {
            let mut by_host = JsonObject::open(o.key("host_dns"));
            for (ip, h) in &hosts {
                let names: Vec<&str> = h.lookups.iter().rev().map(|(_, n)| n.as_str()).collect();
                by_host.strs(ip, &names);
            }
            by_host.close();
        }
        if let Some(id) = flow_id {
            o.int("flow_id", id);
        }
        o.close();
        Some(out)
    }

    /// The context events kept for a flow (indicator matching and scoring rules read them).
    pub fn flow_views(&self, flow_id: Option<i64>) -> Vec<ContextView<'_>> {
        flow_id.and_then(|id| self.flows.peek(&id)).map(|f| f.items.iter().map(Item::view).collect()).unwrap_or_default()
    }

    /// [`FlowContext::flow_views`] and the flow's `flow` event, once it ended.
    pub fn flow_views_with_end(&self, flow_id: Option<i64>) -> Vec<ContextView<'_>> {
        flow_id.and_then(|id| self.flows.peek(&id)).map(|f| f.items.iter().chain(&f.end).map(Item::view).collect()).unwrap_or_default()
    }

    /// Adds what the flow of an alert showed to an incident's context.
    pub fn add_to(&self, inc: &mut IncidentContext, flow_id: Option<i64>) {
        let Some(f) = flow_id.and_then(|id| self.flows.peek(&id)) else { return };
        inc.flows += 1;
        for it in &f.items {
            let (list, slot) = match it.kind() {
                ContextKind::Dns => (&mut inc.dns, 0),
                ContextKind::Http => (&mut inc.http_hosts, 0),
                ContextKind::Tls => (&mut inc.tls_sni, 0),
                ContextKind::FileInfo => (&mut inc.files, 1),
                ContextKind::Anomaly => {
                    inc.anomalies += 1;
                    continue;
                }
                ContextKind::Flow => continue,
            };
            if let Some(v) = it.view().text[slot] {
                if list.len() < MAX_INCIDENT_VALUES && !list.iter().any(|x| x == v) {
                    list.push(v.to_owned());
                }
            }
        }
    }

    /// Counts an alert that found context (for the metric).
    pub fn note_found(&mut self) {
        self.counts.alerts_with_context += 1;
    }

    /// Forgets flows and hosts quiet for longer than `ttl` before the watermark `w`.
    pub fn advance(&mut self, w: i64) {
        let horizon = w.saturating_sub(self.cfg.ttl_us);
        while let Some((_, f)) = self.flows.peek_lru() {
            if f.last_us >= horizon {
                break;
            }
            if let Some((_, f)) = self.flows.pop_lru() {
                self.bytes -= f.bytes;
                self.counts.expired += 1;
            }
        }
        while let Some((_, h)) = self.hosts.peek_lru() {
            if h.lookups.back().is_some_and(|(t, _)| *t >= horizon) {
                break;
            }
            if let Some((k, h)) = self.hosts.pop_lru() {
                self.bytes -= h.bytes + k.len();
                self.counts.expired += 1;
            }
        }
    }
}

/// Context of an incident: what its alerts' flows had in common, bounded.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct IncidentContext {
    flows: u64,
    dns: Vec<String>,
    http_hosts: Vec<String>,
    tls_sni: Vec<String>,
    files: Vec<String>,
    anomalies: u64,
}

/// Distinct values an incident's context lists per kind.
const MAX_INCIDENT_VALUES: usize = 16;

impl IncidentContext {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("flows".into(), self.flows.into());
        for (k, v) in [("dns", &self.dns), ("http_hosts", &self.http_hosts), ("tls_sni", &self.tls_sni), ("file_sha256", &self.files)] {
            if !v.is_empty() {
                m.insert(k.into(), v.clone().into());
            }
        }
        if self.anomalies > 0 {
            m.insert("anomalies".into(), self.anomalies.into());
        }
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &'static str, kind: &'static str) -> ContextView<'static> {
        ContextView { kind: ContextKind::Dns, text: [Some(name), Some("A"), Some(kind), None, None], num: [None; 4] }
    }

    fn flow_end(bytes: i64) -> ContextView<'static> {
        ContextView { kind: ContextKind::Flow, text: [Some("closed"), Some("timeout"), None, None, None], num: [Some(3), Some(2), Some(bytes), Some(100)] }
    }

    #[test]
    fn alert_gets_its_flow_and_host_lookups_and_the_end_is_reported() {
        let mut c = FlowContext::new(ContextConfig::default());
        let http =
            ContextView { kind: ContextKind::Http, text: [Some("evil.example"), Some("/x"), Some("GET"), None, None], num: [Some(200), None, None, None] };
        assert!(c.observe(10, Some(7), Some("10.0.0.5"), Some("10.0.0.53"), &dns("evil.example", "query")).is_none());
        assert!(c.observe(11, Some(9), Some("10.0.0.5"), Some("1.2.3.4"), &http).is_none());
        c.note_alert(11, Some(9), "a1");
        let s: Value = serde_json::from_str(&c.summary(Some(9), Some("10.0.0.5"), Some("1.2.3.4")).unwrap()).unwrap();
        assert_eq!(s["http"][0]["hostname"], "evil.example");
        assert_eq!(s["http"][0]["status"], 200);
        assert_eq!(s["host_dns"]["10.0.0.5"][0], "evil.example");
        assert!(s.get("flow").is_none());
        let end = c.observe(20, Some(9), Some("10.0.0.5"), Some("1.2.3.4"), &flow_end(500)).unwrap();
        assert_eq!(end.alert_ids, vec!["a1".to_string()]);
        let summary: Value = serde_json::from_str(&end.summary).unwrap();
        assert_eq!(summary["flow"]["bytes_toserver"], 500);
        // A flow without alerts ends silently.
        assert!(c.observe(20, Some(7), None, None, &flow_end(1)).is_none());
        // No context at all: no summary.
        assert!(c.summary(Some(1), Some("192.0.2.1"), None).is_none());
    }

    #[test]
    fn bounded_by_flows_items_bytes_and_ttl() {
        let cfg = ContextConfig { max_flows: 100, max_items: 4, max_bytes: 64 << 10, ..Default::default() };
        let mut c = FlowContext::new(cfg);
        for i in 0..10_000i64 {
            let name = format!("host{i}.example");
            let name: &'static str = Box::leak(name.into_boxed_str());
            c.observe(i, Some(i % 500), Some("10.0.0.1"), None, &dns(name, "query"));
            assert!(c.flows() <= 100);
            assert!(c.bytes() <= 64 << 10, "{} bytes", c.bytes());
        }
        assert!(c.counts.evicted > 0);
        assert!(c.counts.items_dropped > 0 || c.counts.evicted > 9_000);
        c.advance(10_000 + 600_000_001 + 10_000);
        assert_eq!(c.flows(), 0);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn hosts_are_bounded_and_their_bytes_given_back() {
        let cfg = ContextConfig { max_hosts: 50, ..Default::default() };
        let mut c = FlowContext::new(cfg);
        for i in 0..5_000i64 {
            // 300 hosts asking three times in a row, round and round: known hosts, new
            // ones and evictions mixed.
            let h = (i / 3) % 300;
            let host = format!("10.0.{}.{}", h / 256, h % 256);
            c.observe(i, Some(i), Some(&host), None, &dns("example.org", "query"));
            assert!(c.hosts.len() <= 50);
        }
        assert!(c.counts.evicted > 0);
        assert!(c.bytes() > 0);
        c.advance(5_000 + 600_000_001 + 5_000);
        assert_eq!((c.flows(), c.hosts.len(), c.bytes()), (0, 0, 0), "every byte counted in is counted out");
    }

    #[test]
    fn summary_is_valid_json_whatever_the_values() {
        let mut c = FlowContext::new(ContextConfig::default());
        let nasty = "a\"b\\c\u{1}\n\u{1f}é\u{7f}😀";
        let http = ContextView { kind: ContextKind::Http, text: [Some(nasty), Some(nasty), None, Some(nasty), None], num: [Some(-1), None, None, None] };
        c.observe(1, Some(3), Some(nasty), None, &dns(Box::leak(nasty.to_owned().into_boxed_str()), "query"));
        c.observe(1, Some(3), Some(nasty), None, &http);
        let s: Value = serde_json::from_str(&c.summary(Some(3), Some(nasty), None).unwrap()).unwrap();
        // The field separator of the encoding (U+001F) becomes a space inside values.
        let kept = nasty.replace('\u{1f}', " ");
        assert_eq!(s["http"][0]["hostname"], kept.as_str());
        assert_eq!(s["http"][0]["status"], -1);
        assert_eq!(s["host_dns"][nasty][0], kept.as_str());
        assert_eq!(s["dns"][0]["rrname"], kept.as_str());
    }

    #[test]
    fn values_are_cut_on_char_boundaries() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 10), "abc");
    }
}

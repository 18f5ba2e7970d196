//! Sigma field names → alert fields: one table over the taxonomies Sigma rules are written
//! in (Sigma's generic names, ECS, Windows event fields, firewall and web-proxy logs),
//! matched without regard to case (`SourceIp`, `SourceIP` and `sourceip` are one name).
//! The configuration extends it (`[state.sigma_fields]`), e.g. `User = "src_ip"` for rules
//! about accounts over an IDS that knows addresses.
//!
//! Host fields (`ComputerName`, `host.name`, …) are the monitored host — the side of the
//! alert inside the home networks — never the sensor, which keeps its own names
//! (`observer.name`, `sensor`).

use std::collections::HashMap;

use super::super::KeyField;

/// (alert field, the Sigma names for it). Alert fields' own names always work too.
pub const TABLE: &[(&str, &[&str])] = &[
    ("src_ip", &["SourceIp", "source.ip", "src", "SourceAddress", "src_addr", "ClientIP", "client.ip", "c-ip", "IpAddress", "WorkstationName", "Workstation"]),
    ("src_port", &["SourcePort", "source.port", "sport", "src_port", "client.port"]),
    ("dest_ip", &["DestinationIp", "destination.ip", "dst_ip", "dst", "dest", "DestinationAddress", "dst_addr", "ServerIP", "server.ip", "s-ip"]),
    ("dest_port", &["DestinationPort", "destination.port", "dst_port", "dport", "server.port", "s-port"]),
    ("host", &["ComputerName", "Computer", "Hostname", "host", "host.name", "host.hostname", "host.ip", "Device", "TargetHost"]),
    ("sensor", &["observer.name", "observer.hostname", "sensor_name", "agent.name"]),
    ("signature_id", &["rule.id", "sid", "alert.signature_id", "signature_id"]),
    ("signature", &["rule.name", "alert.signature", "Message", "msg"]),
    ("category", &["rule.category", "alert.category", "classtype"]),
    ("severity", &["event.severity", "alert.severity", "priority"]),
    ("proto", &["network.transport", "Protocol", "transport", "ip_proto"]),
    ("dns_query", &["dns.question.name", "QueryName", "query", "dns.rrname", "r-dns"]),
    ("http_hostname", &["http.hostname", "http.host", "url.domain", "cs-host", "c-host"]),
    ("http_url", &["url.original", "url.full", "http.url", "c-uri", "cs-uri", "cs-uri-stem"]),
    ("http_user_agent", &["user_agent.original", "http.user_agent", "c-useragent", "cs-user-agent", "UserAgent"]),
    ("http_status", &["http.response.status_code", "http.status", "sc-status", "status_code"]),
    ("tls_sni", &["tls.sni", "tls.server_name", "tls.client.server_name"]),
    ("tls_ja3", &["tls.ja3", "tls.client.ja3", "ja3"]),
    ("file_name", &["file.name", "fileinfo.filename", "filename"]),
    ("file_sha256", &["file.hash.sha256", "sha256", "fileinfo.sha256"]),
    ("file_md5", &["file.hash.md5", "md5", "fileinfo.md5"]),
    ("file_sha1", &["file.hash.sha1", "sha1", "fileinfo.sha1"]),
    ("flow_pkts_toserver", &["source.packets", "client.packets", "flow.pkts_toserver", "packets_sent"]),
    ("flow_pkts_toclient", &["destination.packets", "server.packets", "flow.pkts_toclient", "packets_received"]),
    ("flow_bytes_toserver", &["source.bytes", "client.bytes", "flow.bytes_toserver", "bytes_sent", "BytesOut", "cs-bytes", "SentBytes"]),
    ("flow_bytes_toclient", &["destination.bytes", "server.bytes", "flow.bytes_toclient", "bytes_received", "BytesIn", "sc-bytes", "ReceivedBytes"]),
];

/// The field map in force: the table plus the configuration's names.
#[derive(Debug, Clone)]
pub struct FieldMap {
    names: HashMap<String, KeyField>,
}

impl Default for FieldMap {
    fn default() -> Self {
        let mut names = HashMap::new();
        for (field, aliases) in TABLE {
            let f = KeyField::from_name(field).expect("the table names alert fields");
            for a in *aliases {
                names.insert(a.to_lowercase(), f);
            }
        }
        for n in KeyField::NAMES {
            names.insert(n.to_string(), KeyField::from_name(n).expect("own names"));
        }
        FieldMap { names }
    }
}

impl FieldMap {
    /// Adds `sigma_name` for `field` (an alert field's name); `false` if it names none.
    pub fn add(&mut self, sigma_name: &str, field: &str) -> bool {
        match KeyField::from_name(field) {
            Some(f) => {
                self.names.insert(sigma_name.to_lowercase(), f);
                true
            }
            None => false,
        }
    }

    pub fn get(&self, name: &str) -> Option<KeyField> {
        KeyField::from_name(name).or_else(|| self.names.get(&name.to_lowercase()).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_host_versus_sensor() {
        let m = FieldMap::default();
        for n in ["SourceIp", "SourceIP", "sourceip", "source.ip", "src_ip"] {
            assert_eq!(m.get(n), Some(KeyField::SrcIp), "{n}");
        }
        assert_eq!(m.get("dst_ip"), Some(KeyField::DestIp));
        assert_eq!(m.get("ComputerName"), Some(KeyField::Host));
        assert_eq!(m.get("observer.name"), Some(KeyField::Sensor));
        assert_eq!(m.get("dns.question.name").map(KeyField::name), Some("dns_query"));
        assert_eq!(m.get("User"), None);
        let mut m = m;
        assert!(m.add("User", "src_ip") && !m.add("EventID", "nope"));
        assert_eq!(m.get("user"), Some(KeyField::SrcIp));
    }
}

//! The asset inventory: a CSV of networks or addresses with a name, owner, criticality and
//! tags, matched by longest prefix.

use super::LoadError;
use std::net::IpAddr;
use std::sync::Arc;

use super::prefix::{parse_cidr, PrefixTable};

pub use crate::event::enriched::Asset;

#[derive(Debug, Clone, Default)]
pub struct AssetTable {
    table: PrefixTable<Arc<Asset>>,
}

impl AssetTable {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<&Arc<Asset>> {
        self.table.lookup(ip).map(|(_, a)| a)
    }

    /// Columns (header names, any order, any case): `cidr` (or `ip`, `network`), `name`,
    /// and optionally `owner`, `criticality`, `tags` (separated by `;`, `|` or spaces).
    pub fn load(bytes: &[u8]) -> Result<AssetTable, LoadError> {
        let mut r = csv::ReaderBuilder::new().comment(Some(b'#')).trim(csv::Trim::All).from_reader(bytes);
        let headers = r.headers().map_err(|e| LoadError::Format(format!("CSV header: {e}")))?.clone();
        let find = |names: &[&str]| headers.iter().position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)));
        let net_col = find(&["cidr", "ip", "network", "subnet", "address"])
            .ok_or_else(|| LoadError::Format("asset CSV needs a `cidr` (or `ip`, `network`) column".into()))?;
        let name_col = find(&["name", "hostname", "asset"]).ok_or_else(|| LoadError::Format("asset CSV needs a `name` column".into()))?;
        let (owner, crit, tags) = (find(&["owner", "team"]), find(&["criticality", "priority", "tier"]), find(&["tags", "tag", "labels"]));
        let mut t = AssetTable::default();
        for rec in r.records() {
            let rec = rec.map_err(|e| LoadError::Format(format!("CSV: {e}")))?;
            let line = rec.position().map_or(0, |p| p.line());
            let net = rec.get(net_col).unwrap_or("");
            let (addr, len) = parse_cidr(net).ok_or_else(|| LoadError::Format(format!("line {line}: `{net}` is not an IP address or CIDR")))?;
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).filter(|s| !s.is_empty()).map(Into::into);
            let network = if (addr.is_ipv4() && len == 32) || (addr.is_ipv6() && len == 128) { addr.to_string() } else { format!("{addr}/{len}") };
            let asset = Asset {
                network: network.into(),
                name: rec.get(name_col).unwrap_or("").into(),
                owner: get(owner),
                criticality: get(crit),
                tags: tags
                    .and_then(|c| rec.get(c))
                    .map(|s| s.split([';', '|', ' ', ',']).filter(|x| !x.is_empty()).map(Into::into).collect())
                    .unwrap_or_default(),
            };
            if t.table.insert(addr, len, Arc::new(asset)).is_some() {
                return Err(LoadError::Format(format!("line {line}: `{net}` is listed twice")));
            }
        }
        if t.is_empty() {
            return Err(LoadError::Format("the asset inventory has no rows".into()));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_over_overlapping_networks() {
        let t = AssetTable::load(b"cidr,name,owner,criticality,tags\n10.0.0.0/8,corp,it,low,internal\n10.20.0.0/16,datacenter,ops,high,dc;servers\n10.20.30.40,db-primary,dba,critical,db|pci\n2001:db8::/32,v6-corp,it,medium,\n2001:db8:aa::/48,v6-lab,research,low,lab\n").unwrap();
        let name = |ip: &str| t.lookup(ip.parse().unwrap()).map(|a| a.name.to_string());
        assert_eq!(name("10.20.30.40").as_deref(), Some("db-primary"));
        assert_eq!(name("10.20.30.41").as_deref(), Some("datacenter"));
        assert_eq!(name("10.99.0.1").as_deref(), Some("corp"));
        assert_eq!(name("11.0.0.1"), None);
        assert_eq!(name("2001:db8:aa:1::9").as_deref(), Some("v6-lab"));
        assert_eq!(name("2001:db8:ab::9").as_deref(), Some("v6-corp"));
        let db = t.lookup("10.20.30.40".parse().unwrap()).unwrap();
        assert_eq!((db.criticality_level(), db.tags.len(), db.owner.as_deref()), (4, 2, Some("dba")));
        assert!(AssetTable::load(b"cidr,name\n10.0.0.0/8,a\n10.0.0.0/33,b\n").unwrap_err().to_string().contains("line 3"));
        assert!(AssetTable::load(b"cidr,name,owner\n10.0.0.0/8,a,x\n10.1.0.0/16,b").unwrap_err().to_string().contains("CSV"));
    }
}

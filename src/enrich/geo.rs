//! MaxMind DB lookups (GeoIP2/GeoLite2 City or Country, and ASN): the database is read
//! into memory once per load and decoded per address; callers keep a memo in front.

use std::net::IpAddr;

use maxminddb::{geoip2, MaxMindDbError, Reader};

use super::LoadError;

pub use crate::event::enriched::{AsInfo, Place};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    City,
    Asn,
}

pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    pub kind: DbKind,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GeoDb({}, {:?})", self.reader.metadata().database_type, self.kind)
    }
}

fn b(s: Option<&str>) -> Option<Box<str>> {
    s.map(Into::into)
}

impl GeoDb {
    /// Reads a database; `want` says which kind the configuration expects.
    pub fn load(bytes: Vec<u8>, want: DbKind) -> Result<GeoDb, LoadError> {
        let reader = Reader::from_source(bytes).map_err(|e| LoadError::Database(format!("not a MaxMind DB: {e}")))?;
        let t = reader.metadata().database_type.clone();
        let kind = if t.contains("ASN") {
            DbKind::Asn
        } else if t.contains("City") || t.contains("Country") {
            DbKind::City
        } else {
            return Err(LoadError::Database(format!("database type `{t}` is neither a City/Country nor an ASN database")));
        };
        if kind != want {
            return Err(LoadError::Database(format!(
                "database type `{t}` is not the {} database this source expects",
                if want == DbKind::Asn { "ASN" } else { "City/Country" }
            )));
        }
        Ok(GeoDb { reader, kind })
    }

    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    pub fn place(&self, ip: IpAddr) -> Result<Option<Place>, MaxMindDbError> {
        let r = self.reader.lookup(ip)?;
        let Some(c) = r.decode::<geoip2::City>()? else { return Ok(None) };
        Ok(Some(Place {
            country: b(c.country.iso_code),
            country_name: b(c.country.names.english),
            continent: b(c.continent.code),
            subdivision: b(c.subdivisions.first().and_then(|s| s.iso_code)),
            city: b(c.city.names.english),
            latitude: c.location.latitude,
            longitude: c.location.longitude,
            accuracy_radius: c.location.accuracy_radius,
            time_zone: b(c.location.time_zone),
            registered_country: b(c.registered_country.iso_code),
        }))
    }

    pub fn asn(&self, ip: IpAddr) -> Result<Option<AsInfo>, MaxMindDbError> {
        let r = self.reader.lookup(ip)?;
        let Some(a) = r.decode::<geoip2::Asn>()? else { return Ok(None) };
        Ok(Some(AsInfo { number: a.autonomous_system_number, organization: b(a.autonomous_system_organization) }))
    }

    /// The network holding `ip` and its whole record as JSON (for tests and tooling).
    pub fn record_json(&self, ip: IpAddr) -> Result<Option<(String, serde_json::Value)>, MaxMindDbError> {
        let r = self.reader.lookup(ip)?;
        let net = r.network()?.to_string();
        Ok(r.decode::<serde_json::Value>()?.map(|v| (net, v)))
    }
}

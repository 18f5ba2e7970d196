//! A JSON object read one level deep: each member stays the text it was written as and is
//! deserialized into its type when asked for.
//!
//! Snapshots hold a million dedup keys, every entity and incident. Parsed into a
//! `serde_json::Value` first, such a file takes several times its size in small
//! allocations before the state is built from it (and beside it, as long as the tree
//! lives); read through [`Members`], each member goes from its text straight into the
//! typed state. Absent members read as JSON `null`, as indexing a `Value` does.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

const NULL: &str = "null";

/// The members of one JSON object, borrowed from its text.
#[derive(Debug, Clone, Default)]
pub struct Members<'a> {
    text: &'a str,
    members: HashMap<String, &'a RawValue>,
}

impl<'a> Members<'a> {
    /// The members of the object `text`; `null` is an object without members.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        let members: Option<HashMap<String, &'a RawValue>> = serde_json::from_str(text)?;
        Ok(Self { text, members: members.unwrap_or_default() })
    }

    /// The whole object's text.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Member `name` as written (`None`: absent).
    pub fn raw(&self, name: &str) -> Option<&'a RawValue> {
        self.members.get(name).copied()
    }

    fn member_text(&self, name: &str) -> &'a str {
        self.raw(name).map_or(NULL, RawValue::get)
    }

    /// Member `name` deserialized (absent: deserialized from `null`).
    pub fn get<T: Deserialize<'a>>(&self, name: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.member_text(name))
    }

    /// Whether member `name` is absent or `null`.
    pub fn is_null(&self, name: &str) -> bool {
        self.member_text(name).trim() == NULL
    }

    /// Whether member `name` is `true`.
    pub fn flag(&self, name: &str) -> bool {
        self.member_text(name).trim() == "true"
    }

    /// The members of the object in member `name` (absent or `null`: none).
    pub fn members(&self, name: &str) -> Result<Members<'a>, serde_json::Error> {
        Members::parse(self.member_text(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_read_as_their_types_and_absent_ones_as_null() {
        let m = Members::parse(r#"{"n": 3, "list": [[1, "a"]], "flag": true, "off": false, "nothing": null, "inner": {"x": "y\"z"}}"#).unwrap();
        assert_eq!(m.get::<u64>("n").unwrap(), 3);
        assert_eq!(m.get::<Vec<(u8, String)>>("list").unwrap(), vec![(1, "a".to_string())]);
        assert!(m.flag("flag") && !m.flag("off") && !m.flag("absent") && !m.flag("n"));
        assert!(m.is_null("nothing") && m.is_null("absent") && !m.is_null("n"));
        assert_eq!(m.get::<Option<u64>>("absent").unwrap(), None);
        assert!(m.get::<Vec<u8>>("absent").is_err(), "a list that is not there is an error, as from a null Value");
        let inner = m.members("inner").unwrap();
        assert_eq!(inner.get::<String>("x").unwrap(), "y\"z");
        assert_eq!(inner.text(), r#"{"x": "y\"z"}"#);
        assert_eq!(m.raw("inner").map(RawValue::get), Some(r#"{"x": "y\"z"}"#));
        assert!(m.members("absent").unwrap().raw("x").is_none());
        assert!(m.members("nothing").unwrap().is_null("x"));
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert!(Members::parse("[1, 2]").is_err());
        assert!(Members::parse(r#"{"a": 1"#).is_err());
        assert!(Members::parse(r#"{"a": 1} x"#).is_err());
        let m = Members::parse(r#"{"list": [1]}"#).unwrap();
        assert!(m.members("list").is_err());
    }
}

//! A site file layered over the embedded default.
//!
//! Tables merge key by key, the site's value winning. Arrays of tables (`[[state.rules]]`,
//! `[[state.selectors]]`, `[[score.rules]]`, `[[score.recommend]]`, `[[enrich.intel]]`,
//! `[[sources]]`) merge by `name`: an entry named like a default one replaces it in place,
//! `disabled = true` removes it, other entries are appended after the defaults. Any other
//! value (numbers, strings, plain lists such as `state.dedup.key`) replaces the default.
//! `use_defaults = false` at the top of the site file turns layering off: the file stands
//! alone.

use toml::{Table, Value};

/// Where a named rule in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Default,
    /// The site file replaced a default entry of this name.
    Replaced,
    Site,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Default => "default",
            Origin::Replaced => "site, replaces the default",
            Origin::Site => "site",
        }
    }
}

/// Does the site file ask to stand alone?
pub fn stands_alone(site: &Table) -> bool {
    matches!(site.get("use_defaults"), Some(Value::Boolean(false)))
}

/// The default with the site file merged in.
pub fn merge(mut base: Table, site: Table) -> Table {
    merge_tables(&mut base, site);
    base.remove("use_defaults");
    base
}

fn merge_tables(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_tables(b, o),
            (Some(Value::Array(b)), Value::Array(o)) if all_tables(b) && all_tables(&o) && !o.is_empty() => merge_named(b, o),
            (_, Value::Array(o)) if all_tables(&o) => {
                // No default entries: the site's, without the disabled ones.
                base.insert(k, Value::Array(o.into_iter().filter(|e| !is_disabled(e)).collect()));
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn all_tables(a: &[Value]) -> bool {
    a.iter().all(|v| matches!(v, Value::Table(_)))
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

fn is_disabled(v: &Value) -> bool {
    matches!(v.get("disabled"), Some(Value::Boolean(true)))
}

fn merge_named(base: &mut Vec<Value>, over: Vec<Value>) {
    for o in over {
        let at = name_of(&o).and_then(|n| base.iter().position(|b| name_of(b) == Some(n)));
        match (at, is_disabled(&o)) {
            (Some(i), true) => {
                base.remove(i);
            }
            (Some(i), false) => base[i] = o,
            (None, true) => {}
            (None, false) => base.push(o),
        }
    }
}

/// The named entries in force in `merged` under `path` (`["score", "rules"]`), each with
/// where it came from.
pub fn named_in_force(merged: &Table, default: &Table, site: &Table, path: &[&str]) -> Vec<(String, Origin)> {
    let names = |t: &Table| -> Vec<String> {
        let mut cur = Some(t);
        let mut arr = None;
        for (i, p) in path.iter().enumerate() {
            let v = cur.and_then(|c| c.get(*p));
            if i + 1 == path.len() {
                arr = v.and_then(Value::as_array);
            } else {
                cur = v.and_then(Value::as_table);
            }
        }
        arr.map(|a| a.iter().filter(|e| !is_disabled(e)).filter_map(name_of).map(str::to_string).collect()).unwrap_or_default()
    };
    let (d, s) = (names(default), names(site));
    names(merged)
        .into_iter()
        .map(|n| {
            let origin = match (d.contains(&n), s.contains(&n)) {
                (true, true) => Origin::Replaced,
                (false, true) => Origin::Site,
                _ => Origin::Default,
            };
            (n, origin)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Table {
        s.parse().unwrap()
    }

    #[test]
    fn tables_merge_keys_and_named_entries_replace_remove_or_append() {
        let base = t(r#"
            [state]
            enabled = true
            max_groups = 10
            [[state.rules]]
            name = "a"
            gte = 1
            [[state.rules]]
            name = "b"
            gte = 2
            [[state.rules]]
            name = "c"
            gte = 3
            [state.dedup]
            key = ["sensor", "src_ip"]
        "#);
        let site = t(r#"
            [state]
            max_groups = 99
            [[state.rules]]
            name = "b"
            gte = 20
            [[state.rules]]
            name = "c"
            disabled = true
            [[state.rules]]
            name = "d"
            gte = 4
            [state.dedup]
            key = ["src_ip"]
        "#);
        let m = merge(base.clone(), site.clone());
        let st = m["state"].as_table().unwrap();
        assert_eq!(st["enabled"].as_bool(), Some(true), "a key the site does not set keeps the default");
        assert_eq!(st["max_groups"].as_integer(), Some(99));
        let rules: Vec<(String, i64)> =
            st["rules"].as_array().unwrap().iter().map(|r| (r["name"].as_str().unwrap().to_string(), r["gte"].as_integer().unwrap())).collect();
        assert_eq!(rules, vec![("a".into(), 1), ("b".into(), 20), ("d".into(), 4)]);
        assert_eq!(st["dedup"]["key"].as_array().unwrap().len(), 1, "a plain list replaces the default's");
        let force = named_in_force(&m, &base, &site, &["state", "rules"]);
        assert_eq!(force, vec![("a".into(), Origin::Default), ("b".into(), Origin::Replaced), ("d".into(), Origin::Site)]);
    }

    #[test]
    fn use_defaults_false_is_seen() {
        assert!(stands_alone(&t("use_defaults = false")));
        assert!(!stands_alone(&t("use_defaults = true")));
        assert!(!stands_alone(&t("[enrich]\nassets = \"x\"")));
    }
}

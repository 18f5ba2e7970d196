//! A small reader over toml's spanned tree that records problems instead of stopping.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::ConfigError;

pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// A table and where it is.
pub struct Tbl<'a, 'i> {
    table: Option<&'a DeTable<'i>>,
    path: String,
    span: Range<usize>,
}

impl<'a, 'i> Tbl<'a, 'i> {
    pub fn root(t: &'a DeTable<'i>, span: Range<usize>) -> Self {
        Self { table: Some(t), path: String::new(), span }
    }

    fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<(&'a DeValue<'i>, Range<usize>)> {
        let t = self.table?;
        t.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| (v.get_ref(), v.span()))
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn disabled(t: &DeTable<'_>) -> bool {
    t.iter().any(|(k, v)| k.get_ref().as_ref() == "disabled" && matches!(v.get_ref(), DeValue::Boolean(true)))
}

pub struct Cx<'s> {
    text: &'s str,
    errors: Vec<ConfigError>,
    /// Offsets of the text's newlines, found once on the first error (a line per error by
    /// counting from the start would make many errors quadratic).
    newlines: Option<Vec<usize>>,
}

impl<'s> Cx<'s> {
    pub fn new(text: &'s str) -> Self {
        Self { text, errors: Vec::new(), newlines: None }
    }

    /// The 1-based line of byte `offset`.
    fn line(&mut self, offset: usize) -> usize {
        let text = self.text;
        let nl = self.newlines.get_or_insert_with(|| memchr::memchr_iter(b'\n', text.as_bytes()).collect());
        nl.partition_point(|&n| n < offset.min(text.len())) + 1
    }

    pub fn into_errors(mut self) -> Vec<ConfigError> {
        self.errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        self.errors
    }

    fn push(&mut self, path: String, span: Option<Range<usize>>, message: String) {
        let line = span.map(|s| self.line(s.start));
        self.errors.push(ConfigError { path, line, message });
    }

    /// An error about the value of `key` in `t`.
    pub fn error_at(&mut self, t: &Tbl, key: &str, message: impl Into<String>) {
        let span = t.get(key).map(|(_, s)| s).or(Some(t.span.clone()));
        self.push(t.key_path(key), span, message.into());
    }

    /// An error about a missing `key` (reported at the table).
    pub fn error_here(&mut self, t: &Tbl, key: &str, message: impl Into<String>) {
        self.push(t.key_path(key), Some(t.span.clone()), message.into());
    }

    pub fn section<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> Tbl<'a, 'i> {
        let path = t.key_path(key);
        match t.get(key) {
            Some((DeValue::Table(inner), span)) => Tbl { table: Some(inner), path, span },
            Some((other, span)) => {
                self.push(path.clone(), Some(span.clone()), format!("expected a table, found {}", type_name(other)));
                Tbl { table: None, path, span }
            }
            None => Tbl { table: None, path, span: t.span.clone() },
        }
    }

    pub fn array_of_tables<'a, 'i>(&mut self, t: &Tbl<'a, 'i>, key: &str) -> Vec<Tbl<'a, 'i>> {
        let path = t.key_path(key);
        match t.get(key) {
            None => Vec::new(),
            Some((DeValue::Array(items), _)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let p = format!("{path}[{i}]");
                    match item.get_ref() {
                        // `disabled = true` takes an entry out (a site file's way to drop a
                        // default rule by name); layering removes it, so it reads as absent.
                        DeValue::Table(inner) if disabled(inner) => None,
                        DeValue::Table(inner) => Some(Tbl { table: Some(inner), path: p, span: item.span() }),
                        other => {
                            self.push(p, Some(item.span()), format!("expected a table, found {}", type_name(other)));
                            None
                        }
                    }
                })
                .collect(),
            Some((other, span)) => {
                self.push(path, Some(span), format!("expected an array of tables ([[{key}]]), found {}", type_name(other)));
                Vec::new()
            }
        }
    }

    pub fn unknown_keys(&mut self, t: &Tbl, known: &[&str]) {
        let Some(table) = t.table else { return };
        let item = t.path.ends_with(']');
        for (k, _) in table.iter() {
            let name: &str = k.get_ref().as_ref();
            if !(known.contains(&name) || item && name == "disabled") {
                self.push(t.key_path(name), Some(k.span()), format!("unknown key; expected one of: {}", known.join(", ")));
            }
        }
    }

    pub fn string(&mut self, t: &Tbl, key: &str) -> Option<String> {
        match t.get(key)? {
            (DeValue::String(s), _) => Some(s.to_string()),
            (other, span) => {
                self.push(t.key_path(key), Some(span), format!("expected a string, found {}", type_name(other)));
                None
            }
        }
    }

    /// The value of `key` when it is a string (no error otherwise).
    pub fn string_or_none(&mut self, t: &Tbl, key: &str) -> Option<String> {
        match t.get(key)? {
            (DeValue::String(s), _) => Some(s.to_string()),
            _ => None,
        }
    }

    pub fn required_string(&mut self, t: &Tbl, key: &str) -> Option<String> {
        if !t.has(key) {
            self.error_here(t, key, "missing required key");
            return None;
        }
        self.string(t, key)
    }

    pub fn string_list(&mut self, t: &Tbl, key: &str) -> Option<Vec<String>> {
        match t.get(key)? {
            (DeValue::Array(items), _) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    match it.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        other => self.push(format!("{}[{i}]", t.key_path(key)), Some(it.span()), format!("expected a string, found {}", type_name(other))),
                    }
                }
                Some(out)
            }
            (other, span) => {
                self.push(t.key_path(key), Some(span), format!("expected an array of strings, found {}", type_name(other)));
                None
            }
        }
    }

    /// A table of string values (`"ET SCAN" = "recon"`), in the file's order; an absent
    /// key is empty.
    pub fn string_map(&mut self, t: &Tbl, key: &str) -> Vec<(String, String, Range<usize>)> {
        match t.get(key) {
            None => Vec::new(),
            Some((DeValue::Table(inner), _)) => {
                let mut out = Vec::new();
                for (k, v) in inner.iter() {
                    let name: &str = k.get_ref().as_ref();
                    match v.get_ref() {
                        DeValue::String(s) => out.push((name.to_string(), s.to_string(), v.span())),
                        other => self.push(format!("{}.{name}", t.key_path(key)), Some(v.span()), format!("expected a string, found {}", type_name(other))),
                    }
                }
                out
            }
            Some((other, span)) => {
                self.push(t.key_path(key), Some(span), format!("expected a table, found {}", type_name(other)));
                Vec::new()
            }
        }
    }

    /// An error at a value inside a table read with [`Cx::string_map`].
    pub fn error_span(&mut self, path: String, span: Range<usize>, message: impl Into<String>) {
        self.push(path, Some(span), message.into());
    }

    /// A list of integers in `[min, max]` (an absent key is empty).
    pub fn int_list(&mut self, t: &Tbl, key: &str, min: i64, max: i64) -> Vec<i64> {
        match t.get(key) {
            None => Vec::new(),
            Some((DeValue::Array(items), _)) => {
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let p = format!("{}[{i}]", t.key_path(key));
                    match it.get_ref() {
                        DeValue::Integer(n) => match n.as_str().replace('_', "").parse::<i64>() {
                            Ok(v) if (min..=max).contains(&v) => out.push(v),
                            _ => self.push(p, Some(it.span()), format!("expected an integer from {min} to {max}")),
                        },
                        other => self.push(p, Some(it.span()), format!("expected an integer, found {}", type_name(other))),
                    }
                }
                out
            }
            Some((other, span)) => {
                self.push(t.key_path(key), Some(span), format!("expected an array of integers, found {}", type_name(other)));
                Vec::new()
            }
        }
    }

    pub fn boolean(&mut self, t: &Tbl, key: &str, default: bool) -> bool {
        match t.get(key) {
            None => default,
            Some((DeValue::Boolean(b), _)) => *b,
            Some((other, span)) => {
                self.push(t.key_path(key), Some(span), format!("expected a boolean, found {}", type_name(other)));
                default
            }
        }
    }

    /// An unsigned integer in `[min, max]`, or `default` when absent (or invalid).
    pub fn uint(&mut self, t: &Tbl, key: &str, default: u64, min: u64, max: u64) -> u64 {
        match t.get(key) {
            None => default,
            Some((DeValue::Integer(i), span)) => {
                let v = i.as_str().replace('_', "");
                let parsed = match i.radix() {
                    10 => v.parse::<i128>().ok(),
                    r => i128::from_str_radix(&v, r).ok(),
                };
                match parsed {
                    Some(n) if n >= min as i128 && n <= max as i128 => n as u64,
                    Some(n) => {
                        self.push(t.key_path(key), Some(span), format!("{n} is out of range; expected {min} to {max}"));
                        default
                    }
                    None => {
                        self.push(t.key_path(key), Some(span), "invalid integer".into());
                        default
                    }
                }
            }
            Some((other, span)) => {
                self.push(t.key_path(key), Some(span), format!("expected an integer, found {}", type_name(other)));
                default
            }
        }
    }

    /// A number (integer or float) in `[min, max]`, or `default` when absent (or invalid).
    pub fn number(&mut self, t: &Tbl, key: &str, default: f64, min: f64, max: f64) -> f64 {
        let (text, span) = match t.get(key) {
            None => return default,
            Some((DeValue::Integer(i), span)) => (i.as_str().replace('_', ""), span),
            Some((DeValue::Float(f), span)) => (f.as_str().replace('_', ""), span),
            Some((other, span)) => {
                self.push(t.key_path(key), Some(span), format!("expected a number, found {}", type_name(other)));
                return default;
            }
        };
        match text.parse::<f64>() {
            Ok(v) if v >= min && v <= max => v,
            _ => {
                self.push(t.key_path(key), Some(span), format!("`{text}` is out of range; expected a number from {min} to {max}"));
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_many_errors_equal_counting_from_the_start() {
        let text = "a = 1\n\nb = 2\nc = 3";
        let mut cx = Cx::new(text);
        for off in [0, 4, 5, 6, 7, 13, 14, text.len(), text.len() + 10] {
            assert_eq!(cx.line(off), line_of(text, off), "offset {off}");
        }
    }
}

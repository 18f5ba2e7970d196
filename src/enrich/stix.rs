//! STIX 2.1 bundles: `indicator` objects whose pattern is one comparison, or comparisons
//! joined by `OR`, of `=` on an object path alertflow can match
//! (`[ipv4-addr:value = '198.51.100.1']`, `[file:hashes.'SHA-256' = '…']`,
//! `[domain-name:value = 'a' OR domain-name:value = 'b']`). Patterns that need `AND`,
//! `FOLLOWEDBY`, other operators or qualifiers are valid STIX but not single-event
//! indicators: they are skipped and counted. A pattern that is not valid STIX rejects the
//! bundle.

use super::LoadError;
use serde_json::Value;

use super::intel::{IndicatorSet, Kind, LoadOptions};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LParen,
    RParen,
    Word(String),
    Str(String),
    Op(String),
}

fn tokenize(p: &str) -> Result<Vec<Tok>, LoadError> {
    let b = p.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let quoted = |i: &mut usize| -> Result<String, LoadError> {
        // b[*i] == '\''
        let mut s = String::new();
        *i += 1;
        let start = *i;
        let mut seg_start = start;
        loop {
            match b.get(*i) {
                None => return Err(LoadError::Format(format!("unterminated string starting at offset {}", start - 1))),
                Some(b'\\') => {
                    s.push_str(&p[seg_start..*i]);
                    match b.get(*i + 1) {
                        Some(b'\'') => s.push('\''),
                        Some(b'\\') => s.push('\\'),
                        _ => return Err(LoadError::Format(format!("invalid escape at offset {}", *i))),
                    }
                    *i += 2;
                    seg_start = *i;
                }
                Some(b'\'') => {
                    s.push_str(&p[seg_start..*i]);
                    *i += 1;
                    return Ok(s);
                }
                Some(_) => *i += 1,
            }
        }
    };
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'[' => (out.push(Tok::Open), i += 1).1,
            b']' => (out.push(Tok::Close), i += 1).1,
            b'(' => (out.push(Tok::LParen), i += 1).1,
            b')' => (out.push(Tok::RParen), i += 1).1,
            b'\'' => out.push(Tok::Str(quoted(&mut i)?)),
            b',' => (out.push(Tok::Op(",".into())), i += 1).1,
            b'=' | b'!' | b'<' | b'>' => {
                let two = p.get(i..i + 2).filter(|s| matches!(*s, "!=" | "<=" | ">="));
                let op = two.unwrap_or(&p[i..i + 1]);
                if op == "!" {
                    return Err(LoadError::Format(format!("`!` without `=` at offset {i}")));
                }
                out.push(Tok::Op(op.to_string()));
                i += op.len();
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let mut w = String::new();
                while i < b.len() {
                    match b[i] {
                        c if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b':' | b'.' | b'*') => {
                            w.push(c as char);
                            i += 1;
                        }
                        // A quoted path component: `hashes.'SHA-256'`.
                        b'\'' if w.ends_with('.') => w.push_str(&quoted(&mut i)?),
                        _ => break,
                    }
                }
                out.push(Tok::Word(w));
            }
            c => return Err(LoadError::Format(format!("unexpected `{}` at offset {i}", c as char))),
        }
    }
    Ok(out)
}

/// The comparisons of a pattern when it is an OR of `=`s, else `Ok(None)` (valid, not
/// supported); `Err` when it is not a valid pattern.
fn comparisons(pattern: &str) -> Result<Option<Vec<(String, String)>>, LoadError> {
    let toks = tokenize(pattern)?;
    let mut depth = 0i32;
    let mut brackets = 0usize;
    let mut supported = true;
    let mut out = Vec::new();
    let mut i = 0;
    let mut expect_operand = true;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open | Tok::LParen => {
                if !expect_operand {
                    return Err(LoadError::Format("missing OR/AND between expressions".into()));
                }
                if toks[i] == Tok::Open {
                    brackets += 1;
                }
                depth += 1;
            }
            Tok::Close | Tok::RParen => {
                depth -= 1;
                if depth < 0 || expect_operand {
                    return Err(LoadError::Format("unbalanced brackets or an empty expression".into()));
                }
            }
            Tok::Word(w) if !expect_operand => match w.as_str() {
                "OR" => expect_operand = true,
                "AND" | "FOLLOWEDBY" => {
                    supported = false;
                    expect_operand = true;
                }
                // Qualifiers: `WITHIN 5 SECONDS`, `REPEATS 3 TIMES`, `START t'…' STOP t'…'`.
                "WITHIN" | "REPEATS" | "START" | "STOP" | "SECONDS" | "TIMES" => supported = false,
                w if w.bytes().all(|c| c.is_ascii_digit()) || w == "t" => supported = false,
                other => return Err(LoadError::Format(format!("unexpected `{other}`"))),
            },
            Tok::Str(_) if !expect_operand => supported = false, // a qualifier's timestamp
            Tok::Word(path) => {
                if depth == 0 {
                    return Err(LoadError::Format(format!("comparison `{path}` outside brackets")));
                }
                if !path.contains(':') {
                    return Err(LoadError::Format(format!("`{path}` is not an object path (type:property)")));
                }
                let mut j = i + 1;
                let mut negated = false;
                if matches!(toks.get(j), Some(Tok::Word(w)) if w == "NOT") {
                    negated = true;
                    j += 1;
                }
                let op = match toks.get(j) {
                    Some(Tok::Op(o)) => o.clone(),
                    Some(Tok::Word(w)) if matches!(w.as_str(), "LIKE" | "MATCHES" | "IN" | "ISSUBSET" | "ISSUPERSET") => w.clone(),
                    _ => return Err(LoadError::Format(format!("`{path}` is not followed by an operator"))),
                };
                j += 1;
                match toks.get(j) {
                    Some(Tok::Str(v)) => {
                        if op == "=" && !negated {
                            out.push((path.clone(), v.clone()));
                        } else {
                            supported = false;
                        }
                        i = j;
                    }
                    Some(Tok::Word(n)) if n.bytes().all(|c| c.is_ascii_digit() || c == b'.' || c == b'-') => {
                        supported = false;
                        i = j;
                    }
                    Some(Tok::LParen) if op == "IN" => {
                        // A set literal: ('a', 'b').
                        supported = false;
                        while !matches!(toks.get(j), Some(Tok::RParen) | None) {
                            j += 1;
                        }
                        if toks.get(j).is_none() {
                            return Err(LoadError::Format("unterminated set".into()));
                        }
                        i = j;
                    }
                    _ => return Err(LoadError::Format(format!("`{path} {op}` has no value"))),
                }
                expect_operand = false;
            }
            Tok::Str(_) | Tok::Op(_) => return Err(LoadError::Format("a value or operator where a comparison was expected".into())),
        }
        i += 1;
    }
    if depth != 0 {
        return Err(LoadError::Format("unbalanced brackets".into()));
    }
    if brackets == 0 || expect_operand {
        return Err(LoadError::Format("no observation expression ([…])".into()));
    }
    Ok(supported.then_some(out))
}

/// The indicator type of an object path.
fn path_kind(path: &str) -> Option<Kind> {
    let p = path.replace('\'', "");
    Some(match p.as_str() {
        "ipv4-addr:value" | "ipv6-addr:value" => Kind::Ip,
        "domain-name:value" => Kind::Domain,
        "url:value" => Kind::Url,
        "file:hashes.MD5" | "file:hashes.md5" => Kind::Md5,
        "file:hashes.SHA-1" | "file:hashes.SHA1" | "file:hashes.sha1" => Kind::Sha1,
        "file:hashes.SHA-256" | "file:hashes.SHA256" | "file:hashes.sha256" => Kind::Sha256,
        _ => return None,
    })
}

pub fn load(set: &mut IndicatorSet, text: &str, o: &LoadOptions) -> Result<(), LoadError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| LoadError::Format(format!("STIX bundle is not JSON: {e}")))?;
    if doc.get("type").and_then(Value::as_str) != Some("bundle") {
        return Err(LoadError::Format("not a STIX bundle (`\"type\": \"bundle\"` expected)".into()));
    }
    let objects = doc.get("objects").and_then(Value::as_array).ok_or_else(|| LoadError::Format("STIX bundle has no `objects` list".into()))?;
    for obj in objects {
        let id = obj.get("id").and_then(Value::as_str).unwrap_or("?");
        match obj.get("type").and_then(Value::as_str) {
            Some("indicator") => {}
            Some(_) => continue,
            None => return Err(LoadError::Format(format!("STIX object {id} has no `type`"))),
        }
        let pattern = obj.get("pattern").and_then(Value::as_str).ok_or_else(|| LoadError::Format(format!("indicator {id} has no `pattern`")))?;
        let pattern_type = obj.get("pattern_type").and_then(Value::as_str).unwrap_or("stix");
        if pattern_type != "stix" {
            set.skipped.add(format!("pattern_type {pattern_type}"));
            continue;
        }
        if obj.get("revoked").and_then(Value::as_bool) == Some(true) {
            set.skipped.add("revoked");
            continue;
        }
        if let Some(until) = obj.get("valid_until").and_then(Value::as_str) {
            let t: jiff::Timestamp = until.parse().map_err(|e| LoadError::Format(format!("indicator {id}: valid_until `{until}`: {e}")))?;
            if o.now_us > 0 && t.as_microsecond() < o.now_us {
                set.skipped.add("expired");
                continue;
            }
        }
        let confidence = match obj.get("confidence") {
            None => o.confidence,
            Some(c) => match c.as_u64() {
                Some(c) if c <= 100 => c as u8,
                _ => return Err(LoadError::Format(format!("indicator {id}: confidence {c} is not 0–100"))),
            },
        };
        let desc = obj.get("name").or(obj.get("description")).and_then(Value::as_str);
        let cmps = comparisons(pattern).map_err(|e| e.at(format!("indicator {id}: invalid pattern `{pattern}`")))?;
        let Some(cmps) = cmps else {
            set.skipped.add("pattern needs more than one event (AND, FOLLOWEDBY, qualifiers, operators other than =)");
            continue;
        };
        if cmps.iter().any(|(p, _)| path_kind(p).is_none()) {
            set.skipped.add("object path not matched");
            continue;
        }
        for (path, value) in cmps {
            let kind = path_kind(&path).expect("checked");
            set.add(kind, &value, confidence, desc).map_err(|e| e.at(format!("indicator {id}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(comparisons("[ipv4-addr:value = '198.51.100.1']").unwrap(), Some(vec![("ipv4-addr:value".into(), "198.51.100.1".into())]));
        assert_eq!(comparisons("[file:hashes.'SHA-256' = 'ab']").unwrap(), Some(vec![("file:hashes.SHA-256".into(), "ab".into())]));
        assert_eq!(comparisons("[domain-name:value = 'a.example' OR domain-name:value = 'b\\'x']").unwrap().unwrap().len(), 2);
        assert_eq!(comparisons("[url:value = 'http://x/'] OR [ipv4-addr:value = '10.0.0.1']").unwrap().unwrap().len(), 2);
        assert_eq!(comparisons("[file:name = 'a' AND file:size = 5]").unwrap(), None);
        assert_eq!(comparisons("[ipv4-addr:value = '1.1.1.1'] FOLLOWEDBY [ipv4-addr:value = '2.2.2.2'] WITHIN 10 SECONDS").unwrap(), None);
        assert_eq!(comparisons("[ipv4-addr:value ISSUBSET '198.51.100.0/24']").unwrap(), None);
        assert_eq!(comparisons("[network-traffic:dst_port IN (80, 443)]").unwrap(), None);
        for bad in [
            "[ipv4-addr:value = '1.1.1.1'",
            "ipv4-addr:value = '1.1.1.1'",
            "[ipv4-addr:value = '1.1.1.1]",
            "[ipv4-addr:value '1.1.1.1']",
            "[value = 'x']",
            "[]",
            "[a:b = 'x'] [c:d = 'y']",
        ] {
            assert!(comparisons(bad).is_err(), "{bad} should be invalid");
        }
    }
}

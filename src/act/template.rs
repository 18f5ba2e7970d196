//! Templates: `{field}` or `{a.b}` is replaced by that member of the event line (a string
//! as it is, a number or boolean as written, a list joined with commas, an object as JSON,
//! missing as nothing); `{{` and `}}` are literal braces. Substitution runs once: braces in
//! a substituted value are text, never a new placeholder. Each use escapes for its own
//! context (a JSON string, one argv element), never by pasting into a larger text.

use serde_json::Value;

/// A member of `v` by dotted path.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

/// A value as template text.
pub fn text_of(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| text_of(Some(x))).collect::<Vec<_>>().join(","),
        Some(x) => x.to_string(),
    }
}

/// Why a template cannot be used.
pub fn check(t: &str) -> Result<(), String> {
    render_parts(t, &Value::Null, &mut |_| {}).map(|_| ())
}

/// `t` with its placeholders replaced from `v`.
pub fn render(t: &str, v: &Value) -> String {
    render_parts(t, v, &mut |_| {}).unwrap_or_else(|_| t.to_string())
}

/// [`render`], also handing each substituted value to `seen` (argv checks).
pub fn render_parts(t: &str, v: &Value, seen: &mut dyn FnMut(&str)) -> Result<String, String> {
    let mut out = String::with_capacity(t.len() + 32);
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        let after = &rest[i + 1..];
        if after.as_bytes().first() == Some(&c) {
            out.push(c as char);
            rest = &after[1..];
            continue;
        }
        if c == b'}' {
            return Err(format!("`}}` without `{{` in `{t}` (write `}}}}` for a brace)"));
        }
        let Some(end) = after.find('}') else { return Err(format!("`{{` without `}}` in `{t}`")) };
        let name = after[..end].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("`{{{name}}}` in `{t}` is not a field name"));
        }
        let value = text_of(lookup(v, name));
        seen(&value);
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_once_and_keeps_braces_literal() {
        let v = serde_json::json!({"src_ip": "{dest_ip}", "dest_ip": "10.0.0.1", "n": 3, "l": ["a", "b"], "o": {"x": 1}});
        assert_eq!(render("block {src_ip} {n} {l} {o.x} {missing}.", &v), "block {dest_ip} 3 a,b 1 .");
        assert_eq!(render("{{literal}}", &v), "{literal}");
        assert!(check("{unclosed").is_err());
        assert!(check("a } b").is_err());
        assert!(check("{not a name}").is_err());
        assert!(check("{src_ip}:{dest_port}").is_ok());
    }
}

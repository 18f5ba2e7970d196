//! JSON objects written field by field into a string: the state's per-alert outputs
//! (notification lines, flow-context summaries) are built this way, without a tree.

/// `s` as HTML text or attribute value (`&`, `<`, `>`, `"`, `'` escaped): for the mail's HTML
/// part and the report.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Appends an integer's decimal digits.
pub fn push_int(out: &mut String, v: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        out.push('-');
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or_default());
}

/// Appends `bytes` as lowercase hex digits, two per byte.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// Appends `s` as a JSON string.
pub fn json_str(out: &mut String, s: &str) {
    out.push('"');
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
    } else {
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => {
                    use std::fmt::Write as _;
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
    }
    out.push('"');
}

/// An object being written at the end of `out`; [`JsonObject::close`] ends it.
pub struct JsonObject<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    pub fn open(out: &'a mut String) -> Self {
        out.push('{');
        Self { out, empty: true }
    }

    /// Writes the key of the next member; its value is written to [`JsonObject::out`].
    pub fn key(&mut self, k: &str) -> &mut String {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        json_str(self.out, k);
        self.out.push(':');
        self.out
    }

    pub fn is_empty(&self) -> bool {
        self.empty
    }

    pub fn str(&mut self, k: &str, v: &str) {
        let out = self.key(k);
        json_str(out, v);
    }

    pub fn int(&mut self, k: &str, v: i64) {
        push_int(self.key(k), v);
    }

    pub fn opt_int(&mut self, k: &str, v: Option<i64>) {
        match v {
            Some(v) => self.int(k, v),
            None => self.key(k).push_str("null"),
        }
    }

    pub fn strs<S: AsRef<str>>(&mut self, k: &str, v: &[S]) {
        let out = self.key(k);
        out.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(out, x.as_ref());
        }
        out.push(']');
    }

    /// A member whose value is JSON text already.
    pub fn raw(&mut self, k: &str, json: &str) {
        self.key(k).push_str(json);
    }

    pub fn close(self) {
        self.out.push('}');
    }
}

/// A JSON list of objects, one per item, written by `each`.
pub fn json_list<T>(items: &[T], each: impl Fn(&mut JsonObject<'_>, &T)) -> String {
    let mut out = String::from("[");
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let mut o = JsonObject::open(&mut out);
        each(&mut o, x);
        o.close();
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_and_strings_parse_back() {
        let nasty = "a\"b\\c\u{1}\n\u{1f}é😀";
        let mut s = String::new();
        let mut o = JsonObject::open(&mut s);
        o.str("s", nasty);
        o.int("n", -3);
        o.opt_int("none", None);
        o.strs("list", &["x", nasty]);
        o.raw("inner", "{\"k\":1}");
        o.close();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["s"], nasty);
        assert_eq!(v["n"], -3);
        assert!(v["none"].is_null());
        assert_eq!(v["list"][1], nasty);
        assert_eq!(v["inner"]["k"], 1);
    }
}

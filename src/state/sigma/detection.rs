//! Sigma detection rules (the `detection` section) over alerts: the base rules that
//! correlation rules count, written against alert fields.
//!
//! Supported: searches as a map (every field must match) or a list of maps (any), values
//! as a string with `*` and `?` wildcards (case-insensitive), a number, `null` (field absent)
//! or a list (any of them; every one with `|all`); modifiers `contains`, `startswith`,
//! `endswith`, `all`, `re`, `cidr`, `gt`, `gte`, `lt`, `lte`, `exists`; conditions with
//! `and`, `or`, `not`, parentheses, `1 of x*`, `all of x*`, `1 of them`, `all of them`, and a
//! list of conditions (any). Keyword searches (a list of bare values) and the other
//! modifiers are refused at load, never ignored.

use std::net::IpAddr;

use serde_json::Value;

use super::super::{AlertRecord, KeyField};

#[derive(Debug)]
pub struct Detection {
    searches: Vec<Search>,
    condition: Expr,
}

/// A named search: any of its maps, each map all of its field tests.
#[derive(Debug)]
struct Search {
    name: String,
    any: Vec<Vec<FieldTest>>,
}

#[derive(Debug)]
struct FieldTest {
    field: KeyField,
    op: Op,
    /// Every value must match (`|all`) rather than one.
    all: bool,
}

#[derive(Debug)]
enum Op {
    /// Case-insensitive patterns (lowercase) with `*` and `?`; `None`: the field is absent.
    Like(Vec<Option<String>>),
    Re(Vec<regex::Regex>),
    Cidr(Vec<(IpAddr, u8)>),
    Cmp(Vec<(std::cmp::Ordering, bool, f64)>),
    Exists(bool),
}

#[derive(Debug)]
enum Expr {
    Search(usize),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    AnyOf(Vec<usize>),
    AllOf(Vec<usize>),
}

impl Detection {
    pub fn matches(&self, a: &AlertRecord) -> bool {
        self.eval(&self.condition, a)
    }

    pub fn needs_fields(&self) -> bool {
        self.searches.iter().flat_map(|s| s.any.iter().flatten()).any(|t| t.field.needs_fields())
    }

    fn eval(&self, e: &Expr, a: &AlertRecord) -> bool {
        match e {
            Expr::Search(i) => self.searches[*i].matches(a),
            Expr::Not(x) => !self.eval(x, a),
            Expr::And(xs) => xs.iter().all(|x| self.eval(x, a)),
            Expr::Or(xs) => xs.iter().any(|x| self.eval(x, a)),
            Expr::AnyOf(ix) => ix.iter().any(|i| self.searches[*i].matches(a)),
            Expr::AllOf(ix) => ix.iter().all(|i| self.searches[*i].matches(a)),
        }
    }
}

impl Search {
    fn matches(&self, a: &AlertRecord) -> bool {
        self.any.iter().any(|m| m.iter().all(|t| t.matches(a)))
    }
}

/// `*` any run, `?` one character, `\\*` `\\?` `\\\\` literal; `p` and `s` lowercase.
fn like(p: &[char], s: &[char]) -> bool {
    // Iterative wildcard match with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while j < s.len() {
        if i < p.len() && p[i] == '\\' && i + 1 < p.len() && matches!(p[i + 1], '*' | '?' | '\\') {
            if p[i + 1] == s[j] {
                i += 2;
                j += 1;
                continue;
            }
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
            continue;
        } else if i < p.len() && (p[i] == '?' || p[i] == s[j]) {
            i += 1;
            j += 1;
            continue;
        }
        match star {
            Some(st) => {
                i = st + 1;
                mark += 1;
                j = mark;
            }
            None => return false,
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

impl FieldTest {
    fn matches(&self, a: &AlertRecord) -> bool {
        let f = self.field;
        let each = |one: &dyn Fn(&str) -> bool| f.any(a, &mut |v| one(v));
        let combine = |n: usize, test: &dyn Fn(usize) -> bool| if self.all { (0..n).all(test) } else { (0..n).any(test) };
        match &self.op {
            Op::Exists(want) => each(&|_| true) == *want,
            Op::Like(pats) => combine(pats.len(), &|k| match &pats[k] {
                None => !each(&|_| true),
                Some(p) => {
                    let p: Vec<char> = p.chars().collect();
                    each(&|v| like(&p, &v.to_lowercase().chars().collect::<Vec<_>>()))
                }
            }),
            Op::Re(res) => combine(res.len(), &|k| each(&|v| res[k].is_match(v))),
            Op::Cidr(nets) => combine(nets.len(), &|k| {
                each(&|v| v.parse::<IpAddr>().is_ok_and(|ip| crate::event::prefix::net_contains(nets[k].0, nets[k].1, crate::event::prefix::canonical(ip))))
            }),
            Op::Cmp(cmps) => combine(cmps.len(), &|k| {
                let (ord, eq, b) = cmps[k];
                f.number(a).is_some_and(|x| x.partial_cmp(&b).is_some_and(|o| o == ord || (eq && o == std::cmp::Ordering::Equal)))
            }),
        }
    }
}

/// Problems of one detection, as (key path, message).
pub type Problems = Vec<(String, String)>;

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn escape_wild(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '\\') {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

fn field_test(key: &str, value: &Value, field: &dyn Fn(&str) -> Option<KeyField>, at: &str, problems: &mut Problems) -> Option<FieldTest> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    let mods: Vec<&str> = parts.collect();
    let Some(f) = field(name) else {
        problems.push((at.to_string(), format!("`{name}` is not a field alerts carry (see the field map; add it under [state.sigma_fields])")));
        return None;
    };
    let values: Vec<&Value> = match value {
        Value::Array(xs) => xs.iter().collect(),
        v => vec![v],
    };
    let all = mods.contains(&"all");
    let mut kind = None::<&str>;
    for m in &mods {
        match *m {
            "all" => {}
            "contains" | "startswith" | "endswith" | "re" | "cidr" | "gt" | "gte" | "lt" | "lte" | "exists" => {
                if kind.is_some() {
                    problems.push((at.to_string(), format!("modifiers `{}` and `{m}` do not combine here", kind.unwrap_or_default())));
                    return None;
                }
                kind = Some(m);
            }
            other => {
                problems.push((
                    at.to_string(),
                    format!("modifier `{other}` is not supported (supported: contains, startswith, endswith, all, re, cidr, gt, gte, lt, lte, exists)"),
                ));
                return None;
            }
        }
    }
    let bad = |problems: &mut Problems, what: &str| {
        problems.push((at.to_string(), what.to_string()));
        None
    };
    let op = match kind {
        Some("exists") => match value {
            Value::Bool(b) => Op::Exists(*b),
            _ => return bad(problems, "`exists` takes true or false"),
        },
        Some("re") => {
            let mut res = Vec::new();
            for v in &values {
                let Some(s) = v.as_str() else { return bad(problems, "`re` takes strings") };
                match regex::Regex::new(s) {
                    Ok(r) => res.push(r),
                    Err(e) => return bad(problems, &format!("bad regular expression: {e}")),
                }
            }
            Op::Re(res)
        }
        Some("cidr") => {
            let mut nets = Vec::new();
            for v in &values {
                match v.as_str().and_then(crate::event::prefix::parse_cidr) {
                    Some(n) => nets.push(n),
                    None => return bad(problems, &format!("`{}` is not a network", scalar_text(v).unwrap_or_default())),
                }
            }
            Op::Cidr(nets)
        }
        Some(m @ ("gt" | "gte" | "lt" | "lte")) => {
            use std::cmp::Ordering::{Greater, Less};
            let (ord, eq) = match m {
                "gt" => (Greater, false),
                "gte" => (Greater, true),
                "lt" => (Less, false),
                _ => (Less, true),
            };
            let mut cmps = Vec::new();
            for v in &values {
                match v.as_f64() {
                    Some(x) => cmps.push((ord, eq, x)),
                    None => return bad(problems, &format!("`{m}` takes numbers")),
                }
            }
            Op::Cmp(cmps)
        }
        _ => {
            let mut pats = Vec::new();
            for v in &values {
                if v.is_null() {
                    pats.push(None);
                    continue;
                }
                let Some(s) = scalar_text(v) else { return bad(problems, "values are strings, numbers, booleans or null") };
                // Numbers and booleans match literally.
                let s = if v.is_string() { s } else { escape_wild(&s) };
                let p = match kind {
                    Some("contains") => format!("*{s}*"),
                    Some("startswith") => format!("{s}*"),
                    Some("endswith") => format!("*{s}"),
                    _ => s,
                };
                pats.push(Some(p.to_lowercase()));
            }
            Op::Like(pats)
        }
    };
    Some(FieldTest { field: f, op, all })
}

fn search(name: &str, v: &Value, field: &dyn Fn(&str) -> Option<KeyField>, problems: &mut Problems) -> Option<Search> {
    let at = format!("detection.{name}");
    let map = |m: &serde_json::Map<String, Value>, problems: &mut Problems| -> Vec<FieldTest> {
        m.iter().filter_map(|(k, v)| field_test(k, v, field, &format!("{at}.{k}"), problems)).collect()
    };
    let any = match v {
        Value::Object(m) => vec![map(m, problems)],
        Value::Array(xs) if xs.iter().all(Value::is_object) => xs.iter().filter_map(Value::as_object).map(|m| map(m, problems)).collect(),
        Value::Array(_) => {
            problems.push((at, "keyword searches (a list of bare values) are not supported: alerts are matched by field".into()));
            return None;
        }
        _ => {
            problems.push((at, "a search is a map of fields or a list of such maps".into()));
            return None;
        }
    };
    Some(Search { name: name.to_string(), any })
}

/// Compiles a `detection` section; `field` resolves Sigma field names.
pub fn compile(detection: &Value, field: &dyn Fn(&str) -> Option<KeyField>) -> Result<Detection, Problems> {
    let mut problems = Problems::new();
    let Some(m) = detection.as_object() else {
        return Err(vec![("detection".into(), "is not a map".into())]);
    };
    let mut searches = Vec::new();
    let mut condition = None;
    for (k, v) in m {
        match k.as_str() {
            "condition" => condition = Some(v),
            "timeframe" => problems.push(("detection.timeframe".into(), "is the obsolete aggregation syntax; use a correlation rule".into())),
            _ => {
                if let Some(s) = search(k, v, field, &mut problems) {
                    searches.push(s);
                }
            }
        }
    }
    let conds: Vec<String> = match condition {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(xs)) => xs.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => {
            problems.push(("detection.condition".into(), "is required (a string or a list of strings)".into()));
            Vec::new()
        }
    };
    let mut exprs = Vec::new();
    for c in &conds {
        match Parser::new(c, &searches).or() {
            Ok(e) => exprs.push(e),
            Err(e) => problems.push(("detection.condition".into(), format!("`{c}`: {e}"))),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let condition = if exprs.len() == 1 { exprs.remove(0) } else { Expr::Or(exprs) };
    Ok(Detection { searches, condition })
}

struct Parser<'a> {
    toks: Vec<String>,
    pos: usize,
    searches: &'a [Search],
}

impl<'a> Parser<'a> {
    fn new(text: &str, searches: &'a [Search]) -> Self {
        let spaced = text.replace('(', " ( ").replace(')', " ) ");
        Parser { toks: spaced.split_whitespace().map(str::to_owned).collect(), pos: 0, searches }
    }

    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(String::as_str)
    }

    fn next(&mut self) -> Option<String> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or(&mut self) -> Result<Expr, String> {
        let e = self.or_inner()?;
        match self.peek() {
            None => Ok(e),
            Some("|") => Err("the `|` aggregation syntax is obsolete; use a correlation rule".into()),
            Some(t) => Err(format!("unexpected `{t}`")),
        }
    }

    fn or_inner(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.and()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("or")) {
            self.pos += 1;
            xs.push(self.and()?);
        }
        Ok(if xs.len() == 1 { xs.remove(0) } else { Expr::Or(xs) })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.not()?];
        while self.peek().is_some_and(|t| t.eq_ignore_ascii_case("and")) {
            self.pos += 1;
            xs.push(self.not()?);
        }
        Ok(if xs.len() == 1 { xs.remove(0) } else { Expr::And(xs) })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek().is_some_and(|t| t.eq_ignore_ascii_case("not")) {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn pattern(&self, p: &str) -> Vec<usize> {
        let pat: Vec<char> = p.to_lowercase().chars().collect();
        self.searches
            .iter()
            .enumerate()
            .filter(|(_, s)| if p == "them" { !s.name.starts_with('_') } else { like(&pat, &s.name.to_lowercase().chars().collect::<Vec<_>>()) })
            .map(|(i, _)| i)
            .collect()
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let Some(t) = self.next() else { return Err("the condition ends too early".into()) };
        if t == "(" {
            let e = self.or_inner()?;
            return match self.next().as_deref() {
                Some(")") => Ok(e),
                _ => Err("a `(` is not closed".into()),
            };
        }
        if (t == "1" || t.eq_ignore_ascii_case("any") || t.eq_ignore_ascii_case("all")) && self.peek().is_some_and(|x| x.eq_ignore_ascii_case("of")) {
            self.pos += 1;
            let Some(p) = self.next() else { return Err(format!("`{t} of` needs a name pattern or `them`")) };
            let ix = self.pattern(&p);
            if ix.is_empty() {
                return Err(format!("`{p}` names no search"));
            }
            return Ok(if t.eq_ignore_ascii_case("all") { Expr::AllOf(ix) } else { Expr::AnyOf(ix) });
        }
        match self.searches.iter().position(|s| s.name == t) {
            Some(i) => Ok(Expr::Search(i)),
            None => Err(format!("`{t}` is not a search of this detection")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str) -> Option<KeyField> {
        match name {
            "EventID" => Some(KeyField::SignatureId),
            _ => KeyField::from_name(name),
        }
    }

    fn det(yaml: &str) -> Detection {
        let v: Value = serde_saphyr::from_str(yaml).unwrap();
        compile(&v, &f).unwrap()
    }

    fn alert(sid: i64, sig: &str, src: &str, port: i32) -> AlertRecord {
        AlertRecord { signature_id: sid, signature: sig.into(), src_ip: src.into(), dest_port: Some(port), ..Default::default() }
    }

    #[test]
    fn values_modifiers_and_conditions() {
        let d = det("selection:\n  EventID: [529, 4625]\ncondition: selection\n");
        assert!(d.matches(&alert(4625, "", "", 1)) && !d.matches(&alert(4624, "", "", 1)));
        let d = det("sel:\n  signature|contains: 'et scan'\n  src_ip|cidr: 10.0.0.0/8\nfilter:\n  dest_port|gte: 1024\ncondition: sel and not filter\n");
        assert!(d.matches(&alert(1, "ET SCAN nmap", "10.1.2.3", 22)));
        assert!(!d.matches(&alert(1, "ET SCAN nmap", "10.1.2.3", 8080)), "filtered");
        assert!(!d.matches(&alert(1, "ET SCAN nmap", "8.8.8.8", 22)), "outside the network");
        let d = det("a:\n  signature: 'ET ?ROJAN*'\nb:\n  - signature|endswith: checkin\n  - signature|re: '^GPL '\ncondition: 1 of a or b\n");
        assert!(d.matches(&alert(1, "ET TROJAN x", "", 1)) && d.matches(&alert(1, "ET MALWARE checkin", "", 1)) && d.matches(&alert(1, "GPL ATTACK", "", 1)));
        assert!(!d.matches(&alert(1, "ET INFO", "", 1)));
        let d = det("a:\n  signature|contains|all: [foo, bar]\ncondition: all of them\n");
        assert!(d.matches(&alert(1, "bar and foo", "", 1)) && !d.matches(&alert(1, "foo", "", 1)));
        assert!(like(&['a', '\\', '*'], &['a', '*']) && !like(&['a', '\\', '*'], &['a', 'b']));
    }

    #[test]
    fn problems_are_all_reported() {
        let v: Value = serde_saphyr::from_str("a:\n  Nope: 1\n  EventID|base64: x\nb:\n  - foo\ncondition: a or c | count() > 5\n").unwrap();
        let p = compile(&v, &f).unwrap_err();
        let text: Vec<String> = p.iter().map(|(k, m)| format!("{k}: {m}")).collect();
        assert_eq!(p.len(), 4, "{text:?}");
        assert!(text.iter().any(|t| t.contains("`Nope` is not a field")));
        assert!(text.iter().any(|t| t.contains("modifier `base64`")));
        assert!(text.iter().any(|t| t.contains("keyword searches")));
        assert!(text.iter().any(|t| t.contains("detection.condition")));
    }
}

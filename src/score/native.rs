//! The common shapes of rule expressions, evaluated straight on an alert's variables.
//!
//! A rule's CEL expression is compiled here too when every part of it is of a typed subset:
//! literals, the variables of [`vars::NAMES`](super::vars::NAMES), `!`, `&&`, `||`, the
//! comparisons between two values of one type, `+ - *` and unary `-` on numbers, `in` with
//! a list of literals or a list variable, and the string methods `contains`, `startsWith`
//! and `endsWith`. Each variable's type is fixed (a missing value is `""`, `0`, `false` or
//! `[]`), so a compiled expression never meets a value of another type; what it cannot prove
//! well-typed (mixed `int` and `double`, macros, functions, ternaries) is left to the CEL
//! interpreter. Where both apply, the results are the same, errors included (integer
//! overflow, `NaN` ordering, `&&` and `||` absorbing an error on the other side): the
//! differential test below runs both over many expressions and alerts.
//!
//! The interpreter builds a context per alert and boxes each value it reads; this reads the
//! alert's fields where they are.

use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};

use super::vars::{AlertVars, Plain, NAMES};

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Bool,
    Int,
    Double,
    Str,
    Strs,
}

fn ty_of(p: &Plain) -> Ty {
    match p {
        Plain::Str(_) => Ty::Str,
        Plain::Int(_) => Ty::Int,
        Plain::Double(_) => Ty::Double,
        Plain::Bool(_) => Ty::Bool,
        Plain::Strs(_) => Ty::Strs,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Box<str>),
}

impl Lit {
    fn plain(&self) -> Plain<'_> {
        match self {
            Lit::Bool(b) => Plain::Bool(*b),
            Lit::Int(i) => Plain::Int(*i),
            Lit::Double(d) => Plain::Double(*d),
            Lit::Str(s) => Plain::Str(s),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    Add,
    Sub,
    Mul,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrTest {
    Contains,
    StartsWith,
    EndsWith,
}

/// A compiled expression.
#[derive(Debug)]
pub struct Native {
    root: Node,
    pub ty: Ty,
}

#[derive(Debug)]
enum Node {
    Lit(Lit),
    Var(&'static str),
    Not(Box<Node>),
    And(Box<[Node; 2]>),
    Or(Box<[Node; 2]>),
    Cmp(Cmp, Box<[Node; 2]>),
    Arith(Arith, Box<[Node; 2]>),
    Neg(Box<Node>),
    /// `x in [literals]`.
    InLits(Box<Node>, Vec<Lit>),
    /// `x in list_variable`.
    InList(Box<[Node; 2]>),
    Str(StrTest, Box<[Node; 2]>),
}

/// A runtime error (as the interpreter's: the rule is counted as failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

impl Native {
    /// `None` when some part of the expression is outside the subset.
    pub fn compile(e: &IdedExpr) -> Option<Native> {
        let (root, ty) = compile(e)?;
        Some(Native { root, ty })
    }

    pub fn eval<'b>(&'b self, v: &'b AlertVars<'_>) -> Result<Plain<'b>, Failed> {
        self.root.eval(v)
    }
}

/// The variable's type, read off an alert with nothing in it (every variable has one type).
fn var_type(name: &str) -> Option<(&'static str, Ty)> {
    use crate::event::alert::AlertRecord;
    use crate::event::enriched::Enrichment;
    let name = *NAMES.iter().find(|n| **n == name)?;
    let (alert, enrichment) = (AlertRecord::default(), Enrichment::default());
    let empty = AlertVars {
        alert: &alert,
        enrichment: &enrichment,
        decided: super::vars::Decided { dedup_count: 0, decision: "", late: false, incidents: &[] },
        around: &[],
        triage: None,
    };
    empty.get(name).map(|p| (name, ty_of(&p)))
}

/// `a.b.c` as written.
fn dotted(e: &Expr, out: &mut String) -> Option<()> {
    match e {
        Expr::Ident(n) => out.push_str(n),
        Expr::Select(s) if !s.test => {
            dotted(&s.operand.expr, out)?;
            out.push('.');
            out.push_str(&s.field);
        }
        _ => return None,
    }
    Some(())
}

fn literal(l: &LiteralValue) -> Option<Lit> {
    Some(match l {
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::Double(d) => Lit::Double(*d.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().into()),
        LiteralValue::Bytes(_) | LiteralValue::Null | LiteralValue::UInt(_) => return None,
    })
}

fn lit_ty(l: &Lit) -> Ty {
    ty_of(&l.plain())
}

fn compile(e: &IdedExpr) -> Option<(Node, Ty)> {
    match &e.expr {
        Expr::Literal(l) => {
            let l = literal(l)?;
            let t = lit_ty(&l);
            Some((Node::Lit(l), t))
        }
        Expr::Ident(_) | Expr::Select(_) => {
            let mut name = String::new();
            dotted(&e.expr, &mut name)?;
            let (name, t) = var_type(&name)?;
            Some((Node::Var(name), t))
        }
        Expr::Call(c) => {
            let two = || -> Option<((Node, Ty), (Node, Ty))> {
                match c.args.as_slice() {
                    [a, b] if c.target.is_none() => Some((compile(a)?, compile(b)?)),
                    _ => None,
                }
            };
            let f = c.func_name.as_str();
            if let Some(target) = &c.target {
                let test = match f {
                    "contains" => StrTest::Contains,
                    "startsWith" => StrTest::StartsWith,
                    "endsWith" => StrTest::EndsWith,
                    _ => return None,
                };
                let [arg] = c.args.as_slice() else { return None };
                let ((t, tt), (a, at)) = (compile(target)?, compile(arg)?);
                return (tt == Ty::Str && at == Ty::Str).then(|| (Node::Str(test, Box::new([t, a])), Ty::Bool));
            }
            match f {
                operators::LOGICAL_AND | operators::LOGICAL_OR => {
                    let ((a, at), (b, bt)) = two()?;
                    let pair = Box::new([a, b]);
                    (at == Ty::Bool && bt == Ty::Bool).then(|| (if f == operators::LOGICAL_AND { Node::And(pair) } else { Node::Or(pair) }, Ty::Bool))
                }
                operators::LOGICAL_NOT | operators::NEGATE => {
                    let [a] = c.args.as_slice() else { return None };
                    let (a, t) = compile(a)?;
                    match (f, t) {
                        (operators::LOGICAL_NOT, Ty::Bool) => Some((Node::Not(Box::new(a)), Ty::Bool)),
                        (operators::NEGATE, Ty::Int | Ty::Double) => Some((Node::Neg(Box::new(a)), t)),
                        _ => None,
                    }
                }
                operators::EQUALS | operators::NOT_EQUALS | operators::LESS | operators::LESS_EQUALS | operators::GREATER | operators::GREATER_EQUALS => {
                    let op = match f {
                        operators::EQUALS => Cmp::Eq,
                        operators::NOT_EQUALS => Cmp::Ne,
                        operators::LESS => Cmp::Lt,
                        operators::LESS_EQUALS => Cmp::Le,
                        operators::GREATER => Cmp::Gt,
                        _ => Cmp::Ge,
                    };
                    let ((a, at), (b, bt)) = two()?;
                    let ordered = matches!(at, Ty::Int | Ty::Double | Ty::Str | Ty::Bool);
                    (at == bt && ordered).then(|| (Node::Cmp(op, Box::new([a, b])), Ty::Bool))
                }
                operators::ADD | operators::SUBSTRACT | operators::MULTIPLY => {
                    let op = match f {
                        operators::ADD => Arith::Add,
                        operators::SUBSTRACT => Arith::Sub,
                        _ => Arith::Mul,
                    };
                    let ((a, at), (b, bt)) = two()?;
                    (at == bt && matches!(at, Ty::Int | Ty::Double)).then(|| (Node::Arith(op, Box::new([a, b])), at))
                }
                operators::IN => {
                    let [x, list] = c.args.as_slice() else { return None };
                    let (x, xt) = compile(x)?;
                    if let Expr::List(l) = &list.expr {
                        if !l.optional_indices.is_empty() {
                            return None;
                        }
                        let mut lits = Vec::with_capacity(l.elements.len());
                        for el in &l.elements {
                            let Expr::Literal(v) = &el.expr else { return None };
                            let v = literal(v)?;
                            if lit_ty(&v) != xt {
                                return None;
                            }
                            lits.push(v);
                        }
                        return Some((Node::InLits(Box::new(x), lits), Ty::Bool));
                    }
                    let (list, lt) = compile(list)?;
                    (xt == Ty::Str && lt == Ty::Strs).then(|| (Node::InList(Box::new([x, list])), Ty::Bool))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn bool_of(p: Result<Plain<'_>, Failed>) -> Result<bool, Failed> {
    match p? {
        Plain::Bool(b) => Ok(b),
        _ => Err(Failed),
    }
}

/// Equal as CEL has it for two values of one type (`NaN` equals nothing).
fn equal(a: &Plain, b: &Plain) -> bool {
    match (a, b) {
        (Plain::Double(x), Plain::Double(y)) => x == y,
        _ => a == b,
    }
}

impl Node {
    fn eval<'b>(&'b self, v: &'b AlertVars<'_>) -> Result<Plain<'b>, Failed> {
        Ok(match self {
            Node::Lit(l) => l.plain(),
            Node::Var(name) => v.get(name).ok_or(Failed)?,
            Node::Not(a) => Plain::Bool(!bool_of(a.eval(v))?),
            // As CEL: false on either side wins over an error on the other.
            Node::And(ab) => {
                let l = bool_of(ab[0].eval(v));
                if l == Ok(false) {
                    return Ok(Plain::Bool(false));
                }
                let r = bool_of(ab[1].eval(v));
                if r == Ok(false) {
                    return Ok(Plain::Bool(false));
                }
                Plain::Bool(l? && r?)
            }
            Node::Or(ab) => {
                let l = bool_of(ab[0].eval(v));
                if l == Ok(true) {
                    return Ok(Plain::Bool(true));
                }
                let r = bool_of(ab[1].eval(v));
                if r == Ok(true) {
                    return Ok(Plain::Bool(true));
                }
                Plain::Bool(l? || r?)
            }
            Node::Cmp(op, ab) => {
                let (a, b) = (ab[0].eval(v)?, ab[1].eval(v)?);
                match op {
                    Cmp::Eq => Plain::Bool(equal(&a, &b)),
                    Cmp::Ne => Plain::Bool(!equal(&a, &b)),
                    _ => {
                        let ord = match (&a, &b) {
                            (Plain::Int(x), Plain::Int(y)) => x.cmp(y),
                            (Plain::Double(x), Plain::Double(y)) => x.partial_cmp(y).ok_or(Failed)?,
                            (Plain::Str(x), Plain::Str(y)) => x.cmp(y),
                            (Plain::Bool(x), Plain::Bool(y)) => x.cmp(y),
                            _ => return Err(Failed),
                        };
                        Plain::Bool(match op {
                            Cmp::Lt => ord.is_lt(),
                            Cmp::Le => ord.is_le(),
                            Cmp::Gt => ord.is_gt(),
                            _ => ord.is_ge(),
                        })
                    }
                }
            }
            Node::Arith(op, ab) => match (ab[0].eval(v)?, ab[1].eval(v)?) {
                (Plain::Int(x), Plain::Int(y)) => Plain::Int(
                    match op {
                        Arith::Add => x.checked_add(y),
                        Arith::Sub => x.checked_sub(y),
                        Arith::Mul => x.checked_mul(y),
                    }
                    .ok_or(Failed)?,
                ),
                (Plain::Double(x), Plain::Double(y)) => Plain::Double(match op {
                    Arith::Add => x + y,
                    Arith::Sub => x - y,
                    Arith::Mul => x * y,
                }),
                _ => return Err(Failed),
            },
            Node::Neg(a) => match a.eval(v)? {
                Plain::Int(x) => Plain::Int(x.checked_neg().ok_or(Failed)?),
                Plain::Double(x) => Plain::Double(-x),
                _ => return Err(Failed),
            },
            Node::InLits(x, lits) => {
                let x = x.eval(v)?;
                Plain::Bool(lits.iter().any(|l| equal(&x, &l.plain())))
            }
            Node::InList(ab) => match (ab[0].eval(v)?, ab[1].eval(v)?) {
                (Plain::Str(x), Plain::Strs(l)) => Plain::Bool(l.contains(&x)),
                _ => return Err(Failed),
            },
            Node::Str(test, ab) => match (ab[0].eval(v)?, ab[1].eval(v)?) {
                (Plain::Str(s), Plain::Str(p)) => Plain::Bool(match test {
                    StrTest::Contains => s.contains(p),
                    StrTest::StartsWith => s.starts_with(p),
                    StrTest::EndsWith => s.ends_with(p),
                }),
                _ => return Err(Failed),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cel::{Program, Value};

    use super::*;
    use crate::event::alert::AlertRecord;
    use crate::event::enriched::{Enrichment, HistoryInfo, IntelHit, Kind};
    use crate::event::triage::{Assessment, Behaviour, Direction, Stage};
    use crate::score::vars::Decided;

    /// splitmix64: the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'x, T>(&mut self, xs: &'x [T]) -> &'x T {
            &xs[self.below(xs.len())]
        }
    }

    const INTS: &[&str] = &["0", "1", "-1", "3", "70", "9223372036854775807", "-9223372036854775807"];
    const DOUBLES: &[&str] = &["0.0", "0.5", "-2.25", "1e308", "3.0"];
    const STRS: &[&str] = &["''", "'x'", "'ET SCAN'", "'RU'", "'inbound'", "'c2'", "'periodic'", "'10.1.2.3'", "'é'"];
    const BOOLS: &[&str] = &["true", "false"];

    fn var_of(r: &mut Rng, want: Option<Ty>) -> String {
        loop {
            let name = *r.pick(NAMES);
            let (_, t) = var_type(name).unwrap();
            if want.is_none_or(|w| w == t) {
                return name.to_string();
            }
        }
    }

    /// A value of type `t` (or, now and then, of another type: the mixed cases must be left
    /// to the interpreter and still agree).
    fn value(r: &mut Rng, t: Ty, depth: u32) -> String {
        let t = if r.below(12) == 0 { *r.pick(&[Ty::Int, Ty::Double, Ty::Str, Ty::Bool]) } else { t };
        if depth > 0 && r.below(3) == 0 {
            return match t {
                Ty::Bool => boolean(r, depth - 1),
                Ty::Int | Ty::Double => {
                    let op = r.pick(&["+", "-", "*"]);
                    if r.below(4) == 0 {
                        format!("-({})", value(r, t, depth - 1))
                    } else {
                        format!("({} {op} {})", value(r, t, depth - 1), value(r, t, depth - 1))
                    }
                }
                _ => var_of(r, Some(t)),
            };
        }
        if r.below(2) == 0 {
            return var_of(r, Some(t));
        }
        match t {
            Ty::Int => r.pick(INTS).to_string(),
            Ty::Double => r.pick(DOUBLES).to_string(),
            Ty::Str => r.pick(STRS).to_string(),
            Ty::Bool => r.pick(BOOLS).to_string(),
            Ty::Strs => var_of(r, Some(Ty::Strs)),
        }
    }

    fn boolean(r: &mut Rng, depth: u32) -> String {
        let d = depth.saturating_sub(1);
        match r.below(if depth == 0 { 4 } else { 8 }) {
            0 => var_of(r, Some(Ty::Bool)),
            1 => {
                let t = *r.pick(&[Ty::Int, Ty::Double, Ty::Str, Ty::Bool]);
                let op = r.pick(&["==", "!=", "<", "<=", ">", ">="]);
                format!("{} {op} {}", value(r, t, d), value(r, t, d))
            }
            2 => {
                let t = *r.pick(&[Ty::Int, Ty::Str, Ty::Double]);
                let n = r.below(4);
                let items: Vec<String> = (0..n).map(|_| value(r, t, 0)).filter(|x| !x.contains('.') || t == Ty::Double).collect();
                if r.below(2) == 0 {
                    format!("{} in [{}]", value(r, t, d), items.join(", "))
                } else {
                    format!("{} in {}", value(r, Ty::Str, d), var_of(r, Some(Ty::Strs)))
                }
            }
            3 => {
                let m = r.pick(&["contains", "startsWith", "endsWith"]);
                format!("{}.{m}({})", var_of(r, Some(Ty::Str)), value(r, Ty::Str, d))
            }
            4 | 5 => {
                let op = r.pick(&["&&", "||"]);
                format!("({} {op} {})", boolean(r, d), boolean(r, d))
            }
            6 => format!("!({})", boolean(r, d)),
            _ => format!("({} {} 0 || {})", value(r, Ty::Int, d), r.pick(&["+", "*"]), boolean(r, d)),
        }
    }

    struct Case {
        alert: AlertRecord,
        enrichment: Enrichment,
        triage: Option<Assessment>,
        incidents: Vec<String>,
        count: i64,
    }

    fn case(r: &mut Rng) -> Case {
        let s = |r: &mut Rng, xs: &[&str]| r.pick(xs).to_string();
        let alert = AlertRecord {
            severity: 1 + r.below(4) as i32,
            signature: s(r, &["ET SCAN x", "ET POLICY y", "", "é ET SCAN"]),
            category: s(r, &["Attempted Recon", "", "x"]),
            src_ip: s(r, &["10.1.2.3", "203.0.113.7", ""]),
            dest_ip: s(r, &["192.168.1.1", "198.51.100.2"]),
            signature_id: *r.pick(&[0, 2_030_092, i64::MAX, -3]),
            flow_id: *r.pick(&[None, Some(0), Some(i64::MAX), Some(i64::MIN), Some(-5)]),
            src_port: *r.pick(&[None, Some(443), Some(0)]),
            ..Default::default()
        };
        let mut enrichment = Enrichment::default();
        for _ in 0..r.below(3) {
            enrichment.intel.push(IntelHit {
                feed: Arc::from(s(r, &["intel:a", "b"])),
                feed_version: Arc::from("1"),
                indicator: Arc::from(s(r, &["x", "10.1.2.3", "é"])),
                kind: *r.pick(&[Kind::Ip, Kind::Domain]),
                field: "src_ip",
                value: "v".into(),
                confidence: *r.pick(&[0, 70, 100]),
                description: None,
            });
        }
        if r.below(2) == 0 {
            let mut h = HistoryInfo::default();
            h.signature.last_24h = r.below(5) as u64;
            h.src.first_time = r.below(2) == 0;
            enrichment.history = Some(h);
        }
        let triage = (r.below(3) > 0).then(|| Assessment {
            direction: *r.pick(&[Direction::Inbound, Direction::Outbound, Direction::Internal, Direction::External]),
            entity: s(r, &["10.1.2.3", ""]),
            stage: *r.pick(&[Stage::Recon, Stage::C2, Stage::Exploit]),
            stages: (0..r.below(3)).map(|_| *r.pick(&[Stage::Recon, Stage::C2])).collect(),
            behaviours: (0..r.below(2)).map(|_| Behaviour { kind: "periodic", text: String::new(), strength: 1.0 }).collect(),
            weight: *r.pick(&[0.0, 4.256, f64::NAN, f64::INFINITY, -1.5]),
            alert_points: *r.pick(&[0, 5, 70, 255]),
            entity_points: *r.pick(&[0, 5, 90]),
            alert_why: s(r, &["why", ""]),
            incident: (r.below(2) == 0).then(|| "inc-1".to_string()),
            ..Default::default()
        });
        let incidents = (0..r.below(3)).map(|i| format!("i{i}")).collect();
        Case { alert, enrichment, triage, incidents, count: *r.pick(&[1, 2, i64::MAX]) }
    }

    fn agree(native: &Result<Plain, Failed>, cel: &cel::ResolveResult) -> bool {
        match (native, cel) {
            (Err(_), Err(_)) => true,
            (Ok(Plain::Str(a)), Ok(Value::String(b))) => *a == b.as_str(),
            (Ok(Plain::Int(a)), Ok(Value::Int(b))) => a == b,
            (Ok(Plain::Double(a)), Ok(Value::Float(b))) => a == b || (a.is_nan() && b.is_nan()),
            (Ok(Plain::Bool(a)), Ok(Value::Bool(b))) => a == b,
            (Ok(Plain::Strs(a)), Ok(Value::List(b))) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| matches!(y, Value::String(y) if *x == y.as_str()))
            }
            _ => false,
        }
    }

    #[test]
    fn the_subset_agrees_with_the_interpreter() {
        let mut r = Rng(20261205);
        let cases: Vec<Case> = (0..48).map(|_| case(&mut r)).collect();
        let (mut native, mut total, mut checked) = (0, 0, 0);
        for _ in 0..3000 {
            let text = if r.below(4) == 0 {
                let t = *r.pick(&[Ty::Int, Ty::Double, Ty::Str, Ty::Strs]);
                value(&mut r, t, 2)
            } else {
                boolean(&mut r, 3)
            };
            let Ok(program) = Program::compile(&text) else { continue };
            total += 1;
            let Some(n) = Native::compile(program.expression()) else { continue };
            native += 1;
            for c in &cases {
                let vars = AlertVars {
                    alert: &c.alert,
                    enrichment: &c.enrichment,
                    decided: Decided { dedup_count: c.count, decision: "first", late: false, incidents: &c.incidents },
                    around: &[],
                    triage: c.triage.as_ref(),
                };
                let at = super::super::Eval::new(&vars);
                let (mine, theirs) = (n.eval(&vars), program.execute(at.cel()));
                assert!(agree(&mine, &theirs), "`{text}`: {mine:?} against {theirs:?} for {:?} / {:?}", c.alert, c.triage);
                if let Ok(p) = &mine {
                    assert_eq!(ty_of(p), n.ty, "`{text}`");
                }
                checked += 1;
            }
        }
        assert!(total > 2500, "{total} expressions parsed");
        assert!(native * 2 > total && native < total, "{native} of {total} compiled: both paths must be exercised");
        assert!(checked > 50_000, "{checked}");
    }

    #[test]
    fn what_the_subset_leaves_to_the_interpreter() {
        for text in [
            "alert.severity == 1.0",
            "triage.weight > 1",
            "in_cidr(src.ip, '10.0.0.0/8')",
            "alert.signature.matches('^ET')",
            "size(intel.feeds) > 0",
            "alert.severity > 1 ? true : false",
            "intel.feeds.exists(f, f == 'a')",
            "alert.severity == 1u",
            "alert.severity / 2 == 0",
            "intel == 1",
            "'a' + 'b' == 'ab'",
            "src.asset.tags == []",
        ] {
            let p = Program::compile(text).unwrap();
            assert!(Native::compile(p.expression()).is_none(), "`{text}` compiled");
        }
        for text in ["triage.entity_points > triage.alert_points", "'periodic' in triage.behaviours", "alert.severity in [1, 2]", "!intel.matched"] {
            let p = Program::compile(text).unwrap();
            assert!(Native::compile(p.expression()).is_some(), "`{text}` left to the interpreter");
        }
    }
}

//! The house is one-way: stages stand on `event/`, the pipeline alone wires them.
//!
//! Reads every `src/**/*.rs` file, builds the graph of top-level modules from `crate::…`
//! paths (in `use` lines, `use crate::{a, b}` groups and inline paths; comments and
//! `#[cfg(test)]` modules left out) and fails on:
//! - a cycle between modules;
//! - a stage importing another stage;
//! - a floor module (`event`, `metrics`, `deadletter`) importing anything above it;
//! - a stage importing the top (`pipeline`, `config`, `api`, `demo`, `main`, `lib`).
//!
//! The failure names each offending import with its file and line. See ARCHITECTURE.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules every stage may import; they import only each other.
const FLOOR: &[&str] = &["event", "metrics", "deadletter"];
/// Modules that may import anything; no stage imports them.
const TOP: &[&str] = &["pipeline", "config", "api", "demo", "main", "lib"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Import {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    Cycle(Vec<String>),
    StageToStage(Import),
    FloorUp(Import),
    StageToTop(Import),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |i: &Import| format!("{}:{}: `{}` imports `crate::{}`", i.file.display(), i.line, i.from, i.to);
        match self {
            Violation::Cycle(c) => write!(f, "cycle between modules: {}", c.join(" -> ")),
            Violation::StageToStage(i) => {
                write!(f, "{} (a stage importing another stage: move the shared type to `event/`, or the wiring to `pipeline/`)", at(i))
            }
            Violation::FloorUp(i) => write!(f, "{} (the floor imports nothing above it)", at(i)),
            Violation::StageToTop(i) => write!(f, "{} (a stage importing the top: take what it needs as a parameter or its own config type)", at(i)),
        }
    }
}

/// The top-level module a file under `src` belongs to.
fn module_of(rel: &Path) -> String {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned());
    let first = parts.next().unwrap_or_default();
    match parts.next() {
        Some(_) => first,
        None => first.trim_end_matches(".rs").to_string(),
    }
}

/// The text with `//` comments blanked and `#[cfg(test)] mod … { … }` blocks removed
/// (line breaks kept, so line numbers stay right).
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = match line.find("//") {
            // A `//` inside a string literal is rare in imports; good enough here.
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(i) = rest.find("#[cfg(test)]") {
        let after = &rest[i + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        if !trimmed.starts_with("mod ") {
            result.push_str(&rest[..i + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        result.push_str(&rest[..i]);
        let Some(open) = after.find('{') else {
            rest = after;
            continue;
        };
        let mut depth = 0usize;
        let mut end = after.len();
        for (j, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + j + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Keep the line breaks of the removed block.
        result.extend(after[..end].chars().filter(|&c| c == '\n'));
        rest = &after[end..];
    }
    result.push_str(rest);
    result
}

fn ident_at(s: &str) -> Option<&str> {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// `(module, line)` for every `crate::module` path in a file's code.
fn imports_of(code: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let pos = from + i;
        from = pos + "crate::".len();
        // `alertflow_crate::x` or `mycrate::x` are other names.
        if code[..pos].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            let close = group.find('}').unwrap_or(group.len());
            for item in group[..close].split(',') {
                if let Some(m) = ident_at(item.trim()) {
                    out.push((m.to_string(), line_of(pos)));
                }
            }
        } else if let Some(m) = ident_at(rest) {
            out.push((m.to_string(), line_of(pos)));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every import between distinct top-level modules of the crate under `src`.
fn graph(src: &Path) -> (BTreeSet<String>, Vec<Import>) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut modules = BTreeSet::new();
    let mut imports = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let m = module_of(rel);
        modules.insert(m.clone());
        let code = strip(&std::fs::read_to_string(f).expect("readable source"));
        for (to, line) in imports_of(&code) {
            if to != m && to != "self" && to != "super" {
                imports.push(Import { from: m.clone(), to, file: rel.to_path_buf(), line });
            }
        }
    }
    imports.retain(|i| modules.contains(&i.to));
    (modules, imports)
}

/// Strongly connected components of more than one module (Tarjan).
fn cycles(modules: &BTreeSet<String>, imports: &[Import]) -> Vec<Vec<String>> {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        edges.entry(&i.from).or_default().insert(&i.to);
    }
    struct T<'a> {
        edges: &'a BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let next: Vec<&'a str> = t.edges.get(v).map(|s| s.iter().copied().collect()).unwrap_or_default();
        for w in next {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().expect("on the stack");
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T { edges: &edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on: BTreeSet::new(), out: Vec::new() };
    for m in modules {
        if !t.index.contains_key(m.as_str()) {
            visit(&mut t, m);
        }
    }
    t.out
}

fn check(src: &Path) -> Vec<Violation> {
    let (modules, imports) = graph(src);
    let floor = |m: &str| FLOOR.contains(&m);
    let top = |m: &str| TOP.contains(&m);
    let mut out: Vec<Violation> = cycles(&modules, &imports).into_iter().map(Violation::Cycle).collect();
    for i in imports {
        let (from, to) = (i.from.as_str(), i.to.as_str());
        if floor(from) && !floor(to) {
            out.push(Violation::FloorUp(i));
        } else if !floor(from) && !top(from) && top(to) {
            out.push(Violation::StageToTop(i));
        } else if !floor(from) && !top(from) && !floor(to) && !top(to) {
            out.push(Violation::StageToStage(i));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn the_house_is_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (modules, imports) = graph(&src);
    // The checker reads the real tree: the stages and the floor are there.
    for m in ["event", "ingest", "parse", "state", "enrich", "score", "triage", "output", "archive", "pipeline", "config"] {
        assert!(modules.contains(m), "module {m} not found under src/");
    }
    assert!(imports.iter().any(|i| i.from == "pipeline" && i.to == "state"), "the pipeline wires the state stage");
    let v = check(&src);
    let text: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    assert!(v.is_empty(), "the module graph is not one-way:\n{}", text.join("\n"));
}

// --- the checker itself, on tiny fake trees ---------------------------------------------

fn fake(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

const CLEAN: &[(&str, &str)] = &[
    ("lib.rs", "pub mod event;\npub mod parse;\npub mod state;\npub mod pipeline;\n"),
    ("event/mod.rs", "pub struct EventBatch;\n"),
    ("parse/mod.rs", "use crate::event::EventBatch;\n"),
    ("state/mod.rs", "use crate::{event, metrics};\n// use crate::parse::Old;\n#[cfg(test)]\nmod tests {\n    use crate::parse::Anything;\n}\n"),
    ("metrics.rs", "pub const X: &str = \"x\";\n"),
    ("pipeline/mod.rs", "use crate::parse;\nuse crate::state::Stage;\nfn f() { crate::event::EventBatch; }\n"),
];

#[test]
fn checker_passes_a_clean_tree_ignoring_comments_and_test_modules() {
    let d = fake(CLEAN);
    assert_eq!(check(d.path()), vec![]);
    let (_, imports) = graph(d.path());
    assert!(imports.iter().any(|i| i.from == "state" && i.to == "metrics" && i.line == 1), "{imports:?}");
    assert!(imports.iter().any(|i| i.from == "pipeline" && i.to == "event" && i.line == 3), "inline paths count: {imports:?}");
}

#[test]
fn checker_names_a_stage_importing_another_stage() {
    let mut files = CLEAN.to_vec();
    files.push(("state/dedup.rs", "use std::fmt;\n\nuse crate::parse::eve::EveParser;\n"));
    let d = fake(&files);
    let v = check(d.path());
    assert_eq!(v.len(), 1, "{v:?}");
    let msg = v[0].to_string();
    assert!(matches!(&v[0], Violation::StageToStage(i) if i.from == "state" && i.to == "parse" && i.line == 3), "{v:?}");
    assert!(msg.contains("state/dedup.rs:3") && msg.contains("crate::parse"), "{msg}");
}

#[test]
fn checker_finds_cycles_arrows_up_and_stages_importing_the_top() {
    let mut files = CLEAN.to_vec();
    files.push(("event/time.rs", "fn f() -> crate::state::Thing { todo() }\n"));
    files.push(("parse/stage.rs", "use crate::pipeline::stats::Stats;\n"));
    let d = fake(&files);
    let v = check(d.path());
    assert!(v.iter().any(|x| matches!(x, Violation::FloorUp(i) if i.from == "event" && i.to == "state")), "{v:?}");
    assert!(v.iter().any(|x| matches!(x, Violation::StageToTop(i) if i.from == "parse" && i.to == "pipeline")), "{v:?}");
    // event → state → event, and parse → pipeline → parse.
    let cycles: Vec<&Vec<String>> = v.iter().filter_map(|x| if let Violation::Cycle(c) = x { Some(c) } else { None }).collect();
    assert!(cycles.iter().any(|c| c.contains(&"event".to_string()) && c.contains(&"state".to_string())), "{v:?}");
    assert!(cycles.iter().any(|c| c.contains(&"parse".to_string()) && c.contains(&"pipeline".to_string())), "{v:?}");
}

#[test]
fn checker_reads_grouped_imports() {
    let mut files = CLEAN.to_vec();
    files.push(("parse/x.rs", "use crate::{\n    event::EventBatch,\n    state::Stage,\n};\n"));
    let d = fake(&files);
    let v = check(d.path());
    assert!(matches!(v.as_slice(), [Violation::StageToStage(i)] if i.from == "parse" && i.to == "state"), "{v:?}");
}

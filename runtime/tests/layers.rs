//! The runtime's modules form layers (documented in `runtime/src/lib.rs`): a module may
//! use modules of lower layers (and of its own, without a cycle), never one above it. This
//! test reads every `crate::` path in `runtime/src` and fails on an edge that climbs, or
//! on any cycle between top-level modules, so that the structure stays as documented.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layers as `lib.rs` documents them: lines `//! N. `a`, `b` — what they hold`,
/// lowest first; the modules are the backticked names before the dash.
fn documented_layers() -> BTreeMap<String, usize> {
    let lib = fs::read_to_string(src().join("lib.rs")).expect("read lib.rs");
    let mut layers = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((number, names)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.trim().parse::<usize>() else {
            continue;
        };
        let names = names.split('—').next().unwrap_or("");
        for name in names.split(',') {
            if let Some(name) = name
                .trim()
                .strip_prefix('`')
                .and_then(|n| n.strip_suffix('`'))
            {
                layers.insert(name.to_string(), layer);
            }
        }
    }
    layers
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs`).
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.strip_suffix(".rs") {
        Some("lib") => None,
        Some(m) => Some(m.to_string()),
        None => Some(first),
    }
}

/// The identifier `text` starts with (after spaces).
fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every top-level module `file` refers to through a `crate::` path, outside comments.
fn uses(file: &Path) -> BTreeSet<String> {
    let text = fs::read_to_string(file).expect("read source");
    let mut found = BTreeSet::new();
    let mut add = |name: String| {
        if name.chars().next().is_some_and(|c| c.is_lowercase()) {
            found.insert(name);
        }
    };
    // Inside a multi-line `use crate::{ ... };` group: its items are modules too.
    let mut in_group = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        if in_group {
            add(leading_ident(code));
            in_group = !code.contains("};");
            continue;
        }
        if code.trim() == "use crate::{" {
            in_group = true;
            continue;
        }
        for (at, _) in code.match_indices("crate::") {
            add(leading_ident(&code[at + "crate::".len()..]));
        }
        // `use crate::{a, b::c}` groups on one line.
        if let Some(group) = code.trim().strip_prefix("use crate::{") {
            group.split(',').for_each(|part| add(leading_ident(part)));
        }
    }
    found
}

fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let entry = edges.entry(module.clone()).or_default();
        for used in uses(&file) {
            if used != module {
                entry.insert(used);
            }
        }
    }
    edges
}

#[test]
fn every_module_is_in_a_documented_layer() {
    let layers = documented_layers();
    let modules: BTreeSet<String> = edges().keys().cloned().collect();
    let missing: Vec<&String> = modules
        .iter()
        .filter(|m| !layers.contains_key(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules missing from lib.rs's layers: {missing:?}"
    );
    let stale: Vec<&String> = layers.keys().filter(|m| !modules.contains(*m)).collect();
    assert!(
        stale.is_empty(),
        "lib.rs lists modules that do not exist: {stale:?}"
    );
}

#[test]
fn no_module_uses_a_higher_layer() {
    let layers = documented_layers();
    let mut climbing = Vec::new();
    for (from, tos) in edges() {
        for to in tos {
            if let (Some(a), Some(b)) = (layers.get(&from), layers.get(&to)) {
                if b > a {
                    climbing.push(format!("{from} (layer {a}) uses {to} (layer {b})"));
                }
            }
        }
    }
    assert!(
        climbing.is_empty(),
        "imports that climb a layer:\n{}",
        climbing.join("\n")
    );
}

#[test]
fn modules_have_no_cycles() {
    let edges = edges();
    // Depth-first search with colours; report the first cycle found.
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(m) {
            Some(1) => {
                let at = path.iter().position(|p| p == m).unwrap_or(0);
                let mut cycle = path[at..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(m.to_string(), 1);
        path.push(m.to_string());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

//! The modules of the runtime and of the operators crate form layers (documented in
//! `runtime/src/lib.rs`, `operators/src/lib.rs` and, for their submodules,
//! `runtime/src/state/mod.rs` and `operators/src/window/mod.rs`): a module may use modules of lower layers (and of its
//! own, without a cycle), never one above it. This test reads every `crate::` and
//! `super::` path of both crates and fails on an edge that climbs, or on any cycle between
//! the modules of one scope, so that the structure stays as documented.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules whose layers one file documents.
struct Scope {
    /// The folder the modules live in.
    dir: PathBuf,
    /// The file in `dir` that documents their layers (and declares them).
    doc: &'static str,
    /// The path that names the scope's modules in code: `crate` or `crate::window`.
    prefix: &'static str,
}

impl Scope {
    fn new(crate_dir: &str, sub: &str, doc: &'static str, prefix: &'static str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Scope {
            dir: root.join(crate_dir).join("src").join(sub),
            doc,
            prefix,
        }
    }

    /// A submodule's scope: its items are reached through their own modules, never
    /// through the scope's re-exports.
    fn nested(&self) -> bool {
        self.prefix != "crate"
    }
}

fn scopes() -> Vec<Scope> {
    vec![
        Scope::new("runtime", "", "lib.rs", "crate"),
        Scope::new("runtime", "state", "mod.rs", "crate::state"),
        Scope::new("operators", "", "lib.rs", "crate"),
        Scope::new("operators", "window", "mod.rs", "crate::window"),
    ]
}

/// The layers as the scope's file documents them: lines `//! N. `a`, `b` — what they
/// hold`, lowest first; the modules are the backticked names before the dash.
fn documented_layers(scope: &Scope) -> BTreeMap<String, usize> {
    let doc = fs::read_to_string(scope.dir.join(scope.doc)).expect("read the layers' file");
    let mut layers = BTreeMap::new();
    for line in doc.lines() {
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

/// The module of the scope a file belongs to (`None` for the scope's own file), and
/// whether `super::` in it names the scope's modules (a file right in the scope's folder,
/// or a folder module's `mod.rs`).
fn module_of(scope: &Scope, file: &Path) -> Option<(String, bool)> {
    let rel = file.strip_prefix(&scope.dir).expect("under the scope");
    let mut parts = rel.components();
    let first = parts.next()?.as_os_str().to_str()?.to_string();
    if first == scope.doc {
        return None;
    }
    match first.strip_suffix(".rs") {
        Some(m) => Some((m.to_string(), true)),
        None => {
            let rest: Vec<_> = parts.collect();
            let is_mod = rest.len() == 1 && rest[0].as_os_str() == "mod.rs";
            Some((first, is_mod))
        }
    }
}

/// The identifier `text` starts with (after spaces).
fn leading_ident(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// What a file's paths into the scope name: modules (lowercase), and items named through
/// the scope's re-exports (capitalized).
#[derive(Default)]
struct Uses {
    modules: BTreeSet<String>,
    reexported: BTreeSet<String>,
}

/// Every name `file` reaches through `prefix::` (and `super::` where `super_is_scope`),
/// outside comments.
fn uses(file: &Path, prefix: &str, super_is_scope: bool) -> Uses {
    let text = fs::read_to_string(file).expect("read source");
    let mut found = Uses::default();
    let mut add = |name: String| {
        match name.chars().next() {
            Some(c) if c.is_lowercase() => found.modules.insert(name),
            Some(c) if c.is_uppercase() => found.reexported.insert(name),
            _ => false,
        };
    };
    let mut prefixes = vec![format!("{prefix}::")];
    if super_is_scope {
        prefixes.push("super::".to_string());
    }
    // Inside a multi-line `use prefix::{ ... };` group: its items are names too.
    let mut in_group = false;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        if in_group {
            add(leading_ident(code));
            in_group = !code.contains("};");
            continue;
        }
        for p in &prefixes {
            if code.trim() == format!("use {p}{{") || code.trim() == format!("pub use {p}{{") {
                in_group = true;
            }
            for (at, _) in code.match_indices(p.as_str()) {
                // `crate::window::` is not `crate::` followed by a module of the crate's
                // scope only when the scope is the window's: the longer prefix decides.
                let before = &code[..at];
                if before.ends_with("::") || before.ends_with(|c: char| c.is_alphanumeric()) {
                    continue;
                }
                add(leading_ident(&code[at + p.len()..]));
            }
            // `use prefix::{a, b::c}` groups on one line.
            for lead in [format!("use {p}{{"), format!("pub use {p}{{")] {
                if let Some(group) = code.trim().strip_prefix(lead.as_str()) {
                    group.split(',').for_each(|part| add(leading_ident(part)));
                }
            }
        }
    }
    found
}

/// Per module of the scope, the other modules of the scope it uses; and the files that
/// name items through the scope's re-exports (a nested scope's modules must not).
fn edges(scope: &Scope) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let mut files = Vec::new();
    rust_files(&scope.dir, &mut files);
    let mut modules = BTreeSet::new();
    for file in &files {
        if let Some((m, _)) = module_of(scope, file) {
            modules.insert(m);
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut reexports = Vec::new();
    for file in files {
        let Some((module, super_is_scope)) = module_of(scope, &file) else {
            continue;
        };
        let used = uses(&file, scope.prefix, super_is_scope);
        if scope.nested() && !used.reexported.is_empty() {
            reexports.push(format!("{}: {:?}", file.display(), used.reexported));
        }
        let entry = edges.entry(module.clone()).or_default();
        for m in used.modules {
            if m != module && modules.contains(&m) {
                entry.insert(m);
            }
        }
    }
    (edges, reexports)
}

#[test]
fn every_module_is_in_a_documented_layer() {
    for scope in scopes() {
        let layers = documented_layers(&scope);
        let modules: BTreeSet<String> = edges(&scope).0.keys().cloned().collect();
        let missing: Vec<&String> = modules
            .iter()
            .filter(|m| !layers.contains_key(*m))
            .collect();
        let doc = scope.dir.join(scope.doc);
        assert!(
            missing.is_empty(),
            "modules missing from {}'s layers: {missing:?}",
            doc.display()
        );
        let stale: Vec<&String> = layers.keys().filter(|m| !modules.contains(*m)).collect();
        assert!(
            stale.is_empty(),
            "{} lists modules that do not exist: {stale:?}",
            doc.display()
        );
    }
}

#[test]
fn no_module_uses_a_higher_layer() {
    let mut climbing = Vec::new();
    for scope in scopes() {
        let layers = documented_layers(&scope);
        for (from, tos) in edges(&scope).0 {
            for to in tos {
                if let (Some(a), Some(b)) = (layers.get(&from), layers.get(&to)) {
                    if b > a {
                        climbing.push(format!(
                            "{}: {from} (layer {a}) uses {to} (layer {b})",
                            scope.prefix
                        ));
                    }
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

/// A submodule names the module that defines what it uses: an import through the parent's
/// re-exports hides the edge (and would let a module use one above it unseen).
#[test]
fn submodules_import_from_the_defining_module() {
    let mut through_reexports = Vec::new();
    for scope in scopes() {
        through_reexports.extend(edges(&scope).1);
    }
    assert!(
        through_reexports.is_empty(),
        "items named through the parent module's re-exports:\n{}",
        through_reexports.join("\n")
    );
}

#[test]
fn modules_have_no_cycles() {
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
    for scope in scopes() {
        let edges = edges(&scope).0;
        let mut state = BTreeMap::new();
        for m in edges.keys() {
            if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
                panic!("module cycle in {}: {}", scope.prefix, cycle.join(" -> "));
            }
        }
    }
}

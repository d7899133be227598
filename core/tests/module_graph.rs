//! The core's top-level modules (`verification`, `account`, `delivery`, …)
//! must not import each other both ways: a flow depends on what it stands on,
//! never on what stands on it. This reads the sources, as a reviewer would,
//! and lists every pair of modules whose non-test code names each other
//! (`crate::a::…` in `b` and `crate::b::…` in `a`).
//!
//! Some pairs are still there from before the core was organised by flow
//! (issue 14); they are listed below. A new pair fails this test; so does a
//! listed pair that is gone, so that the list only shrinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Two-way imports not yet taken apart. Remove a line when its pair is gone.
/// Both are the store reading rows into a flow's pure domain types (no I/O,
/// no imports of their own): `verification::lifecycle`'s `State`, and
/// `account::rules`' `Purpose` and `account::policy`'s settings.
const KNOWN: &[(&str, &str)] = &[("account", "store"), ("store", "verification")];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_owned());
    } else if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            rust_files(&entry.path(), out);
        }
    }
}

/// What a file's code outside its `#[cfg(test)]` module names of the crate.
fn named_modules(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or_default();
    let mut named = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        if !name.is_empty() {
            named.insert(name);
        }
    }
    named
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut tops: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("core/src").flatten() {
        let path = entry.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if name != "lib" {
            tops.insert(name, path);
        }
    }
    let mut graph = BTreeMap::new();
    for (top, path) in &tops {
        let mut files = Vec::new();
        rust_files(path, &mut files);
        let mut uses = BTreeSet::new();
        for file in files.iter().filter(|f| f.extension().is_some_and(|e| e == "rs")) {
            let source = fs::read_to_string(file).expect("a source file");
            uses.extend(named_modules(&source).into_iter().filter(|m| m != top && tops.contains_key(m)));
        }
        graph.insert(top.clone(), uses);
    }
    graph
}

#[test]
fn no_two_top_level_modules_import_each_other_beyond_the_known_pairs() {
    let graph = graph();
    assert!(graph.len() >= 10, "read the core's modules: {:?}", graph.keys());
    let mut pairs = BTreeSet::new();
    for (a, uses) in &graph {
        for b in uses {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                pairs.insert((a.clone(), b.clone()));
            }
        }
    }
    let known: BTreeSet<(String, String)> = KNOWN.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    let new: Vec<_> = pairs.difference(&known).collect();
    let gone: Vec<_> = known.difference(&pairs).collect();
    assert!(new.is_empty(), "modules that now import each other both ways: {new:?}; one must not know the other");
    assert!(gone.is_empty(), "pairs no longer two-way (well done): remove them from KNOWN: {gone:?}");
}

#[test]
fn the_reader_sees_imports_as_the_compiler_does() {
    let source =
        "use crate::store::x;\nfn f() { crate::limits::Send {}; }\n#[cfg(test)]\nmod tests { use crate::ops; }";
    let named: Vec<String> = named_modules(source).into_iter().collect();
    assert_eq!(named, ["limits", "store"], "test code is not counted");
}

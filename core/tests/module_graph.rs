//! The core's top-level modules (`verification`, `account`, `delivery`, …),
//! and the service crate's (`services/src`), must not import each other in a
//! cycle: a flow depends on what it stands on, never on what stands on it. This reads the sources, as a reviewer
//! would: a module uses another when its non-test code names it
//! (`crate::b::…` in `a`), and no chain of uses may lead back to where it
//! started.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

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

/// The top-level modules of the crate whose sources are in `src` (relative to
/// this crate), and the others each one uses.
fn graph(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(src);
    let mut tops: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("core/src").flatten() {
        let path = entry.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if name != "lib" && name != "main" {
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

/// A cycle through `start`, if there is one: the modules from `start` back to it.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().cloned().unwrap_or_default();
        for next in graph.get(&here).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

fn assert_acyclic(src: &str) {
    let graph = graph(src);
    assert!(graph.len() >= 10, "read the modules of {src}: {:?}", graph.keys());
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(cycles.is_empty(), "modules of {src} that import each other in a cycle: {cycles:#?}");
}

#[test]
fn no_top_level_modules_of_the_core_import_each_other_in_a_cycle() {
    assert_acyclic("src");
}

/// The service crate's too: configuration, the provider registry, the HTTP
/// edge, the AMQP intake, the operator's CLI.
#[test]
fn no_top_level_modules_of_the_service_import_each_other_in_a_cycle() {
    assert_acyclic("../services/src");
}

#[test]
fn a_cycle_of_three_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .iter()
        .map(|(from, to)| ((*from).to_owned(), BTreeSet::from([(*to).to_owned()])))
        .collect();
    assert_eq!(cycle_through(&graph, "a"), Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]));
    assert_eq!(cycle_through(&graph, "d"), None);
}

#[test]
fn the_reader_sees_imports_as_the_compiler_does() {
    let source =
        "use crate::store::x;\nfn f() { crate::limits::Send {}; }\n#[cfg(test)]\nmod tests { use crate::ops; }";
    let named: Vec<String> = named_modules(source).into_iter().collect();
    assert_eq!(named, ["limits", "store"], "test code is not counted");
}

//! The binary crate (`src/`) is wiring: its files must not import each other in a circle, and
//! the test bed must not be part of it (issue 11). Read from the source text, so a circle
//! fails here before it grows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/`'s top-level modules and, for each, the other top-level modules it names as
/// `crate::NAME` (in `use` lines or paths). `main.rs` and `lib.rs` are the roots, not modules.
fn module_imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect_rust_files(&src, &mut files);
    let modules: BTreeSet<String> = std::fs::read_dir(&src)
        .expect("read src/")
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let stem = path.file_stem()?.to_str()?.to_owned();
            (path.extension().is_some_and(|e| e == "rs") && stem != "main" && stem != "lib")
                .then_some(stem)
        })
        .collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let owner = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| name.trim_end_matches(".rs").to_owned())
            .unwrap();
        if !modules.contains(&owner) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let entry = imports.entry(owner.clone()).or_default();
        for named in crate_paths(&text) {
            if named != owner && modules.contains(&named) {
                entry.insert(named);
            }
        }
    }
    imports
}

fn collect_rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `NAME` in `crate::NAME` and in `use crate::{NAME, ...}` (over several lines too),
/// outside `//` comments.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let identifier = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group's top-level items: split at commas outside nested braces.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(identifier(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 {
                    item.push(c);
                }
            }
            names.insert(identifier(&item));
        } else {
            names.insert(identifier(rest));
        }
    }
    names.remove("");
    names
}

/// One import circle, as the list of modules along it, if there is any.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap();
                let mut circle = path[start..].to_vec();
                circle.push(node.to_owned());
                return Some(circle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, marks, path) {
                return Some(circle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(circle);
        }
    }
    None
}

#[test]
fn the_files_of_src_import_each_other_without_a_circle() {
    let graph = module_imports();
    assert!(
        graph.len() > 3,
        "expected to read src/'s modules, found {graph:?}"
    );
    if let Some(circle) = find_circle(&graph) {
        panic!(
            "src/ has an import circle: {}\nthe whole graph: {graph:#?}",
            circle.join(" -> ")
        );
    }
}

#[test]
fn the_circle_finder_finds_a_planted_circle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_circle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    let circle = find_circle(&graph).expect("a -> b -> c -> a");
    assert_eq!(circle.first(), circle.last());
    assert_eq!(circle.len(), 4);
    assert_eq!(
        crate_paths("use crate::{alpha, beta::X};\nlet x = crate::gamma::f(); // crate::delta"),
        ["alpha", "beta", "gamma"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}

#[test]
fn the_test_bed_is_not_part_of_the_binary_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(
        !src.join("lab").exists() && !src.join("lab.rs").exists(),
        "src/lab belongs in the haldir-lab crate (lab/), not in the production binary"
    );
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    assert!(
        !lib.lines()
            .any(|l| l.trim_start().starts_with("pub mod lab")),
        "src/lib.rs still declares the lab module"
    );
}

//! The modules of `src/` import each other one way only: no module reaches,
//! directly or through others, a module that reaches it back.
//!
//! Edges are read from the code (comments skipped): every `crate::module`
//! path, and every `crate::Name` re-exported at the crate root counts as an
//! import of the module that defines `Name`. A file `src/a/b.rs` belongs to
//! module `a`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// The code of a file without comments (line comments and doc comments).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every identifier that follows `crate::` in `code`, and the names inside
/// `crate::{...}` groups.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// `pub use module::{A, B};` at the root: name → module.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for stmt in code(lib).split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        let names = names.trim().trim_start_matches('{').trim_end_matches('}');
        for name in names.split(',') {
            let name = name.trim();
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            if !name.is_empty() {
                map.insert(name.to_owned(), module.trim().to_owned());
            }
        }
    }
    map
}

fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let reexports = root_reexports(&lib);
    let mut g = Graph::new();
    for file in &files {
        let Some(from) = module_of(src, file) else {
            continue;
        };
        let text = fs::read_to_string(file).expect("source file");
        let deps = g.entry(from.clone()).or_default();
        for name in crate_paths(&code(&text)) {
            let to = if modules.contains(&name) {
                name
            } else if let Some(m) = reexports.get(&name) {
                m.clone()
            } else {
                continue;
            };
            if to != from {
                deps.insert(to);
            }
        }
    }
    g
}

/// A cycle in `g`, as the list of modules along it, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        g: &Graph,
        m: &str,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(m.to_owned(), Mark::Open);
        path.push(m.to_owned());
        for next in g.get(m).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|p| p == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(g, next, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(m.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for m in g.keys() {
        if marks.get(m).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(g, m, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn modules_import_each_other_one_way() {
    let g = graph(&src());
    if let Some(cycle) = find_cycle(&g) {
        panic!("import cycle among modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_facade_sits_on_top_and_shared_at_the_bottom() {
    let g = graph(&src());
    let importers = |m: &str| -> Vec<&String> {
        g.iter()
            .filter(|(_, deps)| deps.contains(m))
            .map(|(k, _)| k)
            .collect()
    };
    assert!(
        importers("redlock").is_empty(),
        "no module may import the facade: {:?}",
        importers("redlock")
    );
    let shared = &g["shared"];
    for op in [
        "acquire", "release", "extend", "lock", "round", "lease", "fence",
    ] {
        assert!(!shared.contains(op), "shared imports {op}");
    }
    assert!(g["acquire"].contains("shared") && g["round"].contains("shared"));
}

#[test]
fn the_reader_sees_every_kind_of_import() {
    let text = "use crate::a::X;\nuse crate::{b, c::Y};\nfn f() { crate::d::g(); crate::Lock::new(); }\n// crate::e\n";
    let paths = crate_paths(&code(text));
    assert_eq!(paths, ["a", "b", "c", "d", "Lock"]);
    let lib = "pub use lock::Lock;\npub use error::{Failure,\n    LockError};\n";
    let map = root_reexports(lib);
    assert_eq!(map["Lock"], "lock");
    assert_eq!(map["LockError"], "error");
}

#[test]
fn a_cycle_is_found() {
    let edges = [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")];
    let mut g = Graph::new();
    for (from, to) in edges {
        g.entry(from.into()).or_default().insert(to.into());
    }
    let cycle = find_cycle(&g).expect("a -> b -> c -> a is a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    g.get_mut("c").map(|d| d.remove("a"));
    assert_eq!(find_cycle(&g), None);
}

#[test]
fn a_cycle_written_into_a_copy_of_src_is_found() {
    // The real tree with one back edge added: `shared` importing the
    // facade closes a loop through every operation.
    let dir = std::env::temp_dir().join(format!("redlock-layers-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    copy_dir(&src(), &dir);
    let shared = dir.join("shared.rs");
    let mut text = fs::read_to_string(&shared).expect("shared.rs");
    text.push_str("\n#[allow(unused_imports)]\nuse crate::redlock::Redlock as _Back;\n");
    fs::write(&shared, text).expect("write shared.rs");
    let cycle = find_cycle(&graph(&dir));
    let _ = fs::remove_dir_all(&dir);
    let cycle = cycle.expect("the added back edge makes a cycle");
    assert!(cycle.contains(&"shared".to_owned()) && cycle.contains(&"redlock".to_owned()));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let path = entry.expect("entry").path();
        let target = to.join(path.file_name().expect("file name"));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            fs::copy(&path, &target).expect("copy file");
        }
    }
}

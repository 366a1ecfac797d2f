//! The folders of src/ are the layers, and each may import only the ones below it (see the
//! table in src/lib.rs). This reads every source file and fails on an import that points
//! the wrong way, so a cycle cannot come back unnoticed. (`unsafe` outside `sys` and `ffi` is
//! already a build error: `#![deny(unsafe_code)]`.) It also keeps global state out of the
//! layers below the front ends: no mutable `static`, no `thread_local!`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// layer -> the layers it may import.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("sys", &[]),
    ("request", &["model", "sys"]),
    ("source", &["model", "sys"]),
    ("setup", &["model", "source"]),
    ("answer", &["model", "request", "source", "setup"]),
    // agent2 -> model: the one quoting helper for what its messages echo (model::text).
    ("agent2", &["model"]),
    // ffi -> request: the module front end parses the key, then calls answer.
    ("ffi", &["answer", "model", "request", "setup", "sys"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The layers a file names as `crate::<layer>` in code (comments left out).
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen_layers = BTreeSet::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let Some(layer) = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .filter(|first| relative.components().count() > 1 && !first.ends_with(".rs"))
        else {
            continue; // lib.rs and the binaries' roots assemble the layers
        };
        if layer == "bin" {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(name, _)| *name == layer) else {
            panic!("src/{layer}/ is not in the layer table of tests/layers.rs");
        };
        seen_layers.insert(layer.to_owned());
        for import in imports(&fs::read_to_string(file).unwrap()) {
            if import != layer && !allowed.contains(&import.as_str()) {
                wrong.push(format!("{}: crate::{import}", relative.display()));
            }
        }
    }
    assert!(seen_layers.len() >= 7, "layers found: {seen_layers:?}");
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

/// The layers whose state must be explicit: the front ends (`ffi`, src/bin over `agent2`) own
/// the process's and the workers' state and pass it in.
const STATELESS: &[&str] = &["model", "request", "source", "answer", "setup"];

/// Types that make a `static` mutable state (an immutable table is allowed).
const INTERIOR_MUTABILITY: &[&str] = &[
    "Atomic", "Cell", "Mutex", "RwLock", "OnceCell", "OnceLock", "Lazy", "Once",
];

/// The global state a file declares, one line each (comments left out).
fn global_state(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("").trim();
        let declares_static = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|word| word == "static")
            && !code.contains("'static");
        let mutable = code.contains("static mut")
            || INTERIOR_MUTABILITY.iter().any(|kind| code.contains(kind));
        if code.contains("thread_local!") || (declares_static && mutable) {
            found.push(code.to_owned());
        }
    }
    found
}

#[test]
fn no_global_state_below_the_front_ends() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for layer in STATELESS {
        let mut files = Vec::new();
        rust_files(&src.join(layer), &mut files);
        assert!(!files.is_empty(), "src/{layer}/ has no files");
        for file in files {
            for line in global_state(&fs::read_to_string(&file).unwrap()) {
                wrong.push(format!("{}: {line}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "global state below the front ends (pass it in: answer::Context, Process, Worker):\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_state_scanner_sees_statics() {
    let found = global_state(
        "static TABLE: [u8; 2] = [1, 2];\nstatic COUNT: AtomicU64 = AtomicU64::new(0);\n\
         thread_local! {\n// static X: Cell<u8>\nfn f() -> &'static str { \"\" }\nstatic mut N: u8 = 0;",
    );
    assert_eq!(
        found,
        [
            "static COUNT: AtomicU64 = AtomicU64::new(0);",
            "thread_local! {",
            "static mut N: u8 = 0;"
        ]
    );
}

#[test]
fn the_scanner_sees_imports() {
    let found = imports(
        "use crate::model::state::TcpState;\n// crate::ffi in a comment\nlet x = crate::sys::f();",
    );
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["model", "sys"]);
}

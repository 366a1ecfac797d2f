//! The folders of src/ are the layers, and each may import only the ones below it (see the
//! table in src/lib.rs). This reads every source file and fails on an import that points
//! the wrong way, so a cycle cannot come back unnoticed. (`unsafe` outside `sys` and `ffi` is
//! already a build error: `#![deny(unsafe_code)]`.)

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
    ("agent2", &[]),
    ("ffi", &["answer", "model", "setup", "sys"]),
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

#[test]
fn the_scanner_sees_imports() {
    let found = imports(
        "use crate::model::state::TcpState;\n// crate::ffi in a comment\nlet x = crate::sys::f();",
    );
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["model", "sys"]);
}

//! The files rendered from the key registry (src/request/registry.rs), compared with the
//! committed ones: a key added to the registry and not to these files fails here. Run with
//! `LS_REGENERATE=1 cargo test --test generated` to rewrite them instead.
//!
//! Also checked against the registry, as they are not rendered: the key literals of the
//! template generator (conf/templates/generate.py) each parse, and fuzz/run.sh takes its key
//! seeds from tests/lib/keys.json.

use std::fs;
use std::path::{Path, PathBuf};

use linux_status::registry::{render, KEYS};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regenerate() -> bool {
    std::env::var_os("LS_REGENERATE").is_some_and(|value| value == "1")
}

/// Compares (or, regenerating, writes) `path` with `expected`.
fn check(path: &Path, expected: &str) {
    let current = fs::read_to_string(path).unwrap_or_default();
    if current == expected {
        return;
    }
    if regenerate() {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("create the directory");
        }
        fs::write(path, expected).expect("write the generated file");
        return;
    }
    panic!(
        "{} is not what src/request/registry.rs renders; run `LS_REGENERATE=1 cargo test --test generated` and commit the result",
        path.display()
    );
}

/// `text` with the lines strictly between the line starting `begin` and the line starting
/// `end` replaced by `block`.
fn with_block(text: &str, begin: &str, end: &str, block: &str, file: &str) -> String {
    let start = text
        .find(begin)
        .unwrap_or_else(|| panic!("{file}: no line starting {begin:?}"));
    let after_begin = start + text[start..].find('\n').expect("begin line ends") + 1;
    let stop = after_begin
        + text[after_begin..]
            .find(end)
            .unwrap_or_else(|| panic!("{file}: no line starting {end:?} after {begin:?}"));
    format!("{}{}{}", &text[..after_begin], block, &text[stop..])
}

#[test]
fn keys_json_is_the_registry() {
    check(&root().join("tests/lib/keys.json"), &render::keys_json());
}

#[test]
fn the_readme_key_table_is_the_registry() {
    let path = root().join("README.md");
    let text = fs::read_to_string(&path).expect("README.md");
    let expected = with_block(
        &text,
        "<!-- keys:begin",
        "<!-- keys:end",
        &render::readme_table(),
        "README.md",
    );
    check(&path, &expected);
}

#[test]
fn the_fuzz_dictionary_names_every_metric() {
    let path = root().join("fuzz/dict/key_grammar.dict");
    let text = fs::read_to_string(&path).expect("key_grammar.dict");
    let expected = with_block(
        &text,
        "# keys:begin",
        "# keys:end",
        &render::fuzz_dict_metrics(),
        "key_grammar.dict",
    );
    check(&path, &expected);
}

#[test]
fn the_fuzz_seeds_come_from_keys_json() {
    let script = fs::read_to_string(root().join("fuzz/run.sh")).expect("fuzz/run.sh");
    assert!(
        script.contains("tests/lib/keys.json"),
        "fuzz/run.sh seeds key_grammar from tests/lib/keys.json"
    );
}

/// The parameters of a `linux_status[a,b,...]` literal (no quoting in these literals).
fn params_of(key: &str) -> Vec<&[u8]> {
    let inner = &key["linux_status[".len()..key.len() - 1];
    inner.split(',').map(str::as_bytes).collect()
}

#[test]
fn the_template_generator_uses_registry_keys() {
    let text = fs::read_to_string(root().join("conf/templates/generate.py")).expect("generate.py");
    let mut found = 0;
    let mut rest = text.as_str();
    while let Some(at) = rest.find("linux_status[") {
        let candidate = &rest[at..];
        rest = &rest[at + 1..];
        let Some(end) = candidate.find(']') else {
            continue;
        };
        let key = &candidate[..=end];
        if key.contains('{') || key.contains('"') || key.contains('\n') {
            continue; // a macro or a format string, not a literal key
        }
        let params = params_of(key);
        linux_status::parse_params(&params)
            .unwrap_or_else(|error| panic!("generate.py names {key}: {error}"));
        found += 1;
    }
    assert!(found > 0, "generate.py names no linux_status[...] key");
}

#[test]
fn every_sample_is_a_registry_key() {
    for entry in KEYS {
        let params = params_of(entry.sample);
        assert!(
            linux_status::parse_params(&params).is_ok(),
            "{}",
            entry.sample
        );
    }
}

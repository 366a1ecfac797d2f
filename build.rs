//! Generates Rust bindings for the project's own ABI header, include/zbx_module_abi.h.
//!
//! bindgen emits compile-time layout assertions for every struct; src/ffi/abi.rs adds the
//! offsets written in the ABI note, so the build fails if header and note ever disagree.

use std::env;
use std::path::PathBuf;

fn main() {
    let header = "include/zbx_module_abi.h";
    println!("cargo:rerun-if-changed={header}");

    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_type("zbx_agent_request|zbx_agent_result|zbx_metric|zbx_item_function")
        .allowlist_var("ZBX_MODULE_.*|SYSINFO_RET_.*|CF_.*|AR_.*")
        // The C macros are ints; typed as i32 they compare and return without casts.
        .default_macro_constant_type(bindgen::MacroTypeVariation::Signed)
        .layout_tests(true)
        .derive_default(false)
        .derive_debug(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .unwrap_or_else(|err| panic!("bindgen failed on {header}: {err}"));

    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("zbx_module_abi.rs"))
        .expect("write bindings");
}

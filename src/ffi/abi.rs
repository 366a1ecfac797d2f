//! The generated ABI bindings (from include/zbx_module_abi.h) and compile-time checks that
//! they match the layouts in the Zabbix module ABI note.
//!
//! bindgen already asserts each struct against what clang computed for the header; the
//! assertions here pin the header itself to the offsets an agent uses, so an edit to the
//! header that would shift a field cannot build.

#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/zbx_module_abi.rs"));

use core::mem::{offset_of, size_of};

// Request prefix shared by every agent from 3.4 to 7.4 (sizeof 40 on 3.4/4.0).
const _: () = {
    assert!(offset_of!(zbx_agent_request, key) == 0);
    assert!(offset_of!(zbx_agent_request, nparam) == 8);
    assert!(offset_of!(zbx_agent_request, params) == 16);
    assert!(offset_of!(zbx_agent_request, lastlogsize) == 24);
    assert!(offset_of!(zbx_agent_request, mtime) == 32);
    assert!(size_of::<zbx_agent_request>() == 40);
};

// Result as allocated by agents up to 6.x (64 bytes); 7.x appends 8 bytes we never touch.
const _: () = {
    assert!(offset_of!(zbx_agent_result, lastlogsize) == 0);
    assert!(offset_of!(zbx_agent_result, ui64) == 8);
    assert!(offset_of!(zbx_agent_result, dbl) == 16);
    assert!(offset_of!(zbx_agent_result, str_) == 24);
    assert!(offset_of!(zbx_agent_result, text) == 32);
    assert!(offset_of!(zbx_agent_result, msg) == 40);
    assert!(offset_of!(zbx_agent_result, log) == 48);
    assert!(offset_of!(zbx_agent_result, type_) == 56);
    assert!(offset_of!(zbx_agent_result, mtime) == 60);
    assert!(size_of::<zbx_agent_result>() == 64);
};

// Item table entry: 32 bytes in every version.
const _: () = {
    assert!(offset_of!(zbx_metric, key) == 0);
    assert!(offset_of!(zbx_metric, flags) == 8);
    assert!(offset_of!(zbx_metric, function) == 16);
    assert!(offset_of!(zbx_metric, test_param) == 24);
    assert!(size_of::<zbx_metric>() == 32);
};

// The constants an agent compares against.
const _: () = {
    assert!(ZBX_MODULE_API_VERSION == 2);
    assert!(ZBX_MODULE_OK == 0 && ZBX_MODULE_FAIL == -1);
    assert!(SYSINFO_RET_OK == 0 && SYSINFO_RET_FAIL == 1);
    assert!(CF_HAVEPARAMS == 0x01);
    assert!(AR_UINT64 == 0x01 && AR_TEXT == 0x08 && AR_MESSAGE == 0x20);
};

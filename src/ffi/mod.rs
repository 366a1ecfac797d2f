//! The C boundary: every `extern "C"` function and every `unsafe` block of the module.
//!
//! Each exported function runs everything it does, storing the result included, inside
//! [`guard`], which catches any panic so that none unwinds into the agent (since Rust 1.81 a
//! panic escaping `extern "C"` aborts, and a crash in one worker stops the whole agent). The
//! panic path cannot fail in turn: it formats nothing and prints nothing but a fixed message
//! written with `write(2)` (`eprintln!` itself panics when stderr is closed or full), then
//! stores a fixed error. Item handlers turn the safe core's `Result` into the agent's result
//! struct: a value on success; on failure SYSINFO_RET_FAIL with a message. Every string handed
//! to the agent is allocated with `malloc`, because the agent releases it with `free()`.
//!
//! Contract with the agent (see include/zbx_module_abi.h):
//! - the request's `key`, `nparam` and `params` are read, nothing past byte 36 of it;
//! - the result's `type`, `ui64`, `text` and `msg` are written, nothing past byte 64;
//! - parameters are never written to; they are copied out as byte slices for the call.

mod abi;
pub mod startup;

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_uint, CStr};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use once_cell::sync::OnceCell;

use crate::answer::error::{Event, EventSink};
use crate::answer::netns::NetnsSnapshot;
use crate::answer::snapshot::SharedSnapshot;
use crate::answer::{self, Context, ItemValue, Process, Worker};
use crate::model::deadline::Deadline;
use crate::request::key::parse_params;
use crate::setup::config;
use crate::setup::settings::{self, Settings, DEFAULT_TIMEOUT_SECONDS};

pub use abi::{zbx_agent_request, zbx_agent_result, zbx_metric};

/// The module's process state. The C ABI forces it to be global: the agent calls plain
/// functions with no context pointer. Fixed in `zbx_module_init`, before the agent forks its
/// workers, so each worker starts with what the main process found (a netlink refusal
/// included); a worker that later finds netlink refused records it in its own copy.
struct Module {
    settings: Settings,
    process: Process,
    /// The snapshot page every worker shares, if the kernel mapped it.
    shared: Option<&'static SharedSnapshot>,
    /// The per-namespace tables every worker shares, if the kernel mapped them.
    netns_shared: Option<&'static NetnsSnapshot>,
}

static MODULE: OnceCell<Module> = OnceCell::new();
/// The agent's Timeout, from `zbx_module_item_timeout` (before the fork, like init).
static TIMEOUT_SECONDS: AtomicU32 = AtomicU32::new(DEFAULT_TIMEOUT_SECONDS);

thread_local! {
    /// The calling worker's buffers and caches. An agent worker is one process calling items
    /// from one thread; a thread-local keeps that true for any caller.
    static WORKER: RefCell<Worker> = RefCell::new(Worker::default());
}

/// The module's settings, or the defaults if init never ran (a test harness).
fn module() -> &'static Module {
    MODULE.get_or_init(|| Module {
        settings: Settings::defaults(),
        process: Process::new(),
        shared: None,
        netns_shared: None,
    })
}

/// The module's events go to stderr, which the agent sends to its log file (or, under
/// systemd, to the journal); a closed or full stderr is ignored (`eprintln!` would panic
/// there, and a log line is not worth an item).
struct AgentLog;

impl EventSink for AgentLog {
    fn report(&self, event: &Event<'_>) {
        let _ = writeln!(std::io::stderr(), "{event}");
    }
}

/// Answers one item with the module's state: parse, answer, render the error.
fn answer_item(params: &[&[u8]]) -> Result<ItemValue, String> {
    let request = parse_params(params).map_err(|error| error.message().to_owned())?;
    let module = module();
    let settings = &module.settings;
    let settings_from = settings.config_path.path.to_string_lossy();
    // The agent's Timeout, already at least one second (zbx_module_item_timeout).
    let timeout = Duration::from_secs(u64::from(TIMEOUT_SECONDS.load(Ordering::Relaxed)));
    let context = Context {
        sources: &settings.tables.sources,
        backend: settings.backend(),
        snapshot_lifetime: settings.config.snapshot_lifetime,
        shared_snapshot: module.shared,
        netns_table_interval: settings.config.netns_table_interval,
        netns_snapshot: module.netns_shared,
        process: &module.process,
        deadline: Deadline::after(timeout),
        settings_from: &settings_from,
        settings_present: settings.config_present,
        api_version: startup::MODULE_API_VERSION,
        events: &AgentLog,
    };
    WORKER.with(|cell| {
        let mut worker = cell
            .try_borrow_mut()
            .map_err(|_| "Internal error: the worker state is already in use.".to_owned())?;
        answer::answer(&request, &context, &mut worker).map_err(|error| error.to_string())
    })
}

/// Runs `body`; on a panic writes `message` to stderr and returns `on_panic()`, which must
/// not panic itself (it only returns a constant or stores a fixed text).
fn guard<T>(body: impl FnOnce() -> T, message: &'static [u8], on_panic: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            // Dropping the payload runs its destructor, which could panic: keep it.
            std::mem::forget(payload);
            write_stderr(message);
            on_panic()
        }
    }
}

/// Writes a fixed message to fd 2, ignoring every error (stderr may be closed or full).
fn write_stderr(message: &[u8]) {
    // SAFETY: write(2) reads at most `message.len()` bytes from a live slice; a bad or closed
    // descriptor only makes it return -1, which is ignored on purpose.
    let _ = unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
}

const PANIC_IN_ITEM: &[u8] = b"linux_status: internal error (panic) in an item; it was answered ZBX_NOTSUPPORTED; please report it\n";
const PANIC_IN_INIT: &[u8] =
    b"linux_status: internal error (panic) at init; the module refused to load; please report it\n";
const PANIC_ELSEWHERE: &[u8] =
    b"linux_status: internal error (panic) in a module call; please report it\n";

/// Copies `text` into `malloc`ed memory with a NUL terminator, turning interior NULs into
/// `?` (a C string cannot hold them). Null if `malloc` fails.
fn malloc_c_string(text: &str) -> *mut c_char {
    let bytes = text.as_bytes();
    // SAFETY: malloc has no preconditions; the result is checked for null before use.
    let memory = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
    if memory.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: `memory` points to bytes.len() + 1 writable bytes that nothing else aliases.
    let target = unsafe { std::slice::from_raw_parts_mut(memory, bytes.len() + 1) };
    for (slot, &byte) in target.iter_mut().zip(bytes) {
        *slot = if byte == 0 { b'?' } else { byte };
    }
    target[bytes.len()] = 0;
    memory.cast()
}

/// The snapshot page every worker shares, mapped before the agent forks them; None if the
/// kernel refuses (the workers then keep per-worker caches).
fn map_shared_snapshot() -> Option<&'static SharedSnapshot> {
    // SAFETY: SharedSnapshot is atomic integers only, for which all-zero bytes are a valid,
    // empty record, and it holds no pointers: it may live in memory shared by processes.
    unsafe { crate::sys::shared_memory::map_shared_zeroed::<SharedSnapshot>() }
}

/// The per-namespace table page (320 KiB, touched only where namespaces land), mapped before
/// the fork like the snapshot page; None if the kernel refuses (each worker then reads the
/// tables itself, still at most once per request).
fn map_netns_snapshot() -> Option<&'static NetnsSnapshot> {
    // SAFETY: NetnsSnapshot is atomic integers only (slots of the snapshot protocol), for
    // which all-zero bytes are valid empty slots, and holds no pointers.
    unsafe { crate::sys::shared_memory::map_shared_zeroed::<NetnsSnapshot>() }
}

/// Mandatory: the module API version this module implements.
#[no_mangle]
pub extern "C" fn zbx_module_api_version() -> c_int {
    guard(|| abi::ZBX_MODULE_API_VERSION, PANIC_ELSEWHERE, || -1)
}

// The number linux_status[info] reports is the one the agent is told.
const _: () = assert!(abi::ZBX_MODULE_API_VERSION == startup::MODULE_API_VERSION);

/// Called in the agent's main process, before it forks the workers: reads the module
/// configuration (a bad or unreadable file makes the agent refuse to start, with our message
/// on its stderr/log), checks which backend answers and logs one line saying so. Calling it
/// again changes nothing (the settings are fixed and the shared page mapped once).
#[no_mangle]
pub extern "C" fn zbx_module_init() -> c_int {
    guard(
        || {
            let loaded = MODULE.get_or_try_init(|| {
                Settings::load(
                    std::env::var_os(settings::PROC_NET_DIR_VARIABLE),
                    std::env::var_os(config::CONFIG_PATH_VARIABLE),
                )
                .map(|settings| Module {
                    settings,
                    process: Process::new(),
                    shared: map_shared_snapshot(),
                    netns_shared: map_netns_snapshot(),
                })
            });
            match loaded {
                Ok(module) => {
                    let line = startup::probe_backend(&module.settings, &module.process);
                    let _ = writeln!(std::io::stderr(), "{line}");
                    abi::ZBX_MODULE_OK
                }
                Err(error) => {
                    let _ = writeln!(std::io::stderr(), "{error}");
                    abi::ZBX_MODULE_FAIL
                }
            }
        },
        PANIC_IN_INIT,
        || abi::ZBX_MODULE_FAIL,
    )
}

/// Called when the agent shuts down. Nothing to release: no files are held open between
/// calls and the worker state goes with the process.
#[no_mangle]
pub extern "C" fn zbx_module_uninit() -> c_int {
    guard(
        || abi::ZBX_MODULE_OK,
        PANIC_ELSEWHERE,
        || abi::ZBX_MODULE_FAIL,
    )
}

/// Receives the agent's `Timeout`; scans that run past it fail instead of blocking.
#[no_mangle]
pub extern "C" fn zbx_module_item_timeout(timeout: c_int) {
    guard(
        || {
            let seconds = settings::agent_timeout(timeout).as_secs();
            TIMEOUT_SECONDS.store(
                u32::try_from(seconds).unwrap_or(u32::MAX),
                Ordering::Relaxed,
            )
        },
        PANIC_ELSEWHERE,
        || (),
    )
}

/// The item table. The agent rewrites `flags` in place, so it must be a `static mut`
/// (writable memory); it ends with an all-null entry.
static mut ITEMS: [zbx_metric; 2] = [
    zbx_metric {
        key: c"linux_status".as_ptr(),
        flags: abi::CF_HAVEPARAMS as c_uint,
        function: Some(linux_status_item),
        test_param: c"tcp_status,LISTEN".as_ptr(),
    },
    zbx_metric {
        key: ptr::null(),
        flags: 0,
        function: None,
        test_param: ptr::null(),
    },
];

/// Hands the agent the item table (it lives for the life of the process).
#[no_mangle]
pub extern "C" fn zbx_module_item_list() -> *mut zbx_metric {
    // Taking the address creates no reference, so no aliasing rule is involved.
    guard(
        || (&raw mut ITEMS).cast::<zbx_metric>(),
        PANIC_ELSEWHERE,
        ptr::null_mut,
    )
}

/// The `linux_status` item handler.
unsafe extern "C" fn linux_status_item(
    request: *mut zbx_agent_request,
    result: *mut zbx_agent_result,
) -> c_int {
    if result.is_null() {
        return abi::SYSINFO_RET_FAIL;
    }
    guard(
        || {
            // SAFETY: the agent passes a valid request whose params stay alive and
            // unmodified for the whole call; read_params checks nulls and counts.
            let outcome = unsafe { read_params(request) }.and_then(|params| answer_item(&params));
            // SAFETY: `result` is non-null and points to the agent's zero-filled result, at
            // least 64 bytes long, which the agent does not touch during the call.
            store_outcome(unsafe { &mut *result }, outcome)
        },
        PANIC_IN_ITEM,
        || {
            // SAFETY: as above; the body's borrow of the result ended with its unwinding.
            store_failure(
                unsafe { &mut *result },
                "Internal error in linux_status (a panic); please report it.",
            )
        },
    )
}

/// Borrows the request's parameters as byte slices.
///
/// # Safety
/// `request` is null or points to a valid request whose `params` holds `nparam` pointers
/// to NUL-terminated strings that outlive the returned slices.
unsafe fn read_params<'a>(request: *const zbx_agent_request) -> Result<Vec<&'a [u8]>, String> {
    // SAFETY: the caller guarantees `request` is null or valid for reads.
    let Some(request) = (unsafe { request.as_ref() }) else {
        return Err("Internal error: the agent passed no request.".to_owned());
    };
    let count = usize::try_from(request.nparam)
        .map_err(|_| format!("Invalid parameter count {} from the agent.", request.nparam))?;
    if count == 0 {
        return Ok(Vec::new());
    }
    if request.params.is_null() {
        return Err("Internal error: the agent passed no parameter list.".to_owned());
    }
    let mut params = Vec::with_capacity(count);
    for index in 0..count {
        // SAFETY: `params` holds `count` entries (caller's guarantee).
        let param = unsafe { *request.params.add(index) };
        if param.is_null() {
            params.push(&b""[..]);
        } else {
            // SAFETY: each non-null entry is a NUL-terminated string that outlives 'a.
            params.push(unsafe { CStr::from_ptr(param) }.to_bytes());
        }
    }
    Ok(params)
}

/// Writes a value or an error message into the agent's result.
fn store_outcome(result: &mut zbx_agent_result, outcome: Result<ItemValue, String>) -> c_int {
    match outcome {
        Ok(ItemValue::Unsigned(value)) => {
            result.ui64 = value;
            result.type_ |= abi::AR_UINT64;
            abi::SYSINFO_RET_OK
        }
        Ok(ItemValue::Text(text)) => {
            let text = malloc_c_string(&text);
            if text.is_null() {
                return store_failure(result, "Out of memory for the result.");
            }
            result.text = text;
            result.type_ |= abi::AR_TEXT;
            abi::SYSINFO_RET_OK
        }
        Err(message) => store_failure(result, &message),
    }
}

fn store_failure(result: &mut zbx_agent_result, message: &str) -> c_int {
    let message = malloc_c_string(message);
    if !message.is_null() {
        result.msg = message;
        result.type_ |= abi::AR_MESSAGE;
    }
    abi::SYSINFO_RET_FAIL
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed_result() -> zbx_agent_result {
        // SAFETY: the result is plain data for which all-zero is the agent's initial state.
        unsafe { std::mem::zeroed() }
    }

    fn take_c_string(pointer: *mut c_char) -> String {
        assert!(!pointer.is_null());
        // SAFETY: pointer came from malloc_c_string: NUL-terminated and malloc'ed.
        let text = unsafe { CStr::from_ptr(pointer) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: allocated with malloc, freed once.
        unsafe { libc::free(pointer.cast()) };
        text
    }

    #[test]
    fn c_strings_replace_interior_nuls() {
        assert_eq!(take_c_string(malloc_c_string("a\0b")), "a?b");
        assert_eq!(take_c_string(malloc_c_string("")), "");
    }

    #[test]
    fn the_guard_turns_a_panic_into_its_fallback() {
        let value = guard(
            || -> i32 { panic!("boom") },
            b"linux_status: unit test panic (expected)\n",
            || 7,
        );
        assert_eq!(value, 7);
    }

    #[test]
    fn a_panicking_item_still_stores_a_fixed_error() {
        let mut result = zeroed_result();
        let code = guard(
            || -> c_int { panic!("boom") },
            b"linux_status: unit test panic (expected)\n",
            || {
                store_failure(
                    &mut result,
                    "Internal error in linux_status (a panic); please report it.",
                )
            },
        );
        assert_eq!(code, abi::SYSINFO_RET_FAIL);
        assert_eq!(result.type_, abi::AR_MESSAGE);
        assert!(take_c_string(result.msg).starts_with("Internal error"));
    }

    #[test]
    fn failures_set_a_message_and_fail() {
        let mut result = zeroed_result();
        let code = store_outcome(&mut result, Err("bad key".into()));
        assert_eq!(code, abi::SYSINFO_RET_FAIL);
        assert_eq!(result.type_, abi::AR_MESSAGE);
        assert_eq!(take_c_string(result.msg), "bad key");
    }

    #[test]
    fn values_set_their_type_bit() {
        let mut result = zeroed_result();
        let code = store_outcome(&mut result, Ok(ItemValue::Unsigned(42)));
        assert_eq!(code, abi::SYSINFO_RET_OK);
        assert_eq!((result.type_, result.ui64), (abi::AR_UINT64, 42));
        assert!(result.msg.is_null());
    }

    #[test]
    fn the_item_table_is_what_the_agent_expects() {
        let table = zbx_module_item_list();
        // SAFETY: the table has two entries and lives forever.
        let entries = unsafe { std::slice::from_raw_parts(table, 2) };
        // SAFETY: the key is a static C string.
        let key = unsafe { CStr::from_ptr(entries[0].key) };
        assert_eq!(key.to_bytes(), b"linux_status");
        assert_eq!(entries[0].flags, abi::CF_HAVEPARAMS as c_uint);
        assert!(entries[0].function.is_some());
        assert!(entries[1].key.is_null());
        assert_eq!(zbx_module_api_version(), 2);
    }
}

//! Fuzz target: the key grammar (`key::parse_params`) and the whole item path
//! (`item::answer`, `item::execute`) on any parameter list.
//!
//! The input is a list of parameters, each ended by a NUL byte (the agent hands the module
//! NUL-terminated C strings, so a parameter never contains NUL); bytes after the last NUL
//! form one more parameter. The empty input is `linux_status` without brackets (no
//! parameters), "\0" is `linux_status[]` (one empty parameter).
//!
//! The tables are the fixture tests/fixtures/mixed-small (plus a small netstat), never the
//! machine's /proc: the process's settings are fixed to a copy of it before the first input,
//! and `execute` is given the same sources. Checked: no panic; `answer` agrees with
//! `parse_params` + `execute`; an error message is non-empty, NUL-free and at most
//! MAX_MESSAGE bytes whatever the input size; a text value is NUL-free; an unfiltered state
//! count equals the fixture's `expected` count, a filtered one is at most that; only a
//! `tcp_ext` request may fail on the fixture (unknown counter).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use linux_status::proc::ProcSources;
use linux_status::{
    answer, execute, parse_params, Backend, Context, Deadline, ItemRequest, ItemValue, TcpState,
};

#[path = "../../tests/common/fixture_expected.rs"]
#[allow(dead_code)] // this target reads only a good fixture
mod fixture_expected;
use fixture_expected::{parse_expected, Expected};

/// Upper bound for any error message (the agent stores it; the frontend shows it).
const MAX_MESSAGE: usize = 1024;

/// A /proc/net/netstat with a few TcpExt counters (the fixture has none of its own).
const NETSTAT: &str = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPTimeouts\n\
TcpExt: 0 7 9 1234\n\
IpExt: InNoRoutes InTruncatedPkts\n\
IpExt: 0 0\n";

struct Fixture {
    sources: ProcSources,
    counts: Vec<(TcpState, u64)>,
}

/// mixed-small's tcp and tcp6 plus NETSTAT, copied into a private temporary directory that
/// becomes the process's sources (as LINUX_STATUS_PROC_NET_DIR would), with no module
/// configuration (defaults; the directory forces the proc backend).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let original =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mixed-small");
        let dir = std::env::temp_dir().join(format!("linux_status_fuzz_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary fixture directory");
        for file in ["tcp", "tcp6"] {
            std::fs::copy(original.join(file), dir.join(file)).expect("copy fixture");
        }
        std::fs::write(dir.join("netstat"), NETSTAT).expect("write netstat");
        let text =
            std::fs::read_to_string(original.join("expected")).expect("fixture expected file");
        let Expected::Counts(counts) = parse_expected(&text, "mixed-small/expected") else {
            panic!("mixed-small/expected lists counts");
        };
        // An empty configuration file of our own: the defaults, whatever the host has.
        let config = dir.join("linux_status.conf");
        std::fs::write(&config, "").expect("write module configuration");
        let settings = linux_status::init(
            Some(dir.clone().into_os_string()),
            Some(config.into_os_string()),
            || None,
        )
        .expect("settings");
        assert_eq!(
            settings.sources,
            ProcSources::in_dir(&dir),
            "sources fixed to the fixture"
        );
        // The fixture directory forces the /proc backend.
        assert_eq!(settings.backend(), Backend::Proc);
        Fixture {
            sources: settings.sources.clone(),
            counts,
        }
    })
}

fn check_message(message: &str, params: &[&[u8]]) {
    assert!(!message.is_empty(), "empty error message for {params:?}");
    assert!(!message.contains('\0'), "NUL in error message {message:?}");
    assert!(
        message.len() <= MAX_MESSAGE,
        "error message of {} bytes (> {MAX_MESSAGE}): {message:?}",
        message.len()
    );
}

fuzz_target!(|input: &[u8]| {
    let fixture = fixture();
    let mut params: Vec<&[u8]> = input.split(|&b| b == 0).collect();
    // split() yields the text after the last NUL: a parameter only if non-empty.
    if params.last().is_some_and(|last| last.is_empty()) {
        params.pop();
    }

    let parsed = parse_params(&params);
    let answered = answer(&params);
    let request = match parsed {
        Err(error) => {
            check_message(error.message(), &params);
            assert_eq!(answered, Err(error.message().to_owned()));
            return;
        }
        Ok(request) => request,
    };
    let context = Context {
        sources: &fixture.sources,
        backend: Backend::Proc,
        snapshot_lifetime: Duration::ZERO,
        shared_snapshot: None,
        deadline: Deadline::none(),
        settings_from: "",
        settings_present: false,
    };
    let executed = execute(&request, &context);
    if request == ItemRequest::Info {
        // info reports the context it ran in (settings source, lifetime), which differs here
        // on purpose: both must be the JSON object.
        for text in [&answered, &executed] {
            let Ok(ItemValue::Text(text)) = text else {
                panic!("info failed: {text:?}");
            };
            assert!(
                text.starts_with("{\"version\":\"")
                    && text.contains("\"api_version\":2,")
                    && text.ends_with('}'),
                "{text}"
            );
        }
        return;
    }
    assert_eq!(answered, executed, "answer vs execute for {params:?}");
    match executed {
        Err(message) => {
            check_message(&message, &params);
            // Only a TcpExt counter name may be missing from a valid fixture.
            assert!(
                matches!(request, ItemRequest::TcpExt { .. }),
                "{request:?} failed on the fixture: {message}"
            );
        }
        Ok(ItemValue::Text(text)) => assert!(!text.contains('\0'), "NUL in text value {text:?}"),
        Ok(ItemValue::Unsigned(value)) => {
            if let ItemRequest::TcpStatus { state, filter } = &request {
                let all = fixture
                    .counts
                    .iter()
                    .find(|(s, _)| s == state)
                    .map(|(_, c)| *c)
                    .expect("state in fixture");
                if filter.is_any() {
                    assert_eq!(value, all, "count of {state:?}");
                } else {
                    assert!(
                        value <= all,
                        "filtered count {value} > {all} for {params:?}"
                    );
                }
            }
        }
    }
});

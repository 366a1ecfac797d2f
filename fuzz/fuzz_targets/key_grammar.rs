//! Fuzz target: the key grammar (`parse_params`) and the whole answer path (`answer`) on any
//! parameter list.
//!
//! The input is a list of parameters, each ended by a NUL byte (the agent hands the module
//! NUL-terminated C strings, so a parameter never contains NUL); bytes after the last NUL
//! form one more parameter. The empty input is `linux_status` without brackets (no
//! parameters), "\0" is `linux_status[]` (one empty parameter).
//!
//! The tables are the fixtures tests/fixtures/mixed-small and udp-small (plus a small netstat),
//! never the
//! machine's /proc: the sources are a copy of it, as LINUX_STATUS_PROC_NET_DIR names them
//! (which forces the /proc backend). Checked: no panic; an error message is non-empty,
//! printable ASCII (what it echoes is quoted) and at most MAX_MESSAGE bytes whatever the input
//! size; a text value is NUL-free; an unfiltered state count equals the fixture's `expected`
//! count, a filtered one is at most that; a second answer by the same worker (its caches warm)
//! is the first one; which requests may fail on the fixture is an exhaustive match on the
//! request ([`may_fail`]), so a new key must say.
#![no_main]

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use linux_status::settings::Tables;
use linux_status::{
    answer, parse_params, Backend, Context, Deadline, FilterParams, ItemRequest, ItemValue,
    NetnsSnapshot, NoEvents, PortParam, Process, TcpState, Worker,
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
    tables: Tables,
    counts: Vec<(TcpState, u64)>,
    process: Process,
    netns: NetnsSnapshot,
}

/// mixed-small's tcp and tcp6 plus NETSTAT, copied into a private temporary directory that
/// becomes the sources (as LINUX_STATUS_PROC_NET_DIR would).
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
        let udp = original.with_file_name("udp-small");
        for file in ["udp", "udp6", "snmp", "snmp6"] {
            std::fs::copy(udp.join(file), dir.join(file)).expect("copy UDP fixture");
        }
        std::fs::write(dir.join("netstat"), NETSTAT).expect("write netstat");
        let text =
            std::fs::read_to_string(original.join("expected")).expect("fixture expected file");
        let Expected::Counts(counts) = parse_expected(&text, "mixed-small/expected") else {
            panic!("mixed-small/expected lists counts");
        };
        let tables = Tables::from_dir(Some(dir.into_os_string()));
        // The fixture directory forces the /proc backend.
        assert_eq!(tables.backend(Backend::Auto), Backend::Proc);
        Fixture {
            tables,
            counts,
            process: Process::new(),
            netns: NetnsSnapshot::default(),
        }
    })
}

/// Which requests may fail on a valid fixture: a TcpExt counter name may be missing, and a
/// service name unknown to the resolver (names are resolved when answering); the namespace
/// keys read /proc itself.
fn may_fail(request: &ItemRequest) -> bool {
    let names_a_service = |filter: &FilterParams| {
        [&filter.local_port, &filter.remote_port]
            .iter()
            .any(|port| matches!(port, Some(PortParam::Service { .. })))
    };
    match request {
        ItemRequest::TcpExt { .. } => true,
        // The fixture forces /proc, which has no cgroup: always the documented error.
        ItemRequest::CgroupDiscovery
        | ItemRequest::CgroupSummary
        | ItemRequest::CgroupStatus { .. } => true,
        // The namespace keys read the live /proc, not the fixture, and a selector may name
        // no namespace.
        ItemRequest::NetnsDiscovery
        | ItemRequest::NetnsSummary { .. }
        | ItemRequest::NetnsStatus { .. }
        | ItemRequest::NetnsAll => true,
        ItemRequest::TcpStatus { filter, .. }
        | ItemRequest::TcpSummary { filter }
        | ItemRequest::UdpStatus { filter, .. } => names_a_service(filter),
        ItemRequest::UdpSummary | ItemRequest::UdpDiscovery => false,
        ItemRequest::ListenDiscovery
        | ItemRequest::ListenStats
        | ItemRequest::Version
        | ItemRequest::Info => false,
    }
}

fn check_message(message: &str, params: &[&[u8]]) {
    assert!(!message.is_empty(), "empty error message for {params:?}");
    assert!(
        message.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "unescaped byte in error message {message:?}"
    );
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

    let request = match parse_params(&params) {
        Err(error) => {
            check_message(error.message(), &params);
            return;
        }
        Ok(request) => request,
    };
    let context = Context {
        sources: &fixture.tables.sources,
        backend: fixture.tables.backend(Backend::Auto),
        snapshot_lifetime: Duration::from_secs(60),
        shared_snapshot: None,
        // The namespace keys read the live /proc: each table once an hour keeps the runs fast.
        netns_table_interval: Duration::from_secs(3600),
        netns_snapshot: Some(&fixture.netns),
        process: &fixture.process,
        deadline: Deadline::none(),
        settings_from: "",
        settings_present: false,
        api_version: 2,
        events: &NoEvents,
    };
    // One worker for every input, as an agent worker keeps its state between requests.
    static WORKER: Mutex<Option<Worker>> = Mutex::new(None);
    let mut held = WORKER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let worker = held.get_or_insert_with(Worker::default);
    let first = answer(&request, &context, worker).map_err(|error| error.to_string());
    let again = answer(&request, &context, worker).map_err(|error| error.to_string());
    if request == ItemRequest::Info {
        let Ok(ItemValue::Text(text)) = &first else {
            panic!("info failed: {first:?}");
        };
        assert!(
            text.starts_with("{\"version\":\"")
                && text.contains("\"api_version\":2,")
                && text.ends_with('}'),
            "{text}"
        );
        return;
    }
    if matches!(
        request,
        ItemRequest::NetnsDiscovery
            | ItemRequest::NetnsAll
            | ItemRequest::NetnsSummary { .. }
            | ItemRequest::NetnsStatus { .. }
    ) {
        // The live /proc, not the fixture: ages and process counts move between two answers.
        for answered in [&first, &again] {
            match answered {
                Err(message) => check_message(message, &params),
                Ok(ItemValue::Text(text)) => assert!(text.starts_with(['{', '['])),
                Ok(ItemValue::Unsigned(_)) => {}
            }
        }
        return;
    }
    assert_eq!(first, again, "a second answer for {params:?}");
    match first {
        Err(message) => {
            check_message(&message, &params);
            assert!(
                may_fail(&request),
                "{request:?} failed on the fixture: {message}"
            );
        }
        Ok(ItemValue::Text(text)) => assert!(!text.contains('\0'), "NUL in text value {text:?}"),
        Ok(ItemValue::Unsigned(value)) => {
            if let ItemRequest::UdpStatus { state, filter } = &request {
                // udp-small/expected-udp: UNCONN 3, ESTAB 1.
                let all = match state {
                    Some(TcpState::Close) => 3,
                    Some(_) => 1,
                    None => 4,
                };
                if filter.is_any() {
                    assert_eq!(value, all, "UDP count of {state:?}");
                } else {
                    assert!(value <= all, "filtered UDP count {value} > {all}");
                }
            }
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

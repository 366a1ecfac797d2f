//! `linux_status_bench`: the in-process half of bench/run.
//!
//! Reads one command per line on stdin, runs it once, and answers one line on stdout:
//! `ok<TAB><wall ns><TAB><thread CPU ns><TAB><value>` or the same with `err` and a message.
//! The thread's CPU time (CLOCK_THREAD_CPUTIME_ID) does not count time the thread waited
//! for a CPU, so it stays meaningful on a loaded machine. Commands
//! (fields separated by TABs):
//!
//! - `floor`: opens and reads /proc/net/tcp and /proc/net/tcp6 to the end through one
//!   64 KiB buffer, discarding the bytes (the cost any /proc reader must pay); value = bytes.
//! - `answer<TAB>p1<TAB>p2...`: `parse_params(&[p1, p2, ...])` then `linux_status::answer`
//!   with the module's settings and one worker state, the module's handler without the
//!   agent; value = the item value.
//! - `zbx<TAB>port<TAB>key`: one Zabbix passive check against 127.0.0.1:port: connect, send
//!   `ZBXD\x01` + u64 LE length + key, read the reply to EOF, close with an RST (SO_LINGER 0)
//!   so neither side keeps a TIME_WAIT socket that would grow the table being measured;
//!   value = the reply payload (`ZBX_NOTSUPPORTED\0msg` becomes `err`).
//!
//! The time is taken around exactly that work, with `Instant`.
//!
//! At start the module's settings are fixed as `zbx_module_init` fixes them in an agent
//! worker, from the file named by `LINUX_STATUS_CONFIG` (bench/run points it at one with
//! `SnapshotLifetime=0`, so every `answer` is a real scan, and optionally `Backend=netlink`),
//! with the agent Timeout bench/run gives its agents (30 s). The first line printed is
//! `ready<TAB>0<TAB>0<TAB><settings>` or `err<TAB>0<TAB>0<TAB><why>`.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Instant;

use linux_status::settings::{self, Settings};
use linux_status::{answer, parse_params, Context, Deadline, ItemValue, NoEvents, Process, Worker};

const FLOOR_BUFFER: usize = 64 * 1024;
/// The `Timeout` bench/run writes into its agents' configuration.
const AGENT_TIMEOUT_SECONDS: i32 = 30;

fn floor(buffer: &mut [u8]) -> Result<String, String> {
    let mut total = 0u64;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound && path.ends_with('6') => {
                continue
            }
            Err(error) => return Err(format!("{path}: {error}")),
        };
        loop {
            match file.read(buffer) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(format!("{path}: {error}")),
            }
        }
    }
    Ok(total.to_string())
}

/// What an agent worker holds: the module's settings and process state, its worker state.
struct Module {
    settings: Settings,
    process: Process,
    worker: Worker,
}

fn module(module: &mut Module, params: &[&str]) -> Result<String, String> {
    let raw: Vec<&[u8]> = params.iter().map(|p| p.as_bytes()).collect();
    let request = parse_params(&raw).map_err(|error| error.message().to_owned())?;
    let settings = &module.settings;
    let settings_from = settings.config_path.path.to_string_lossy();
    let context = Context {
        sources: &settings.tables.sources,
        backend: settings.backend(),
        snapshot_lifetime: settings.config.snapshot_lifetime,
        shared_snapshot: None,
        netns_table_interval: settings.config.netns_table_interval,
        netns_snapshot: None,
        process: &module.process,
        deadline: Deadline::after(settings::agent_timeout(AGENT_TIMEOUT_SECONDS)),
        settings_from: &settings_from,
        settings_present: settings.config_present,
        api_version: linux_status::module::MODULE_API_VERSION,
        events: &NoEvents,
    };
    match answer(&request, &context, &mut module.worker).map_err(|error| error.to_string())? {
        ItemValue::Unsigned(n) => Ok(n.to_string()),
        ItemValue::Text(text) => Ok(text),
    }
}

fn passive_check(port: u16, key: &str) -> Result<String, String> {
    let address = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    let mut request = Vec::with_capacity(13 + key.len());
    request.extend_from_slice(b"ZBXD\x01");
    request.extend_from_slice(&(key.len() as u64).to_le_bytes());
    request.extend_from_slice(key.as_bytes());
    stream
        .write_all(&request)
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    abort_close(&stream);
    drop(stream);
    read.map_err(|e| format!("receive: {e}"))?;
    if reply.len() < 13 || &reply[..5] != b"ZBXD\x01" {
        return Err(format!(
            "bad reply header: {:?}",
            String::from_utf8_lossy(&reply)
        ));
    }
    let length = u32::from_le_bytes(reply[5..9].try_into().unwrap()) as usize;
    let payload = &reply[13..];
    if payload.len() != length {
        return Err(format!("reply length {} != header {length}", payload.len()));
    }
    let text = String::from_utf8_lossy(payload).into_owned();
    match text.strip_prefix("ZBX_NOTSUPPORTED") {
        Some(rest) => Err(format!(
            "ZBX_NOTSUPPORTED: {}",
            rest.trim_start_matches('\0')
        )),
        None => Ok(text),
    }
}

/// SO_LINGER {on, 0}: close() sends an RST; the agent's side (already closed, in FIN_WAIT2
/// or TIME_WAIT) is released at once, and ours never enters TIME_WAIT.
fn abort_close(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor owned by `stream`, and a pointer/length pair to a
    // live `linger` value.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// CPU time this thread has used, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\t', '\r'], " ")
}

/// What `zbx_module_init` + `zbx_module_item_timeout` do in an agent, minus the agent.
fn init() -> Result<(Module, String), String> {
    let settings = Settings::load(None, std::env::var_os("LINUX_STATUS_CONFIG"))
        .map_err(|error| error.to_string())?;
    let process = Process::new();
    let line = linux_status::module::probe_backend(&settings, &process);
    let text = format!(
        "config={} backend={} source={} snapshot_lifetime_ms={} ({line})",
        settings.config_path.path.display(),
        settings.config.backend,
        process.source_in_use(settings.backend()),
        settings.config.snapshot_lifetime.as_millis()
    );
    let module = Module {
        settings,
        process,
        worker: Worker::default(),
    };
    Ok((module, text))
}

fn main() {
    let (mut state, status, text) = match init() {
        Ok((module, text)) => (Some(module), "ready", text),
        Err(text) => (None, "err", text),
    };
    println!("{status}\t0\t0\t{}", one_line(&text));
    let mut buffer = vec![0u8; FLOOR_BUFFER];
    let stdin = io::stdin();
    let mut stdout = io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let fields: Vec<&str> = line.split('\t').collect();
        let cpu_started = thread_cpu_ns();
        let started = Instant::now();
        let result = match fields[0] {
            "floor" => floor(&mut buffer),
            "answer" => match &mut state {
                Some(state) => module(state, &fields[1..]),
                None => Err("the module's settings did not load".to_owned()),
            },
            "zbx" if fields.len() == 3 => match fields[1].parse::<u16>() {
                Ok(port) => passive_check(port, fields[2]),
                Err(_) => Err(format!("bad port {:?}", fields[1])),
            },
            other => Err(format!("unknown command {other:?}")),
        };
        let ns = started.elapsed().as_nanos();
        let cpu_ns = thread_cpu_ns().saturating_sub(cpu_started);
        let (status, text) = match result {
            Ok(value) => ("ok", value),
            Err(message) => ("err", message),
        };
        let line = format!("{status}\t{ns}\t{cpu_ns}\t{}", one_line(&text));
        if writeln!(stdout, "{line}").is_err() || stdout.flush().is_err() {
            break;
        }
    }
}

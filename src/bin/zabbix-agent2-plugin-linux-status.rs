//! zabbix-agent2-plugin-linux-status: the module's `linux_status` key for Zabbix agent 2,
//! as a loadable plugin (agent 2 cannot load C modules).
//!
//! The agent starts this executable as `<path> <socket> <true|false>`; it dials the socket
//! and speaks the protocol of `linux_status::agent2` with it. This file wires that protocol
//! to the same core the module calls (`linux_status::answer`), takes the settings from the
//! agent's configuration (`Plugins.LinuxStatus.Backend`, `...SnapshotLifetime`, parsed by
//! the module's own parser), and owns the process: its state (the shared snapshot, what
//! the fallback rule learned, one worker state per thread), signals and when to exit. The
//! core's errors are rendered here (a time-out names the agent's own Timeout) and its events
//! go to agent 2's log as Log messages.
//!
//! When to exit is the tricky part. Agent 2 before protocol 6.4 (Debian 12's 6.0.14) reaps
//! plugin processes in two places at once, a SIGCHLD listener calling `wait4(-1)` and its
//! signal loop; whichever loses the race panics and the whole agent exits. Measured here: a
//! plugin that exits on the registration run's terminate killed the agent in 5 of 8 starts,
//! and one that exited later, while the agent ran, killed it too. So with such an agent no
//! process of this plugin exits while the agent lives: after terminate (which those agents
//! send with id 0) or when the connection ends, the process waits for the agent to close
//! the connection and then for its parent to go away, checking five times a second. Agents of protocol 6.4 and later
//! (7.0) send terminate with a real id and wait for the plugin to exit (killing it after
//! their Timeout): there it exits at once. SIGINT and SIGTERM are ignored, as Zabbix's own
//! plugins do, so a stop signal sent to the whole service reaches the agent, which then
//! ends its plugins through the protocol.

// The OS calls it needs beyond std are the library's (src/sys); none here.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use linux_status::agent2::message::Severity;
use linux_status::agent2::options::SOURCE_NAME;
use linux_status::agent2::session::{self, Due, Ending, Handler, Limits, Log};
use linux_status::module::MODULE_API_VERSION;
use linux_status::os::{effective_uid, peer_credentials};
use linux_status::settings::{Tables, PROC_NET_DIR_VARIABLE};
use linux_status::{
    answer, parse_config as parse, parse_params, probe_auto_fallback, quote, AnswerError, Config,
    Context, Deadline, Event, EventSink, ItemValue, NetnsSnapshot, Process, SharedSnapshot, Worker,
};

const NAME: &str = "LinuxStatus";
const KEY: &str = "linux_status";

/// The one key's registration: its description names every registry key (and ends with a
/// dot, without which agent 2 refuses to start). Made once per process, for the process.
fn metrics() -> [(&'static str, &'static str); 1] {
    [(
        KEY,
        Box::leak(linux_status::registry::plugin_description().into_boxed_str()),
    )]
}

/// The plugin behind the protocol: the module's core with the agent's settings.
struct Plugin {
    /// /proc/net, or the directory LINUX_STATUS_PROC_NET_DIR names (which forces the /proc
    /// backend, as in the module).
    tables: Tables,
    /// What the fallback rule learned in this process, and the snapshots' clock.
    process: Process,
    /// Worker states not in use: a worker thread takes one for a request (or makes one) and
    /// gives it back, so there are at most as many as the session has worker threads.
    workers: Mutex<Vec<Worker>>,
    /// The configuration from the configure request; an error is every export's answer.
    config: RwLock<Result<Config, String>>,
    /// One snapshot for all worker threads, so requests arriving together share a scan.
    shared: &'static SharedSnapshot,
    /// One table per network namespace for all worker threads (netns_all).
    netns_shared: &'static NetnsSnapshot,
    metrics: [(&'static str, &'static str); 1],
}

fn parse_config(text: &str) -> Result<Config, String> {
    parse(text.as_bytes(), Path::new(SOURCE_NAME)).map_err(|error| error.0)
}

impl Handler for Plugin {
    fn name(&self) -> &str {
        NAME
    }

    fn metrics(&self) -> &[(&'static str, &'static str)] {
        &self.metrics
    }

    fn validate(&self, config_text: &str) -> Result<(), String> {
        parse_config(config_text).map(drop)
    }

    fn configure(&self, config_text: &str, log: &Log<'_>) -> Result<(), String> {
        let parsed = parse_config(config_text);
        let result = parsed.as_ref().map(drop).map_err(Clone::clone);
        // The agent configures the plugin when it starts it, before any request: the moment
        // the module's probe at init corresponds to (files as sources force /proc).
        if let Ok(config) = &parsed {
            let events = AgentLog(log);
            probe_auto_fallback(&self.context(config, Deadline::none(), &events));
        }
        if let Ok(mut config) = self.config.write() {
            *config = parsed;
        }
        result
    }

    fn export(
        &self,
        key: &str,
        params: &[String],
        due: Due,
        log: &Log<'_>,
    ) -> Result<String, String> {
        if key != KEY {
            return Err(format!(
                "Unsupported item key \"{}\" (this plugin has {KEY}).",
                quote(key.as_bytes())
            ));
        }
        let config = match self.config.read() {
            Ok(config) => config.clone()?,
            Err(_) => return Err("Internal error: configuration lock poisoned.".into()),
        };
        let params: Vec<&[u8]> = params.iter().map(|param| param.as_bytes()).collect();
        let request = parse_params(&params).map_err(|error| error.message().to_owned())?;
        let events = AgentLog(log);
        let context = self.context(&config, Deadline::after(due.budget), &events);
        let mut worker = self
            .workers
            .lock()
            .ok()
            .and_then(|mut idle| idle.pop())
            .unwrap_or_default();
        let answered = answer(&request, &context, &mut worker);
        if let Ok(mut idle) = self.workers.lock() {
            idle.push(worker);
        }
        match answered {
            Ok(ItemValue::Unsigned(value)) => Ok(value.to_string()),
            Ok(ItemValue::Text(text)) => Ok(text),
            Err(error) => Err(render(&error, due)),
        }
    }
}

impl Plugin {
    fn context<'a>(
        &'a self,
        config: &Config,
        deadline: Deadline,
        events: &'a dyn EventSink,
    ) -> Context<'a> {
        Context {
            sources: &self.tables.sources,
            backend: self.tables.backend(config.backend),
            snapshot_lifetime: config.snapshot_lifetime,
            shared_snapshot: Some(self.shared),
            netns_table_interval: config.netns_table_interval,
            netns_snapshot: Some(self.netns_shared),
            process: &self.process,
            deadline,
            settings_from: SOURCE_NAME,
            settings_present: true,
            api_version: MODULE_API_VERSION,
            events,
        }
    }
}

/// The core's error as agent 2 shows it: a time-out names the agent's own Timeout, not the
/// budget the plugin gave the core (that Timeout less a margin for the answer's trip back).
fn render(error: &AnswerError, due: Due) -> String {
    error.message_with_timeout(due.timeout_seconds)
}

/// The core's events, as agent 2 Log messages (the agent writes them to its log).
struct AgentLog<'a>(&'a Log<'a>);

impl EventSink for AgentLog<'_> {
    fn report(&self, event: &Event<'_>) {
        (self.0)(Severity::Warning, &event.to_string());
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.len() == 2 && (args[1] == "-V" || args[1] == "--version") {
        println!(
            "zabbix-agent2-plugin-linux-status {} (plugin {NAME}, key {KEY})",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if args.len() != 3 || !(args[2] == "true" || args[2] == "false") {
        eprintln!(
            "usage: {} SOCKET true|false\n\
             Zabbix agent 2 starts this plugin itself: set Plugins.{NAME}.System.Path to its path in the agent's configuration.",
            args.first().map(|a| a.to_string_lossy()).unwrap_or_default()
        );
        return ExitCode::from(2);
    }
    let parent = std::os::unix::process::parent_id();
    linux_status::os::ignore_stop_signals();
    let stream = match UnixStream::connect(&args[1]) {
        Ok(stream) => stream,
        Err(error) => {
            eprintln!(
                "linux_status: cannot connect to agent 2 at \"{}\": {error}",
                quote(args[1].as_encoded_bytes())
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(refusal) = check_peer(&stream, parent) {
        eprintln!(
            "linux_status: refusing the socket \"{}\": {refusal}",
            quote(args[1].as_encoded_bytes())
        );
        return ExitCode::FAILURE;
    }
    let halves = stream
        .try_clone()
        .and_then(|reader| Ok((reader, stream.try_clone()?)));
    let (reader, writer) = match halves {
        Ok(halves) => halves,
        Err(error) => {
            eprintln!("linux_status: cannot use the agent connection: {error}");
            return ExitCode::FAILURE;
        }
    };
    let plugin = Plugin {
        tables: Tables::from_dir(std::env::var_os(PROC_NET_DIR_VARIABLE)),
        process: Process::new(),
        workers: Mutex::new(Vec::new()),
        config: RwLock::new(Ok(Config::default())),
        shared: Box::leak(Box::default()),
        netns_shared: Box::leak(Box::default()),
        metrics: metrics(),
    };
    let ending = session::run(Arc::new(plugin), reader, writer, Limits::default());
    match ending {
        Ending::Terminated { id } if id != 0 => {}
        _ => outlive_agent(&stream, parent),
    }
    ExitCode::SUCCESS
}

/// The socket must be its agent's: the process listening on it is this one's parent (the
/// agent that started it), or at least runs as the same user (who could control this
/// process anyway). Anyone else (a local user who bound the agent's socket path first)
/// would be fed the agent's configuration and requests, and could feed answers back.
fn check_peer(stream: &UnixStream, parent: u32) -> Result<(), String> {
    use std::os::fd::AsFd;
    let peer = peer_credentials(stream.as_fd())
        .map_err(|error| format!("cannot tell who listens on it ({error})"))?;
    let uid = effective_uid();
    if peer.pid == parent || peer.uid == uid {
        return Ok(());
    }
    Err(format!(
        "it belongs to process {} of user {}, neither this plugin's parent (process {parent}) nor its user ({uid}); is another local user squatting agent 2's PluginSocket?",
        peer.pid, peer.uid
    ))
}

/// Returns once the process that started this one has exited (this process is then
/// re-parented), not when started by init: there is no agent to outlive. Until the agent
/// closes the connection its bytes are read and dropped: closing first makes agent 2 6.0.14
/// spin on the dead connection, logging a read error each turn, until it closes its end.
fn outlive_agent(stream: &UnixStream, parent: u32) {
    const POLL: Duration = Duration::from_millis(200);
    let mut open = stream.set_read_timeout(Some(POLL)).is_ok();
    let mut sink = [0u8; 4096];
    while parent > 1 && std::os::unix::process::parent_id() == parent {
        if !open {
            std::thread::sleep(POLL);
            continue;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) => open = false,
            Ok(_) => {}
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => open = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUE: Due = Due {
        budget: Duration::from_secs(1),
        timeout_seconds: 1,
    };

    fn plugin() -> Plugin {
        Plugin {
            tables: Tables::from_dir(None),
            process: Process::new(),
            workers: Mutex::new(Vec::new()),
            config: RwLock::new(Ok(Config::default())),
            shared: Box::leak(Box::default()),
            netns_shared: Box::leak(Box::default()),
            metrics: metrics(),
        }
    }

    /// Drops the lines the plugin would log.
    fn quiet(_: Severity, _: &str) {}

    #[test]
    fn timeout_messages_name_the_agent_timeout() {
        let due = Due {
            budget: Duration::from_millis(2750),
            timeout_seconds: 3,
        };
        let error = AnswerError::TimedOut {
            stopped: "Scan of /proc/net/tcp stopped after 9 lines".into(),
            budget: due.budget,
        };
        assert_eq!(
            render(&error, due),
            "Scan of /proc/net/tcp stopped after 9 lines: it ran past the agent Timeout of 3 s."
        );
        assert_eq!(render(&AnswerError::Source("other".into()), due), "other");
    }

    #[test]
    fn every_description_ends_with_a_dot() {
        assert!(plugin()
            .metrics()
            .iter()
            .all(|(_, description)| description.ends_with('.')));
    }

    #[test]
    fn settings_are_checked_with_the_module_parser_and_its_messages() {
        let plugin = plugin();
        assert_eq!(
            plugin.validate("\n\nBackend=netlink\nSnapshotLifetime=0\n"),
            Ok(())
        );
        assert_eq!(
            plugin.validate("\nBackend=ebpf\n"),
            Err(format!(
                "linux_status: {SOURCE_NAME} line 2: Backend must be auto, proc or netlink, got \"ebpf\""
            ))
        );
        let error = plugin.validate("Nested.Thing=x").unwrap_err();
        assert!(
            error.contains("unknown parameter \"Nested.Thing\""),
            "{error}"
        );
    }

    #[test]
    fn a_bad_configuration_is_every_answer() {
        let plugin = plugin();
        assert!(plugin.configure("SnapshotLifetime=-1", &quiet).is_err());
        let error = plugin
            .export(KEY, &["version".into()], DUE, &quiet)
            .unwrap_err();
        assert!(error.contains("SnapshotLifetime must be"), "{error}");
        assert_eq!(plugin.configure("", &quiet), Ok(()));
        assert_eq!(
            plugin.export(KEY, &["version".into()], DUE, &quiet),
            Ok(env!("CARGO_PKG_VERSION").to_owned())
        );
    }

    #[test]
    fn errors_are_the_module_errors() {
        let plugin = plugin();
        let params = ["tcp_status".to_owned(), "NOPE".to_owned()];
        let expected = parse_params(&[b"tcp_status", b"NOPE"])
            .unwrap_err()
            .message()
            .to_owned();
        assert_eq!(plugin.export(KEY, &params, DUE, &quiet), Err(expected));
        assert!(plugin
            .export("other", &[], DUE, &quiet)
            .unwrap_err()
            .contains("Unsupported item key"));
    }
}

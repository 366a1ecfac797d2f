//! One connection with agent 2: reads the agent's requests, answers them through a
//! [`Handler`], and says how the connection ended so the caller can pick its exit.
//!
//! Design. The agent sends export requests concurrently on the one connection and matches
//! answers by `id`, so answers may go out in any order. The reading thread never computes
//! an answer: it hands export requests to a fixed pool of workers through a bounded queue
//! (a full queue is answered at once with an error, so memory stays bounded and the reader
//! never blocks) and handles everything else itself. A slow request therefore delays only
//! the requests queued behind all the workers, never the reader. Every export gets a
//! budget that ends before the agent stops waiting (its `timeout` field since protocol 6.4,
//! else the `Timeout` from the configure request, else the agent's default of 3 s, less a
//! margin for the trip back), and a request that waited out its budget in the queue is
//! answered with an error instead of being run. Writes of whole frames are serialised by a
//! mutex so that concurrent answers never interleave. A panic in the handler becomes an
//! error answer.
//!
//! Memory is bounded by bytes: a frame is at most [`frame::MAX_INCOMING`], its parameters
//! are capped at decode ([`message::MAX_PARAMETERS`], [`message::MAX_PARAMETER_BYTES`]),
//! and the export requests waiting or running hold at most [`Limits::queue_bytes`] of
//! decoded data (counted by [`message::decoded_bytes`]); a request past the budget, or past
//! [`Limits::queue`] requests, is answered at once with a `busy` error.
//!
//! Unexpected input: an unknown message type or a malformed body (inside a well-framed
//! frame) is logged to the agent and skipped. A frame header that cannot be followed (a
//! payload type other than JSON, a length over [`frame::MAX_SKIPPED`]) means the stream
//! has lost its frame boundaries. The session's service ends there, visibly: the error is
//! logged to the agent (and on stderr, which the agent logs too), and from then on every
//! export request is answered with that error, so every item of the plugin turns
//! unsupported with the reason; requests are found by [`FrameReader::resync`]. The
//! connection is not closed and the process does not exit: measured (docs/agent2.md), a
//! plugin that closes its connection makes agent 2 6.0.14 panic on its next request, and
//! one that exits makes 6.0.14 and 7.0.22 exit ("plugin died", "Plugin exited
//! unexpectedly"). Terminate and the agent closing the connection still end the session.

use std::any::Any;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::frame::{self, FrameReader, ReadError};
use super::message::{self, Request, Response, Severity};
use super::options;
use crate::model::text::quote;

/// What the protocol needs from the plugin behind it.
pub trait Handler: Send + Sync + 'static {
    /// The plugin name, as in `Plugins.<Name>.System.Path`.
    fn name(&self) -> &str;
    /// Key and description pairs to register (descriptions end with a dot).
    fn metrics(&self) -> &[(&'static str, &'static str)];
    /// Checks the plugin's configuration section, as `Name=Value` lines (registration run).
    fn validate(&self, config_text: &str) -> Result<(), String>;
    /// Applies it (serving run); an error is logged by the session. `log` sends a line to
    /// the agent's log.
    fn configure(&self, config_text: &str, log: &Log<'_>) -> Result<(), String>;
    /// Answers one request within `due.budget`; the value is sent as text. `log` sends a
    /// line to the agent's log.
    fn export(
        &self,
        key: &str,
        params: &[String],
        due: Due,
        log: &Log<'_>,
    ) -> Result<String, String>;
}

/// Sends one line to the agent's log (agent 2's Log message), at a severity.
pub type Log<'a> = dyn Fn(Severity, &str) + 'a;

/// How long an export request may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// What is left of the answer's budget when the request is taken up.
    pub budget: Duration,
    /// The agent's timeout for the request, in seconds, as the agent counts it (messages
    /// name this one, not the budget).
    pub timeout_seconds: u64,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The agent sent terminate with this id (0 from agents before protocol 6.4).
    Terminated { id: u32 },
    /// The agent closed the connection.
    Closed,
    /// The connection failed or carried something that is not the protocol.
    Failed(String),
}

/// The agent's plugin protocol, as far as the session could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Nothing said it yet (a serving run before its first export request).
    Unknown,
    /// Before 6.4 (agent 2 6.0: register version "6.0.13", export requests without
    /// `timeout`).
    Before6_4,
    /// 6.4 or later (agent 2 7.0: version "6.4.0", export requests with `timeout`).
    From6_4,
}

impl Protocol {
    fn of_version(version: &str) -> Protocol {
        let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(major), Some(minor)) if (major, minor) >= (6, 4) => Protocol::From6_4,
            (Some(_), Some(_)) => Protocol::Before6_4,
            _ => Protocol::Unknown,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub workers: usize,
    /// Export requests that may wait for a worker.
    pub queue: usize,
    /// Decoded bytes the export requests waiting or running may hold together.
    pub queue_bytes: usize,
}

/// The default of [`Limits::queue_bytes`]: 8 MiB. With 4 workers and 1 MiB frames the
/// plugin's peak stays well under 64 MiB (measured in tests/agent2/test_plugin_flood.py).
pub const QUEUE_BYTES: usize = 8 << 20;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 4,
            queue: 256,
            queue_bytes: QUEUE_BYTES,
        }
    }
}

/// The agent's default Timeout, used until it says otherwise.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 3;
/// The agent accepts Timeout from 1 to 30 s (7.0: per item up to 600 s).
const MAX_TIMEOUT_SECONDS: u64 = 600;

/// The time an answer may take for an agent waiting `timeout_seconds`: the answer must
/// arrive before the agent gives up, so a margin is kept for queueing and the trip back.
pub fn answer_budget(timeout_seconds: u64) -> Duration {
    let timeout = Duration::from_secs(timeout_seconds.clamp(1, MAX_TIMEOUT_SECONDS));
    let margin = (timeout / 20).max(Duration::from_millis(250));
    timeout - margin
}

struct Job {
    id: u32,
    key: String,
    parameters: Vec<String>,
    deadline: Instant,
    timeout_seconds: u64,
    /// What it counts against [`Limits::queue_bytes`] until answered.
    bytes: usize,
}

/// The writing half, shared by the reader and the workers.
struct Sender<W> {
    writer: Mutex<W>,
}

impl<W: Write> Sender<W> {
    /// Sends one message as one frame. Failures are ignored: they mean the agent is gone,
    /// which the reader sees as the end of the connection.
    fn send(&self, response: &Response<'_>) {
        let body = response.encode();
        let frame = match frame::encode(&body) {
            Some(frame) => frame,
            None => {
                let Response::Export { id, .. } = response else {
                    return;
                };
                let error = format!(
                    "The answer is {} bytes, more than agent 2's plugin connection carries in one message ({} bytes).",
                    body.len(),
                    frame::MAX_OUTGOING - 64
                );
                match frame::encode(
                    &Response::Export {
                        id: *id,
                        result: Err(&error),
                    }
                    .encode(),
                ) {
                    Some(frame) => frame,
                    None => return,
                }
            }
        };
        if let Ok(mut writer) = self.writer.lock() {
            let _ = writer.write_all(&frame).and_then(|()| writer.flush());
        }
    }

    fn log(&self, severity: Severity, message: &str) {
        self.send(&Response::Log { severity, message });
    }
}

/// Runs the session until the agent terminates it or the connection ends.
pub fn run<H, R, W>(handler: Arc<H>, reader: R, writer: W, limits: Limits) -> Ending
where
    H: Handler,
    R: Read,
    W: Write + Send + 'static,
{
    run_observed(handler, reader, writer, limits).0
}

/// [`run`], also saying which protocol the agent spoke.
pub fn run_observed<H, R, W>(
    handler: Arc<H>,
    reader: R,
    writer: W,
    limits: Limits,
) -> (Ending, Protocol)
where
    H: Handler,
    R: Read,
    W: Write + Send + 'static,
{
    let mut protocol = Protocol::Unknown;
    let ending = serve(handler, reader, writer, limits, &mut protocol);
    (ending, protocol)
}

fn serve<H, R, W>(
    handler: Arc<H>,
    reader: R,
    writer: W,
    limits: Limits,
    protocol: &mut Protocol,
) -> Ending
where
    H: Handler,
    R: Read,
    W: Write + Send + 'static,
{
    let sender = Arc::new(Sender {
        writer: Mutex::new(writer),
    });
    let configured_timeout = Arc::new(AtomicU64::new(DEFAULT_TIMEOUT_SECONDS));
    let (queue, jobs) = mpsc::sync_channel::<Job>(limits.queue.max(1));
    let jobs = Arc::new(Mutex::new(jobs));
    let held = Arc::new(AtomicUsize::new(0));
    for index in 0..limits.workers.max(1) {
        let (handler, sender, jobs, held) = (
            Arc::clone(&handler),
            Arc::clone(&sender),
            Arc::clone(&jobs),
            Arc::clone(&held),
        );
        let spawned = thread::Builder::new()
            .name(format!("export-{index}"))
            .spawn(move || work(&*handler, &sender, &jobs, &held));
        if let Err(error) = spawned {
            return Ending::Failed(format!("cannot start a worker thread: {error}"));
        }
    }
    let mut frames = FrameReader::new(reader);
    // Set when the stream lost its frame boundaries: every later export's answer.
    let mut lost: Option<String> = None;
    loop {
        let body = match frames.next_frame() {
            Ok(body) => body,
            Err(ReadError::Closed) => return Ending::Closed,
            Err(ReadError::Oversized { len, prefix }) => {
                sender.log(
                    Severity::Warning,
                    &format!(
                        "linux_status: skipped a {}",
                        frame::HeaderError::TooLong(len)
                    ),
                );
                // An export request still gets its answer: the agent would wait for it.
                if let Some((id, message::EXPORT_REQUEST)) = message::peek_id_and_type(&prefix) {
                    let error = format!(
                        "The request is {len} bytes, more than the {} bytes linux_status accepts from agent 2.",
                        frame::MAX_INCOMING
                    );
                    sender.send(&Response::Export {
                        id,
                        result: Err(lost.as_deref().unwrap_or(&error)),
                    });
                }
                continue;
            }
            Err(error @ ReadError::Header(_)) => {
                // The frame boundaries are lost: the service ends, visibly (module doc).
                if lost.is_none() {
                    let message = format!(
                        "linux_status: lost track of agent 2's messages: {error}; every linux_status item now answers this error until zabbix-agent2 is restarted"
                    );
                    sender.log(Severity::Error, &message);
                    eprintln_quiet(&message);
                    lost = Some(format!(
                        "linux_status lost track of agent 2's messages ({error}) and answers nothing until zabbix-agent2 is restarted."
                    ));
                }
                match frames.resync() {
                    Ok(()) => continue,
                    Err(ReadError::Closed) => return Ending::Closed,
                    Err(error) => {
                        return Ending::Failed(format!("linux_status: stopping: {error}"))
                    }
                }
            }
            Err(error) => {
                let message = format!("linux_status: stopping: {error}");
                sender.log(Severity::Error, &message);
                return Ending::Failed(message);
            }
        };
        let request = match message::decode(body) {
            Ok(request) => request,
            Err(error) => {
                // serde's text may echo what the agent sent: bounded and escaped, as every
                // echoed value is.
                let error = quote(error.to_string().as_bytes());
                sender.log(
                    Severity::Warning,
                    &format!("linux_status: ignored a malformed message: {error}"),
                );
                // The agent waits for an answer to every export request it sent.
                if let Some((id, message::EXPORT_REQUEST)) = message::peek_id_and_type(body) {
                    sender.send(&Response::Export {
                        id,
                        result: Err(&format!("Malformed request from the agent: {error}.")),
                    });
                }
                continue;
            }
        };
        let request = match (request, &lost) {
            (Request::Export { id, .. } | Request::ExportRefused { id, .. }, Some(error)) => {
                sender.send(&Response::Export {
                    id,
                    result: Err(error),
                });
                continue;
            }
            (request, _) => request,
        };
        match request {
            Request::Register { id, version } => {
                *protocol = Protocol::of_version(&version);
                sender.send(&Response::Register {
                    id,
                    name: handler.name(),
                    metrics: handler.metrics(),
                    interfaces: message::EXPORTER | message::CONFIGURATOR,
                })
            }
            Request::Validate { id, options } => {
                let checked = options::to_config_text(&options)
                    .and_then(|text| guarded(|| handler.validate(&text)));
                sender.send(&Response::Validate {
                    id,
                    error: checked.as_ref().err().map(String::as_str),
                });
            }
            Request::Configure { timeout, options } => {
                if let Some(seconds) = timeout.filter(|&s| s > 0) {
                    configured_timeout.store(seconds, Ordering::Relaxed);
                }
                let log = |severity: Severity, line: &str| sender.log(severity, line);
                let applied = options::to_config_text(&options)
                    .and_then(|text| guarded(|| handler.configure(&text, &log)));
                if let Err(error) = applied {
                    sender.log(Severity::Critical, &error);
                }
            }
            Request::Start => {}
            Request::Terminate { id } => return Ending::Terminated { id },
            Request::Export {
                id,
                key,
                parameters,
                timeout,
            } => {
                if *protocol == Protocol::Unknown {
                    // Export requests carry `timeout` since protocol 6.4.
                    *protocol = if timeout.is_some() {
                        Protocol::From6_4
                    } else {
                        Protocol::Before6_4
                    };
                }
                let bytes = message::decoded_bytes(&key, &parameters);
                let waiting = held.load(Ordering::Acquire);
                if waiting + bytes > limits.queue_bytes {
                    sender.send(&Response::Export {
                        id,
                        result: Err(&format!(
                            "linux_status plugin is busy: the requests already waiting hold {waiting} bytes; with this one's {bytes} they would pass the queue's {} bytes.",
                            limits.queue_bytes
                        )),
                    });
                    continue;
                }
                let timeout_seconds = timeout
                    .filter(|&s| s > 0)
                    .unwrap_or_else(|| configured_timeout.load(Ordering::Relaxed));
                let job = Job {
                    id,
                    key,
                    parameters,
                    deadline: Instant::now() + answer_budget(timeout_seconds),
                    timeout_seconds,
                    bytes,
                };
                // Only this thread adds, so the check above still holds.
                held.fetch_add(bytes, Ordering::AcqRel);
                match queue.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(job)) => {
                        held.fetch_sub(job.bytes, Ordering::AcqRel);
                        sender.send(&Response::Export {
                            id: job.id,
                            result: Err(&format!(
                                "linux_status plugin is busy: {} requests are already waiting.",
                                limits.queue
                            )),
                        })
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        return Ending::Failed("every worker thread has stopped".into())
                    }
                }
            }
            Request::ExportRefused { id, error } => sender.send(&Response::Export {
                id,
                result: Err(&error),
            }),
            Request::Other { id, kind } => sender.log(
                Severity::Warning,
                &format!("linux_status: ignored a message of unknown type {kind} (id {id})"),
            ),
        }
    }
}

fn work<H: Handler, W: Write>(
    handler: &H,
    sender: &Sender<W>,
    jobs: &Mutex<Receiver<Job>>,
    held: &AtomicUsize,
) {
    loop {
        // The lock is held only while waiting for the next job, never while answering.
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let budget = job.deadline.saturating_duration_since(Instant::now());
        let result = if budget.is_zero() {
            Err(format!(
                "Waited in the plugin's queue past the agent Timeout of {} s.",
                job.timeout_seconds
            ))
        } else {
            let due = Due {
                budget,
                timeout_seconds: job.timeout_seconds,
            };
            let log = |severity: Severity, line: &str| sender.log(severity, line);
            guarded(|| handler.export(&job.key, &job.parameters, due, &log))
        };
        sender.send(&Response::Export {
            id: job.id,
            result: result.as_deref().map_err(String::as_str),
        });
        held.fetch_sub(job.bytes, Ordering::AcqRel);
    }
}

/// A line on stderr, which agent 2 writes to its log; a closed stderr is no error.
fn eprintln_quiet(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Runs `body`, turning a panic into an error.
fn guarded<T>(body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        Err(format!(
            "Internal error in linux_status ({}); please report it.",
            panic_text(payload.as_ref())
        ))
    })
}

fn panic_text(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "unknown panic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    struct Fake;

    impl Handler for Fake {
        fn name(&self) -> &str {
            "LinuxStatus"
        }
        fn metrics(&self) -> &[(&'static str, &'static str)] {
            &[("linux_status", "TCP states.")]
        }
        fn validate(&self, text: &str) -> Result<(), String> {
            if text.contains("Backend=ebpf") {
                Err("bad backend".into())
            } else {
                Ok(())
            }
        }
        fn configure(&self, text: &str, _: &Log<'_>) -> Result<(), String> {
            self.validate(text)
        }
        fn export(
            &self,
            key: &str,
            params: &[String],
            due: Due,
            _: &Log<'_>,
        ) -> Result<String, String> {
            match params.first().map(String::as_str) {
                Some("slow") => {
                    thread::sleep(Duration::from_millis(400));
                    Ok("slow".into())
                }
                Some("panic") => panic!("boom"),
                Some("budget") => Ok(due.budget.as_millis().to_string()),
                Some("timeout") => Ok(due.timeout_seconds.to_string()),
                Some("big") => Ok("x".repeat(frame::MAX_OUTGOING)),
                _ => Ok(format!("{key}:{}", params.join(","))),
            }
        }
    }

    struct Agent {
        stream: UnixStream,
        session: thread::JoinHandle<Ending>,
    }

    impl Agent {
        fn start(limits: Limits) -> Agent {
            let (agent, plugin) = UnixStream::pair().unwrap();
            agent
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let writer = plugin.try_clone().unwrap();
            let session = thread::spawn(move || run(Arc::new(Fake), plugin, writer, limits));
            Agent {
                stream: agent,
                session,
            }
        }

        fn send(&mut self, body: &str) {
            self.stream
                .write_all(&frame::encode(body.as_bytes()).unwrap())
                .unwrap();
        }

        fn receive(&mut self) -> serde_json::Value {
            let mut reader = FrameReader::new(&mut self.stream);
            let body = reader
                .next_frame()
                .expect("a frame from the plugin")
                .to_vec();
            serde_json::from_slice(&body).unwrap()
        }

        fn receive_raw(&mut self) -> Vec<u8> {
            let mut reader = FrameReader::new(&mut self.stream);
            reader
                .next_frame()
                .expect("a frame from the plugin")
                .to_vec()
        }

        fn finish(self) -> Ending {
            drop(self.stream);
            self.session.join().unwrap()
        }
    }

    #[test]
    fn registration_run_of_agent_6_0_byte_exact() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":2,"version":"6.0.13"}"#);
        assert_eq!(
            agent.receive_raw(),
            br#"{"id":1,"type":3,"name":"LinuxStatus","metrics":["linux_status","TCP states."],"interfaces":3}"#
        );
        agent.send(r#"{"id":2,"type":9,"private_options":{"Name":"LinuxStatus","Nodes":[{"Name":"Backend","Nodes":[{"Value":"ZWJwZg==","Line":3}],"Line":3}]}}"#);
        assert_eq!(
            agent.receive_raw(),
            br#"{"id":2,"type":10,"error":"bad backend"}"#
        );
        agent.send(r#"{"id":3,"type":9,"private_options":{"Name":"LinuxStatus"}}"#);
        assert_eq!(agent.receive_raw(), br#"{"id":3,"type":10}"#);
        agent.send(r#"{"id":0,"type":5}"#);
        assert_eq!(agent.session.join().unwrap(), Ending::Terminated { id: 0 });
    }

    #[test]
    fn a_slow_request_does_not_hold_up_a_fast_one() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":6,"key":"linux_status","parameters":["slow"]}"#);
        agent.send(r#"{"id":2,"type":6,"key":"linux_status","parameters":["a","b"]}"#);
        let first = agent.receive();
        assert_eq!(first["id"], 2);
        assert_eq!(first["value"], "linux_status:a,b");
        let second = agent.receive();
        assert_eq!(second["id"], 1);
        assert_eq!(second["value"], "slow");
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn panics_become_errors_and_the_session_goes_on() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":4,"type":6,"key":"linux_status","parameters":["panic"]}"#);
        let answer = agent.receive();
        assert_eq!(answer["id"], 4);
        assert!(
            answer["error"].as_str().unwrap().contains("boom"),
            "{answer}"
        );
        agent.send(r#"{"id":5,"type":6,"key":"linux_status","parameters":[]}"#);
        assert_eq!(agent.receive()["value"], "linux_status:");
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn budgets_end_before_the_agent_gives_up() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":6,"key":"linux_status","parameters":["budget"],"timeout":1}"#);
        let budget: u64 = agent.receive()["value"].as_str().unwrap().parse().unwrap();
        assert!((500..=750).contains(&budget), "{budget} ms");
        agent
            .send(r#"{"id":1,"type":6,"key":"linux_status","parameters":["timeout"],"timeout":1}"#);
        assert_eq!(agent.receive()["value"], "1");
        // 6.0: the configure request's Timeout applies to requests without their own.
        agent.send(r#"{"id":1,"type":8,"global_options":{"Timeout":10,"SourceIP":""},"private_options":{}}"#);
        agent.send(r#"{"id":2,"type":6,"key":"linux_status","parameters":["budget"]}"#);
        let budget: u64 = agent.receive()["value"].as_str().unwrap().parse().unwrap();
        assert!((9000..=9500).contains(&budget), "{budget} ms");
        assert_eq!(answer_budget(3), Duration::from_millis(2750));
        assert_eq!(answer_budget(0), Duration::from_millis(750));
        assert_eq!(answer_budget(u64::MAX), Duration::from_secs(570));
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn a_request_that_waited_out_its_budget_is_refused() {
        let mut agent = Agent::start(Limits {
            workers: 1,
            queue: 4,
            queue_bytes: QUEUE_BYTES,
        });
        // The single worker sleeps 400 ms on each "slow"; a 1 s timeout leaves 750 ms, so
        // the third request is still queued when its budget ends.
        for id in 1..=3 {
            agent.send(&format!(
                r#"{{"id":{id},"type":6,"key":"linux_status","parameters":["slow"],"timeout":1}}"#
            ));
        }
        let answers: Vec<_> = (0..3).map(|_| agent.receive()).collect();
        assert_eq!(answers[0]["value"], "slow");
        assert_eq!(answers[1]["value"], "slow");
        assert_eq!(answers[2]["id"], 3);
        assert!(answers[2]["error"]
            .as_str()
            .unwrap()
            .contains("past the agent Timeout of 1 s"));
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn a_full_queue_answers_at_once() {
        let mut agent = Agent::start(Limits {
            workers: 1,
            queue: 1,
            queue_bytes: QUEUE_BYTES,
        });
        // One request runs, one waits; whichever of the others finds the queue full is
        // answered at once, before the 400 ms of the running one are over.
        for id in 1..=4 {
            agent.send(&format!(
                r#"{{"id":{id},"type":6,"key":"linux_status","parameters":["slow"]}}"#
            ));
        }
        let answers: Vec<_> = (0..4).map(|_| agent.receive()).collect();
        assert!(
            answers[0]["error"].as_str().unwrap().contains("busy"),
            "{answers:?}"
        );
        let mut ids: Vec<_> = answers.iter().map(|a| a["id"].as_u64().unwrap()).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2, 3, 4]);
        assert!(answers.iter().any(|a| a["value"] == "slow"));
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn oversized_values_become_errors() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":6,"key":"linux_status","parameters":["big"]}"#);
        let answer = agent.receive();
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("more than agent 2"));
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn unknown_and_malformed_messages_are_logged_and_skipped() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":7,"type":11}"#);
        let log = agent.receive();
        assert_eq!(
            (log["type"].as_u64(), log["severity"].as_u64()),
            (Some(1), Some(3))
        );
        assert!(log["message"].as_str().unwrap().contains("unknown type 11"));
        agent.send("not json");
        assert!(agent.receive()["message"]
            .as_str()
            .unwrap()
            .contains("malformed"));
        // A malformed export request is still answered.
        agent.send(r#"{"id":12,"type":6,"key":"linux_status","parameters":[1]}"#);
        assert!(agent.receive()["message"]
            .as_str()
            .unwrap()
            .contains("malformed"));
        let answer = agent.receive();
        assert_eq!(answer["id"], 12);
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .starts_with("Malformed request"));
        agent.send(r#"{"id":8,"type":4}"#);
        agent.send(r#"{"id":9,"type":6,"key":"linux_status","parameters":["ok"]}"#);
        assert_eq!(agent.receive()["id"], 9);
        assert_eq!(agent.finish(), Ending::Closed);
    }

    fn desync_message(agent: &mut Agent, what: &str) -> String {
        let log = agent.receive();
        assert_eq!(
            (log["type"].as_u64(), log["severity"].as_u64()),
            (Some(1), Some(2))
        );
        let message = log["message"].as_str().unwrap().to_owned();
        assert!(
            message
                .starts_with("linux_status: lost track of agent 2's messages: refused a frame of"),
            "{message}"
        );
        assert!(message.contains(what), "{message}");
        message
    }

    /// After a desync every export is answered with the reason, the connection stays open
    /// (closing it kills agent 2 6.0.14), and terminate still ends the session.
    fn assert_answers_the_desync(agent: &mut Agent, what: &str) {
        for id in [21, 22] {
            agent.send(&format!(
                r#"{{"id":{id},"type":6,"key":"linux_status","parameters":["ok"]}}"#
            ));
            let answer = agent.receive();
            assert_eq!(answer["id"], id);
            let error = answer["error"].as_str().unwrap();
            assert!(
                error.starts_with(
                    "linux_status lost track of agent 2's messages (refused a frame of"
                ) && error.contains(what)
                    && error.ends_with("until zabbix-agent2 is restarted."),
                "{error}"
            );
        }
        // Refused requests too; the desync is logged once.
        agent.send(&format!(
            r#"{{"id":23,"type":6,"key":"linux_status","parameters":[{}]}}"#,
            vec![r#""""#; message::MAX_PARAMETERS + 1].join(",")
        ));
        assert_eq!(agent.receive()["id"], 23);
    }

    #[test]
    fn an_oversized_length_is_a_desync_at_once() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":6,"key":"linux_status","parameters":["ok"]}"#);
        assert_eq!(agent.receive()["value"], "linux_status:ok");
        // A frame an agent could send (a 1 MiB parameter) is skipped and answered.
        let len = frame::MAX_INCOMING + 1;
        let mut body = br#"{"id":41,"type":6,"key":"linux_status","parameters":[""#.to_vec();
        body.resize(len - 3, b'0');
        body.extend_from_slice(br#""]}"#);
        let mut big = vec![1, 0, 0, 0];
        big.extend_from_slice(&(body.len() as u32).to_le_bytes());
        big.extend_from_slice(&body);
        agent.stream.write_all(&big).unwrap();
        assert!(agent.receive()["message"]
            .as_str()
            .unwrap()
            .contains("skipped a frame of"));
        let answer = agent.receive();
        assert_eq!(answer["id"], 41);
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("more than the 1048576 bytes"));
        // 4 GiB announced and nothing sent: the answer comes at once, not after 4 GiB.
        agent
            .stream
            .write_all(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])
            .unwrap();
        desync_message(
            &mut agent,
            "4294967295 bytes (at most 1048576 are accepted)",
        );
        // Bytes of the lost frame, then the agent's next frames.
        agent.stream.write_all(&[b'z'; 30_000]).unwrap();
        assert_answers_the_desync(&mut agent, "4294967295 bytes");
        agent.send(r#"{"id":2,"type":5}"#);
        assert_eq!(agent.session.join().unwrap(), Ending::Terminated { id: 2 });
    }

    #[test]
    fn a_frame_that_is_not_json_is_a_desync() {
        let mut agent = Agent::start(Limits::default());
        agent.stream.write_all(&[7, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        desync_message(&mut agent, "payload type 7");
        assert_answers_the_desync(&mut agent, "payload type 7");
        // A second desync is answered the same, not logged again.
        agent.stream.write_all(&[9, 0, 0, 0, 1, 0, 0, 0]).unwrap();
        agent.send(r#"{"id":24,"type":6,"key":"linux_status","parameters":[]}"#);
        let answer = agent.receive();
        assert_eq!(answer["id"], 24);
        assert!(answer["error"].as_str().unwrap().contains("payload type 7"));
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn the_queue_is_bounded_by_bytes() {
        let mut agent = Agent::start(Limits {
            workers: 1,
            queue: 100,
            queue_bytes: 10_000,
        });
        // Each request holds a 4 KiB parameter: the first runs, the second waits; the
        // third would pass 10,000 bytes and is answered busy at once.
        let long = "p".repeat(4000);
        for id in 1..=3 {
            agent.send(&format!(
                r#"{{"id":{id},"type":6,"key":"linux_status","parameters":["slow","{long}"]}}"#
            ));
        }
        let busy = agent.receive();
        assert_eq!(busy["id"], 3);
        let error = busy["error"].as_str().unwrap();
        assert!(
            error.starts_with("linux_status plugin is busy: the requests already waiting hold 8")
                && error.ends_with("they would pass the queue's 10000 bytes."),
            "{error}"
        );
        assert_eq!(agent.receive()["value"], "slow");
        assert_eq!(agent.receive()["id"], 2);
        // Answered requests free their bytes.
        agent.send(&format!(
            r#"{{"id":4,"type":6,"key":"linux_status","parameters":["a","{long}"]}}"#
        ));
        assert_eq!(agent.receive()["id"], 4);
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn too_many_parameters_are_answered_with_the_cap() {
        let mut agent = Agent::start(Limits::default());
        agent.send(&format!(
            r#"{{"id":6,"type":6,"key":"linux_status","parameters":[{}]}}"#,
            vec![r#""""#; 240_000].join(",")
        ));
        assert_eq!(
            agent.receive()["error"],
            "The request has 240000 parameters, more than the 1024 linux_status accepts from agent 2."
        );
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn the_session_ends_when_the_agent_goes_away_mid_frame() {
        let agent = Agent::start(Limits::default());
        let mut stream = &agent.stream;
        stream.write_all(&[1, 0, 0, 0, 100, 0]).unwrap();
        let ending = agent.finish();
        assert!(matches!(ending, Ending::Failed(_)), "{ending:?}");
    }

    #[test]
    fn terminate_from_agent_7_0_carries_its_id() {
        let mut agent = Agent::start(Limits::default());
        agent.send(r#"{"id":1,"type":2,"version":"6.4.0"}"#);
        assert_eq!(agent.receive()["name"], "LinuxStatus");
        agent.send(r#"{"id":2,"type":5}"#);
        assert_eq!(agent.session.join().unwrap(), Ending::Terminated { id: 2 });
    }
}

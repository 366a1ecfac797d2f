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
//! Unexpected input: an unknown message type, a malformed body or an oversized frame is
//! logged to the agent and skipped; a frame that is not JSON means the stream cannot be
//! trusted any more, and the session ends, as it does when the agent closes the
//! connection or sends terminate.

use std::any::Any;
use std::io::{Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::frame::{self, FrameReader, HeaderError, ReadError};
use super::message::{self, Request, Response, Severity};
use super::options;

/// What the protocol needs from the plugin behind it.
pub trait Handler: Send + Sync + 'static {
    /// The plugin name, as in `Plugins.<Name>.System.Path`.
    fn name(&self) -> &str;
    /// Key and description pairs to register (descriptions end with a dot).
    fn metrics(&self) -> &[(&'static str, &'static str)];
    /// Checks the plugin's configuration section, as `Name=Value` lines (registration run).
    fn validate(&self, config_text: &str) -> Result<(), String>;
    /// Applies it (serving run); an error is logged by the session.
    fn configure(&self, config_text: &str) -> Result<(), String>;
    /// Answers one request within `due.budget`; the value is sent as text.
    fn export(&self, key: &str, params: &[String], due: Due) -> Result<String, String>;
}

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

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub workers: usize,
    /// Export requests that may wait for a worker.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 4,
            queue: 256,
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
    let sender = Arc::new(Sender {
        writer: Mutex::new(writer),
    });
    let configured_timeout = Arc::new(AtomicU64::new(DEFAULT_TIMEOUT_SECONDS));
    let (queue, jobs) = mpsc::sync_channel::<Job>(limits.queue.max(1));
    let jobs = Arc::new(Mutex::new(jobs));
    for index in 0..limits.workers.max(1) {
        let (handler, sender, jobs) =
            (Arc::clone(&handler), Arc::clone(&sender), Arc::clone(&jobs));
        let spawned = thread::Builder::new()
            .name(format!("export-{index}"))
            .spawn(move || work(&*handler, &sender, &jobs));
        if let Err(error) = spawned {
            return Ending::Failed(format!("cannot start a worker thread: {error}"));
        }
    }
    let mut frames = FrameReader::new(reader);
    loop {
        let body = match frames.next_frame() {
            Ok(body) => body,
            Err(ReadError::Closed) => return Ending::Closed,
            Err(ReadError::Oversized { len, prefix }) => {
                let error = HeaderError::TooLong(len);
                sender.log(
                    Severity::Warning,
                    &format!("linux_status: skipped a {error}"),
                );
                // An export request still gets its answer: the agent would wait for it.
                if let Some((id, message::EXPORT_REQUEST)) = message::peek_id_and_type(&prefix) {
                    sender.send(&Response::Export {
                        id,
                        result: Err(&format!(
                            "The request is {len} bytes, more than the {} bytes linux_status accepts from agent 2.",
                            frame::MAX_INCOMING
                        )),
                    });
                }
                continue;
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
        match request {
            Request::Register { id, version: _ } => sender.send(&Response::Register {
                id,
                name: handler.name(),
                metrics: handler.metrics(),
                interfaces: message::EXPORTER | message::CONFIGURATOR,
            }),
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
                let applied = options::to_config_text(&options)
                    .and_then(|text| guarded(|| handler.configure(&text)));
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
                let timeout_seconds = timeout
                    .filter(|&s| s > 0)
                    .unwrap_or_else(|| configured_timeout.load(Ordering::Relaxed));
                let job = Job {
                    id,
                    key,
                    parameters,
                    deadline: Instant::now() + answer_budget(timeout_seconds),
                    timeout_seconds,
                };
                match queue.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(job)) => sender.send(&Response::Export {
                        id: job.id,
                        result: Err(&format!(
                            "linux_status plugin is busy: {} requests are already waiting.",
                            limits.queue
                        )),
                    }),
                    Err(TrySendError::Disconnected(_)) => {
                        return Ending::Failed("every worker thread has stopped".into())
                    }
                }
            }
            Request::Other { id, kind } => sender.log(
                Severity::Warning,
                &format!("linux_status: ignored a message of unknown type {kind} (id {id})"),
            ),
        }
    }
}

fn work<H: Handler, W: Write>(handler: &H, sender: &Sender<W>, jobs: &Mutex<Receiver<Job>>) {
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
            guarded(|| handler.export(&job.key, &job.parameters, due))
        };
        sender.send(&Response::Export {
            id: job.id,
            result: result.as_deref().map_err(String::as_str),
        });
    }
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
        fn configure(&self, text: &str) -> Result<(), String> {
            self.validate(text)
        }
        fn export(&self, key: &str, params: &[String], due: Due) -> Result<String, String> {
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
        // An oversized frame: skipped, then the session carries on.
        let len = frame::MAX_INCOMING + 1;
        let mut big = vec![1, 0, 0, 0];
        big.extend_from_slice(&(len as u32).to_le_bytes());
        big.resize(8 + len, b' ');
        agent.stream.write_all(&big).unwrap();
        assert!(agent.receive()["message"]
            .as_str()
            .unwrap()
            .contains("skipped a frame of"));
        // An oversized export request is answered with an error.
        let mut body = br#"{"id":41,"type":6,"key":"linux_status","parameters":[""#.to_vec();
        body.resize(len - 3, b'0');
        body.extend_from_slice(br#""]}"#);
        let mut big = vec![1, 0, 0, 0];
        big.extend_from_slice(&(body.len() as u32).to_le_bytes());
        big.extend_from_slice(&body);
        agent.stream.write_all(&big).unwrap();
        assert_eq!(agent.receive()["type"], 1);
        let answer = agent.receive();
        assert_eq!(answer["id"], 41);
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("more than the 1048576 bytes"));
        agent.send(r#"{"id":8,"type":4}"#);
        agent.send(r#"{"id":9,"type":6,"key":"linux_status","parameters":["ok"]}"#);
        assert_eq!(agent.receive()["id"], 9);
        assert_eq!(agent.finish(), Ending::Closed);
    }

    #[test]
    fn a_frame_that_is_not_json_ends_the_session() {
        let mut agent = Agent::start(Limits::default());
        agent.stream.write_all(&[7, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(agent.receive()["severity"], 2);
        let ending = agent.finish();
        assert!(
            matches!(ending, Ending::Failed(ref m) if m.contains("payload type 7")),
            "{ending:?}"
        );
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

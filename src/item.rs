//! Answers one `linux_status` request: parses the key, scans the tables, counts.
//!
//! This is the safe entry point the FFI layer calls. It owns the per-process scanner (one
//! read buffer for the life of each agent worker; workers are single-threaded processes).

use std::cell::RefCell;

use crate::key::{parse_params, ItemRequest};
use crate::scan::{Deadline, ProcSources, Scanner};
use crate::settings;
use crate::state::StateCounts;

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Unsigned(u64),
    Text(String),
}

thread_local! {
    static SCANNER: RefCell<Option<Scanner>> = const { RefCell::new(None) };
}

/// Answers a request with the process's settings.
pub fn answer(params: &[&[u8]]) -> Result<ItemValue, String> {
    let request = parse_params(params).map_err(|error| error.message().to_owned())?;
    let deadline = Deadline::after(settings::timeout());
    execute(request, settings::sources(), deadline)
}

/// Runs a parsed request against the given tables.
pub fn execute(
    request: ItemRequest,
    sources: &ProcSources,
    deadline: Deadline,
) -> Result<ItemValue, String> {
    match request {
        ItemRequest::TcpStatus(state) => {
            let counts = count_states(sources, deadline)?;
            Ok(ItemValue::Unsigned(counts.get(state)))
        }
        ItemRequest::Version => Ok(ItemValue::Text(env!("CARGO_PKG_VERSION").to_owned())),
    }
}

/// Counts every socket of both tables by state, in one pass.
pub fn count_states(sources: &ProcSources, deadline: Deadline) -> Result<StateCounts, String> {
    with_scanner(|scanner| {
        let mut counts = StateCounts::default();
        scanner
            .scan(sources, deadline, |socket| counts.add_raw(socket.state()))
            .map_err(|error| error.to_string())?;
        Ok(counts)
    })
}

fn with_scanner<T>(work: impl FnOnce(&mut Scanner) -> Result<T, String>) -> Result<T, String> {
    SCANNER.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "Internal error: scanner already in use.".to_owned())?;
        work(slot.get_or_insert_with(Scanner::default))
    })
}

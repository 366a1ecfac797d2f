//! Reading a fixture's `expected` file (format in tests/fixtures/README.md): eleven
//! `<KERNEL_STATE> <count>` lines, or one `ERROR <where>` line. Shared by
//! tests/fixtures_parse.rs and the key_grammar fuzz target through `#[path]`.

use linux_status::TcpState;

/// What a fixture directory must give.
pub enum Expected {
    Counts(Vec<(TcpState, u64)>),
    /// Where the parser must fail: a line number, `header` or `open`.
    Error(String),
}

/// Parses `expected` text; `origin` names the file in panics.
pub fn parse_expected(text: &str, origin: &str) -> Expected {
    if let Some(place) = text.trim().strip_prefix("ERROR ") {
        return Expected::Error(place.to_owned());
    }
    let counts = text
        .lines()
        .map(|line| {
            let (name, count) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("{origin}: expected <STATE> <count>, got {line:?}"));
            let state = TcpState::ALL
                .into_iter()
                .find(|s| s.kernel_name() == name)
                .unwrap_or_else(|| panic!("{origin}: unknown state {name}"));
            let count = count
                .parse()
                .unwrap_or_else(|_| panic!("{origin}: bad count {count:?}"));
            (state, count)
        })
        .collect::<Vec<_>>();
    assert_eq!(counts.len(), 11, "{origin}: all 11 states listed");
    Expected::Counts(counts)
}

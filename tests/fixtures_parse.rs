//! The parser and scanner over the real /proc text kept in tests/fixtures/ (see its
//! README): every good fixture gives exactly the counts in its `expected` file, through any
//! buffer size; every bad one fails with an error naming the file and the line.

use std::fs;
use std::path::{Path, PathBuf};

use linux_status::proc::{ProcSources, Scanner};
use linux_status::{Deadline, StateCounts};

#[path = "common/fixture_expected.rs"]
mod fixture_expected;
use fixture_expected::{parse_expected, Expected};

/// Every socket of both tables counted by state, in one /proc scan (what the proc backend
/// does for an unfiltered count).
fn count_states(sources: &ProcSources, deadline: Deadline) -> Result<StateCounts, String> {
    let mut counts = StateCounts::default();
    Scanner::default()
        .scan(sources, deadline, |socket| counts.add_raw(socket.state()))
        .map_err(|error| error.to_string())?;
    Ok(counts)
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected(dir: &Path) -> Expected {
    let path = dir.join("expected");
    let text = fs::read_to_string(&path).expect("expected file");
    parse_expected(&text, &path.display().to_string())
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.join("expected").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "fixtures present: {dirs:?}");
    dirs
}

fn scan_with_buffer(dir: &Path, buffer: usize) -> Result<StateCounts, String> {
    let mut scanner = Scanner::with_buffer_size(buffer);
    let mut counts = StateCounts::default();
    scanner
        .scan(&ProcSources::in_dir(dir), Deadline::none(), |socket| {
            counts.add_raw(socket.state())
        })
        .map_err(|error| error.to_string())?;
    Ok(counts)
}

#[test]
fn every_fixture_gives_its_expected_answer() {
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let result = count_states(&ProcSources::in_dir(&dir), Deadline::none());
        match expected(&dir) {
            Expected::Counts(counts) => {
                let got = result.unwrap_or_else(|error| panic!("{name}: {error}"));
                for (state, count) in counts {
                    assert_eq!(got.get(state), count, "{name}: {state}");
                }
                assert_eq!(got.other(), 0, "{name}: no unknown states");
            }
            Expected::Error(place) => {
                let message = result.expect_err(&name);
                let tcp = dir.join("tcp");
                assert!(
                    message.contains(&tcp.display().to_string()),
                    "{name}: names the file: {message}"
                );
                let wanted = match place.as_str() {
                    "header" => "line 1:".to_owned(),
                    "open" => "No such file or directory".to_owned(),
                    line => format!("line {line}:"),
                };
                assert!(message.contains(&wanted), "{name}: {wanted} in {message}");
            }
        }
    }
}

#[test]
fn buffer_size_does_not_change_the_answer() {
    for dir in fixture_dirs() {
        let reference = scan_with_buffer(&dir, 64 * 1024);
        // 200 bytes holds one tcp6 line (about 180): every line straddles reads.
        for buffer in [200, 257, 4096] {
            assert_eq!(
                scan_with_buffer(&dir, buffer),
                reference,
                "{} with a {buffer}-byte buffer",
                dir.display()
            );
        }
    }
}

#[test]
fn the_wide_fixture_really_is_wide() {
    let tcp = fs::read_to_string(fixtures_dir().join("wide-12k/tcp")).unwrap();
    assert!(tcp.lines().count() > 10_001);
    assert!(tcp.lines().any(|line| line.starts_with("10000:")));
}

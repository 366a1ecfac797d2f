//! Fuzz target: agent 2's plugin protocol as the plugin reads it: frames from a byte
//! stream (`agent2::frame::FrameReader`), each payload decoded (`agent2::message::decode`),
//! configuration trees turned into `Name=Value` text (`agent2::options`) and fed to the
//! module's configuration parser, and the id of undecodable bodies peeked at.
//!
//! The input is the stream exactly as the agent would send it (headers included), read in
//! pieces of varying size: the first byte picks the read size (1..=256), so short reads
//! at every boundary are covered. Checked: no panic, no hang; a decoded frame is at most
//! MAX_INCOMING bytes; every frame the plugin would write is read back to the same payload;
//! every non-empty line of the configuration text is one `Name=Value` no longer than the
//! input; a decoded export request is within the parameter caps; a refused header (unknown
//! type, oversized length) ends the reading, as it ends the plugin's session.
#![no_main]

use std::io::{self, Read};
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use linux_status::agent2::frame::{self, FrameReader, MAX_INCOMING};
use linux_status::agent2::message::{self, Request, Response};
use linux_status::agent2::options;
use linux_status::parse_config;

/// Hands out the input `step` bytes at a time.
struct Pieces<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn check_options(tree: &serde_json::Value, input_len: usize) {
    if let Ok(text) = options::to_config_text(tree) {
        // One setting per line: every non-empty line is a Name=Value of the input's size.
        for line in text.lines().filter(|line| !line.is_empty()) {
            assert!(line.contains('='), "not a setting: {line:?}");
            assert!(line.len() <= input_len, "line longer than the input");
        }
        let _ = parse_config(text.as_bytes(), Path::new(options::SOURCE_NAME));
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, stream)) = input.split_first() else {
        return;
    };
    let mut reader = FrameReader::new(Pieces {
        data: stream,
        step: usize::from(first) + 1,
    });
    // Every frame consumes at least its 8-byte header: the loop ends.
    for _ in 0..=stream.len() / frame::HEADER_LEN {
        match reader.next_frame() {
            Ok(payload) => {
                assert!(payload.len() <= MAX_INCOMING);
                let _ = message::peek_id_and_type(payload);
                match message::decode(payload) {
                    Ok(Request::Validate { options, .. })
                    | Ok(Request::Configure { options, .. }) => {
                        check_options(&options, payload.len())
                    }
                    Ok(Request::Export { id, parameters, .. }) => {
                        // The caps hold for whatever was decoded.
                        assert!(parameters.len() <= message::MAX_PARAMETERS);
                        assert!(parameters
                            .iter()
                            .all(|p| p.len() <= message::MAX_PARAMETER_BYTES));
                        // What the plugin would answer goes through the framing whole.
                        let text = parameters.join(",");
                        let body = Response::Export {
                            id,
                            result: Err(&text),
                        }
                        .encode();
                        if let Some(encoded) = frame::encode(&body) {
                            let mut back = FrameReader::new(&encoded[..]);
                            assert_eq!(back.next_frame().ok(), Some(&body[..]));
                        }
                    }
                    Ok(_) | Err(_) => {}
                }
            }
            // A refused header (a desync), the end or a truncation: the session would end.
            Err(_) => break,
        }
    }
});

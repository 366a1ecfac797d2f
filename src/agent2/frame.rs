//! Framing of agent 2's plugin protocol: an 8-byte header (two little-endian `u32`: the
//! payload type, always 1 = JSON, then the payload length) followed by the payload.
//!
//! Two traps shape this file. The agent reads a frame with one `read` per part and does not
//! loop on short reads, so [`encode`] builds header and payload in one buffer for a single
//! `write`. A frame longer than the socket buffers (about 200 KiB by default) could in
//! principle reach such a reader in pieces and desynchronise it for good; measured here, 15
//! of 15 answers of 0.3 to 8 MB reached agent 2 6.0.14 whole (the kernel hands the reader
//! what the writer keeps appending), and Zabbix's own plugins write answers of any size, so
//! [`MAX_OUTGOING`] only bounds a runaway answer. On our side nothing is assumed about read
//! sizes: [`FrameReader`] loops, and bounds what it holds in memory ([`MAX_INCOMING`]); a
//! longer frame is skipped in fixed-size chunks, so a hostile length costs no memory.

use std::fmt;
use std::io::{self, Read};

pub const HEADER_LEN: usize = 8;
/// The only payload type the protocol defines.
pub const JSON_TYPE: u32 = 1;
/// The largest payload read into memory. The agent's requests are small (a key with its
/// parameters, or the plugin's configuration section); 1 MiB leaves room for hostile keys.
pub const MAX_INCOMING: usize = 1 << 20;
/// How much of an oversized payload is kept: enough for `{"id":4294967295,"type":6,`.
pub const OVERSIZED_PREFIX: usize = 64;
/// The largest frame written: a `tcp_summary` or `listen_stats` of about 4,000 listening
/// ports, a `listen_discovery` of 50,000.
pub const MAX_OUTGOING: usize = 1 << 20;

/// A frame header that cannot be acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// A payload type other than JSON: the stream is not the protocol (or lost sync), and
    /// nothing after it can be trusted.
    UnknownType(u32),
    /// A payload longer than [`MAX_INCOMING`]; it can be skipped, the stream stays usable.
    TooLong(u32),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::UnknownType(kind) => {
                write!(
                    f,
                    "frame of payload type {kind} (only {JSON_TYPE}, JSON, exists)"
                )
            }
            HeaderError::TooLong(len) => {
                write!(
                    f,
                    "frame of {len} bytes (at most {MAX_INCOMING} are accepted)"
                )
            }
        }
    }
}

/// Reads a header: the payload length, or why the frame is refused.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> Result<usize, HeaderError> {
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if kind != JSON_TYPE {
        return Err(HeaderError::UnknownType(kind));
    }
    let len_usize = usize::try_from(len).map_err(|_| HeaderError::TooLong(len))?;
    if len_usize > MAX_INCOMING {
        return Err(HeaderError::TooLong(len));
    }
    Ok(len_usize)
}

/// A complete frame for one `write`; None if it would exceed [`MAX_OUTGOING`].
pub fn encode(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() + HEADER_LEN > MAX_OUTGOING {
        return None;
    }
    let len = u32::try_from(payload.len()).ok()?;
    let mut frame = Vec::with_capacity(HEADER_LEN + payload.len());
    frame.extend_from_slice(&JSON_TYPE.to_le_bytes());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    Some(frame)
}

/// What went wrong reading the next frame.
#[derive(Debug)]
pub enum ReadError {
    /// The agent closed the connection between frames (the normal end).
    Closed,
    /// The connection ended inside a frame.
    Truncated,
    /// A frame was refused; after `TooLong` its payload has been skipped.
    Header(HeaderError),
    /// A payload longer than [`MAX_INCOMING`], skipped; its first bytes are kept so that
    /// the request can still be answered (its `id` comes first in the agent's JSON).
    Oversized {
        len: u32,
        prefix: Vec<u8>,
    },
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Closed => f.write_str("the agent closed the connection"),
            ReadError::Truncated => f.write_str("the connection ended inside a frame"),
            ReadError::Header(error) => write!(f, "refused a {error}"),
            ReadError::Oversized { len, .. } => {
                write!(f, "skipped a {}", HeaderError::TooLong(*len))
            }
            ReadError::Io(error) => write!(f, "read failed: {error}"),
        }
    }
}

/// Reads frames from a byte stream, reusing one payload buffer.
pub struct FrameReader<R> {
    inner: R,
    payload: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            payload: Vec::new(),
        }
    }

    /// The next frame's payload (valid until the next call).
    pub fn next_frame(&mut self) -> Result<&[u8], ReadError> {
        let mut header = [0u8; HEADER_LEN];
        match fill(&mut self.inner, &mut header)? {
            0 => return Err(ReadError::Closed),
            HEADER_LEN => {}
            _ => return Err(ReadError::Truncated),
        }
        let len = match decode_header(&header) {
            Ok(len) => len,
            Err(HeaderError::TooLong(len)) => {
                let mut prefix = vec![0u8; OVERSIZED_PREFIX];
                if fill(&mut self.inner, &mut prefix)? < OVERSIZED_PREFIX {
                    return Err(ReadError::Truncated);
                }
                self.skip(u64::from(len) - OVERSIZED_PREFIX as u64)?;
                return Err(ReadError::Oversized { len, prefix });
            }
            Err(error) => return Err(ReadError::Header(error)),
        };
        self.payload.clear();
        self.payload.resize(len, 0);
        if fill(&mut self.inner, &mut self.payload)? != len {
            return Err(ReadError::Truncated);
        }
        // A burst of large frames must not pin their memory for the process's life.
        if self.payload.capacity() > 64 * 1024 && len <= 64 * 1024 {
            self.payload.shrink_to(64 * 1024);
        }
        Ok(&self.payload)
    }

    fn skip(&mut self, mut left: u64) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        while left > 0 {
            let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            let got = fill(&mut self.inner, &mut chunk[..want])?;
            if got < want {
                return Err(ReadError::Truncated);
            }
            left -= got as u64;
        }
        Ok(())
    }
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> Result<usize, ReadError> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadError::Io(error)),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader handing out at most `step` bytes per call, to exercise short reads.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_frame_is_type_length_payload_little_endian() {
        let frame = encode(br#"{"id":1,"type":3}"#).unwrap();
        assert_eq!(&frame[..8], &[1, 0, 0, 0, 17, 0, 0, 0]);
        assert_eq!(&frame[8..], br#"{"id":1,"type":3}"#);
        assert_eq!(encode(b"").unwrap(), vec![1, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn outgoing_frames_are_bounded() {
        assert!(encode(&vec![b'x'; MAX_OUTGOING - HEADER_LEN]).is_some());
        assert!(encode(&vec![b'x'; MAX_OUTGOING - HEADER_LEN + 1]).is_none());
    }

    #[test]
    fn headers_are_checked() {
        assert_eq!(decode_header(&[1, 0, 0, 0, 0x10, 0, 0, 0]), Ok(16));
        assert_eq!(
            decode_header(&[2, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderError::UnknownType(2))
        );
        assert_eq!(
            decode_header(&[1, 0, 0, 0, 1, 0, 0x10, 0]),
            Err(HeaderError::TooLong(0x10_0001))
        );
        assert_eq!(
            decode_header(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            Err(HeaderError::TooLong(u32::MAX))
        );
    }

    #[test]
    fn frames_survive_one_byte_reads() {
        let mut stream = encode(b"first").unwrap();
        stream.extend(encode(b"").unwrap());
        stream.extend(encode(b"third").unwrap());
        let mut reader = FrameReader::new(Trickle {
            data: &stream,
            step: 1,
        });
        assert_eq!(reader.next_frame().unwrap(), b"first");
        assert_eq!(reader.next_frame().unwrap(), b"");
        assert_eq!(reader.next_frame().unwrap(), b"third");
        assert!(matches!(reader.next_frame(), Err(ReadError::Closed)));
    }

    #[test]
    fn endings_inside_a_frame_are_truncation() {
        let frame = encode(b"payload").unwrap();
        for cut in 1..frame.len() {
            let mut reader = FrameReader::new(&frame[..cut]);
            assert!(
                matches!(reader.next_frame(), Err(ReadError::Truncated)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn an_oversized_frame_is_skipped_and_the_next_one_read() {
        let len = MAX_INCOMING + 3;
        let mut stream = vec![1, 0, 0, 0];
        stream.extend_from_slice(&(len as u32).to_le_bytes());
        stream.resize(stream.len() + len, b'z');
        stream.extend(encode(b"after").unwrap());
        let mut reader = FrameReader::new(Trickle {
            data: &stream,
            step: 5000,
        });
        match reader.next_frame() {
            Err(ReadError::Oversized { len: got, prefix }) => {
                assert_eq!(got as usize, len);
                assert_eq!(prefix, vec![b'z'; OVERSIZED_PREFIX]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reader.next_frame().unwrap(), b"after");
    }

    #[test]
    fn a_hostile_length_with_no_payload_is_truncation_not_allocation() {
        let stream = [1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f];
        let mut reader = FrameReader::new(&stream[..]);
        assert!(matches!(reader.next_frame(), Err(ReadError::Truncated)));
    }
}

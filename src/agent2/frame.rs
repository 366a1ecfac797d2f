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
//! sizes: [`FrameReader`] loops, and bounds what it holds in memory ([`MAX_INCOMING`]). A
//! header announcing a longer payload (or another payload type) is refused as it is read,
//! before any of its payload: the agent never sends one, so the stream has lost its frame
//! boundaries, and skipping up to 4 GiB in the hope of finding them again would leave every
//! request behind it unanswered meanwhile. The session ends there instead.

use std::fmt;
use std::io::{self, Read};

pub const HEADER_LEN: usize = 8;
/// The only payload type the protocol defines.
pub const JSON_TYPE: u32 = 1;
/// The largest payload read into memory. The agent's requests are small (a key with its
/// parameters, or the plugin's configuration section); 1 MiB leaves room for hostile keys.
pub const MAX_INCOMING: usize = 1 << 20;
/// The longest payload skipped rather than taken for a desync. Real agents forward any key
/// a passive check carries (a 1 MiB parameter makes a frame over [`MAX_INCOMING`]; 16 MiB
/// keys were measured passing agent 2), so such a frame is skipped in 8 KiB chunks and its
/// request answered; a longer length is a desync at once (not 4 GiB skipped).
pub const MAX_SKIPPED: usize = 64 << 20;
/// How much of a skipped payload is kept: enough for `{"id":4294967295,"type":6,`.
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
    /// A payload longer than [`MAX_INCOMING`]: like an unknown type, a desynchronised
    /// stream (or a hostile peer), refused before its payload is read.
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
    /// A header was refused; nothing of its payload has been read.
    Header(HeaderError),
    /// A payload longer than [`MAX_INCOMING`] but within [`MAX_SKIPPED`], skipped; its
    /// first bytes are kept so the request can still be answered (`id` comes first).
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

/// What [`FrameReader::resync`] looks for: a JSON frame header, then the start of every
/// body the agent writes (`{"id":`, Go's field order). Go's JSON encoder escapes control
/// bytes inside strings, so the header's NULs cannot occur inside a body.
const SYNC_PREFIX: [u8; 4] = [1, 0, 0, 0];
const SYNC_BODY: &[u8] = br#"{"id":"#;
const SYNC_LEN: usize = HEADER_LEN + 6;
/// How much [`FrameReader::resync`] reads at a time (and so holds, with a pattern's length).
pub const RESYNC_CHUNK: usize = 8192;

/// Reads frames from a byte stream, reusing one payload buffer.
pub struct FrameReader<R> {
    inner: R,
    payload: Vec<u8>,
    /// Bytes read by [`FrameReader::resync`] past the point it stopped at, read first.
    pending: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            payload: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// After a refused header: discards bytes up to the next place that looks like the start
    /// of an agent's frame (a JSON header with an acceptable length, then `{"id":`), so the
    /// next [`FrameReader::next_frame`] starts there. Holds at most [`RESYNC_CHUNK`] plus a
    /// pattern's length. A false match only costs frames: the caller still has to decode it.
    pub fn resync(&mut self) -> Result<(), ReadError> {
        loop {
            let found = self.pending.windows(SYNC_LEN).position(|window| {
                window[..4] == SYNC_PREFIX
                    && window[HEADER_LEN..] == *SYNC_BODY
                    && u32::from_le_bytes([window[4], window[5], window[6], window[7]]) as usize
                        <= MAX_INCOMING
            });
            if let Some(at) = found {
                self.pending.drain(..at);
                return Ok(());
            }
            let keep = self.pending.len().min(SYNC_LEN - 1);
            self.pending.drain(..self.pending.len() - keep);
            let mut chunk = [0u8; RESYNC_CHUNK];
            let got = loop {
                match self.inner.read(&mut chunk) {
                    Ok(n) => break n,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(ReadError::Io(error)),
                }
            };
            if got == 0 {
                return Err(ReadError::Closed);
            }
            self.pending.extend_from_slice(&chunk[..got]);
        }
    }

    fn skip(&mut self, mut left: u64) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        while left > 0 {
            let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
            let got = self.fill(&mut chunk[..want])?;
            if got < want {
                return Err(ReadError::Truncated);
            }
            left -= got as u64;
        }
        Ok(())
    }

    /// Fills `buffer` from the pending bytes, then from the stream; the bytes read.
    fn fill(&mut self, buffer: &mut [u8]) -> Result<usize, ReadError> {
        let from_pending = self.pending.len().min(buffer.len());
        buffer[..from_pending].copy_from_slice(&self.pending[..from_pending]);
        self.pending.drain(..from_pending);
        Ok(from_pending + fill(&mut self.inner, &mut buffer[from_pending..])?)
    }

    /// The next frame's payload (valid until the next call).
    pub fn next_frame(&mut self) -> Result<&[u8], ReadError> {
        let mut header = [0u8; HEADER_LEN];
        match self.fill(&mut header)? {
            0 => return Err(ReadError::Closed),
            HEADER_LEN => {}
            _ => return Err(ReadError::Truncated),
        }
        let len = match decode_header(&header) {
            Ok(len) => len,
            Err(HeaderError::TooLong(len)) if len as usize <= MAX_SKIPPED => {
                let mut prefix = vec![0u8; OVERSIZED_PREFIX];
                if self.fill(&mut prefix)? < OVERSIZED_PREFIX {
                    return Err(ReadError::Truncated);
                }
                self.skip(u64::from(len) - OVERSIZED_PREFIX as u64)?;
                return Err(ReadError::Oversized { len, prefix });
            }
            Err(error) => return Err(ReadError::Header(error)),
        };
        self.payload.clear();
        self.payload.resize(len, 0);
        let mut payload = std::mem::take(&mut self.payload);
        let filled = self.fill(&mut payload);
        self.payload = payload;
        if filled? != len {
            return Err(ReadError::Truncated);
        }
        // A burst of large frames must not pin their memory for the process's life.
        if self.payload.capacity() > 64 * 1024 && len <= 64 * 1024 {
            self.payload.shrink_to(64 * 1024);
        }
        Ok(&self.payload)
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

    /// Counts what is read from it, to prove nothing after a refused header is.
    struct Counting<'a> {
        data: &'a [u8],
        read: usize,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.data.len() - self.read);
            buf[..n].copy_from_slice(&self.data[self.read..self.read + n]);
            self.read += n;
            Ok(n)
        }
    }

    #[test]
    fn an_oversized_length_is_a_desync_at_once() {
        for len in [MAX_SKIPPED as u32 + 1, u32::MAX] {
            let mut stream = vec![1, 0, 0, 0];
            stream.extend_from_slice(&len.to_le_bytes());
            stream.resize(stream.len() + 3 * 8192, b'z');
            stream.extend(encode(b"after").unwrap());
            let mut reader = FrameReader::new(Counting {
                data: &stream,
                read: 0,
            });
            match reader.next_frame() {
                Err(ReadError::Header(HeaderError::TooLong(got))) => assert_eq!(got, len),
                other => panic!("{other:?}"),
            }
            // Not one byte of the announced payload was read (or held).
            assert_eq!(reader.inner.read, HEADER_LEN);
            assert_eq!(reader.payload.capacity(), 0);
        }
        // The largest accepted payload is still read whole.
        let mut stream = encode(&vec![b'y'; MAX_INCOMING]).unwrap_or_else(|| {
            let mut frame = vec![1, 0, 0, 0];
            frame.extend_from_slice(&(MAX_INCOMING as u32).to_le_bytes());
            frame.resize(HEADER_LEN + MAX_INCOMING, b'y');
            frame
        });
        stream.truncate(HEADER_LEN + MAX_INCOMING);
        let mut reader = FrameReader::new(&stream[..]);
        assert_eq!(reader.next_frame().unwrap().len(), MAX_INCOMING);
    }

    #[test]
    fn resync_finds_the_next_frame_of_the_agent() {
        let next = encode(br#"{"id":9,"type":6}"#).unwrap();
        // Garbage with near misses: a header with a too-long length before `{"id":`, a
        // header without a body, then the real frame past a chunk boundary.
        let mut stream = vec![b'x'; RESYNC_CHUNK - 3];
        stream.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x20, 0]);
        stream.extend_from_slice(br#"{"id":1}"#);
        stream.extend_from_slice(&[1, 0, 0, 0, 5, 0, 0, 0, b'{', b'}']);
        stream.extend_from_slice(&next);
        stream.extend(encode(b"after").unwrap());
        for step in [1, 7, 5000, usize::MAX] {
            let mut reader = FrameReader::new(Trickle {
                data: &stream,
                step,
            });
            reader.resync().unwrap();
            assert_eq!(reader.next_frame().unwrap(), br#"{"id":9,"type":6}"#);
            assert_eq!(reader.next_frame().unwrap(), b"after");
            assert!(reader.pending.capacity() <= 2 * RESYNC_CHUNK + SYNC_LEN);
            assert!(matches!(reader.resync(), Err(ReadError::Closed)));
        }
    }

    #[test]
    fn a_frame_an_agent_could_send_is_skipped_and_the_next_one_read() {
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
    fn an_unknown_type_is_a_desync_at_once() {
        let stream = [2, 0, 0, 0, 4, 0, 0, 0, b'{', b'}', b' ', b' '];
        let mut reader = FrameReader::new(Counting {
            data: &stream,
            read: 0,
        });
        assert!(matches!(
            reader.next_frame(),
            Err(ReadError::Header(HeaderError::UnknownType(2)))
        ));
        assert_eq!(reader.inner.read, HEADER_LEN);
    }

    #[test]
    fn a_hostile_length_with_no_payload_is_refused_not_allocated() {
        let stream = [1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f];
        let mut reader = FrameReader::new(&stream[..]);
        assert!(matches!(
            reader.next_frame(),
            Err(ReadError::Header(HeaderError::TooLong(0x7fff_ffff)))
        ));
        assert_eq!(reader.payload.capacity(), 0);
    }
}

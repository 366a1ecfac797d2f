//! The C library's `memchr`, for the parser's newline search.
//!
//! A /proc line is 150-180 bytes and finding its end is most of the parser's own work;
//! glibc's memchr compares 16-32 bytes per instruction with the CPU's vector unit, which
//! safe portable Rust does not reach. The call is wrapped here, in the FFI layer, behind a
//! safe slice API.

/// The index of the first `needle` in `haystack`.
#[inline]
pub fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    if haystack.is_empty() {
        return None;
    }
    let start = haystack.as_ptr();
    // SAFETY: memchr reads at most `haystack.len()` bytes from `start`, all inside the slice.
    let found = unsafe { libc::memchr(start.cast(), libc::c_int::from(needle), haystack.len()) };
    if found.is_null() {
        None
    } else {
        // SAFETY: a non-null result points into the slice, at or after `start`.
        Some(unsafe { found.cast::<u8>().offset_from(start) } as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_occurrence_or_none() {
        assert_eq!(memchr(b'\n', b""), None);
        assert_eq!(memchr(b'\n', b"abc"), None);
        assert_eq!(memchr(b'\n', b"\n"), Some(0));
        let mut long = vec![b'x'; 1000];
        long[777] = b'\n';
        long[900] = b'\n';
        assert_eq!(memchr(b'\n', &long), Some(777));
        assert_eq!(memchr(b'\n', &long[778..]), Some(122));
    }
}

//! The shared page behind [`crate::snapshot::SharedSnapshot`]: one anonymous `MAP_SHARED`
//! mapping made in `zbx_module_init`, before the agent forks its workers, so every worker
//! sees the same memory.

use std::mem::size_of;
use std::ptr;

use crate::snapshot::SharedSnapshot;

/// Maps a zero-filled shared page holding a `SharedSnapshot`, for the life of the process
/// and its children; None if the kernel refuses (the workers then keep per-process caches).
pub fn map_shared_snapshot() -> Option<&'static SharedSnapshot> {
    // SAFETY: an anonymous mapping with no address hint touches no existing memory; the
    // result is checked against MAP_FAILED before use.
    let memory = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size_of::<SharedSnapshot>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is page-aligned (more than AtomicU64 needs), large enough, filled
    // with zeros (a valid SharedSnapshot: every field is an atomic integer), only ever
    // accessed through atomics, and never unmapped, so the reference may be 'static.
    Some(unsafe { &*memory.cast::<SharedSnapshot>() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Lookup;

    #[test]
    fn the_page_is_a_usable_snapshot() {
        let shared = map_shared_snapshot().expect("mmap");
        assert_eq!(shared.lookup(1, 10, 10), Lookup::Refresh);
        shared.release();
    }
}

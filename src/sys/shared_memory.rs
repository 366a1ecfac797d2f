//! Shared memory for the agent's workers: one anonymous `MAP_SHARED` mapping made before
//! the agent forks them, so every worker sees the same memory.

use std::mem::size_of;
use std::ptr;

/// Maps zero-filled shared memory for one `T`, for the life of the process and its children
/// (never unmapped); None if the kernel refuses.
///
/// # Safety
/// All-zero bytes must be a valid `T`, and `T` must be safe to share between processes: only
/// atomics, no pointers.
pub unsafe fn map_shared_zeroed<T>() -> Option<&'static T> {
    // SAFETY: an anonymous mapping with no address hint touches no existing memory; the
    // result is checked against MAP_FAILED before use.
    let memory = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size_of::<T>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if memory == libc::MAP_FAILED {
        return None;
    }
    // SAFETY: the mapping is page-aligned (more than any atomic needs), large enough, filled
    // with zeros (valid by the caller's guarantee) and never unmapped, so 'static holds.
    Some(unsafe { &*memory.cast::<T>() })
}

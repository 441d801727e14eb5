//! The process allocator: mimalloc for small allocations, the system allocator for large ones.
//!
//! A stage allocates per event (parsed JSON trees, owned strings, encoded records), and glibc's
//! malloc was a fifth of the normalizer's time; mimalloc's thread-local free lists make those
//! allocations cheap. Large buffers (request bodies, decoded gzip, whole batches) are another
//! matter: mimalloc keeps freed pages of a thread's heap for reuse, and a body decoded on one
//! blocking thread and freed on another stayed resident, so a burst of gzip bodies left the
//! receiver hundreds of MiB over its body budget. The system allocator maps such buffers on
//! their own and unmaps them when freed, so the budget holds. The split is by size alone, which
//! every call of [`GlobalAlloc`] carries, so a block is always freed by the allocator that made it.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Allocations of at least this many bytes go to the system allocator.
pub const LARGE: usize = 256 * 1024;

/// Routes each allocation by its size: below [`LARGE`] to mimalloc, from it to the system's.
pub struct Allocator;

fn is_large(size: usize) -> bool {
    size >= LARGE
}

// SAFETY: every method forwards to an allocator that upholds `GlobalAlloc`'s contract, chosen by
// the layout's size. The caller passes the same layout to `dealloc` and `realloc` that it got the
// block with, so a block always returns to the allocator that made it; a `realloc` that crosses
// `LARGE` moves the block between them the way `GlobalAlloc::realloc`'s default does.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size()) {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size()) {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (is_large(layout.size()), is_large(new_size)) {
            (false, false) => unsafe { MiMalloc.realloc(ptr, layout, new_size) },
            (true, true) => unsafe { System.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, does not
                // overflow `isize` (`GlobalAlloc::realloc`'s contract).
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are live, distinct and at least this long.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LARGE;

    /// A buffer that grows from small to large and shrinks back keeps its bytes at every step
    /// (each crossing moves it between the two allocators).
    #[test]
    fn a_buffer_keeps_its_bytes_across_the_size_split() {
        let mut buffer: Vec<u8> = Vec::with_capacity(16);
        let mut expected = 0u8;
        while buffer.len() < 4 * LARGE {
            buffer.push(expected);
            expected = expected.wrapping_add(7);
        }
        assert!(buffer.capacity() >= 4 * LARGE);
        buffer.truncate(100);
        buffer.shrink_to_fit();
        assert!(buffer.capacity() < LARGE);
        let mut value = 0u8;
        for byte in &buffer {
            assert_eq!(*byte, value);
            value = value.wrapping_add(7);
        }
        let zeroed = vec![0u8; LARGE + 1];
        assert!(zeroed.iter().all(|b| *b == 0));
    }
}

//! The process allocator of every `gf` binary: mimalloc for small blocks, the system allocator
//! for large ones.
//!
//! Per-event work (parsed JSON trees, owned strings, encoded records, futures) makes millions
//! of small allocations a second, and under a sustained load glibc's `malloc` and `free` took
//! about a fifth of `gf run all`'s CPU (BENCHMARKS.md, "The process allocator"). mimalloc
//! serves small blocks faster, but keeps the pages of freed blocks in the heap of the thread
//! that made them: request bodies and decoded gzip, made on one thread and freed on another,
//! stayed resident and broke the receiver's body budget. Blocks of [`SPLIT`] bytes and more
//! therefore go to the system allocator, whose freed blocks any thread can reuse, and which
//! maps the largest on their own (from its `mmap` threshold, 128 KiB at first) and unmaps them
//! when they are freed.
//!
//! A block always returns to the allocator that made it: `GlobalAlloc` is given the same size
//! on `dealloc` as on `alloc` (and the new size after `realloc`), so the size alone decides.
//!
//! Each binary opts in with
//! `#[global_allocator] static ALLOCATOR: gf_runtime::alloc::Split = gf_runtime::alloc::Split;`.

use std::alloc::{GlobalAlloc, Layout, System};

use mimalloc::MiMalloc;

/// Blocks from this size on go to the system allocator.
pub const SPLIT: usize = 16 * 1024;

/// mimalloc below [`SPLIT`] bytes, the system allocator from it.
pub struct Split;

fn small(size: usize) -> bool {
    size < SPLIT
}

// SAFETY: every block is made by one of two sound allocators, chosen by its size, and
// `dealloc`/`realloc` receive the size the block was made with (the `GlobalAlloc` contract), so
// a block is always freed or resized by the allocator that made it; a `realloc` across the split
// makes the new block with one and frees the old with the other.
unsafe impl GlobalAlloc for Split {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on unchanged.
        unsafe {
            if small(layout.size()) {
                MiMalloc.alloc(layout)
            } else {
                System.alloc(layout)
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if small(layout.size()) {
                MiMalloc.alloc_zeroed(layout)
            } else {
                System.alloc_zeroed(layout)
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `layout` is the one `ptr` was made with, so its size names the allocator
        // that made it.
        unsafe {
            if small(layout.size()) {
                MiMalloc.dealloc(ptr, layout)
            } else {
                System.dealloc(ptr, layout)
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: on the same side of the split, the allocator that made `ptr` resizes it.
        // Across it, a new block is made by the other one, the contents copied (the smaller of
        // the two sizes) and the old block freed by its own; `new_size` with `layout`'s
        // alignment is a valid layout by `realloc`'s contract.
        unsafe {
            match (small(layout.size()), small(new_size)) {
                (true, true) => MiMalloc.realloc(ptr, layout, new_size),
                (false, false) => System.realloc(ptr, layout, new_size),
                _ => {
                    let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                    let new = self.alloc(new_layout);
                    if !new.is_null() {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                    new
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether mimalloc made the block at `ptr`.
    fn mimalloc_owns(ptr: *mut u8) -> bool {
        // SAFETY: only reads mimalloc's own bookkeeping for the address.
        unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr.cast()) }
    }

    /// Each block is made by the allocator its size names, keeps its contents when it grows or
    /// shrinks across the split, and moves to the other allocator when it does.
    #[test]
    fn blocks_are_made_and_moved_by_their_size() {
        for align in [1, 8, 64] {
            for (from, to) in [
                (100, SPLIT + 100),
                (SPLIT + 100, 100),
                (SPLIT - 1, SPLIT),
                (SPLIT, SPLIT - 1),
                (10, 20),
                (SPLIT * 4, SPLIT * 8),
            ] {
                let layout = Layout::from_size_align(from, align).unwrap();
                // SAFETY: non-zero sizes, valid layouts; each block is freed once with the
                // layout (size) it has at that moment.
                unsafe {
                    let ptr = Split.alloc(layout);
                    assert!(!ptr.is_null());
                    assert_eq!(ptr as usize % align, 0);
                    assert_eq!(mimalloc_owns(ptr), from < SPLIT, "{from} bytes");
                    for i in 0..from {
                        *ptr.add(i) = (i % 251) as u8;
                    }
                    let moved = Split.realloc(ptr, layout, to);
                    assert!(!moved.is_null());
                    assert_eq!(moved as usize % align, 0);
                    assert_eq!(mimalloc_owns(moved), to < SPLIT, "{from} -> {to} bytes");
                    for i in 0..from.min(to) {
                        assert_eq!(*moved.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                    }
                    Split.dealloc(moved, Layout::from_size_align(to, align).unwrap());
                    let zeroed = Split.alloc_zeroed(layout);
                    assert!(!zeroed.is_null());
                    assert_eq!(mimalloc_owns(zeroed), from < SPLIT);
                    assert!((0..from).all(|i| *zeroed.add(i) == 0));
                    Split.dealloc(zeroed, layout);
                }
            }
        }
    }
}

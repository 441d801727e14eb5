//! The process allocator of every `gf` binary: mimalloc for small blocks, the system allocator
//! for large ones.
//!
//! Per-event work (parsed JSON trees, owned strings, encoded records, futures) makes millions
//! of small allocations a second, and under a sustained load glibc's `malloc` and `free` took
//! about a fifth of `gf run all`'s CPU (BENCHMARKS.md, "The process allocator"). mimalloc
//! serves small blocks faster, but keeps the pages of freed blocks in the heap of the thread
//! that made them: request bodies and decoded gzip, made on one thread and freed on another,
//! stayed resident and broke the receiver's body budget. Blocks of [`SPLIT`] bytes and more
//! therefore go to the system allocator, which maps large blocks on their own and returns them
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

// SAFETY: every method hands the caller's layout to exactly one of two sound allocators, chosen
// by the size, and `dealloc`/`realloc` receive the size the block was made with (the
// `GlobalAlloc` contract), so a block is always freed or resized by the allocator that made it.
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

    /// Blocks grown and shrunk across the split keep their contents, whichever allocator holds
    /// them, and are freed by the one that made them (a mismatch would crash or corrupt).
    #[test]
    fn blocks_keep_their_bytes_across_the_split() {
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
                    for i in 0..from {
                        *ptr.add(i) = (i % 251) as u8;
                    }
                    let grown = Split.realloc(ptr, layout, to);
                    assert!(!grown.is_null());
                    assert_eq!(grown as usize % align, 0);
                    for i in 0..from.min(to) {
                        assert_eq!(*grown.add(i), (i % 251) as u8, "{from} -> {to} at {i}");
                    }
                    Split.dealloc(grown, Layout::from_size_align(to, align).unwrap());
                    let zeroed = Split.alloc_zeroed(layout);
                    assert!((0..from).all(|i| *zeroed.add(i) == 0));
                    Split.dealloc(zeroed, layout);
                }
            }
        }
    }
}

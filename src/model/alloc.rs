//! The process's global allocator: blocks of [`LARGE`] bytes and more (the
//! activations and gradients of a training step) are mapped on their own,
//! backed by transparent huge pages, and unmapped when freed; everything
//! else goes to the system allocator.
//!
//! The library does not install it: the `foldwise` binary (`src/main.rs`)
//! and the model benchmark (`benches/model.rs`) declare
//! `#[global_allocator] static GLOBAL: Allocator = Allocator;` themselves.
//!
//! Why: glibc serves such blocks from its arenas (their mmap threshold is
//! fixed at 32 MiB by `model::tune_allocator`, so that activations are
//! not mapped and faulted in again on every step). There a training step's
//! multi-megabyte tensors, allocated and freed in a different order in
//! each part of the step, leave holes that smaller blocks split, and the
//! resident peak stays well above the live data. Mapped on their own, each
//! block returns to the system when freed, so the resident peak follows
//! the live data (figures: docs/benchmarks.md, section "Training memory",
//! step 3). Huge pages make mapping a 16 MiB block cost 8 page faults
//! instead of 4,096.
//!
//! Guarantees: every block has at least the requested size and alignment
//! (alignments above a page go to the system allocator); a large
//! zero-initialised block comes from a fresh mapping, zeroed by the kernel.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of this size and more are mapped on their own.
pub const LARGE: usize = 4 << 20;
const PAGE: usize = 4096;
const HUGE_PAGE: usize = 2 << 20;

/// See the module documentation; installed by the binary, not the library.
pub struct Allocator;

fn mapped(layout: Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= LARGE && layout.align() <= PAGE
}

#[cfg(target_os = "linux")]
unsafe fn map(size: usize) -> *mut u8 {
    let len = size.next_multiple_of(HUGE_PAGE);
    // SAFETY: an anonymous private mapping has no preconditions.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    // Advice only: without transparent huge pages the block still works.
    // SAFETY: p..p+len is the mapping just made.
    unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
    p.cast()
}

#[cfg(target_os = "linux")]
unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: p came from `map(size)`, which mapped this length.
    unsafe { libc::munmap(p.cast(), size.next_multiple_of(HUGE_PAGE)) };
}

#[cfg(not(target_os = "linux"))]
unsafe fn map(_size: usize) -> *mut u8 {
    unreachable!("`mapped` is false off Linux")
}

#[cfg(not(target_os = "linux"))]
unsafe fn unmap(_p: *mut u8, _size: usize) {
    unreachable!("`mapped` is false off Linux")
}

// SAFETY: blocks come either from the system allocator or from their own
// mapping of at least the requested size, page-aligned (so aligned for
// every layout `mapped` accepts); `mapped` decides both ways by the layout,
// which `dealloc` and `realloc` receive unchanged.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            // SAFETY: see the impl.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if mapped(layout) {
            // A fresh anonymous mapping reads as zeros.
            // SAFETY: see the impl.
            unsafe { map(layout.size()) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if mapped(layout) {
            // SAFETY: allocated by `map(layout.size())`.
            unsafe { unmap(ptr, layout.size()) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract: new_size is valid for the alignment.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !mapped(layout) && !mapped(new) {
            // SAFETY: forwarded contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: a new block, the overlap copied, the old one freed.
        unsafe {
            let p = self.alloc(new);
            if !p.is_null() {
                std::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_are_zeroed_aligned_and_reallocated_with_their_contents() {
        let a = Allocator;
        for (size, align) in [(LARGE, 8), (LARGE + 3, 64), (3 * LARGE, 4096), (100, 8)] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid non-zero layout; the block is used within it
            // and freed with it.
            unsafe {
                let p = a.alloc_zeroed(l);
                assert!(!p.is_null() && (p as usize).is_multiple_of(align));
                assert!(std::slice::from_raw_parts(p, size).iter().all(|b| *b == 0));
                std::ptr::write_bytes(p, 7, size);
                // Across the threshold both ways.
                let q = a.realloc(p, l, size * 2 + LARGE);
                assert!(std::slice::from_raw_parts(q, size).iter().all(|b| *b == 7));
                let l2 = Layout::from_size_align(size * 2 + LARGE, align).unwrap();
                let r = a.realloc(q, l2, 10);
                assert!(std::slice::from_raw_parts(r, 10).iter().all(|b| *b == 7));
                a.dealloc(r, Layout::from_size_align(10, align).unwrap());
            }
        }
    }
}

//! Big tables on hugepages, and cache prefetches.
//!
//! A worker's connection table and index are hundreds of megabytes read at
//! random, a cache line per packet. On 4 KiB pages nearly every one of those
//! reads also misses the TLB; on 2 MiB pages the TLB covers 512 times as
//! much. [`HugeArray`] maps its memory with `MAP_HUGETLB` (pages from the
//! pool `/proc/sys/vm/nr_hugepages` reserves, the pool DPDK uses too), and
//! when the pool has too few free pages, ordinary memory with transparent
//! hugepages asked for (`madvise(MADV_HUGEPAGE)`), which the kernel grants
//! as it can. [`HugeArray::backing`] says which it got, so the daemon can
//! warn. Arrays under one hugepage stay on ordinary pages: a hugepage each
//! would waste the pool on small tables.
//!
//! Every element is written when the array is made, so every page is
//! faulted in before the packet path first reads it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Bytes of one hugepage (x86-64's and arm64's default size).
pub const HUGEPAGE_BYTES: usize = 2 << 20;

/// What memory a [`HugeArray`] lies on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Reserved 2 MiB hugepages (`MAP_HUGETLB`).
    Hugepages,
    /// Ordinary pages, transparent hugepages asked for; why the reserved
    /// pool was not used is in [`HugeArray::fallback`].
    Transparent,
    /// Ordinary pages: the array is smaller than a hugepage.
    Small,
}

impl fmt::Display for Backing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backing::Hugepages => "2 MiB hugepages",
            Backing::Transparent => "ordinary pages (transparent hugepages asked for)",
            Backing::Small => "ordinary pages (small)",
        })
    }
}

/// A fixed-length array of `T` in its own anonymous mapping; see the
/// module documentation.
pub struct HugeArray<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    /// Bytes mapped (a whole number of pages).
    mapped: usize,
    backing: Backing,
    /// Why `MAP_HUGETLB` was refused (errno), when it was.
    fallback: Option<i32>,
}

// SAFETY: the array owns its mapping exclusively, like a Box<[T]>.
unsafe impl<T: Copy + Send> Send for HugeArray<T> {}
// SAFETY: shared access only reads, like &[T].
unsafe impl<T: Copy + Sync> Sync for HugeArray<T> {}

impl<T: Copy> HugeArray<T> {
    /// `len` copies of `value`.
    ///
    /// # Panics
    ///
    /// If the memory cannot be mapped at all, or `T` needs an alignment
    /// above a page's.
    pub fn new(len: usize, value: T) -> Self {
        assert!(align_of::<T>() <= 4096, "HugeArray: alignment above a page");
        let mapped = Self::mapped_bytes_for(len);
        let (ptr, backing, fallback) = if mapped >= HUGEPAGE_BYTES {
            match map(mapped, libc::MAP_HUGETLB) {
                Ok(ptr) => (ptr, Backing::Hugepages, None),
                Err(errno) => {
                    let ptr = map(mapped, 0).unwrap_or_else(|e| no_memory(mapped, e));
                    // SAFETY: ptr..ptr+mapped is the mapping just made.
                    // Advice only: refused (THP compiled out or "never"),
                    // the memory is the same, on 4 KiB pages.
                    unsafe { libc::madvise(ptr.as_ptr(), mapped, libc::MADV_HUGEPAGE) };
                    (ptr, Backing::Transparent, Some(errno))
                }
            }
        } else {
            let ptr = map(mapped, 0).unwrap_or_else(|e| no_memory(mapped, e));
            (ptr, Backing::Small, None)
        };
        let ptr = ptr.cast::<T>();
        for i in 0..len {
            // SAFETY: i < len and len * size_of::<T>() <= mapped; the mapping
            // is page-aligned, hence aligned for T.
            unsafe { ptr.as_ptr().add(i).write(value) };
        }
        HugeArray {
            ptr,
            len,
            mapped,
            backing,
            fallback,
        }
    }

    /// Bytes mapped for the array (its elements rounded up to whole pages).
    pub fn mapped_bytes(&self) -> usize {
        self.mapped
    }

    /// What [`Self::mapped_bytes`] of an array of `len` will be, without
    /// making it: whole hugepages from one hugepage's worth up, whole 4 KiB
    /// pages below.
    pub fn mapped_bytes_for(len: usize) -> usize {
        let bytes = len
            .checked_mul(size_of::<T>())
            .expect("HugeArray: size overflows")
            .max(1);
        if bytes >= HUGEPAGE_BYTES {
            bytes.next_multiple_of(HUGEPAGE_BYTES)
        } else {
            bytes.next_multiple_of(4096)
        }
    }

    /// What memory the array lies on.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// Why reserved hugepages were not used (an errno, ENOMEM when the
    /// pool is short), when the array is big enough to want them.
    pub fn fallback(&self) -> Option<i32> {
        self.fallback
    }
}

/// An anonymous private read-write mapping of `bytes` with extra `flags`.
fn map(bytes: usize, flags: i32) -> Result<NonNull<libc::c_void>, i32> {
    // SAFETY: a fresh anonymous mapping aliases nothing.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    NonNull::new(ptr).ok_or(0)
}

fn no_memory(bytes: usize, errno: i32) -> ! {
    panic!(
        "cannot map {bytes} bytes: {}",
        std::io::Error::from_raw_os_error(errno)
    )
}

impl<T: Copy> Deref for HugeArray<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: len initialised elements at ptr, owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeArray<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in deref, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeArray<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new, of `mapped` bytes, used by no one
        // after this. T: Copy has no destructor to run.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.mapped) };
    }
}

impl<T: Copy> fmt::Debug for HugeArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HugeArray")
            .field("len", &self.len)
            .field("mapped", &self.mapped)
            .field("backing", &self.backing)
            .finish()
    }
}

/// Asks the CPU to bring the cache line holding `value` into every cache
/// level, without waiting for it: a hint that changes no result.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching never faults, whatever the address; this one is
    // of a live reference anyway. SSE is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Where eight 16-bit lanes equal `value`: bit `2 * i` set for lane `i`
/// (one SSE2 compare; elsewhere a loop).
#[inline(always)]
pub fn lanes_equal(lanes: &[u16; 8], value: u16) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi16, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi16,
        };
        // SAFETY: an unaligned 16-byte load of the 16 bytes `lanes` borrows;
        // SSE2 is part of x86-64.
        unsafe {
            let v = _mm_loadu_si128(lanes.as_ptr().cast::<__m128i>());
            let equal = _mm_cmpeq_epi16(v, _mm_set1_epi16(value as i16));
            _mm_movemask_epi8(equal) as u32 & 0x5555
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut hits = 0;
        for (i, &lane) in lanes.iter().enumerate() {
            hits |= u32::from(lane == value) << (2 * i);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_array_holds_its_values_and_says_where() {
        let mut small = HugeArray::new(1000, 7u32);
        assert_eq!(small.len(), 1000);
        assert!(small.iter().all(|&v| v == 7));
        small[999] = 3;
        assert_eq!(small[999], 3);
        assert_eq!(small.backing(), Backing::Small);
        assert_eq!(small.mapped_bytes(), 4096);

        // 3 MiB: on reserved hugepages if the pool has two free, else on
        // ordinary pages with the reason kept; the same values either way.
        let big = HugeArray::new(3 << 18, 0xabu32);
        assert_eq!(big.mapped_bytes(), 2 * HUGEPAGE_BYTES);
        assert!(big.iter().all(|&v| v == 0xab));
        match big.backing() {
            Backing::Hugepages => assert_eq!(big.fallback(), None),
            Backing::Transparent => assert!(big.fallback().is_some()),
            Backing::Small => panic!("a 3 MiB array is not small"),
        }

        let empty = HugeArray::new(0, 1u8);
        assert!(empty.is_empty());
    }

    #[test]
    fn lanes_equal_marks_every_equal_lane() {
        let lanes = [7, 0, 7, 3, 0xffff, 7, 1, 7];
        assert_eq!(lanes_equal(&lanes, 7), 1 | 1 << 4 | 1 << 10 | 1 << 14);
        assert_eq!(lanes_equal(&lanes, 0xffff), 1 << 8);
        assert_eq!(lanes_equal(&lanes, 2), 0);
    }
}

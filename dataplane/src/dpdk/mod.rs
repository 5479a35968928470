//! The safe DPDK layer: the only module of the dataplane allowed `unsafe`.
//!
//! Every C return code goes through [`check`], which turns it into a
//! `Result` with `rte_errno` read at once. Everything above this module works
//! with owned, safe types: [`Mbuf`] frees itself on drop, bursts live in fixed
//! arrays, and ports and pools are plain handles. The hugepage memory the
//! connection tables live on ([`HugeArray`]) and cache prefetches are here
//! too: they are the same kind of unsafe, and what DPDK would give.
#![allow(unsafe_code)]

mod huge;
mod mbuf;
mod port;

pub use huge::{lanes_equal, prefetch, Backing, HugeArray, HUGEPAGE_BYTES};
pub use mbuf::{Mbuf, RxBurst, TxBuffer, BURST};
pub use port::{Mempool, PortConfig, PortHandle};

use std::ffi::{c_int, c_void, CStr, CString};
use std::fmt;

/// Sets how late the kernel may wake this thread from a sleep (its timer
/// slack; 50 µs by default), in nanoseconds. Best effort: a refusal leaves
/// the default.
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes an integer and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) };
}

/// The index of the host's network interface `name`, if it has one.
pub fn interface_index(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; the call only reads it.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The name of the host's network interface `index`, if there is one.
pub fn interface_name(index: u32) -> Option<String> {
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname needs.
    let found = unsafe { libc::if_indextoname(index, name.as_mut_ptr()) };
    if found.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// A failed DPDK call: what was attempted and DPDK's error.
#[derive(Debug, Clone)]
pub struct DpdkError {
    pub op: String,
    pub errno: i32,
}

impl DpdkError {
    fn new(op: impl Into<String>, errno: i32) -> Self {
        DpdkError {
            op: op.into(),
            errno,
        }
    }

    /// DPDK's text for the error number.
    pub fn message(&self) -> String {
        strerror(self.errno)
    }
}

impl fmt::Display for DpdkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {} (errno {})",
            self.op,
            self.message(),
            self.errno
        )
    }
}

impl std::error::Error for DpdkError {}

/// DPDK's text for an error number (its own codes and libc's).
pub fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local
    // NUL-terminated string, valid until the next call on this thread; we copy
    // it out at once.
    unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// Turns a DPDK return code into a `Result`. Negative codes are `-errno`
/// (ethdev style); `-1` means "see rte_errno" (EAL style), read here at once.
fn check(ret: c_int, op: impl FnOnce() -> String) -> Result<c_int, DpdkError> {
    if ret >= 0 {
        return Ok(ret);
    }
    let errno = if ret == -1 {
        // SAFETY: reads the calling thread's rte_errno; no other effect.
        unsafe { dpdk_sys::rvs_errno() }
    } else {
        -ret
    };
    Err(DpdkError::new(op(), errno))
}

/// Initialises the EAL with `args` (argv[0] included). Call once, on the main
/// thread, before anything else here.
pub fn eal_init(args: &[String]) -> Result<(), DpdkError> {
    let owned: Vec<CString> = args
        .iter()
        .map(|a| {
            CString::new(a.as_str()).map_err(|_| {
                DpdkError::new(format!("EAL argument {a:?} contains NUL"), libc::EINVAL)
            })
        })
        .collect::<Result<_, _>>()?;
    // rte_eal_init may permute argv; it gets its own array of pointers into
    // `owned`, which outlives the call (DPDK keeps no pointer to argv).
    let mut argv: Vec<*mut libc::c_char> = owned.iter().map(|a| a.as_ptr() as *mut _).collect();
    // SAFETY: argv holds argc valid NUL-terminated strings.
    let ret = unsafe { dpdk_sys::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
    check(ret, || "rte_eal_init".to_owned()).map(|_| ())
}

/// Releases EAL resources (hugepages, devices). Call after all workers stopped.
pub fn eal_cleanup() {
    // SAFETY: called once at exit, after every lcore has returned.
    unsafe {
        dpdk_sys::rte_eal_cleanup();
    }
}

/// DPDK's version string.
pub fn version() -> String {
    // SAFETY: returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(dpdk_sys::rvs_version()) }
        .to_string_lossy()
        .into_owned()
}

/// TSC ticks per second.
pub fn tsc_hz() -> u64 {
    // SAFETY: pure query after EAL init.
    unsafe { dpdk_sys::rte_get_tsc_hz() }
}

/// The current TSC value.
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: reads the time stamp counter; no memory effects.
    unsafe { dpdk_sys::rvs_get_tsc_cycles() }
}

type Job = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn run_job(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch` for exactly this call.
    let job = unsafe { Box::from_raw(arg as *mut Job) };
    job();
    0
}

/// Runs `job` on worker lcore `lcore` (which must be idle).
pub fn launch(lcore: u32, job: impl FnOnce() + Send + 'static) -> Result<(), DpdkError> {
    let boxed: Box<Job> = Box::new(Box::new(job));
    let arg = Box::into_raw(boxed) as *mut c_void;
    // SAFETY: run_job takes ownership of `arg` when launched; on failure it
    // never runs, so we take it back below.
    let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(run_job), arg, lcore) };
    if ret != 0 {
        // SAFETY: the launch failed, so `arg` is still ours.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
    }
    check(ret, || format!("launching work on lcore {lcore}")).map(|_| ())
}

/// Waits until every worker lcore has returned from its job.
pub fn wait_all_lcores() {
    // SAFETY: blocks until workers are idle; no other effect.
    unsafe { dpdk_sys::rte_eal_mp_wait_lcore() }
}

/// Returns the heap's free memory to the OS: glibc's `malloc_trim(0)`, over
/// every arena (the helper thread's too), releasing the free pages inside
/// the heaps and not only at their tops. glibc keeps freed memory for reuse,
/// so without this the hundreds of MB a large configuration change
/// allocates stay in rvsd's RSS for good. Not DPDK, but the process's one
/// libc call that std does not wrap; here because this module is where the
/// dataplane allows `unsafe`. Takes milliseconds per GB of heap: for the
/// control thread after whole-configuration work, never for a worker.
pub fn return_free_heap() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks and
    // madvises free pages away; it touches no memory the program owns.
    unsafe {
        libc::malloc_trim(0);
    }
}

//! The memory a config parse holds at its peak, under a counting
//! allocator: bounded by a small multiple of the text (about 27 times,
//! nearly all of it the YAML parser's events; through a `serde_yaml::Value`
//! tree it was 33), so that the size limit on configuration text
//! (`config::MAX_CONFIG_BYTES`) bounds it.

use rvs_control::config::{self, CpuList, HostCpus};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts the bytes allocated now and at the peak.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// A config of `services` services with a real each, as bench/control.sh
/// generates them.
fn services(services: usize) -> String {
    let mut text = String::from(
        "eal: { main_lcore: 0, main_cpu: 0 }\n\
         ports:\n  - { name: net, device: net_null0, addresses: [10.200.0.1/16] }\n\
         workers:\n  - { lcore: 1, cpu: 1, queues: [ { port: net, queue: 0 } ] }\n\
         services:\n",
    );
    for i in 0..services {
        text.push_str(&format!(
            "  - vip: 10.{}.{}.{}\n    port: 80\n    protocol: tcp\n    scheduler: wrr\n    \
             reals:\n      - {{ address: 10.200.{}.{}, weight: {}, forward: nat }}\n",
            202 + i / 62500,
            i / 250 % 250,
            i % 250 + 1,
            1 + i / 250 % 250,
            i % 250 + 2,
            1 + i % 5
        ));
    }
    text
}

#[test]
fn a_parse_holds_less_than_30_times_the_text() {
    let list = CpuList::parse("0-1").unwrap();
    let cpus = HostCpus {
        online: list.clone(),
        allowed: list,
    };
    let text = services(20_000);
    let before = NOW.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let config = config::parse_on(&text, "big.yaml", &cpus).unwrap_or_else(|e| panic!("{e}"));
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(config.services.len(), 20_000);
    let ratio = peak as f64 / text.len() as f64;
    eprintln!(
        "{} bytes of YAML: peak {peak} bytes, {ratio:.1} times",
        text.len()
    );
    assert!(ratio < 30.0, "the parse held {ratio:.1} times its text");
}

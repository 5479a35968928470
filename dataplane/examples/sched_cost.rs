//! New-connection cost of every scheduler: nanoseconds per pick with 2, 64
//! and 1024 reals (the median of several runs), and a check that no pick
//! allocates.
//!
//! ```text
//! cargo run --release -p rvs-dataplane --example sched_cost
//! cargo run --release -p rvs-dataplane --example sched_cost -- --only mh 1024 100000
//! ```
//!
//! `--only KIND REALS PICKS` runs one case once, for
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*run_picks*'`
//! (instructions per pick = the `Ir` total / PICKS); see
//! `bench/SCHEDULERS.md`.
//!
//! Loads stay fixed during a run (no connection accounting), so this times
//! the scheduler alone: a pick plus reading a precomputed client.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

use rvs_control::model::{SchedFlags, SchedulerKind};
use rvs_dataplane::sched::{Client, RealLoad, SchedTable, Scheduler, TableReal};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCHING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SIZES: [usize; 3] = [2, 64, 1024];
const RUNS: usize = 7;
/// Distinct clients cycled through; 64 destinations among them, so lblc and
/// lblcr mostly hit their cache, as they do in steady state.
const CLIENTS: usize = 4096;

/// A service of `n` reals with mixed weights and loads, and its scheduler.
fn service(kind: SchedulerKind, n: usize) -> (Vec<RealLoad>, Scheduler) {
    let loads: Vec<RealLoad> = (0..n)
        .map(|i| RealLoad {
            weight: 1 + (i % 4) as u32,
            active: (i * 7 % 13) as u32,
            inactive: (i * 31 % 97) as u32,
            overloaded: false,
        })
        .collect();
    let reals: Vec<TableReal> = loads
        .iter()
        .enumerate()
        .map(|(i, load)| TableReal::new(Ipv4Addr::from(0x0a00_0001 + i as u32), 80, load.weight))
        .collect();
    let table = Arc::new(SchedTable::build(kind, &reals));
    let scheduler = Scheduler::with_table(table, SchedFlags::default(), &loads);
    (loads, scheduler)
}

fn clients() -> Vec<Client> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..CLIENTS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Client {
                addr: Ipv4Addr::from(x as u32),
                port: (x >> 32) as u16,
                dst: Ipv4Addr::new(192, 0, 2, (i % 64) as u8),
            }
        })
        .collect()
}

/// The timed loop; kept out of line so callgrind can collect it alone.
#[inline(never)]
fn run_picks(
    scheduler: &mut Scheduler,
    loads: &[RealLoad],
    clients: &[Client],
    picks: usize,
) -> usize {
    let mut sum = 0usize;
    for i in 0..picks {
        let client = &clients[i % clients.len()];
        let picked = scheduler.pick_for(black_box(loads), client, (i / 1024) as u32);
        sum = sum.wrapping_add(picked.unwrap_or(usize::MAX));
    }
    sum
}

/// Nanoseconds per pick, median of `RUNS`, after one warm-up run.
fn measure(kind: SchedulerKind, n: usize, clients: &[Client]) -> f64 {
    let (loads, mut scheduler) = service(kind, n);
    // Enough picks for each run to last a few milliseconds.
    let picks = if n >= 1024 { 20_000 } else { 200_000 };
    black_box(run_picks(&mut scheduler, &loads, clients, picks));
    let mut runs: Vec<f64> = (0..RUNS)
        .map(|_| {
            WATCHING.with(|w| w.set(true));
            let start = Instant::now();
            black_box(run_picks(&mut scheduler, &loads, clients, picks));
            let elapsed = start.elapsed();
            WATCHING.with(|w| w.set(false));
            elapsed.as_nanos() as f64 / picks as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

fn only(args: &[String]) -> Result<(), String> {
    let [kind, n, picks] = args else {
        return Err("usage: sched_cost --only KIND REALS PICKS".into());
    };
    let kind: SchedulerKind = kind.parse().map_err(|e| format!("{e}"))?;
    let n: usize = n.parse().map_err(|_| format!("bad REALS {n:?}"))?;
    let picks: usize = picks.parse().map_err(|_| format!("bad PICKS {picks:?}"))?;
    let (loads, mut scheduler) = service(kind, n);
    let sum = run_picks(&mut scheduler, &loads, &clients(), picks);
    println!("{kind} with {n} reals: {picks} picks (checksum {sum})");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--only") {
        return match only(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sched_cost: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let clients = clients();
    println!("ns per pick (median of {RUNS} runs)");
    print!("{:<8}", "sched");
    for n in SIZES {
        print!("{:>12}", format!("{n} reals"));
    }
    println!();
    for kind in SchedulerKind::ALL {
        print!("{:<8}", kind.name());
        for n in SIZES {
            print!("{:>12.1}", measure(kind, n, &clients));
        }
        println!();
    }
    println!();
    println!("mh table build (control thread), ms:");
    for n in SIZES {
        let reals: Vec<TableReal> = (0..n)
            .map(|i| TableReal::new(Ipv4Addr::from(0x0a00_0001 + i as u32), 80, 1))
            .collect();
        let start = Instant::now();
        black_box(SchedTable::build(SchedulerKind::Mh, &reals));
        println!("  {n:>5} reals: {:.2}", start.elapsed().as_secs_f64() * 1e3);
    }
    let allocations = ALLOCATIONS.load(Relaxed);
    println!("allocations during timed picks: {allocations}");
    if allocations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! Health checks: keepalived's checkers run by rvsd (REFERENCE.md §6),
//! never on a worker. One thread (`rvs-health`) runs an async runtime with
//! one task per checker of each checked real; the control thread tells it
//! the running configuration ([`Health::follow`]) and collects the reals
//! whose state changed ([`Health::changes`]), which it applies to what
//! the workers schedule through a [`HealthView`].
//!
//! A checker follows keepalived's rules: first run after `warmup` (a random
//! delay up to `delay_loop` unless given); an up checker that fails retries
//! `retry` times, `delay_before_retry` apart, before it is declared down; a
//! down checker runs every `delay_loop` and one success brings it up. A
//! real is alive while none of its checkers is down. Every transition is
//! logged once with its reason and runs the real's `notify_up` /
//! `notify_down`. Checks are ordinary kernel sockets: from the director's
//! address on the port that reaches the real when that port has a kernel
//! interface, so they take no slot in the dataplane's tables.

mod probe;
mod view;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::AbortHandle;

pub use view::{real_key, HealthView, QuorumEvent, RealKey, RealState};

use crate::config::{CheckKind, Config, Probe};
use crate::proto::ServiceKey;

/// Checks running at once, at most: a thousand reals whose checks all
/// hang to their timeout must not run the process out of descriptors.
const MAX_RUNNING: usize = 256;

/// A checked real as the configuration gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub key: RealKey,
    pub probes: Vec<Probe>,
    /// The service's `alpha`: start down until the first good check.
    pub alpha: bool,
    pub notify_up: Option<String>,
    pub notify_down: Option<String>,
}

impl Target {
    /// `real 10.0.2.11:80 of tcp 10.0.1.100:80`, for the log.
    fn name(&self) -> String {
        let (service, addr, port) = &self.key;
        format!("real {} of {service}", SocketAddrV4::new(*addr, *port))
    }
}

/// Every checked real of `config`, with the address each check leaves
/// from: rvs's address on the port that reaches the real (its connected
/// subnet, or the route's next hop), where that port has a kernel
/// interface; else the kernel's own choice.
pub fn targets(config: &Config) -> Vec<Target> {
    let mut targets = Vec::new();
    for service in config.services.iter().filter(|s| s.is_checked()) {
        for real in &service.reals {
            let checks = real.checks_in(service);
            if checks.is_empty() {
                continue;
            }
            let key = real_key(service, real);
            let at = SocketAddrV4::new(key.1, key.2);
            let probes = checks
                .iter()
                .map(|check| {
                    let toward = check.connect_ip.unwrap_or(real.address);
                    check.resolve(at, source_toward(config, toward))
                })
                .collect();
            targets.push(Target {
                key,
                probes,
                alpha: service.alpha,
                notify_up: real.notify_up.clone(),
                notify_down: real.notify_down.clone(),
            });
        }
    }
    targets
}

/// rvs's address on the port with a kernel interface that reaches `addr`.
fn source_toward(config: &Config, addr: Ipv4Addr) -> Option<Ipv4Addr> {
    let direct = config.ports.iter().find(|p| p.connects(addr));
    let (port, hop) = match direct {
        Some(port) => (port, addr),
        None => {
            let route = config
                .routes
                .iter()
                .filter(|r| r.prefix.contains(addr))
                .max_by_key(|r| r.prefix.prefix_len())?;
            (&config.ports[config.route_port(route)?], route.via)
        }
    };
    port.kernel_interface.as_ref()?;
    port.addresses
        .iter()
        .find(|net| net.contains(hop))
        .map(|net| net.addr())
}

/// One checker as `rvsctl health` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckerView {
    /// `TCP_CHECK 10.0.2.11:80`, `HTTP_GET /health`, `MISC_CHECK `cmd``.
    pub checker: String,
    pub up: bool,
    /// Consecutive failures.
    pub failures: u32,
    /// Checks run.
    pub checks: u64,
    /// Unix time in seconds of the last check's end; none before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_at: Option<f64>,
    /// `ok`, or why the last check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// How long the last check took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<f64>,
    /// How late the last check started against its schedule, in ms.
    pub late_ms: f64,
}

/// One checked real as `rvsctl health` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealHealthView {
    pub service: ServiceKey,
    pub addr: Ipv4Addr,
    pub port: u16,
    pub alive: bool,
    /// Unix time in seconds of the last transition (or of the start).
    pub since: f64,
    /// The weight a `misc_dynamic` MISC_CHECK gave, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    pub checkers: Vec<CheckerView>,
}

/// `rvsctl health`: every checked real, and how the checker keeps up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub reals: Vec<RealHealthView>,
    /// Over every checker's last run: the latest start against its
    /// schedule, and the mean, in milliseconds.
    pub late_max_ms: f64,
    pub late_mean_ms: f64,
}

#[derive(Debug)]
struct CheckerState {
    view: CheckerView,
    kind: CheckKind,
    /// Checks that failed, ever.
    failed: u64,
    /// Durations of the checks: per bucket of [`DURATION_BUCKETS`] (not
    /// cumulative), and their sum in seconds.
    durations: [u64; DURATION_BUCKETS.len()],
    over: u64,
    duration_sum: f64,
}

/// Upper bounds in seconds of the buckets of a check's duration.
pub const DURATION_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// One checker's counters, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckerMetrics {
    pub kind: CheckKind,
    pub failed: u64,
    /// Cumulative counts per bucket of [`DURATION_BUCKETS`].
    pub buckets: [u64; DURATION_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

/// One checked real's state and counters, for metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct RealMetrics {
    pub key: RealKey,
    pub alive: bool,
    /// Transitions up or down since it was first checked.
    pub transitions: u64,
    pub checkers: Vec<CheckerMetrics>,
}

/// Read access to the checker's table from another thread (metrics).
#[derive(Clone)]
pub struct HealthReader(Arc<Shared>);

impl HealthReader {
    /// Every checked real's state and counters.
    pub fn metrics(&self) -> Vec<RealMetrics> {
        let table = self.0.lock();
        table
            .reals
            .values()
            .map(|entry| RealMetrics {
                key: entry.target.key,
                alive: entry.alive,
                transitions: entry.transitions,
                checkers: entry
                    .checkers
                    .iter()
                    .map(|c| {
                        let mut running = 0;
                        let buckets = c.durations.map(|n| {
                            running += n;
                            running
                        });
                        CheckerMetrics {
                            kind: c.kind,
                            failed: c.failed,
                            buckets,
                            count: running + c.over,
                            sum: c.duration_sum,
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

#[derive(Debug)]
struct RealEntry {
    target: Target,
    alive: bool,
    since: SystemTime,
    weight: Option<u32>,
    transitions: u64,
    checkers: Vec<CheckerState>,
    tasks: Vec<AbortHandle>,
}

#[derive(Default)]
struct Table {
    reals: HashMap<RealKey, RealEntry>,
    /// A real's state changed since the last [`Health::changes`].
    changed: bool,
}

struct Shared {
    table: Mutex<Table>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

enum Order {
    Follow(Vec<Target>),
    Run(String),
    Stop,
}

/// The checker thread, from the control thread's side.
pub struct Health {
    orders: mpsc::UnboundedSender<Order>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Health {
    /// Starts the checker thread (checking nothing until
    /// [`Self::follow`]).
    pub fn start() -> std::io::Result<Health> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
        });
        let (orders, mut inbox) = mpsc::unbounded_channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("rvs-health".to_owned())
            .spawn(move || {
                let limit = Arc::new(Semaphore::new(MAX_RUNNING));
                runtime.block_on(async move {
                    while let Some(order) = inbox.recv().await {
                        match order {
                            Order::Follow(targets) => follow(&thread_shared, &limit, targets),
                            Order::Run(command) => run_command(&command),
                            Order::Stop => break,
                        }
                    }
                    let mut table = thread_shared.lock();
                    for entry in table.reals.values_mut() {
                        entry.tasks.iter().for_each(AbortHandle::abort);
                    }
                });
            })?;
        Ok(Health {
            orders,
            shared,
            thread: Some(thread),
        })
    }

    /// Checks what `targets` lists from now on: new reals start checking,
    /// reals gone stop, a real whose checks did not change keeps its state
    /// and schedule, one whose checks changed starts them again from its
    /// current state.
    pub fn follow(&self, targets: Vec<Target>) {
        let _ = self.orders.send(Order::Follow(targets));
    }

    /// Runs `command` with `/bin/sh -c`, not waiting for it.
    pub fn run(&self, command: &str) {
        let _ = self.orders.send(Order::Run(command.to_owned()));
    }

    /// The state of every checked real if any changed since the last call.
    pub fn changes(&self) -> Option<HashMap<RealKey, RealState>> {
        let mut table = self.shared.lock();
        if !std::mem::take(&mut table.changed) {
            return None;
        }
        Some(states(&table))
    }

    /// A reader of the checker's table for another thread.
    pub fn reader(&self) -> HealthReader {
        HealthReader(Arc::clone(&self.shared))
    }

    /// The state of every checked real.
    pub fn states(&self) -> HashMap<RealKey, RealState> {
        states(&self.shared.lock())
    }

    /// What `rvsctl health` shows.
    pub fn report(&self) -> HealthReport {
        let table = self.shared.lock();
        let mut reals: Vec<RealHealthView> = table
            .reals
            .values()
            .map(|entry| RealHealthView {
                service: entry.target.key.0,
                addr: entry.target.key.1,
                port: entry.target.key.2,
                alive: entry.alive,
                since: unix_seconds(entry.since),
                weight: entry.weight,
                checkers: entry.checkers.iter().map(|c| c.view.clone()).collect(),
            })
            .collect();
        drop(table);
        reals.sort_by(|a, b| {
            (a.service.to_string(), a.addr, a.port).cmp(&(b.service.to_string(), b.addr, b.port))
        });
        let lates: Vec<f64> = reals
            .iter()
            .flat_map(|r| &r.checkers)
            .filter(|c| c.checks > 0)
            .map(|c| c.late_ms)
            .collect();
        HealthReport {
            late_max_ms: lates.iter().copied().fold(0.0, f64::max),
            late_mean_ms: if lates.is_empty() {
                0.0
            } else {
                lates.iter().sum::<f64>() / lates.len() as f64
            },
            reals,
        }
    }
}

impl Drop for Health {
    fn drop(&mut self) {
        let _ = self.orders.send(Order::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn states(table: &Table) -> HashMap<RealKey, RealState> {
    table
        .reals
        .iter()
        .map(|(key, entry)| {
            (
                *key,
                RealState {
                    alive: entry.alive,
                    weight: entry.weight,
                },
            )
        })
        .collect()
}

/// `time` as Unix seconds, to the millisecond (0 before 1970).
pub fn unix_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

fn run_command(command: &str) {
    let spawned = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .spawn();
    match spawned {
        // Reaped by the runtime once it exits.
        Ok(_child) => {}
        Err(e) => eprintln!("rvsd: health: cannot run `{command}`: {e}"),
    }
}

fn checker_name(probe: &Probe) -> String {
    match probe.kind {
        CheckKind::HttpGet | CheckKind::SslGet => {
            let paths: Vec<&str> = probe.urls.iter().map(|u| u.path.as_str()).collect();
            format!("{} {} {}", probe.kind, probe.target, paths.join(","))
        }
        CheckKind::MiscCheck => format!("MISC_CHECK `{}`", probe.misc_path),
        _ => format!("{} {}", probe.kind, probe.target),
    }
}

/// Adopts a new list of targets (on the checker thread).
fn follow(shared: &Arc<Shared>, limit: &Arc<Semaphore>, targets: Vec<Target>) {
    let mut table = shared.lock();
    let mut old = std::mem::take(&mut table.reals);
    let mut changed = false;
    for target in targets {
        let key = target.key;
        match old.remove(&key) {
            Some(entry) if entry.target == target => {
                table.reals.insert(key, entry);
            }
            previous => {
                // New, or its checks changed: start them, from the state
                // it had if any.
                let alive = match &previous {
                    Some(entry) => {
                        entry.tasks.iter().for_each(AbortHandle::abort);
                        entry.alive
                    }
                    None => !target.alpha,
                };
                changed |= previous.as_ref().is_none_or(|e| e.alive != alive) || !alive;
                let checkers = target
                    .probes
                    .iter()
                    .map(|probe| CheckerState {
                        view: CheckerView {
                            checker: checker_name(probe),
                            up: alive,
                            failures: 0,
                            checks: 0,
                            last_at: None,
                            last: None,
                            last_ms: None,
                            late_ms: 0.0,
                        },
                        kind: probe.kind,
                        failed: 0,
                        durations: [0; DURATION_BUCKETS.len()],
                        over: 0,
                        duration_sum: 0.0,
                    })
                    .collect();
                let tasks = target
                    .probes
                    .iter()
                    .enumerate()
                    .map(|(index, probe)| {
                        tokio::spawn(checker(
                            Arc::clone(shared),
                            Arc::clone(limit),
                            key,
                            index,
                            probe.clone(),
                        ))
                        .abort_handle()
                    })
                    .collect();
                let since = previous.as_ref().map_or_else(SystemTime::now, |e| e.since);
                table.reals.insert(
                    key,
                    RealEntry {
                        target,
                        alive,
                        since,
                        weight: previous.as_ref().and_then(|e| e.weight),
                        transitions: previous.map_or(0, |e| e.transitions),
                        checkers,
                        tasks,
                    },
                );
            }
        }
    }
    for (_, entry) in old {
        entry.tasks.iter().for_each(AbortHandle::abort);
        changed = true;
    }
    table.changed |= changed;
}

/// A random fraction of `span`: the default warmup, so that a thousand
/// reals configured at once do not all check in the same instant.
fn random_within(span: Duration) -> Duration {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(span.as_nanos() as u64);
    let fraction = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    span.mul_f64(fraction)
}

/// One checker of one real, for as long as the real is checked.
async fn checker(
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    key: RealKey,
    index: usize,
    probe: Probe,
) {
    let first = probe
        .warmup
        .unwrap_or_else(|| random_within(probe.delay_loop));
    let mut due = Instant::now() + first;
    loop {
        tokio::time::sleep_until(due.into()).await;
        let permit = limit.acquire().await;
        let started = Instant::now();
        let late = started.saturating_duration_since(due);
        let outcome = probe::run(&probe).await;
        drop(permit);
        let took = started.elapsed();
        let retry = {
            let mut table = shared.lock();
            let Some(entry) = table.reals.get_mut(&key) else {
                return;
            };
            let retry = record(entry, index, &probe, outcome, took, late);
            if let Some(notice) = retry.notice {
                table.changed = true;
                if let Some(command) = notice.command {
                    run_command(&command);
                }
            }
            retry.again
        };
        due = Instant::now()
            + if retry {
                probe.delay_before_retry
            } else {
                probe.delay_loop
            };
    }
}

/// What a check's outcome led to.
struct Recorded {
    /// Check again after `delay_before_retry` rather than `delay_loop`.
    again: bool,
    /// The real changed: its notify command, if it has one for this.
    notice: Option<Notice>,
}

struct Notice {
    command: Option<String>,
}

/// Records checker `index`'s outcome in its real's entry: keepalived's
/// retry rule, the real's aggregate state, the log line of a transition.
fn record(
    entry: &mut RealEntry,
    index: usize,
    probe: &Probe,
    outcome: probe::Outcome,
    took: Duration,
    late: Duration,
) -> Recorded {
    let state = &mut entry.checkers[index];
    let seconds = took.as_secs_f64();
    match DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
        Some(bucket) => state.durations[bucket] += 1,
        None => state.over += 1,
    }
    state.duration_sum += seconds;
    if outcome.is_err() {
        state.failed += 1;
    }
    let view = &mut state.view;
    view.checks += 1;
    view.last_at = Some(unix_seconds(SystemTime::now()));
    view.last_ms = Some(took.as_secs_f64() * 1000.0);
    view.late_ms = late.as_secs_f64() * 1000.0;
    let mut again = false;
    let mut weight_changed = false;
    match outcome {
        Ok(weight) => {
            view.failures = 0;
            view.up = true;
            view.last = Some("ok".to_owned());
            if probe.misc_dynamic && weight != entry.weight {
                if let Some(weight) = weight {
                    eprintln!(
                        "rvsd: {} weight {weight}: set by {}",
                        entry.target.name(),
                        view.checker
                    );
                }
                entry.weight = weight;
                weight_changed = true;
            }
        }
        Err(reason) => {
            view.failures += 1;
            view.last = Some(reason);
            if view.up {
                if view.failures <= probe.retry {
                    again = true;
                } else {
                    view.up = false;
                }
            }
        }
    }
    let alive = entry.checkers.iter().all(|c| c.view.up);
    if alive == entry.alive {
        return Recorded {
            again,
            notice: weight_changed.then_some(Notice { command: None }),
        };
    }
    entry.alive = alive;
    entry.since = SystemTime::now();
    entry.transitions += 1;
    let view = &entry.checkers[index].view;
    let name = entry.target.name();
    let reason = view.last.as_deref().unwrap_or("");
    let command = if alive {
        eprintln!("rvsd: {name} up: {} ok", view.checker);
        entry.target.notify_up.clone()
    } else {
        let attempts = probe.retry + 1;
        eprintln!("rvsd: {name} down: {reason} ({attempts} of {attempts} attempts)");
        entry.target.notify_down.clone()
    };
    Recorded {
        again,
        notice: Some(Notice { command }),
    }
}

#[cfg(test)]
mod tests;

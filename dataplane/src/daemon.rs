//! rvsd's life cycle: config → EAL → pool → ports → workers on their lcores →
//! the control thread's loop on the main lcore → clean stop.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rvs_control::config::{self, Config, ConfigError, HostCpus};

use crate::conn;
use crate::counters::{DropReason, RealBook, WorkerCounters};
use crate::dpdk::{self, Mempool, PortConfig, PortHandle};
use crate::engine::{Engine, EngineLimits, WorkerPlace};
use crate::kernel::{self, KernelCounters, KernelPort};
use crate::mesh::{self, Mesh};
use crate::metrics;
use crate::persist;
use crate::supervisor::{Finished, Supervisor};
use crate::wire::ethernet::MacAddr;
use crate::worker::{self, Backoff, RxQueue, WorkerSetup};
use rvs_control::server::{Served, Server};

/// A startup failure, worded for the operator.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The DPDK device name of a port's device string: the part before the first
/// comma (`net_af_packet0` of `net_af_packet0,iface=veth1`, or a PCI address).
pub fn device_name(device: &str) -> &str {
    device.split(',').next().unwrap_or(device).trim()
}

/// True for a PCI address (`0000:3b:00.0` or `3b:00.0`), false for a vdev.
pub fn is_pci(device: &str) -> bool {
    let name = device_name(device);
    let parts: Vec<&str> = name.split(':').collect();
    (parts.len() == 2 || parts.len() == 3)
        && name.contains('.')
        && name
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
}

/// The EAL command line for `config` (argv[0] included).
pub fn eal_args(config: &Config) -> Vec<String> {
    let mut lcores = vec![format!("{}@{}", config.eal.main_lcore, config.main_cpu())];
    for worker in &config.workers {
        lcores.push(format!("{}@{}", worker.lcore, config.worker_cpu(worker)));
    }
    let mut args = vec![
        "rvsd".to_owned(),
        "--lcores".to_owned(),
        lcores.join(","),
        "--main-lcore".to_owned(),
        config.eal.main_lcore.to_string(),
    ];
    let mut any_pci = false;
    for port in &config.ports {
        if is_pci(&port.device) {
            any_pci = true;
            args.push("-a".to_owned());
        } else {
            args.push("--vdev".to_owned());
        }
        args.push(port.device.clone());
    }
    for (index, port) in config.ports.iter().enumerate() {
        if let Some(name) = &port.kernel_interface {
            args.push("--vdev".to_owned());
            args.push(kernel::tap_vdev(index, name));
        }
    }
    let user_allows =
        config.eal.args.iter().any(|a| {
            a == "-a" || a == "-b" || a.starts_with("--allow") || a.starts_with("--block")
        });
    if !any_pci && !user_allows {
        // Only virtual devices: do not grab every PCI NIC of the machine.
        args.push("--no-pci".to_owned());
    }
    args.extend(config.eal.args.iter().cloned());
    args
}

/// Reads and validates rvsd's configuration file ([`config::read_file`],
/// [`config::parse`]), then checks what only this machine and rvsd's own
/// tables can tell: that the memory the workers' connection tables take at
/// start is there. What `rvsd --check` runs, and what start runs before
/// anything else, so that a configuration `--check` accepts does not abort
/// at start.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let text = config::read_file(path)?;
    let file = path.display().to_string();
    let config = config::parse(&text, &file)?;
    let needed = table_bytes(config.limits.connections as usize) * config.workers.len() as u64;
    if let Some(available) = meminfo_bytes("MemAvailable:") {
        if needed > available {
            let workers = config.workers.len();
            return Err(config::refusal(
                &text,
                &file,
                "limits.connections",
                format!(
                    "{} connections per worker need {} MiB for the connection tables of {workers} \
                     worker{} (allocated at start), more than the {} MiB this machine has \
                     available (MemAvailable in /proc/meminfo); lower limits.connections",
                    config.limits.connections,
                    needed >> 20,
                    if workers == 1 { "" } else { "s" },
                    available >> 20
                ),
            ));
        }
    }
    Ok(config)
}

/// Says what memory a worker's connection table got: on hugepages, or why
/// not (then TLB misses cost it throughput at large connection counts).
fn report_table_memory(worker: usize, table: &conn::ConnTable) {
    let mb = table.memory_bytes() as f64 / 1e6;
    match table.backing() {
        (dpdk::Backing::Hugepages, _) => {
            eprintln!("rvsd: worker {worker}: connection table {mb:.0} MB on 2 MiB hugepages")
        }
        (dpdk::Backing::Small, _) => {
            eprintln!("rvsd: worker {worker}: connection table {mb:.1} MB")
        }
        (dpdk::Backing::Transparent, errno) => eprintln!(
            "rvsd: warning: worker {worker}: connection table {mb:.0} MB not on reserved hugepages ({}); \
             on ordinary pages with transparent hugepages asked for, slower at large connection counts; \
             reserve {} more 2 MiB pages (/proc/sys/vm/nr_hugepages) to fix",
            std::io::Error::from_raw_os_error(errno.unwrap_or(0)),
            table.memory_bytes().div_ceil(dpdk::HUGEPAGE_BYTES)
        ),
    }
}

/// Bytes of one worker's connection table and persistence templates for
/// `connections`, all allocated by `Engine::new`.
pub fn table_bytes(connections: usize) -> u64 {
    conn::table_bytes(connections) as u64 + template_bytes((connections / 4).max(1024))
}

/// hashbrown's allocation for `items` (its `capacity_to_buckets`): buckets
/// of `slot` bytes plus a control byte each, and a group of control bytes.
fn index_bytes(items: usize, slot: usize) -> u64 {
    let buckets = match items {
        0..4 => 4,
        4..8 => 8,
        _ => (items * 8 / 7).next_power_of_two(),
    };
    (buckets * (slot + 1) + 16) as u64
}

/// `persist::Templates::new(templates)`: slots, a free list, an index
/// sized for twice as many.
fn template_bytes(templates: usize) -> u64 {
    let slot = std::mem::size_of::<persist::Template>() + std::mem::size_of::<u32>();
    (templates * slot) as u64
        + index_bytes(
            2 * templates,
            std::mem::size_of::<(persist::TemplateKey, u32)>(),
        )
}

/// A `/proc/meminfo` field (`MemAvailable:`), in bytes.
fn meminfo_bytes(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Likely causes of an EAL or port failure, checked on this machine.
pub fn diagnose(config: &Config) -> Vec<String> {
    let mut causes = Vec::new();
    // The effective uid, from /proc (this module stays free of unsafe).
    let euid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
        });
    if euid.as_deref() != Some("0") {
        causes.push(
            "permissions: rvsd is not running as root; DPDK needs root (or CAP_SYS_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK) for hugepages and raw sockets".to_owned(),
        );
    }
    let no_huge = config.eal.args.iter().any(|a| a == "--no-huge");
    if !no_huge {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |name: &str| {
            meminfo.lines().find(|l| l.starts_with(name)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|n| n.parse::<u64>().ok())
            })
        };
        let free_mb = field("HugePages_Free:")
            .zip(field("Hugepagesize:"))
            .map(|(pages, kb)| pages * kb / 1024);
        match (free_mb, requested_memory_mb(&config.eal.args)) {
            (Some(0), _) => causes.push(
                "hugepages: none free (HugePages_Free is 0 in /proc/meminfo); reserve some with `echo 512 > /proc/sys/vm/nr_hugepages`, or add \"--no-huge\" to eal.args".to_owned(),
            ),
            (Some(free), Some(wanted)) if wanted > free => causes.push(format!(
                "hugepages: eal.args ask for {wanted} MB but only {free} MB of hugepages are free; reserve more (`echo N > /proc/sys/vm/nr_hugepages`) or ask for less"
            )),
            _ => {}
        }
    }
    let driver_dirs = pmd_dirs();
    for port in &config.ports {
        if is_pci(&port.device) {
            continue;
        }
        let name = device_name(&port.device);
        let driver: String = name
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .to_owned();
        if !driver_dirs.is_empty()
            && !driver_dirs
                .iter()
                .any(|d| d.join(format!("librte_{driver}.so")).exists())
        {
            causes.push(format!(
                "missing driver: port `{}` uses {driver}, but no librte_{driver}.so is in {} (install Debian's dpdk package, or check the device name)",
                port.name,
                driver_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(iface) = port
            .device
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("iface="))
        {
            if !Path::new("/sys/class/net").join(iface).exists() {
                causes.push(format!(
                    "missing interface: port `{}` needs network interface `{iface}`, which does not exist in this network namespace",
                    port.name
                ));
            }
        }
    }
    causes
}

/// Memory the EAL arguments ask for up front (`-m MB` or `--socket-mem a,b`), in MB.
fn requested_memory_mb(args: &[String]) -> Option<u64> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = match arg.as_str() {
            "-m" | "--socket-mem" => iter.next().map(String::as_str),
            other => other
                .strip_prefix("--socket-mem=")
                .or_else(|| other.strip_prefix("-m").filter(|v| !v.is_empty())),
        };
        if let Some(value) = value {
            return value
                .split(',')
                .map(|mb| mb.trim().parse::<u64>().ok())
                .sum::<Option<u64>>();
        }
    }
    None
}

fn pmd_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = Vec::new();
    for lib in [
        "/usr/lib/x86_64-linux-gnu/dpdk",
        "/usr/lib/aarch64-linux-gnu/dpdk",
        "/usr/lib/dpdk",
    ] {
        if let Ok(entries) = std::fs::read_dir(lib) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("pmds-") {
                    dirs.push(entry.path());
                }
            }
        }
    }
    dirs
}

fn with_causes(what: String, causes: &[String]) -> StartError {
    if causes.is_empty() {
        StartError(what)
    } else {
        StartError(format!(
            "{what}\nlikely cause{}:\n  - {}",
            if causes.len() > 1 { "s" } else { "" },
            causes.join("\n  - ")
        ))
    }
}

struct Running {
    ports: Vec<PortHandle>,
    control: Supervisor,
    stop: Arc<AtomicBool>,
    pool: Mempool,
    /// The ports' claims, held as long as rvsd runs.
    _claims: Vec<std::fs::File>,
    /// Per port: the kernel's count of frames its interface had received
    /// when rvsd started (ports bound to a kernel interface only).
    kernel_rx_at_start: Vec<Option<u64>>,
    /// The exception path: the kernel interfaces, their counters and the
    /// thread moving their frames.
    kernel: Vec<KernelPort>,
    kernel_counters: Arc<[KernelCounters]>,
    kernel_thread: Option<std::thread::JoinHandle<()>>,
    /// The Prometheus endpoint, when `metrics.listen` is set.
    metrics: Option<metrics::http::Endpoint>,
}

/// Frames the kernel's network interface behind `device` (a vdev bound to
/// one with `iface=`, such as af_packet) has received, from sysfs. What the
/// kernel drops before the PMD reads it (its packet ring full) shows as the
/// difference from the PMD's own count, which cannot see it.
fn kernel_rx_packets(device: &str) -> Option<u64> {
    let iface = device
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("iface="))?;
    let path = Path::new("/sys/class/net")
        .join(iface)
        .join("statistics/rx_packets");
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Where rvsd instances claim the devices of their ports.
const CLAIM_DIR: &str = "/run/rvs/ports";

/// What of a port's device two rvsd must not share: its PCI address, or
/// the network interface a vdev binds (af_packet, af_xdp, tap ...) in this
/// network namespace. Other vdevs (null, ring, pcap) share nothing.
fn claim_name(device: &str) -> Option<String> {
    if is_pci(device) {
        return Some(format!("pci-{}", device_name(device).replace(':', "_")));
    }
    let iface = device
        .split(',')
        .find_map(|kv| kv.trim().strip_prefix("iface="))?;
    // The same interface name in two network namespaces is two interfaces.
    let netns = std::fs::metadata("/proc/self/ns/net").map_or(0, |m| {
        use std::os::unix::fs::MetadataExt;
        m.ino()
    });
    Some(format!("netns{netns}-{iface}"))
}

/// Claims every port's device for this rvsd: an exclusive lock held until
/// rvsd exits, with its pid inside. A device another rvsd holds refuses the
/// start before DPDK touches anything, naming that rvsd.
fn claim_ports(config: &Config) -> Result<Vec<std::fs::File>, StartError> {
    use std::io::{Read, Seek, Write};
    let mut claims = Vec::new();
    for port in &config.ports {
        let Some(name) = claim_name(&port.device) else {
            continue;
        };
        let path = Path::new(CLAIM_DIR).join(format!("{name}.lock"));
        let refuse = |what: String| {
            StartError(format!(
                "rvsd: port `{}` ({}): {what}",
                port.name, port.device
            ))
        };
        let cannot = |what: String, e: std::io::Error| {
            let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "; likely cause: permissions (rvsd must run as root, as DPDK does)"
            } else {
                ""
            };
            refuse(format!("{what}: {e}{hint}"))
        };
        std::fs::create_dir_all(CLAIM_DIR)
            .map_err(|e| cannot(format!("cannot create {CLAIM_DIR} to claim the device"), e))?;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| cannot(format!("cannot claim the device ({})", path.display()), e))?;
        if let Err(e) = file.try_lock() {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let who = if holder.is_empty() {
                "another rvsd".to_owned()
            } else {
                format!("another rvsd (pid {holder})")
            };
            return Err(refuse(match e {
                std::fs::TryLockError::WouldBlock => format!(
                    "the device is already driven by {who}, which holds {}; two rvsd on one \
                     device break each other's traffic: stop that one first, or give this one \
                     other ports",
                    path.display()
                ),
                std::fs::TryLockError::Error(e) => {
                    return Err(cannot(
                        format!("cannot claim the device ({})", path.display()),
                        e,
                    ));
                }
            }));
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = writeln!(file, "{}", std::process::id());
        claims.push(file);
    }
    Ok(claims)
}

/// Starts everything; returns once workers run.
fn start(config: &Config) -> Result<Running, StartError> {
    let claims = claim_ports(config)?;
    // Before the ports start: what the kernel receives from now on and the
    // PMD never delivers is lost.
    let kernel_rx_at_start: Vec<Option<u64>> = config
        .ports
        .iter()
        .map(|port| kernel_rx_packets(&port.device))
        .collect();
    // Before EAL pins this thread to the main lcore's CPU.
    let cpus = HostCpus::detect();
    let args = eal_args(config);
    eprintln!(
        "rvsd: {}, EAL args: {}",
        dpdk::version(),
        args[1..].join(" ")
    );
    if let Err(e) = dpdk::eal_init(&args) {
        return Err(with_causes(
            format!("rvsd: DPDK initialisation failed: {e}"),
            &diagnose(config),
        ));
    }

    let pool = Mempool::create("rvs_mbufs", config.mempool.mbufs, config.mempool.cache, -1)
        .map_err(|e| {
            with_causes(
                format!(
                    "rvsd: cannot create the packet buffer pool: {e} (mempool.mbufs = {})",
                    config.mempool.mbufs
                ),
                &diagnose(config),
            )
        })?;

    let workers = config.workers.len() as u16;
    let mut ports = Vec::new();
    let mut macs = Vec::new();
    for (index, port) in config.ports.iter().enumerate() {
        let name = device_name(&port.device);
        let handle = PortHandle::by_name(name).map_err(|e| {
            with_causes(
                format!(
                    "rvsd: port `{}` ({}): DPDK created no such port: {e}",
                    port.name, port.device
                ),
                &diagnose(config),
            )
        })?;
        let rx_queues = config
            .workers
            .iter()
            .flat_map(|w| &w.queues)
            .filter(|q| q.port == port.name)
            .count() as u16;
        let port_config = PortConfig {
            rx_queues,
            tx_queues: workers,
            rx_descriptors: port.rx_descriptors,
            tx_descriptors: port.tx_descriptors,
            mtu: port.mtu,
        };
        handle.setup(&port_config, pool).map_err(|e| {
            StartError(format!(
                "rvsd: ports[{index}] `{}` ({}): {e}",
                port.name, port.device
            ))
        })?;
        let mac = MacAddr(
            handle
                .mac()
                .map_err(|e| StartError(format!("rvsd: port `{}`: {e}", port.name)))?,
        );
        eprintln!(
            "rvsd: port `{}` is DPDK port {} ({}), mac {mac}, {} RX queue(s), {} TX queue(s), addresses {}",
            port.name,
            handle.id,
            handle.driver_name(),
            rx_queues,
            workers,
            port.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        ports.push(handle);
        macs.push(mac);
    }
    let kernel_ports = kernel_interfaces(config, &macs, pool)?;

    let stop = Arc::new(AtomicBool::new(false));
    let tsc_hz = dpdk::tsc_hz().max(1);
    let tsc_start = dpdk::tsc();
    let dpdk_ports: Vec<u16> = ports.iter().map(|p| p.id).collect();
    let counters: Vec<Arc<WorkerCounters>> = config
        .workers
        .iter()
        .map(|_| Arc::new(WorkerCounters::default()))
        .collect();
    // Any address of a port may become a FullNAT local address.
    let port_addresses: Vec<Ipv4Addr> = config
        .ports
        .iter()
        .flat_map(|p| {
            p.addresses
                .iter()
                .chain(&p.floating_addresses)
                .map(|net| net.addr())
        })
        .collect();
    let book = Arc::new(
        RealBook::new(config.workers.len(), config.limits.reals as usize)
            .with_local_addresses(&port_addresses),
    );
    let mesh = Arc::new(Mesh::new(config.workers.len()));
    let kernel_counters: Arc<[KernelCounters]> = kernel_ports
        .iter()
        .map(|_| KernelCounters::default())
        .collect();
    let kernel_thread = if kernel_ports.is_empty() {
        None
    } else {
        let ports = kernel_ports
            .iter()
            .map(|k| KernelPort {
                port: k.port,
                name: k.name.clone(),
                tap: k.tap,
            })
            .collect();
        let (mesh, counters, stop) = (
            Arc::clone(&mesh),
            Arc::clone(&kernel_counters),
            Arc::clone(&stop),
        );
        let thread = std::thread::Builder::new()
            .name("rvs-kernel".to_owned())
            .spawn(move || kernel::run(ports, mesh, counters, stop))
            .map_err(|e| {
                StartError(format!("rvsd: cannot start the exception path thread: {e}"))
            })?;
        Some(thread)
    };
    let control = Supervisor::new(
        config.clone(),
        cpus,
        macs,
        Arc::clone(&mesh),
        counters.clone(),
        Arc::clone(&book),
    )
    .map_err(|e| StartError(format!("rvsd: {e}")))?;
    let snapshot = Arc::clone(control.snapshot());
    if config.workers.len() > 1 {
        eprintln!(
            "rvsd: steering: software redirect between {} workers over bounded rings of {} packets \
             (each connection belongs to one worker: by client address and port, and for FullNAT \
             replies by the low bits of the local port; NIC flow rules are not used yet)",
            config.workers.len(),
            mesh::REDIRECT_RING
        );
    } else {
        eprintln!("rvsd: steering: one worker, no redirect needed");
    }
    for (index, worker) in config.workers.iter().enumerate() {
        let worker_counters = Arc::clone(&counters[index]);
        let engine = Engine::new(
            Arc::clone(&snapshot),
            WorkerPlace {
                index: index as u16,
                count: config.workers.len() as u16,
            },
            EngineLimits {
                connections: config.limits.connections as usize,
                arp_pending: config.limits.arp_pending as usize,
                expire_budget: 1024,
                unverified: config.limits.connections as usize / 2,
            },
            Arc::clone(&worker_counters),
            Arc::clone(&book),
        );
        report_table_memory(index, engine.connections());
        let rx = worker
            .queues
            .iter()
            .map(|q| {
                let port = config.port_index(&q.port).expect("validated") as u16;
                RxQueue {
                    port,
                    dpdk_port: dpdk_ports[usize::from(port)],
                    queue: q.queue,
                }
            })
            .collect();
        let setup = WorkerSetup {
            rx,
            dpdk_ports: dpdk_ports.clone(),
            tx_queue: index as u16,
            pool,
            counters: Arc::clone(&worker_counters),
            stop: Arc::clone(&stop),
            idle: Backoff::new(
                config.worker_idle.idle_polls,
                config.worker_idle.min_sleep_us,
                config.worker_idle.sleep_us,
            ),
            tsc_start,
            tsc_hz,
            mesh: Arc::clone(&mesh),
            index,
        };
        dpdk::launch(worker.lcore, move || worker::run(engine, setup)).map_err(|e| {
            StartError(format!(
                "rvsd: workers[{index}] (lcore {}): {e}",
                worker.lcore
            ))
        })?;
    }
    Ok(Running {
        ports,
        control,
        stop,
        pool,
        _claims: claims,
        kernel_rx_at_start,
        kernel: kernel_ports,
        kernel_counters,
        kernel_thread,
        metrics: None,
    })
}

/// Binds `metrics.listen`, before anything else starts: a port in use is a
/// refusal to start, said plainly.
fn bind_metrics(config: &Config) -> Result<Option<std::net::TcpListener>, StartError> {
    let Some(listen) = config.metrics.listen else {
        return Ok(None);
    };
    std::net::TcpListener::bind(listen)
        .map(Some)
        .map_err(|e| StartError(format!("rvsd: metrics.listen {listen}: cannot listen: {e}")))
}

/// Serves `/metrics` from `listener` off what `running` counts.
fn start_metrics(
    running: &mut Running,
    config: &Config,
    listener: std::net::TcpListener,
    counters: Vec<Arc<WorkerCounters>>,
    book: Arc<RealBook>,
) -> Result<(), StartError> {
    let address = listener.local_addr().ok();
    let sources = Arc::new(metrics::Sources {
        workers: counters,
        book,
        health: running.control.health_reader(),
        ports: running
            .ports
            .iter()
            .zip(&config.ports)
            .map(|(handle, port)| {
                (
                    port.name.clone(),
                    port.device.clone(),
                    PortHandle { id: handle.id },
                )
            })
            .collect(),
        kernel: running
            .kernel
            .iter()
            .enumerate()
            .map(|(index, kernel)| {
                (
                    config.ports[usize::from(kernel.port)].name.clone(),
                    kernel.name.clone(),
                    index,
                )
            })
            .collect(),
        kernel_counters: Arc::clone(&running.kernel_counters),
        table_capacity: u64::from(config.limits.connections),
        mbufs: u64::from(config.mempool.mbufs),
        ipvs_compat: config.metrics.ipvs_compat,
    });
    running.metrics = Some(
        metrics::http::start(listener, sources)
            .map_err(|e| StartError(format!("rvsd: cannot start the metrics thread: {e}")))?,
    );
    if let Some(address) = address {
        eprintln!("rvsd: metrics: http://{address}/metrics");
    }
    Ok(())
}

/// Answers the scrapes waiting for the control thread's part.
fn answer_scrapes(running: &Running, control: Served) {
    let Some(endpoint) = &running.metrics else {
        return;
    };
    while let Ok(reply) = endpoint.requests.try_recv() {
        let (services, reals) = running.control.metrics_rows();
        let _ = reply.send(metrics::Frame {
            services,
            reals,
            generation: running.control.generation(),
            reload: running.control.last_reload(),
            mbufs_free: u64::from(running.pool.available()),
            local_addresses: running.control.snapshot().lips.clone(),
            control,
        });
    }
}

/// Creates what the exception path needs of each port with a
/// `kernel_interface`: its TAP port (created by EAL from [`eal_args`]) with
/// the data port's MAC and MTU, started, and the kernel interface given the
/// port's addresses.
fn kernel_interfaces(
    config: &Config,
    macs: &[MacAddr],
    pool: Mempool,
) -> Result<Vec<KernelPort>, StartError> {
    let mut kernel_ports = Vec::new();
    for (index, port) in config.ports.iter().enumerate() {
        let Some(name) = &port.kernel_interface else {
            continue;
        };
        let fail = |what: String| {
            StartError(format!(
                "rvsd: port `{}`: kernel interface `{name}`: {what}",
                port.name
            ))
        };
        let tap = PortHandle::by_name(&kernel::tap_device(index)).map_err(|e| {
            fail(format!(
                "DPDK created no TAP port ({e}); net_tap needs /dev/net/tun and CAP_NET_ADMIN, \
                 and no other interface of that name"
            ))
        })?;
        tap.set_mac(macs[index].0)
            .map_err(|e| fail(e.to_string()))?;
        let tap_config = PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_descriptors: config::KERNEL_DESCRIPTORS,
            tx_descriptors: config::KERNEL_DESCRIPTORS,
            mtu: port.mtu,
        };
        tap.setup(&tap_config, pool)
            .map_err(|e| fail(e.to_string()))?;
        kernel::configure_interface(name, &port.addresses).map_err(fail)?;
        eprintln!(
            "rvsd: port `{}` is shared with the kernel through TAP interface `{name}` (DPDK port \
             {}, {}; virtio_user is not used), mac {}, mtu {}",
            port.name,
            tap.id,
            tap.driver_name(),
            macs[index],
            port.mtu
        );
        kernel_ports.push(KernelPort {
            port: index as u16,
            name: name.clone(),
            tap,
        });
    }
    Ok(kernel_ports)
}

/// Sums the counters of all workers and renders them as one JSON object.
fn stats_json(running: &Running) -> String {
    let control = &running.control;
    let total = control.totals();
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_owned(), total.drops_of(*r).into()))
        .collect();
    let snapshot = control.snapshot();
    let mut reals = serde_json::Map::new();
    for service in &snapshot.services {
        for real in &service.reals {
            let (stats, active, inactive) = control.real_stats(real.id);
            let key = format!("{}:{}", real.address, real.port);
            let entry = serde_json::json!({
                "service": format!("{}:{}", service.vip, service.port),
                "conns": stats.conns,
                "active": active,
                "inactive": inactive,
                "in_packets": stats.in_pkts,
                "out_packets": stats.out_pkts,
                "in_bytes": stats.in_bytes,
                "out_bytes": stats.out_bytes,
            });
            // A real serving several services: key by service too.
            if reals.contains_key(&key) {
                reals.insert(format!("{key}@{}:{}", service.vip, service.port), entry);
            } else {
                reals.insert(key, entry);
            }
        }
    }
    let config = running.control.config();
    let ports: Vec<serde_json::Value> = running
        .ports
        .iter()
        .zip(&snapshot.ports)
        .zip(config.ports.iter().zip(&running.kernel_rx_at_start))
        .map(|((handle, info), (port, kernel_at_start))| {
            let s = handle.stats();
            let rx_packets = s.map_or(0, |s| s.ipackets);
            let mut view = serde_json::json!({
                "name": info.name,
                "rx_packets": rx_packets,
                "tx_packets": s.map_or(0, |s| s.opackets),
                "rx_missed": s.map_or(0, |s| s.imissed),
                "rx_errors": s.map_or(0, |s| s.ierrors),
                "tx_errors": s.map_or(0, |s| s.oerrors),
                "rx_no_mbuf": s.map_or(0, |s| s.rx_nombuf),
            });
            // Frames the kernel interface received that never reached rvsd.
            if let (Some(at_start), Some(now)) = (kernel_at_start, kernel_rx_packets(&port.device))
            {
                let kernel = now.saturating_sub(*at_start);
                view["kernel_rx_packets"] = kernel.into();
                view["rx_lost"] = kernel.saturating_sub(rx_packets).into();
            }
            view
        })
        .collect();
    let mut ports = ports;
    for (kernel, counters) in running.kernel.iter().zip(running.kernel_counters.iter()) {
        let read = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed);
        ports[usize::from(kernel.port)]["kernel_interface"] = serde_json::json!({
            "name": kernel.name,
            "to_kernel": read(&counters.to_kernel),
            "to_kernel_dropped": read(&counters.to_kernel_dropped),
            "from_kernel": read(&counters.from_kernel),
            "from_kernel_dropped": read(&counters.from_kernel_dropped),
        });
    }
    let mut line: serde_json::Map<String, serde_json::Value> = total
        .named()
        .map(|(name, value)| (name.to_owned(), value.into()))
        .collect();
    for (key, value) in [
        ("mbufs_free", running.pool.available().into()),
        ("workers", running.control.config().workers.len().into()),
        ("drops", drops.into()),
        ("reals", reals.into()),
        ("ports", ports.into()),
    ] {
        line.insert(key.to_owned(), value);
    }
    let sync: serde_json::Map<String, serde_json::Value> = running
        .control
        .sync_counters()
        .named()
        .into_iter()
        .map(|(name, value)| (name, value.into()))
        .collect();
    line.insert("sync".to_owned(), sync.into());
    serde_json::Value::Object(line).to_string()
}

/// Runs rvsd with `config` until SIGTERM or SIGINT. SIGUSR1 prints a stats line.
pub fn run(config: &Config, config_path: &Path) -> Result<(), StartError> {
    let terminate = Arc::new(AtomicBool::new(false));
    let report = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    let handlers = [
        (signal_hook::consts::SIGTERM, &terminate),
        (signal_hook::consts::SIGINT, &terminate),
        (signal_hook::consts::SIGUSR1, &report),
        (signal_hook::consts::SIGHUP, &reload),
    ];
    for (signal, flag) in handlers {
        signal_hook::flag::register(signal, Arc::clone(flag))
            .map_err(|e| StartError(format!("rvsd: cannot install signal handler: {e}")))?;
    }
    let mut server = bind_control_socket(config)?;
    let metrics_listener = bind_metrics(config)?;

    let mut running = start(config)?;
    if let Some(listener) = metrics_listener {
        let (counters, book) = running.control.counters();
        start_metrics(&mut running, config, listener, counters, book)?;
    }
    running.control.set_config_path(config_path);
    eprintln!(
        "rvsd: ready: {} worker(s), {} service(s), VIPs {}, control socket {}",
        config.workers.len(),
        config.services.len(),
        vip_list(config),
        config.control.socket
    );
    while !terminate.load(Relaxed) {
        // While whole-configuration work runs on the supervisor's helper,
        // look for its end often: its client waits for the answer.
        let wait = if running.control.busy() {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(20)
        };
        if let Err(e) = server.poll(&mut running.control, wait) {
            eprintln!("rvsd: control socket: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
        if reload.swap(false, Relaxed) {
            // Validated against the CPUs seen at start, through the same gate
            // as `rvsctl apply`: a refused file changes nothing.
            if let Err(e) = running.control.reload() {
                eprintln!("rvsd: reload refused, running state unchanged: {e}");
            }
        }
        for finished in running.control.finished() {
            match finished {
                Finished::Answer(ticket, result) => {
                    server.complete(ticket, result);
                }
                Finished::Reloaded(Ok(report)) => eprintln!(
                    "rvsd: reloaded {}: {}",
                    report.file,
                    rvs_control::rvsctl::render::diff_summary(&report.diff)
                ),
                Finished::Reloaded(Err(e)) => {
                    eprintln!("rvsd: reload refused, running state unchanged: {e}")
                }
            }
        }
        running.control.tick();
        answer_scrapes(&running, server.served());
        if report.swap(false, Relaxed) {
            eprintln!("rvsd: stats {}", stats_json(&running));
        }
    }
    drop(server);
    running.control.stopping();
    running.stop.store(true, Relaxed);
    dpdk::wait_all_lcores();
    if let Some(thread) = running.kernel_thread.take() {
        let _ = thread.join();
    }
    running.control.tick();
    eprintln!("rvsd: stats {}", stats_json(&running));
    for port in &running.ports {
        port.close();
    }
    for kernel in &running.kernel {
        kernel.tap.close();
    }
    drop(running);
    dpdk::eal_cleanup();
    eprintln!("rvsd: stopped");
    Ok(())
}

/// Binds the control socket (mode 0600, or 0660 with `control.group`).
fn bind_control_socket(config: &Config) -> Result<Server, StartError> {
    let path = Path::new(&config.control.socket);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            StartError(format!(
                "rvsd: cannot create {} for the control socket (control.socket): {e}",
                dir.display()
            ))
        })?;
    }
    let gid = match &config.control.group {
        None => None,
        Some(group) => Some(group_id(group).ok_or_else(|| {
            StartError(format!(
                "rvsd: control.group: no group `{group}` in /etc/group"
            ))
        })?),
    };
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    Server::bind(path, mode, gid).map_err(|e| {
        let hint = if e.to_string().contains("ermission denied") {
            "; likely cause: permissions (rvsd runs as root, or needs write access to that directory)"
        } else {
            ""
        };
        StartError(format!(
            "rvsd: cannot serve the control socket {} (control.socket): {e}{hint}",
            path.display()
        ))
    })
}

/// A group's id, by number or by name from /etc/group.
fn group_id(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == group).then(|| fields.nth(1)?.parse().ok())?
        })
}

fn vip_list(config: &Config) -> String {
    let mut vips: Vec<Ipv4Addr> = config.services.iter().map(|s| s.vip).collect();
    vips.sort_unstable();
    vips.dedup();
    vips.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_is_the_tables() {
        assert_eq!(config::MAX_CONNECTIONS as usize, conn::MAX_CAPACITY);
    }

    /// [`table_bytes`] follows the layout of the connection table exactly,
    /// and adds the templates.
    #[test]
    fn table_bytes_are_those_of_a_real_table() {
        for connections in [1, 3, 7, 1000, 4096, 70_000, 300_000] {
            let table = conn::ConnTable::new(connections).memory_bytes() as u64;
            assert_eq!(
                conn::table_bytes(connections) as u64,
                table,
                "{connections}"
            );
            let templates = (connections / 4).max(1024);
            let extra = table_bytes(connections) - table;
            assert!(extra <= templates as u64 * 128, "{connections}: {extra}");
        }
    }

    #[test]
    fn load_refuses_tables_larger_than_the_memory() {
        let dir = std::env::temp_dir().join(format!("rvsd-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rvs.yaml");
        let text = |connections: u32| {
            format!(
                "eal: {{ main_lcore: 0, main_cpu: 0 }}\n\
                 ports:\n  - {{ name: a, device: net_null0, addresses: [10.0.0.1/24] }}\n\
                 workers:\n  - {{ lcore: 1, cpu: 0, queues: [ {{ port: a, queue: 0 }} ] }}\n\
                 limits:\n  connections: {connections}\n"
            )
        };
        std::fs::write(&path, text(1_000_000_000)).unwrap();
        let available = meminfo_bytes("MemAvailable:").expect("/proc/meminfo");
        let err = load_config(&path).map(drop).unwrap_err().to_string();
        if table_bytes(1_000_000_000) > available {
            assert!(
                err.starts_with(&format!(
                    "{}:7:3: limits.connections: 1000000000 connections per worker need ",
                    path.display()
                )),
                "{err}"
            );
            assert!(err.contains("MiB this machine has available"), "{err}");
        }
        std::fs::write(&path, text(1000)).unwrap();
        assert_eq!(load_config(&path).unwrap().limits.connections, 1000);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn requested_memory_is_read_from_eal_args() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            requested_memory_mb(&args(&["--in-memory", "-m", "512"])),
            Some(512)
        );
        assert_eq!(requested_memory_mb(&args(&["-m1024"])), Some(1024));
        assert_eq!(
            requested_memory_mb(&args(&["--socket-mem", "256,256"])),
            Some(512)
        );
        assert_eq!(requested_memory_mb(&args(&["--socket-mem=128"])), Some(128));
        assert_eq!(requested_memory_mb(&args(&["--in-memory"])), None);
    }

    #[test]
    fn what_a_port_claims() {
        assert_eq!(
            claim_name("0000:3b:00.0").as_deref(),
            Some("pci-0000_3b_00.0")
        );
        let af_packet = claim_name("net_af_packet0,iface=d0").unwrap();
        assert!(
            af_packet.starts_with("netns") && af_packet.ends_with("-d0"),
            "{af_packet}"
        );
        assert_eq!(
            claim_name("net_tap0, iface=tap7").unwrap(),
            af_packet.replace("d0", "tap7")
        );
        assert_eq!(claim_name("net_null0"), None);
        assert_eq!(claim_name("net_pcap0,rx_pcap=x.pcap"), None);
    }

    #[test]
    fn device_names_and_kinds() {
        assert_eq!(device_name("net_af_packet0,iface=d0"), "net_af_packet0");
        assert_eq!(device_name("0000:3b:00.0"), "0000:3b:00.0");
        assert!(is_pci("0000:3b:00.0"));
        assert!(is_pci("3b:00.1"));
        assert!(!is_pci("net_af_packet0,iface=d0"));
        assert!(!is_pci("net_null0"));
    }

    #[test]
    fn eal_args_map_lcores_and_devices() {
        let text = r#"
eal: { main_lcore: 0, main_cpu: 0, args: ["--in-memory"] }
ports:
  - { name: a, device: "net_null0", addresses: ["10.0.0.1/24"] }
  - { name: b, device: "net_null1,size=64", addresses: ["10.0.1.1/24"] }
workers:
  - { lcore: 1, cpu: 0, queues: [ { port: a, queue: 0 }, { port: b, queue: 0 } ] }
"#;
        let config = rvs_control::config::parse(text, "t.yaml").expect("valid");
        let args = eal_args(&config);
        assert_eq!(
            args,
            [
                "rvsd",
                "--lcores",
                "0@0,1@0",
                "--main-lcore",
                "0",
                "--vdev",
                "net_null0",
                "--vdev",
                "net_null1,size=64",
                "--no-pci",
                "--in-memory"
            ]
        );
    }
}

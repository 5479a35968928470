//! The exception path: a kernel network interface per port that asks for
//! one (`ports[].kernel_interface`), through which the director's kernel
//! shares the port with the dataplane (REFERENCE.md §9).
//!
//! Each interface is a TAP device created by DPDK's `net_tap` as a DPDK
//! port of its own, with the data port's MAC, MTU and addresses. Its
//! frames move on a thread of their own, never on a worker's time:
//! - to the kernel: the workers push what they do not own (engine/kernel.rs)
//!   onto a bounded ring each ([`Mesh::to_kernel`]); this thread drains
//!   them into the TAP port;
//! - from the kernel: this thread receives from the TAP port and pushes the
//!   frames onto one bounded ring ([`Mesh::from_kernel`]) that worker 0
//!   drains between bursts into its TX queue of the data port, as they are.
//!
//! Nothing blocks: a full ring or TAP queue drops the frame and counts it
//! by where it was lost. The thread polls and sleeps 100 µs when idle, so a
//! frame waits at most that long.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rvs_control::config::Ipv4Net;

use crate::counters::bump;
use crate::dpdk::{PortHandle, RxBurst, TxBuffer, BURST};
use crate::mesh::Mesh;

/// Kernel interfaces at most: one per port, and ports are few.
pub const MAX_KERNEL_PORTS: usize = 64;

/// The DPDK device name of the TAP port of config port `index`.
pub fn tap_device(index: usize) -> String {
    format!("net_tap_kernel{index}")
}

/// The EAL `--vdev` argument creating the TAP interface `name` for config
/// port `index`.
pub fn tap_vdev(index: usize, name: &str) -> String {
    format!("{},iface={name}", tap_device(index))
}

/// One port's kernel interface.
pub struct KernelPort {
    /// Config port index of the data port.
    pub port: u16,
    /// The interface's name in the kernel.
    pub name: String,
    /// The TAP port DPDK made of it.
    pub tap: PortHandle,
}

/// What one kernel interface carried, written by the exception thread
/// alone (and `kernel_full` by the workers, in their drop counters).
#[derive(Default)]
pub struct KernelCounters {
    /// Frames handed to the kernel.
    pub to_kernel: AtomicU64,
    /// Frames for the kernel its TAP queue did not take.
    pub to_kernel_dropped: AtomicU64,
    /// Frames the kernel sent, passed to the worker transmitting them.
    pub from_kernel: AtomicU64,
    /// Frames the kernel sent that found the ring to the worker full (or
    /// that spanned several buffers).
    pub from_kernel_dropped: AtomicU64,
}

/// Gives the interface `name` the port's addresses (the first as its own,
/// the others labelled `name:1`, `name:2`, ...) and turns IPv4 forwarding
/// off on it: the kernel answers for its host, it routes nothing the
/// dataplane handed it.
pub fn configure_interface(name: &str, addresses: &[Ipv4Net]) -> Result<(), String> {
    let ip = |args: &[String]| -> Result<(), String> {
        let out = Command::new("ip")
            .args(args)
            .output()
            .map_err(|e| format!("cannot run `ip` to configure {name}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let forwarding = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
    std::fs::write(&forwarding, "0")
        .map_err(|e| format!("cannot turn forwarding off on {name} ({forwarding}): {e}"))?;
    for (k, net) in addresses.iter().enumerate() {
        let mut args: Vec<String> = ["address", "add", &net.to_string(), "dev", name]
            .map(str::to_owned)
            .to_vec();
        if net.prefix_len() < 31 {
            args.extend(["broadcast".to_owned(), broadcast(net).to_string()]);
        }
        if k > 0 {
            args.extend(["label".to_owned(), format!("{name}:{k}")]);
        }
        ip(&args)?;
    }
    ip(&["link", "set", "dev", name, "up"].map(str::to_owned))
}

fn broadcast(net: &Ipv4Net) -> Ipv4Addr {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(net.prefix_len()))
        .unwrap_or(0);
    Ipv4Addr::from(u32::from(net.addr()) | !mask)
}

/// Moves frames between the workers and the kernel interfaces until `stop`.
/// `counters[i]` are those of `ports[i]`.
pub fn run(
    ports: Vec<KernelPort>,
    mesh: Arc<Mesh>,
    counters: Arc<[KernelCounters]>,
    stop: Arc<AtomicBool>,
) {
    let slots = ports
        .iter()
        .map(|p| usize::from(p.port) + 1)
        .max()
        .unwrap_or(0);
    // Config port index → position in `ports`.
    let mut slot_of = vec![None; slots];
    for (i, p) in ports.iter().enumerate() {
        slot_of[usize::from(p.port)] = Some(i);
    }
    let mut tx: Vec<TxBuffer> = ports.iter().map(|p| TxBuffer::new(p.tap.id, 0)).collect();
    let mut rx = RxBurst::default();
    let idle = Duration::from_micros(100);
    while !stop.load(Relaxed) {
        let mut moved = 0;
        // Per interface: frames given to its queue, and refused by it.
        let mut given = [0u64; MAX_KERNEL_PORTS];
        let mut refused = [0u64; MAX_KERNEL_PORTS];
        for ring in &mesh.to_kernel {
            for _ in 0..BURST {
                let Some((frame, port)) = ring.pop() else {
                    break;
                };
                moved += 1;
                // Workers send only for ports with a kernel interface.
                if let Some(i) = slot_of.get(usize::from(port)).copied().flatten() {
                    given[i] += 1;
                    refused[i] += tx[i].push(frame) as u64;
                }
            }
        }
        for (i, buffer) in tx.iter_mut().enumerate() {
            if buffer.pending() > 0 {
                refused[i] += buffer.flush() as u64;
            }
            bump(&counters[i].to_kernel, given[i] - refused[i]);
            bump(&counters[i].to_kernel_dropped, refused[i]);
        }
        for (i, port) in ports.iter().enumerate() {
            moved += rx.receive(port.tap.id, 0);
            while let Some(frame) = rx.next_packet() {
                let pushed = match frame {
                    Ok(frame) => mesh.from_kernel.push((frame, port.port)).is_ok(),
                    Err(_segmented) => false,
                };
                if pushed {
                    bump(&counters[i].from_kernel, 1);
                } else {
                    bump(&counters[i].from_kernel_dropped, 1);
                }
            }
        }
        if moved == 0 {
            std::thread::sleep(idle);
        }
    }
}

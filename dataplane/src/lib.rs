//! rvsd's dataplane. Packet logic (`wire`, `conn`, `tcp_state`, `sched`, ...)
//! works on the [`buf::PacketBuf`] abstraction and never touches DPDK, so it is
//! tested without a NIC; `dpdk` is the one module allowed `unsafe`.
#![deny(unsafe_code)]

pub mod addresses;
pub mod buf;
pub mod conn;
pub mod counters;
pub mod daemon;
pub mod dpdk;
pub mod engine;
pub mod kernel;
pub mod mesh;
pub mod metrics;
pub mod neigh;
pub mod persist;
pub mod sched;
pub mod snapshot;
pub mod supervisor;
pub mod sync;
pub mod tcp_state;
pub mod wire;
pub mod worker;

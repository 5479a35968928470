//! The rvs control plane: everything that is not the packet path and must
//! never link DPDK. For now: the YAML configuration model.
#![deny(unsafe_code)]

pub mod config;

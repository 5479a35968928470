//! The rvs control plane: everything that is not the packet path and must
//! never link DPDK: the YAML configuration model, the control protocol and
//! its socket server and client, the ipvsadm-compatible front end, and what
//! the command lines of rvsd and rvsctl share.
#![deny(unsafe_code)]

pub mod cli;
pub mod client;
pub mod config;
pub mod edit;
pub mod health;
pub mod ipvsadm;
pub mod keepalived;
pub mod listing;
pub mod model;
pub mod proto;
pub mod rvsctl;
pub mod server;
pub mod sync;
pub mod uploads;

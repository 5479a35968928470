//! Raw FFI to DPDK (in progress).

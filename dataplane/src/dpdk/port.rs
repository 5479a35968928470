//! Mempools and ports: setup-time calls, never on the packet path.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;

use dpdk_sys::{rte_eth_conf, rte_eth_dev_info, rte_eth_stats, rte_ether_addr, rte_mempool};

use super::{check, DpdkError};

/// A pktmbuf pool, alive for the whole process (DPDK frees it at EAL cleanup).
#[derive(Clone, Copy)]
pub struct Mempool(NonNull<rte_mempool>);

// SAFETY: DPDK mempools are multi-producer/multi-consumer safe; the handle is
// only a pointer to a pool that lives until EAL cleanup.
unsafe impl Send for Mempool {}
// SAFETY: as above.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// Creates a pool of `mbufs` packet buffers with a per-lcore `cache` and
    /// DPDK's default data room (2048 bytes plus headroom).
    pub fn create(name: &str, mbufs: u32, cache: u32, socket: i32) -> Result<Self, DpdkError> {
        let c_name = CString::new(name).expect("pool name has no NUL");
        let data_room = dpdk_sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16;
        // SAFETY: valid name; DPDK copies it.
        let raw = unsafe {
            dpdk_sys::rte_pktmbuf_pool_create(c_name.as_ptr(), mbufs, cache, 0, data_room, socket)
        };
        match NonNull::new(raw) {
            Some(pool) => Ok(Mempool(pool)),
            None => {
                Err(check(-1, || format!("creating mempool {name} of {mbufs} mbufs")).unwrap_err())
            }
        }
    }

    pub(super) fn as_ptr(&self) -> *mut rte_mempool {
        self.0.as_ptr()
    }

    /// Mbufs currently free in the pool (including per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: a read-only query on a valid pool.
        unsafe { dpdk_sys::rvs_mempool_avail_count(self.0.as_ptr()) }
    }
}

/// How to set up one port.
pub struct PortConfig {
    pub rx_queues: u16,
    pub tx_queues: u16,
    pub rx_descriptors: u16,
    pub tx_descriptors: u16,
    pub mtu: u16,
}

/// A DPDK ethdev port, found by its device name.
#[derive(Clone, Copy, Debug)]
pub struct PortHandle {
    pub id: u16,
}

// RSS hash types (RTE_ETH_RSS_*; function-like macros bindgen cannot see).
const RSS_IPV4: u64 = 1 << 2;
const RSS_NONFRAG_IPV4_TCP: u64 = 1 << 4;
const RSS_NONFRAG_IPV4_UDP: u64 = 1 << 5;

impl PortHandle {
    /// The port DPDK created for device `name` (a vdev name such as
    /// `net_af_packet0`, or a PCI address).
    pub fn by_name(name: &str) -> Result<Self, DpdkError> {
        let c_name = CString::new(name).expect("device name has no NUL");
        let mut id = 0u16;
        // SAFETY: valid name and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c_name.as_ptr(), &mut id) };
        check(ret, || format!("finding DPDK port {name}"))?;
        Ok(PortHandle { id })
    }

    fn info(&self) -> Result<rte_eth_dev_info, DpdkError> {
        let mut info = rte_eth_dev_info::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(self.id, &mut info) };
        check(ret, || format!("reading info of port {}", self.id))?;
        Ok(info)
    }

    /// The PMD's name, e.g. `net_af_packet`.
    pub fn driver_name(&self) -> String {
        match self.info() {
            Ok(info) if !info.driver_name.is_null() => {
                // SAFETY: DPDK's static driver name string.
                unsafe { CStr::from_ptr(info.driver_name) }
                    .to_string_lossy()
                    .into_owned()
            }
            _ => "unknown".to_owned(),
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> Result<[u8; 6], DpdkError> {
        let mut addr = rte_ether_addr::default();
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_macaddr_get(self.id, &mut addr) };
        check(ret, || {
            format!("reading the MAC address of port {}", self.id)
        })?;
        Ok(addr.addr_bytes)
    }

    /// Sets the port's MAC address (for a TAP port, its kernel interface's).
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut addr = rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port id and address.
        let ret = unsafe { dpdk_sys::rte_eth_dev_default_mac_addr_set(self.id, &mut addr) };
        check(ret, || {
            format!("setting the MAC address of port {}", self.id)
        })?;
        Ok(())
    }

    /// Configures queues on `pool`, sets the MTU and starts the port.
    pub fn setup(&self, cfg: &PortConfig, pool: Mempool) -> Result<(), DpdkError> {
        let info = self.info()?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(DpdkError::new(
                format!(
                    "port {} ({}) supports {} RX / {} TX queues, rvs needs {} / {} \
                     (one RX queue per worker entry, one TX queue per worker; \
                     for net_af_packet add qpairs=N to the device string)",
                    self.id,
                    self.driver_name(),
                    info.max_rx_queues,
                    info.max_tx_queues,
                    cfg.rx_queues,
                    cfg.tx_queues
                ),
                libc::EINVAL,
            ));
        }
        let mut conf = rte_eth_conf::default();
        if cfg.rx_queues > 1 {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf =
                (RSS_IPV4 | RSS_NONFRAG_IPV4_TCP | RSS_NONFRAG_IPV4_UDP)
                    & info.flow_type_rss_offloads;
        }
        // SAFETY: valid port and configuration struct.
        let ret = unsafe {
            dpdk_sys::rte_eth_dev_configure(self.id, cfg.rx_queues, cfg.tx_queues, &conf)
        };
        check(ret, || format!("configuring port {}", self.id))?;
        // SAFETY: a plain query on a configured port.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(self.id) }.max(0) as u32;
        for queue in 0..cfg.rx_queues {
            // SAFETY: queue index below the configured count; NULL = default rxconf.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    self.id,
                    queue,
                    cfg.rx_descriptors,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            check(ret, || {
                format!("setting up RX queue {queue} of port {}", self.id)
            })?;
        }
        for queue in 0..cfg.tx_queues {
            // SAFETY: as above, NULL = default txconf.
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(
                    self.id,
                    queue,
                    cfg.tx_descriptors,
                    socket,
                    std::ptr::null(),
                )
            };
            check(ret, || {
                format!("setting up TX queue {queue} of port {}", self.id)
            })?;
        }
        let mut current = 0u16;
        // SAFETY: valid port and out-pointer.
        let have_mtu = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.id, &mut current) } == 0;
        if !have_mtu || current != cfg.mtu {
            // SAFETY: valid port.
            let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.id, cfg.mtu) };
            check(ret, || {
                format!("setting MTU {} on port {}", cfg.mtu, self.id)
            })?;
        }
        // SAFETY: a configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.id) };
        check(ret, || format!("starting port {}", self.id))?;
        Ok(())
    }

    /// Hardware/PMD counters: (rx packets, tx packets, rx missed, rx errors, tx errors, rx no mbuf).
    pub fn stats(&self) -> Option<rte_eth_stats> {
        let mut stats = rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.id, &mut stats) };
        (ret == 0).then_some(stats)
    }

    /// Stops and closes the port (at shutdown, after workers returned).
    pub fn close(&self) {
        // SAFETY: called once at exit with no lcore polling the port.
        unsafe {
            dpdk_sys::rte_eth_dev_stop(self.id);
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

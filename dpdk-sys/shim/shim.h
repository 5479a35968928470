/* C shim over DPDK's static inline functions, so that Rust can call them.
 * Every function here is a thin, allocation-free forwarder. */
#ifndef RVS_DPDK_SHIM_H
#define RVS_DPDK_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ring.h>
#include <rte_flow.h>
#include <rte_version.h>

uint16_t rvs_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t rvs_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                          struct rte_mbuf **tx_pkts, uint16_t nb_pkts);
struct rte_mbuf *rvs_pktmbuf_alloc(struct rte_mempool *mp);
int rvs_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                           unsigned int count);
void rvs_pktmbuf_free(struct rte_mbuf *m);
unsigned int rvs_lcore_id(void);
int rvs_errno(void);
uint64_t rvs_get_tsc_cycles(void);
unsigned int rvs_mempool_avail_count(const struct rte_mempool *mp);
const char *rvs_version(void);

#endif

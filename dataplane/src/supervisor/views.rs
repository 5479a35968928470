//! The views only the running rvsd can give, as they need its ports'
//! MACs, its workers' counters or the workers themselves: `rvsctl ports`,
//! `workers`, `neighbours`, and the connection listing (`ipvsadm -L -c`,
//! `rvsctl conns`), which each worker answers page by page between bursts.

use std::collections::BTreeMap;
use std::time::Duration;

use rvs_control::model::Protocol;
use rvs_control::proto::{self, ConnEntry, ConnPage, NeighbourView, PortView, WorkerView};

use super::Supervisor;
use crate::conn::Conn;
use crate::counters::DropReason;
use crate::mesh::{ask_all, DumpRequest, Unanswered};

/// How long a listing waits for one worker's answer.
const WORKER_WAIT: Duration = Duration::from_millis(500);
/// Bits of a listing cursor that hold the table position; the ones above
/// name the worker.
const CURSOR_POSITION_BITS: u32 = 40;

impl Supervisor {
    pub(super) fn ports(&self) -> Vec<PortView> {
        let config = &self.config;
        config
            .ports
            .iter()
            .enumerate()
            .map(|(index, port)| PortView {
                name: port.name.clone(),
                device: port.device.clone(),
                mac: self
                    .macs
                    .get(index)
                    .map_or_else(|| "-".to_owned(), ToString::to_string),
                mtu: port.mtu,
                addresses: port.addresses.iter().map(ToString::to_string).collect(),
                rx_queues: config.rx_queues(index),
                tx_queues: config.tx_queues(),
                rx_descriptors: port.rx_descriptors,
                tx_descriptors: port.tx_descriptors,
            })
            .collect()
    }

    pub(super) fn workers(&self) -> Vec<WorkerView> {
        self.config
            .workers
            .iter()
            .zip(&self.counters)
            .enumerate()
            .map(|(index, (worker, counters))| {
                let c = counters.read();
                let drop_reasons: Vec<(String, u64)> = DropReason::ALL
                    .iter()
                    .map(|reason| (reason.name().to_owned(), c.drops_of(*reason)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                WorkerView {
                    index: index as u32,
                    lcore: worker.lcore,
                    cpu: self.config.worker_cpu(worker),
                    queues: worker
                        .queues
                        .iter()
                        .map(|q| format!("{}:{}", q.port, q.queue))
                        .collect(),
                    rx_packets: c.rx_packets,
                    rx_bytes: c.rx_bytes,
                    tx_packets: c.tx_packets,
                    tx_bytes: c.tx_bytes,
                    conns: c.conns_current,
                    conns_created: c.conns_created,
                    conns_expired: c.conns_expired,
                    redirected: c.redirected,
                    drops: drop_reasons.iter().map(|(_, count)| count).sum(),
                    drop_reasons,
                    polls: c.polls,
                    busy_polls: c.busy_polls,
                }
            })
            .collect()
    }

    /// What the workers have resolved by ARP, one row per address; a worker
    /// that does not answer in time is left out.
    pub(super) fn neighbours(&self) -> Vec<NeighbourView> {
        let answers = ask_all(&self.mesh.neighbour_tables, |_| (), WORKER_WAIT);
        let mut rows: BTreeMap<std::net::Ipv4Addr, NeighbourView> = BTreeMap::new();
        for (worker, entries) in answers.into_iter().enumerate() {
            for (addr, mac, port, age) in entries.unwrap_or_default() {
                let row = rows.entry(addr).or_insert_with(|| NeighbourView {
                    addr,
                    mac: mac.to_string(),
                    port: self
                        .config
                        .ports
                        .get(usize::from(port))
                        .map_or_else(|| port.to_string(), |p| p.name.clone()),
                    age_secs: age,
                    workers: Vec::new(),
                });
                if age < row.age_secs {
                    row.age_secs = age;
                    row.mac = mac.to_string();
                }
                row.workers.push(worker as u16);
            }
        }
        rows.into_values().collect()
    }

    /// One page of the connection listing. The cursor holds the worker in
    /// its high bits and the table position in the low ones.
    pub(super) fn connections(&self, cursor: u64, limit: u32) -> Result<ConnPage, String> {
        let limit = limit.clamp(1, proto::MAX_CONNECTION_PAGE) as usize;
        let mut worker = (cursor >> CURSOR_POSITION_BITS) as usize;
        let mut from = (cursor & ((1 << CURSOR_POSITION_BITS) - 1)) as usize;
        let mut entries = Vec::new();
        let workers = self.mesh.dumps.len();
        while worker < workers && entries.len() < limit {
            let wanted = limit - entries.len();
            let asks = std::slice::from_ref(&self.mesh.dumps[worker]);
            let answer = ask_all(
                asks,
                |_| DumpRequest {
                    from,
                    limit: wanted,
                },
                WORKER_WAIT,
            );
            let dump = answer
                .into_iter()
                .next()
                .expect("one answer per worker asked");
            let dump = dump.map_err(|why| match why {
                Unanswered::Busy => {
                    format!("worker {worker} is busy with another listing; try again")
                }
                Unanswered::TimedOut => {
                    format!("worker {worker} did not answer the connection listing in time")
                }
            })?;
            entries.extend(
                dump.entries
                    .into_iter()
                    .map(|(conn, expires)| conn_entry(&conn, expires)),
            );
            match dump.next {
                Some(next) => {
                    let cursor = (worker as u64) << CURSOR_POSITION_BITS | next as u64;
                    return Ok(ConnPage {
                        entries,
                        next: Some(cursor),
                    });
                }
                None => {
                    worker += 1;
                    from = 0;
                }
            }
        }
        let next =
            (worker < workers).then_some((worker as u64) << CURSOR_POSITION_BITS | from as u64);
        Ok(ConnPage { entries, next })
    }
}

fn conn_entry(conn: &Conn, expires: u32) -> ConnEntry {
    ConnEntry {
        protocol: if conn.proto == Protocol::Tcp.number() {
            Protocol::Tcp
        } else {
            Protocol::Udp
        },
        client: conn.client,
        client_port: conn.client_port,
        vip: conn.vip,
        vport: conn.vport,
        real: conn.real,
        real_port: conn.real_port,
        state: conn.state_name().to_owned(),
        expires_secs: expires,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::{PROTO_TCP, PROTO_UDP};
    use crate::tcp_state::TcpState;
    use rvs_control::model::{Forward, CONN_STATES};
    use std::net::Ipv4Addr;

    /// `rvsctl conns --state` takes only the names of `CONN_STATES`: every
    /// state a listed connection can show must be one of them.
    #[test]
    fn every_state_a_listing_shows_is_one_rvsctl_takes() {
        let conn = |proto, state| Conn {
            proto,
            client: Ipv4Addr::new(10, 0, 0, 2),
            client_port: 40000,
            vip: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
            real: Ipv4Addr::new(192, 168, 1, 2),
            real_port: 80,
            local: Ipv4Addr::new(10, 0, 0, 2),
            local_port: 40000,
            forward: Forward::Nat,
            service_id: 0,
            real_id: 0,
            template: u32::MAX,
            state,
            expires: 0,
            sync: Default::default(),
        };
        let mut shown: Vec<String> = TcpState::ALL
            .into_iter()
            .map(|state| conn_entry(&conn(PROTO_TCP, state), 0).state)
            .collect();
        shown.push(conn_entry(&conn(PROTO_UDP, TcpState::None), 0).state);
        for state in &shown {
            assert!(CONN_STATES.contains(&state.as_str()), "{state}");
        }
        assert_eq!(shown.len(), CONN_STATES.len(), "no name rvsd never shows");
    }
}

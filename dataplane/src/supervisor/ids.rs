//! Stable ids: what connections and counters know services and reals by,
//! kept across configuration changes so that a real that stays keeps its
//! connections and counters, and a version per service that changes with
//! it, so that workers keep the scheduler state of services that did not.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use rvs_control::config::{Config, Real, Service};
use rvs_control::proto::{errors, ServiceKey};

#[derive(Clone)]
pub(super) struct Ids {
    services: HashMap<ServiceKey, u32>,
    reals: HashMap<(u32, Ipv4Addr, u16), u32>,
    /// Per service id: bumped on every change to the service or its reals.
    versions: HashMap<u32, u64>,
    next_service: u32,
    next_real: u32,
    /// Ids of deleted reals, reused oldest first once fresh ids run out.
    free_reals: VecDeque<u32>,
    /// Real ids available (per-real counters are allocated for this many).
    real_limit: u32,
    next_version: u64,
}

impl Ids {
    /// Ids for `config`, whose reals may take `real_limit` ids.
    pub(super) fn new(config: &Config, real_limit: u32) -> Result<Self, String> {
        let mut ids = Ids {
            services: HashMap::new(),
            reals: HashMap::new(),
            versions: HashMap::new(),
            next_service: 0,
            next_real: 0,
            free_reals: VecDeque::new(),
            real_limit,
            next_version: 1,
        };
        ids.assign(None, config)?;
        Ok(ids)
    }

    /// The ids of `next`, the configuration replacing `old`: existing ones
    /// kept, new ones given, versions bumped for services that differ, the
    /// ids of what is gone released. Fails, changing nothing, if the real
    /// ids run out.
    pub(super) fn reassigned(&self, old: &Config, next: &Config) -> Result<Ids, String> {
        let mut ids = self.clone();
        ids.assign(Some(old), next)?;
        Ok(ids)
    }

    fn assign(&mut self, old: Option<&Config>, config: &Config) -> Result<(), String> {
        let old_services: HashMap<ServiceKey, &Service> = old
            .map(|c| c.services.iter().map(|s| (ServiceKey::of(s), s)).collect())
            .unwrap_or_default();
        let mut live_services = HashMap::new();
        let mut live_reals = HashMap::new();
        for service in &config.services {
            let key = ServiceKey::of(service);
            let id = match self.services.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.next_service;
                    self.next_service += 1;
                    id
                }
            };
            live_services.insert(key, id);
            if old_services.get(&key) != Some(&service) || !self.versions.contains_key(&id) {
                self.versions.insert(id, self.next_version);
                self.next_version += 1;
            }
            // The sorry server is scheduled like a real while the quorum is
            // lost: it has an id too.
            let sorry = service
                .sorry_server
                .iter()
                .map(|s| (s.address, s.port.unwrap_or(service.port)));
            let addresses = service
                .reals
                .iter()
                .map(|real| (real.address, real.port_or(service.port)));
            for (address, port) in addresses.chain(sorry) {
                let real_key = (id, address, port);
                if live_reals.contains_key(&real_key) {
                    continue;
                }
                let real_id = match self.reals.get(&real_key) {
                    Some(&real_id) => real_id,
                    None if self.next_real < self.real_limit => {
                        self.next_real += 1;
                        self.next_real - 1
                    }
                    None => match self.free_reals.pop_front() {
                        Some(real_id) => real_id,
                        None => return Err(errors::NO_MEMORY.to_owned()),
                    },
                };
                self.reals.insert(real_key, real_id);
                live_reals.insert(real_key, real_id);
            }
        }
        for (key, real_id) in &self.reals {
            if !live_reals.contains_key(key) {
                self.free_reals.push_back(*real_id);
            }
        }
        // A set, not a scan of `live_services` per version: that was
        // quadratic, seconds for 100,000 services.
        let live_ids: HashSet<u32> = live_services.values().copied().collect();
        self.versions.retain(|id, _| live_ids.contains(id));
        self.services = live_services;
        self.reals = live_reals;
        Ok(())
    }

    /// The id of a service of the configuration the ids were assigned for.
    pub(super) fn service(&self, service: &Service) -> u32 {
        self.services[&ServiceKey::of(service)]
    }

    /// The id of the service `key` names, if it is configured.
    pub(super) fn service_of(&self, key: &ServiceKey) -> Option<u32> {
        self.services.get(key).copied()
    }

    /// The version of service `id`.
    pub(super) fn version(&self, id: u32) -> u64 {
        self.versions.get(&id).copied().unwrap_or(0)
    }

    /// A new version for service `id`, whose reals changed outside the
    /// configuration (a health check): its tables are rebuilt.
    pub(super) fn bump(&mut self, id: u32) {
        if let Some(version) = self.versions.get_mut(&id) {
            *version = self.next_version;
            self.next_version += 1;
        }
    }

    /// The id of `real` of the service with id `service_id` and port
    /// `service_port`.
    pub(super) fn real(&self, service_id: u32, real: &Real, service_port: u16) -> u32 {
        self.reals[&(service_id, real.address, real.port_or(service_port))]
    }

    /// Every real id in use.
    pub(super) fn real_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.reals.values().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvs_control::config::{self, CpuList, HostCpus};
    use std::time::{Duration, Instant};

    const BASE: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - { name: a, device: net_null0, addresses: [10.0.0.1/16] }
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: a, queue: 0 } ] }
services:
  - { vip: 10.1.0.1, port: 80, protocol: tcp, reals: [ { address: 10.0.0.2 } ] }
";

    /// BASE's service `count` times, each on a VIP of its own.
    fn services(count: u32) -> Config {
        let list = CpuList::parse("0-1").unwrap();
        let cpus = HostCpus {
            online: list.clone(),
            allowed: list,
        };
        let mut config = config::parse_on(BASE, "base.yaml", &cpus).unwrap();
        let service = config.services[0].clone();
        config.services = (0..count)
            .map(|i| Service {
                vip: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 1)) + i),
                ..service.clone()
            })
            .collect();
        config
    }

    #[test]
    fn ids_of_a_large_change_take_linear_time() {
        let old = services(50_000);
        let mut next = services(100_000);
        next.services.drain(..25_000);
        let ids = Ids::new(&old, 1 << 20).unwrap();
        let started = Instant::now();
        let ids = ids.reassigned(&old, &next).unwrap();
        // Quadratic, this took minutes; linear, well under a second.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(ids.services.len(), 75_000);
        assert_eq!(ids.versions.len(), 75_000);
        let kept = ServiceKey::of(&next.services[0]);
        assert_eq!(
            ids.service_of(&kept),
            Some(25_000),
            "a service that stays keeps its id"
        );
    }
}

//! What health does to the running configuration, as pure functions: the
//! reals a service schedules once failed reals are out ([`HealthView::apply`]),
//! and its quorum ([`HealthView::update`]). Listings and snapshots both
//! read the configuration through [`HealthView::apply`], so that rvsadm
//! shows what the workers schedule, exactly as ipvsadm shows IPVS after
//! keepalived removed a real: absent, or weight 0 when inhibited.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::config::{sorry_forward, Config, Real, Service};
use crate::proto::ServiceKey;

/// A real of a service: the service's key, the real's address and port.
pub type RealKey = (ServiceKey, Ipv4Addr, u16);

/// The key of `real` of `service`.
pub fn real_key(service: &Service, real: &Real) -> RealKey {
    (
        ServiceKey::of(service),
        real.address,
        real.port_or(service.port),
    )
}

/// What the checker last said of a checked real.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RealState {
    pub alive: bool,
    /// The weight a MISC_CHECK with `misc_dynamic` gave it.
    pub weight: Option<u32>,
}

/// A quorum transition of a service, for the log and its command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumEvent {
    pub service: ServiceKey,
    pub up: bool,
    /// The live weight against the quorum, for the log.
    pub weight: u64,
    pub quorum: u32,
    /// `quorum_up` or `quorum_down`, if configured.
    pub command: Option<String>,
}

/// The health of the checked reals and which services lost their quorum.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthView {
    reals: HashMap<RealKey, RealState>,
    lost: HashSet<ServiceKey>,
}

impl HealthView {
    /// Nothing checked yet.
    pub fn is_empty(&self) -> bool {
        self.reals.is_empty() && self.lost.is_empty()
    }

    /// The state of a real; `None`: not checked (always in).
    pub fn real(&self, key: &RealKey) -> Option<RealState> {
        self.reals.get(key).copied()
    }

    /// Whether `service` has lost its quorum.
    pub fn quorum_lost(&self, service: &ServiceKey) -> bool {
        self.lost.contains(service)
    }

    /// `service` as the workers schedule it: failed reals out (or at weight
    /// 0 with `inhibit_on_failure`), dynamic weights applied, the sorry
    /// server in place of the live reals while the quorum is lost.
    /// Borrowed when health changes nothing.
    pub fn apply<'a>(&self, service: &'a Service) -> Cow<'a, Service> {
        let key = ServiceKey::of(service);
        let lost = self.lost.contains(&key);
        let inhibited_sorry = service.sorry_server.is_some() && service.sorry_server_inhibit;
        let touched = lost
            || inhibited_sorry
            || (!self.reals.is_empty()
                && service
                    .reals
                    .iter()
                    .any(|real| self.changes(service, real).is_some()));
        if !touched {
            return Cow::Borrowed(service);
        }
        let mut reals: Vec<Real> = Vec::with_capacity(service.reals.len() + 1);
        for real in &service.reals {
            let state = self.reals.get(&real_key(service, real));
            match state {
                Some(state) if !state.alive => {
                    if real.inhibit_on_failure {
                        reals.push(Real {
                            weight: 0,
                            ..real.clone()
                        });
                    }
                }
                // Live: while the quorum is lost the sorry server serves
                // instead (only if there is one: keepalived keeps them
                // otherwise).
                _ if lost && service.sorry_server.is_some() => {}
                _ => reals.push(Real {
                    weight: live_weight(real, state),
                    ..real.clone()
                }),
            }
        }
        if let Some(sorry) = &service.sorry_server {
            if lost || service.sorry_server_inhibit {
                reals.push(Real {
                    port: sorry.port,
                    weight: u32::from(lost),
                    forward: sorry.forward.unwrap_or_else(|| sorry_forward(service)),
                    ..Real::at(sorry.address)
                });
            }
        }
        Cow::Owned(Service {
            reals,
            ..service.clone()
        })
    }

    /// What health changes of `real`, if anything: `None` when it is
    /// scheduled as configured.
    fn changes(&self, service: &Service, real: &Real) -> Option<RealState> {
        let state = self.reals.get(&real_key(service, real))?;
        (!state.alive || live_weight(real, Some(state)) != real.weight).then_some(*state)
    }

    /// Adopts the checker's states `states` (every checked real of
    /// `config`; what is not there is not checked) and recomputes every
    /// checked service's quorum; returns the services whose schedule
    /// changed and the quorum transitions.
    pub fn update(
        &mut self,
        config: &Config,
        states: HashMap<RealKey, RealState>,
    ) -> (HashSet<ServiceKey>, Vec<QuorumEvent>) {
        let mut changed: HashSet<ServiceKey> = HashSet::new();
        for (key, state) in &states {
            if self.reals.get(key) != Some(state) {
                changed.insert(key.0);
            }
        }
        for key in self.reals.keys() {
            if !states.contains_key(key) {
                changed.insert(key.0);
            }
        }
        self.reals = states;
        let mut events = Vec::new();
        let mut lost = HashSet::new();
        for service in config.services.iter().filter(|s| s.is_checked()) {
            let key = ServiceKey::of(service);
            let weight: u64 = service
                .reals
                .iter()
                .filter_map(|real| {
                    let state = self.reals.get(&real_key(service, real));
                    state
                        .is_none_or(|s| s.alive)
                        .then(|| u64::from(live_weight(real, state)))
                })
                .sum();
            let quorum = u64::from(service.quorum);
            let hysteresis = u64::from(service.hysteresis);
            let was_lost = self.lost.contains(&key);
            let now_lost = if was_lost {
                weight < quorum + hysteresis
            } else {
                weight == 0 || weight < quorum.saturating_sub(hysteresis)
            };
            if now_lost {
                lost.insert(key);
            }
            if now_lost != was_lost {
                changed.insert(key);
                events.push(QuorumEvent {
                    service: key,
                    up: !now_lost,
                    weight,
                    quorum: service.quorum,
                    command: if now_lost {
                        service.quorum_down.clone()
                    } else {
                        service.quorum_up.clone()
                    },
                });
            }
        }
        for key in &self.lost {
            if !lost.contains(key) && !events.iter().any(|e| e.service == *key) {
                // The service is gone or no longer checked.
                changed.insert(*key);
            }
        }
        self.lost = lost;
        (changed, events)
    }
}

/// The weight a live real schedules with: 0 while drained, else the one its
/// MISC_CHECK gave, else its own.
fn live_weight(real: &Real, state: Option<&RealState>) -> u32 {
    if real.drained_from.is_some() {
        return 0;
    }
    state.and_then(|s| s.weight).unwrap_or(real.weight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, CpuList, HostCpus};

    const CONFIG: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - { name: a, device: net_null0, addresses: [10.0.0.1/16] }
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: a, queue: 0 } ] }
services:
  - vip: 10.1.0.1
    port: 80
    protocol: tcp
    scheduler: wrr
    quorum: 2
    sorry_server: { address: 10.0.0.99 }
    checks: [ { type: tcp_check } ]
    reals:
      - { address: 10.0.0.2, weight: 2 }
      - { address: 10.0.0.3, inhibit_on_failure: true }
";

    fn config() -> Config {
        let list = CpuList::parse("0-1").unwrap();
        let cpus = HostCpus {
            online: list.clone(),
            allowed: list,
        };
        config::parse_on(CONFIG, "test.yaml", &cpus).unwrap()
    }

    fn states(config: &Config, alive: [bool; 2]) -> HashMap<RealKey, RealState> {
        let service = &config.services[0];
        service
            .reals
            .iter()
            .zip(alive)
            .map(|(real, alive)| {
                (
                    real_key(service, real),
                    RealState {
                        alive,
                        weight: None,
                    },
                )
            })
            .collect()
    }

    fn listed(view: &HealthView, config: &Config) -> Vec<(String, u32)> {
        view.apply(&config.services[0])
            .reals
            .iter()
            .map(|r| (r.address.to_string(), r.weight))
            .collect()
    }

    #[test]
    fn failed_reals_leave_or_are_inhibited_and_the_sorry_server_takes_over() {
        let config = config();
        let mut view = HealthView::default();
        let (_, events) = view.update(&config, states(&config, [true, true]));
        assert!(events.is_empty(), "{events:?}");
        assert!(matches!(view.apply(&config.services[0]), Cow::Borrowed(_)));

        // 10.0.0.3 fails: inhibited (weight 0); 2 still meets the quorum.
        let (changed, events) = view.update(&config, states(&config, [true, false]));
        assert_eq!(changed.len(), 1);
        assert!(events.is_empty());
        assert_eq!(
            listed(&view, &config),
            [("10.0.0.2".to_owned(), 2), ("10.0.0.3".to_owned(), 0)]
        );

        // Both down: quorum lost, the sorry server serves.
        let (_, events) = view.update(&config, states(&config, [false, false]));
        assert_eq!(events.len(), 1);
        assert!(!events[0].up);
        assert_eq!(
            listed(&view, &config),
            [("10.0.0.3".to_owned(), 0), ("10.0.0.99".to_owned(), 1)]
        );

        // One back: quorum again, the sorry server leaves.
        let (_, events) = view.update(&config, states(&config, [true, false]));
        assert!(events[0].up);
        assert_eq!(
            listed(&view, &config),
            [("10.0.0.2".to_owned(), 2), ("10.0.0.3".to_owned(), 0)]
        );
    }

    #[test]
    fn hysteresis_delays_both_transitions() {
        let mut config = config();
        config.services[0].quorum = 2;
        config.services[0].hysteresis = 1;
        let mut view = HealthView::default();
        view.update(&config, states(&config, [true, true]));
        // Weight 2 of quorum 2: lost only below 1.
        let (_, events) = view.update(&config, states(&config, [true, false]));
        assert!(events.is_empty());
        let (_, events) = view.update(&config, states(&config, [false, false]));
        assert!(!events[0].up);
        // Regained only at 3.
        let (_, events) = view.update(&config, states(&config, [true, false]));
        assert!(events.is_empty());
        let (_, events) = view.update(&config, states(&config, [true, true]));
        assert!(events[0].up);
    }

    #[test]
    fn a_drained_real_stays_drained_when_it_recovers() {
        let mut config = config();
        config.services[0].quorum = 1;
        config.services[0].reals[0].weight = 0;
        config.services[0].reals[0].drained_from = Some(2);
        let mut view = HealthView::default();
        view.update(&config, states(&config, [false, true]));
        view.update(&config, states(&config, [true, true]));
        assert_eq!(listed(&view, &config)[0], ("10.0.0.2".to_owned(), 0));
    }
}

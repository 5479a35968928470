//! The immutable view of configuration the workers read: ports, routes,
//! services and reals, computed by the control thread before it reaches a
//! worker. Workers only look things up here; nothing in it changes while a
//! worker holds it (a new configuration is a new snapshot).

use std::net::Ipv4Addr;

use hashbrown::HashMap;

use std::sync::Arc;

use crate::sched::{SchedTable, TableReal, Thresholds};
use crate::tcp_state::StateTimeouts;
use crate::wire::ethernet::MacAddr;
use rvs_control::model::{Forward, SchedFlags, SchedulerKind};

/// Connections to end: those of service `service_id` to `address` (on
/// `port`, or any port for `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purge {
    pub service_id: u32,
    pub address: Ipv4Addr,
    pub port: Option<u16>,
}

/// An IPv4 prefix as two masked integers, for fast matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub fn new(addr: Ipv4Addr, len: u8) -> Self {
        Prefix { addr, len }
    }

    #[inline]
    pub fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len.min(32)))
        }
    }

    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (u32::from(ip) ^ u32::from(self.addr)) & self.mask() == 0
    }
}

/// One DPDK port as the packet path sees it. `index` in [`Snapshot::ports`] is
/// the port's position in the config, not its DPDK port id.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub name: String,
    pub mac: MacAddr,
    /// Addresses owned by the port, with their connected prefix length.
    pub addresses: Vec<Prefix>,
    pub mtu: u16,
    /// Whether the port has a kernel interface: what the dataplane does
    /// not own goes to the kernel instead of being dropped.
    pub kernel: bool,
    /// Addresses the port has while this director holds them
    /// (`floating_addresses`, `ownership: kernel`); inside the subnets of
    /// `addresses`.
    pub floating: Vec<Ipv4Addr>,
}

/// A route: packets to `prefix` leave through `port`, to `via` or (connected
/// route) straight to their destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub prefix: Prefix,
    pub port: u16,
    pub via: Option<Ipv4Addr>,
}

#[derive(Clone, Debug)]
pub struct RealInfo {
    pub address: Ipv4Addr,
    /// 0 in a port-zero service: the port the client asked for.
    pub port: u16,
    pub weight: u32,
    pub forward: Forward,
    /// Stable id: the index of the real's counters, and what connections
    /// remember it by across configuration changes. Unique in a snapshot.
    pub id: u32,
    /// IPVS `-x`/`-y`; 0 = none.
    pub thresholds: Thresholds,
    /// Drained (`rvsctl drain`): weight 0, and its persistence templates
    /// are no longer followed.
    pub drained: bool,
}

impl RealInfo {
    /// The port a connection to service port `vport` reaches the real on:
    /// its own, or in a port-zero service (port 0) the port the client
    /// asked for.
    #[inline]
    pub fn port_for(&self, vport: u16) -> u16 {
        if self.port == 0 {
            vport
        } else {
            self.port
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServiceInfo {
    /// Stable id (survives configuration changes).
    pub id: u32,
    /// Changes whenever the service or its reals change: a worker keeps its
    /// scheduler state while it stays the same.
    pub version: u64,
    /// IP protocol number (6 TCP, 17 UDP).
    pub protocol: u8,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub scheduler: SchedulerKind,
    /// Reals in list order: the order schedulers scan them.
    pub reals: Vec<RealInfo>,
    /// FullNAT local addresses, with their index in [`Snapshot::lips`].
    pub local_addresses: Vec<(Ipv4Addr, u32)>,
    pub flags: SchedFlags,
    /// The scheduler's lookup table (dh, sh, mh; an empty one of the
    /// scheduler's kind for the others), computed off the packet path and
    /// shared by every worker's scheduler of the service.
    pub table: Arc<SchedTable>,
    /// Persistence timeout in seconds; `None`: not persistent.
    pub persistent: Option<u32>,
    /// Persistence granularity, as a mask on the client address.
    pub netmask: Ipv4Addr,
    /// One-packet scheduling: UDP datagrams scheduled one by one, no connection.
    pub one_packet: bool,
    /// A mark service: the (protocol, VIP, port) triples it serves as one.
    pub mark: Option<u32>,
    pub matches: Vec<(u8, Ipv4Addr, u16)>,
}

impl ServiceInfo {
    /// A plain service: no flags, persistence or one-packet scheduling; its
    /// table is built from the reals' addresses and weights, as the control
    /// thread builds it for a real that was never quiesced.
    pub fn new(
        id: u32,
        protocol: u8,
        vip: Ipv4Addr,
        port: u16,
        scheduler: SchedulerKind,
        reals: Vec<RealInfo>,
    ) -> Self {
        let table_reals: Vec<TableReal> = reals
            .iter()
            .map(|r| TableReal::new(r.address, r.port, r.weight))
            .collect();
        ServiceInfo {
            id,
            version: 0,
            protocol,
            vip,
            port,
            scheduler,
            table: Arc::new(SchedTable::build(scheduler, &table_reals)),
            reals,
            local_addresses: Vec::new(),
            flags: SchedFlags::default(),
            persistent: None,
            netmask: Ipv4Addr::BROADCAST,
            one_packet: false,
            mark: None,
            matches: Vec::new(),
        }
    }

    /// Whether any real has a connection threshold.
    pub fn has_thresholds(&self) -> bool {
        self.reals
            .iter()
            .any(|r| r.thresholds.upper != 0 || r.thresholds.lower != 0)
    }
}

/// The FullNAT local-address port range, shared out between workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub min: u16,
    pub max: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            min: 1024,
            max: 65535,
        }
    }
}

/// Everything a worker needs to process packets.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub ports: Vec<PortInfo>,
    /// Longest prefix first; connected routes included.
    pub routes: Vec<Route>,
    pub services: Vec<ServiceInfo>,
    pub timeouts: StateTimeouts,
    /// Every FullNAT local address (LIP) of any service.
    pub lips: Vec<Ipv4Addr>,
    /// IPVS expire_quiescent_template.
    pub expire_quiescent_template: bool,
    /// Answer a packet to a closed port of rvs's own addresses (TCP RST,
    /// ICMP port unreachable) instead of dropping it silently.
    pub reject_closed_ports: bool,
    /// Reals removed with their connections, as (service id, address, port;
    /// `None`: any port): workers end every connection of the service to that
    /// address (a bounded number per tick) when they take this snapshot.
    pub purge_reals: Vec<Purge>,
    pub lip_ports: PortRange,
    /// This director is a connection sync master: workers hand copies of
    /// their connections to the sync daemon.
    pub sync_master: bool,
    /// VIPs and floating addresses this director does not hold now
    /// (`ownership: kernel`: not on a kernel interface); empty otherwise.
    unheld: HashMap<Ipv4Addr, ()>,
    services_by_key: HashMap<(u8, Ipv4Addr, u16), u32>,
    /// Every VIP (any service), to tell "ours, no such service" from "not ours".
    vips: HashMap<Ipv4Addr, ()>,
    /// Addresses no host may send from that a prefix test cannot tell:
    /// rvs's own (VIPs, port addresses, local addresses) and the network
    /// and broadcast addresses of the connected subnets.
    not_sources: HashMap<Ipv4Addr, ()>,
    /// Real id → (service index, real index), `u32::MAX` where no real has the id.
    real_slots: Vec<(u32, u32)>,
    /// Service id → service index.
    service_slots: HashMap<u32, u32>,
    /// The smallest MTU of any port.
    min_mtu: u16,
}

impl Snapshot {
    /// Builds a snapshot; `routes` are the static routes (connected routes are
    /// derived from the port addresses here).
    pub fn new(
        ports: Vec<PortInfo>,
        static_routes: Vec<Route>,
        mut services: Vec<ServiceInfo>,
        timeouts: StateTimeouts,
    ) -> Self {
        let mut routes = static_routes;
        for (index, port) in ports.iter().enumerate() {
            for addr in &port.addresses {
                let network = Ipv4Addr::from(u32::from(addr.addr) & addr.mask());
                routes.push(Route {
                    prefix: Prefix::new(network, addr.len),
                    port: index as u16,
                    via: None,
                });
            }
        }
        // Longest prefix first; among equals, connected routes (no via) last
        // pushed stay after static ones, which is the operator's intent.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len));

        let id_bound = services
            .iter()
            .flat_map(|s| &s.reals)
            .map(|r| r.id as usize + 1)
            .max()
            .unwrap_or(0);
        let mut real_slots = vec![(u32::MAX, u32::MAX); id_bound];
        for (s, service) in services.iter().enumerate() {
            for (r, real) in service.reals.iter().enumerate() {
                real_slots[real.id as usize] = (s as u32, r as u32);
            }
        }
        let service_slots = services
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i as u32))
            .collect();
        let mut services_by_key = HashMap::new();
        let mut vips = HashMap::new();
        for (i, s) in services.iter().enumerate() {
            if s.mark.is_some() {
                for &(protocol, vip, port) in &s.matches {
                    services_by_key.insert((protocol, vip, port), i as u32);
                    vips.insert(vip, ());
                }
            } else {
                services_by_key.insert((s.protocol, s.vip, s.port), i as u32);
                vips.insert(s.vip, ());
            }
        }
        let mut lips: Vec<Ipv4Addr> = Vec::new();
        for service in &mut services {
            for (lip, index) in &mut service.local_addresses {
                *index = match lips.iter().position(|l| l == lip) {
                    Some(i) => i as u32,
                    None => {
                        lips.push(*lip);
                        (lips.len() - 1) as u32
                    }
                };
            }
        }
        let min_mtu = ports.iter().map(|p| p.mtu).min().unwrap_or(u16::MAX);
        let mut not_sources: HashMap<Ipv4Addr, ()> = vips.clone();
        for net in ports.iter().flat_map(|p| &p.addresses) {
            not_sources.insert(net.addr, ());
            if net.len < 31 {
                let network = u32::from(net.addr) & net.mask();
                not_sources.insert(Ipv4Addr::from(network), ());
                not_sources.insert(Ipv4Addr::from(network | !net.mask()), ());
            }
        }
        for lip in &lips {
            not_sources.insert(*lip, ());
        }
        for addr in ports.iter().flat_map(|p| &p.floating) {
            not_sources.insert(*addr, ());
        }
        Snapshot {
            min_mtu,
            ports,
            routes,
            services,
            timeouts,
            lips,
            expire_quiescent_template: false,
            reject_closed_ports: false,
            purge_reals: Vec::new(),
            lip_ports: PortRange::default(),
            sync_master: false,
            unheld: HashMap::new(),
            services_by_key,
            vips,
            not_sources,
            real_slots,
            service_slots,
        }
    }

    /// The smallest MTU of any port: a packet no longer than this fits every
    /// egress port.
    #[inline]
    pub fn min_mtu(&self) -> u16 {
        self.min_mtu
    }

    /// One more than the largest real id (length of per-real counter arrays).
    pub fn real_id_bound(&self) -> usize {
        self.real_slots.len()
    }

    /// Where real `id` sits: (service index, index in its reals).
    #[inline]
    pub fn real_position(&self, id: u32) -> Option<(usize, usize)> {
        match self.real_slots.get(id as usize) {
            Some(&(s, r)) if s != u32::MAX => Some((s as usize, r as usize)),
            _ => None,
        }
    }

    /// The index of the service with stable id `id`.
    pub fn service_index(&self, id: u32) -> Option<usize> {
        self.service_slots.get(&id).map(|&i| i as usize)
    }

    /// The service for a packet to `vip:port` over `protocol`: the one on
    /// that port, else a port-zero service of the VIP (every port).
    #[inline]
    pub fn service(&self, protocol: u8, vip: Ipv4Addr, port: u16) -> Option<u32> {
        self.services_by_key
            .get(&(protocol, vip, port))
            .or_else(|| self.services_by_key.get(&(protocol, vip, 0)))
            .copied()
    }

    /// Sets the FullNAT port range (default 1024-65535).
    pub fn with_lip_ports(mut self, range: PortRange) -> Self {
        self.lip_ports = range;
        self
    }

    /// Sets IPVS's expire_quiescent_template.
    pub fn with_expire_quiescent_template(mut self, expire: bool) -> Self {
        self.expire_quiescent_template = expire;
        self
    }

    /// Sets whether this director is a connection sync master.
    pub fn with_sync_master(mut self, master: bool) -> Self {
        self.sync_master = master;
        self
    }

    /// Marks `addresses` (VIPs, floating addresses) as not held by this
    /// director now: their ARP is not answered, no new connection to them
    /// is made, a floating address is not this director's.
    pub fn with_unheld(mut self, addresses: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.unheld = addresses.into_iter().map(|a| (a, ())).collect();
        self
    }

    /// Whether this director serves `ip` now: every address unless
    /// `ownership: kernel` and keepalived gave it to the other director.
    #[inline]
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.unheld.is_empty() || !self.unheld.contains_key(&ip)
    }

    /// Sets whether closed ports are answered (default: dropped).
    pub fn with_reject_closed_ports(mut self, reject: bool) -> Self {
        self.reject_closed_ports = reject;
        self
    }

    /// True for a FullNAT local address.
    #[inline]
    pub fn is_lip(&self, ip: Ipv4Addr) -> bool {
        self.lips.contains(&ip)
    }

    #[inline]
    pub fn is_vip(&self, ip: Ipv4Addr) -> bool {
        self.vips.contains_key(&ip)
    }

    /// True for an address rvs owns: a VIP or an address of a port.
    #[inline]
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.is_vip(ip) || self.is_port_address(ip)
    }

    /// True when `ip` is an address of some port.
    #[inline]
    pub fn is_port_address(&self, ip: Ipv4Addr) -> bool {
        self.ports.iter().any(|p| {
            p.addresses.iter().any(|a| a.addr == ip) || (p.floating.contains(&ip) && self.holds(ip))
        })
    }

    /// Whether no host may send from `ip`: 0.0.0.0/8, 127.0.0.0/8,
    /// multicast, 240.0.0.0/4 (with the broadcast address), the network or
    /// broadcast address of a connected subnet, or an address of rvs itself
    /// (a VIP, a port's, a FullNAT local address). For new connections,
    /// not the packet path of established ones.
    pub fn is_martian(&self, ip: Ipv4Addr) -> bool {
        let first = ip.octets()[0];
        // 0/8, 127/8, then 224/4 multicast and 240/4 (with broadcast).
        first == 0 || first == 127 || first >= 224 || self.not_sources.contains_key(&ip)
    }

    /// Whether `ip` lies in a connected subnet of port `port`.
    pub fn on_subnet(&self, port: u16, ip: Ipv4Addr) -> bool {
        self.ports
            .get(usize::from(port))
            .is_some_and(|info| info.addresses.iter().any(|a| a.contains(ip)))
    }

    /// Whether rvs answers ARP for `ip` on port `port`: an address of that
    /// port (a floating one while held), or a VIP it holds inside one of
    /// the port's connected subnets.
    pub fn answers_arp(&self, port: u16, ip: Ipv4Addr) -> bool {
        let Some(info) = self.ports.get(usize::from(port)) else {
            return false;
        };
        if info.floating.contains(&ip) {
            return self.holds(ip);
        }
        info.addresses
            .iter()
            .any(|a| a.addr == ip || (self.is_vip(ip) && self.holds(ip) && a.contains(ip)))
    }

    /// The port a packet to `dst` leaves by and the next hop to resolve.
    #[inline]
    pub fn route(&self, dst: Ipv4Addr) -> Option<(u16, Ipv4Addr)> {
        self.routes
            .iter()
            .find(|r| r.prefix.contains(dst))
            .map(|r| (r.port, r.via.unwrap_or(dst)))
    }

    /// An address of `port` to use as the source of packets rvs originates
    /// there (ARP requests): the one whose subnet holds `toward`, else the first.
    pub fn source_address(&self, port: u16, toward: Ipv4Addr) -> Option<Ipv4Addr> {
        let info = self.ports.get(usize::from(port))?;
        info.addresses
            .iter()
            .find(|a| a.contains(toward))
            .or_else(|| info.addresses.first())
            .map(|a| a.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::protocol;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn snapshot() -> Snapshot {
        let ports = vec![
            PortInfo {
                name: "client".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                addresses: vec![Prefix::new(ip("10.99.1.1"), 24)],
                mtu: 1500,
                kernel: false,
                floating: Vec::new(),
            },
            PortInfo {
                name: "real".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 2]),
                addresses: vec![Prefix::new(ip("10.99.2.1"), 24)],
                mtu: 1500,
                kernel: false,
                floating: Vec::new(),
            },
        ];
        let routes = vec![
            Route {
                prefix: Prefix::new(ip("0.0.0.0"), 0),
                port: 0,
                via: Some(ip("10.99.1.254")),
            },
            Route {
                prefix: Prefix::new(ip("10.99.3.0"), 24),
                port: 1,
                via: Some(ip("10.99.2.254")),
            },
        ];
        let services = vec![ServiceInfo::new(
            0,
            protocol::TCP,
            ip("10.99.1.100"),
            80,
            SchedulerKind::Rr,
            vec![],
        )];
        Snapshot::new(ports, routes, services, StateTimeouts::default())
    }

    #[test]
    fn longest_prefix_wins() {
        let s = snapshot();
        assert_eq!(s.route(ip("10.99.2.7")), Some((1, ip("10.99.2.7"))));
        assert_eq!(s.route(ip("10.99.3.7")), Some((1, ip("10.99.2.254"))));
        assert_eq!(s.route(ip("10.99.1.9")), Some((0, ip("10.99.1.9"))));
        assert_eq!(s.route(ip("8.8.8.8")), Some((0, ip("10.99.1.254"))));
    }

    #[test]
    fn arp_is_answered_for_port_addresses_and_vips_in_connected_subnets() {
        let s = snapshot();
        assert!(s.answers_arp(0, ip("10.99.1.1")));
        assert!(s.answers_arp(0, ip("10.99.1.100")));
        assert!(
            !s.answers_arp(1, ip("10.99.1.100")),
            "VIP is not in port 1's subnet"
        );
        assert!(!s.answers_arp(0, ip("10.99.1.2")));
        assert!(s.answers_arp(1, ip("10.99.2.1")));
    }

    #[test]
    fn martian_sources() {
        let s = snapshot();
        for martian in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "224.0.0.5",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "10.99.1.0",
            "10.99.1.255",
            "10.99.1.1",
            "10.99.1.100",
        ] {
            assert!(s.is_martian(ip(martian)), "{martian}");
        }
        for fine in ["10.99.1.2", "8.8.8.8", "10.99.3.0", "192.0.2.1"] {
            assert!(!s.is_martian(ip(fine)), "{fine}");
        }
    }

    #[test]
    fn prefix_masks() {
        assert!(Prefix::new(ip("0.0.0.0"), 0).contains(ip("1.2.3.4")));
        assert!(Prefix::new(ip("1.2.3.4"), 32).contains(ip("1.2.3.4")));
        assert!(!Prefix::new(ip("1.2.3.4"), 32).contains(ip("1.2.3.5")));
    }
}

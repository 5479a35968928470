//! Semantic checks on a parsed [`Config`]: what serde cannot see. Each
//! refusal names the key path it is about and says what to change.

use super::{
    Config, Forward, HostCpus, Ipv4Net, MarkMatch, Ownership, Port, Protocol, Real, Service,
    SyncState, ValidationError,
};
use crate::model::{SchedFlagError, SchedFlags};
use crate::sync::{MAX_MAXLEN, MIN_MAXLEN};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};

/// DPDK's default RTE_MAX_LCORE: lcore ids are below it.
pub const MAX_LCORE: u32 = 128;

/// Most connections a worker tracks (`limits.connections`): its table
/// numbers entries in 30 bits (rvsd's `conn::MAX_CAPACITY`).
pub const MAX_CONNECTIONS: u32 = 1 << 30;

/// Largest real weight, as IPVS (its weights are 16-bit in practice).
pub const MAX_WEIGHT: u32 = 65535;

/// DPDK's RTE_MEMPOOL_CACHE_MAX_SIZE: the largest per-lcore mempool cache.
pub const MEMPOOL_CACHE_MAX: u32 = 512;

/// Packets per RX/TX burst of a worker.
pub(crate) const BURST: u64 = 32;

/// Fewest mbufs accepted whatever the arithmetic says.
const MIN_MBUFS: u32 = 1024;

/// Smallest IPv4 MTU (RFC 791: every host must accept 68-octet datagrams).
const MIN_MTU: u16 = 68;

/// Longest Linux interface name (IFNAMSIZ 16, its NUL included).
const IFNAME_MAX: usize = 15;

/// Longest name of a port's kernel interface: rvs labels its further
/// addresses `NAME:N`, and a label is an interface name too.
const KERNEL_IFNAME_MAX: usize = 12;

type Checked = Result<(), ValidationError>;

fn refuse(key_path: impl Into<String>, reason: impl Into<String>) -> Checked {
    Err(ValidationError {
        key_path: key_path.into(),
        reason: reason.into(),
    })
}

impl Config {
    /// Checks everything that makes the config unusable on this machine; see
    /// [`Config::validate_on`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_on(&HostCpus::detect())
    }

    /// Checks cross-references (port names, queues, lcores), reachability
    /// (route next hops, reals), uniqueness (ports, addresses, lcores,
    /// services, reals), the lcore pinning against `cpus`, bounds, and that
    /// the mempool can hold every buffer the config can have in use at once.
    /// Returns the first refusal in file order.
    pub fn validate_on(&self, cpus: &HostCpus) -> Result<(), ValidationError> {
        self.check_eal(cpus)?;
        self.check_mempool_bounds()?;
        self.check_ports()?;
        self.check_routes()?;
        self.check_workers(cpus)?;
        self.check_limits()?;
        self.check_ownership()?;
        self.check_sync()?;
        self.check_services()?;
        self.check_marks()?;
        self.check_mempool_size()
    }

    fn check_eal(&self, cpus: &HostCpus) -> Checked {
        let lcore = self.eal.main_lcore;
        if lcore >= MAX_LCORE {
            return refuse("eal.main_lcore", lcore_range(lcore));
        }
        check_cpu(
            cpus,
            self.main_cpu(),
            self.eal.main_cpu.is_some(),
            "eal.main_cpu",
            "eal.main_lcore",
        )
    }

    fn check_mempool_bounds(&self) -> Checked {
        let (mbufs, cache) = (self.mempool.mbufs, self.mempool.cache);
        if cache > MEMPOOL_CACHE_MAX {
            return refuse(
                "mempool.cache",
                format!(
                    "{cache} is above DPDK's largest per-lcore cache, \
                     {MEMPOOL_CACHE_MAX} (RTE_MEMPOOL_CACHE_MAX_SIZE)"
                ),
            );
        }
        if mbufs < MIN_MBUFS {
            return refuse(
                "mempool.mbufs",
                format!("{mbufs} mbufs are too few; at least {MIN_MBUFS}"),
            );
        }
        Ok(())
    }

    fn check_ports(&self) -> Checked {
        if self.ports.is_empty() {
            return refuse("ports", "at least one port is needed");
        }
        let mut names = HashMap::new();
        let mut devices = HashMap::new();
        let mut kernel_names = HashMap::new();
        let mut owners: HashMap<Ipv4Addr, String> = HashMap::new();
        for (i, port) in self.ports.iter().enumerate() {
            let at = format!("ports[{i}]");
            if port.name.is_empty() {
                return refuse(format!("{at}.name"), "a port needs a name");
            }
            if let Some(first) = names.insert(port.name.as_str(), i) {
                return refuse(
                    format!("{at}.name"),
                    format!(
                        "port name `{}` is already used by ports[{first}]",
                        port.name
                    ),
                );
            }
            let device = port.device.split(',').next().unwrap_or_default().trim();
            if device.is_empty() {
                return refuse(
                    format!("{at}.device"),
                    "a port needs a device: a PCI address like 0000:3b:00.0 or a \
                     virtual device like net_af_packet0,iface=eth1",
                );
            }
            if let Some(first) = devices.insert(device, i) {
                return refuse(
                    format!("{at}.device"),
                    format!(
                        "device `{device}` is already used by ports[{first}]; DPDK names \
                         a port after its device, so number each virtual device apart \
                         (net_af_packet0, net_af_packet1, ...)"
                    ),
                );
            }
            for (field, value) in [
                ("rx_descriptors", port.rx_descriptors),
                ("tx_descriptors", port.tx_descriptors),
            ] {
                if value == 0 {
                    return refuse(format!("{at}.{field}"), "must be at least 1");
                }
            }
            if port.mtu < MIN_MTU {
                return refuse(
                    format!("{at}.mtu"),
                    format!(
                        "MTU {} is below {MIN_MTU}, the smallest an IPv4 link may have",
                        port.mtu
                    ),
                );
            }
            if let Some(name) = &port.kernel_interface {
                check_interface_name(
                    &format!("{at}.kernel_interface"),
                    name,
                    KERNEL_IFNAME_MAX,
                    "Linux allows 15, rvs labels further addresses NAME:N",
                )?;
                if let Some(first) = kernel_names.insert(name.as_str(), i) {
                    return refuse(
                        format!("{at}.kernel_interface"),
                        format!("kernel interface `{name}` is already that of ports[{first}]"),
                    );
                }
                if kernel_names.len() > 64 {
                    return refuse(
                        format!("{at}.kernel_interface"),
                        "at most 64 ports may have a kernel interface",
                    );
                }
                if port.addresses.len() > 100 {
                    return refuse(
                        format!("{at}.kernel_interface"),
                        "a kernel interface takes at most 100 of its port's addresses",
                    );
                }
            }
            for (j, net) in port.addresses.iter().enumerate() {
                let at = format!("{at}.addresses[{j}]");
                check_host_address(&at, net)?;
                let here = format!("ports[{i}].addresses[{j}]");
                if let Some(first) = owners.insert(net.addr(), here) {
                    return refuse(
                        at,
                        format!("{} is already an address at {first}", net.addr()),
                    );
                }
            }
            self.check_floating(i, port, &mut owners)?;
        }
        Ok(())
    }

    /// A port's floating addresses: only where the kernel decides (`ownership:
    /// kernel`) and VRRP can put them (a kernel interface), each a host of
    /// one of the port's subnets (they add none), and each address of rvs
    /// once, in `owners`, over every port's `addresses` and
    /// `floating_addresses`.
    fn check_floating(
        &self,
        i: usize,
        port: &Port,
        owners: &mut HashMap<Ipv4Addr, String>,
    ) -> Checked {
        if port.floating_addresses.is_empty() {
            return Ok(());
        }
        let list = format!("ports[{i}].floating_addresses");
        if self.ownership != Ownership::Kernel {
            return refuse(
                list,
                "floating addresses are served only while the port's kernel interface holds \
                 them: they need `ownership: kernel`",
            );
        }
        if port.kernel_interface.is_none() {
            return refuse(
                list,
                "floating addresses need the port's `kernel_interface`, where keepalived's VRRP \
                 adds and removes them",
            );
        }
        for (j, net) in port.floating_addresses.iter().enumerate() {
            let at = format!("{list}[{j}]");
            check_host_address(&at, net)?;
            let addr = net.addr();
            let Some(subnet) = port.addresses.iter().find(|subnet| subnet.contains(addr)) else {
                return refuse(
                    at,
                    format!(
                        "{addr} is in no subnet of port `{}` (its addresses: {}); a floating \
                         address adds no connected subnet, so it must be a host of one the port \
                         has",
                        port.name,
                        and_list(&port.addresses, "none")
                    ),
                );
            };
            if subnet.is_edge(addr) {
                return refuse(
                    at,
                    format!("{addr} is the network or broadcast address of the subnet {subnet}"),
                );
            }
            if let Some(first) = owners.insert(addr, at.clone()) {
                return refuse(at, format!("{addr} is already an address at {first}"));
            }
        }
        Ok(())
    }

    /// `ownership: kernel` needs a kernel interface to watch.
    fn check_ownership(&self) -> Checked {
        if self.ownership == Ownership::Kernel
            && self
                .ports
                .iter()
                .all(|port| port.kernel_interface.is_none())
        {
            return refuse(
                "ownership",
                "`ownership: kernel` serves a VIP only while a port's kernel interface holds it, \
                 and no port has one: give the ports keepalived's VRRP runs on a \
                 `kernel_interface`",
            );
        }
        Ok(())
    }

    /// Each sync daemon's settings, within what the kernel's sync takes.
    pub(crate) fn check_sync(&self) -> Checked {
        for state in SyncState::ALL {
            let Some(daemon) = self.sync.daemon(state) else {
                continue;
            };
            let at = format!("sync.{state}");
            check_interface_name(
                &format!("{at}.mcast_interface"),
                &daemon.mcast_interface,
                IFNAME_MAX,
                "Linux's limit",
            )?;
            let maxlen = usize::from(daemon.sync_maxlen);
            if !(MIN_MAXLEN..=MAX_MAXLEN).contains(&maxlen) {
                return refuse(
                    format!("{at}.sync_maxlen"),
                    format!(
                        "{maxlen} bytes is out of range: a sync message holds its header and \
                         at least one connection ({MIN_MAXLEN} bytes) and fits a UDP datagram \
                         ({MAX_MAXLEN} bytes)"
                    ),
                );
            }
            let group = daemon.mcast_group;
            if !group.is_multicast() {
                return refuse(
                    format!("{at}.mcast_group"),
                    format!(
                        "{group} is not an IPv4 multicast address (224.0.0.0/4); IPVS sync's group is \
                         {}",
                        crate::sync::DEFAULT_GROUP
                    ),
                );
            }
            if daemon.mcast_port == 0 {
                return refuse(format!("{at}.mcast_port"), "a UDP port from 1 to 65535");
            }
            if daemon.mcast_ttl == 0 {
                return refuse(
                    format!("{at}.mcast_ttl"),
                    "a TTL from 1 to 255 (1 keeps the messages on the link)",
                );
            }
        }
        Ok(())
    }

    fn check_routes(&self) -> Checked {
        let mut prefixes = HashMap::new();
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            let prefix = route.prefix;
            if prefix.has_host_bits() {
                return refuse(
                    format!("{at}.prefix"),
                    format!(
                        "{prefix} has host bits set; did you mean {}/{}?",
                        prefix.network(),
                        prefix.prefix_len()
                    ),
                );
            }
            if let Some(first) = prefixes.insert(prefix, i) {
                return refuse(
                    format!("{at}.prefix"),
                    format!("{prefix} is already routed by routes[{first}]"),
                );
            }
            let candidates: Vec<&Port> = match &route.port {
                Some(name) => match self.port_index(name) {
                    Some(index) => vec![&self.ports[index]],
                    None => return refuse(format!("{at}.port"), self.no_such_port(name)),
                },
                None => self.ports.iter().collect(),
            };
            let via = route.via;
            if let Some(owner) = self.owner_of(via).or_else(|| self.floating_owner(via)) {
                return refuse(
                    format!("{at}.via"),
                    format!(
                        "next hop {via} is an address of port `{}` itself; \
                         name a neighbour in its subnet",
                        owner.name
                    ),
                );
            }
            if !candidates.iter().any(|port| port.connects(via)) {
                let reason = match &route.port {
                    Some(name) => format!(
                        "next hop {via} is not in a connected subnet of port `{name}` \
                         (its addresses: {})",
                        and_list(&candidates[0].addresses, "none")
                    ),
                    None => format!(
                        "next hop {via} is not in any connected subnet \
                         (ports' addresses: {})",
                        addresses(&candidates)
                    ),
                };
                return refuse(format!("{at}.via"), reason);
            }
        }
        Ok(())
    }

    fn check_workers(&self, cpus: &HostCpus) -> Checked {
        if self.workers.is_empty() {
            return refuse("workers", "at least one worker is needed");
        }
        let mut lcores = HashMap::new();
        let mut polled: HashMap<(&str, u16), String> = HashMap::new();
        // Per port: queue number -> key path of its reference.
        let mut queues: Vec<BTreeMap<u16, String>> = vec![BTreeMap::new(); self.ports.len()];
        for (i, worker) in self.workers.iter().enumerate() {
            let at = format!("workers[{i}]");
            let lcore = worker.lcore;
            if lcore >= MAX_LCORE {
                return refuse(format!("{at}.lcore"), lcore_range(lcore));
            }
            if lcore == self.eal.main_lcore {
                return refuse(
                    format!("{at}.lcore"),
                    format!(
                        "lcore {lcore} is the main lcore (eal.main_lcore); \
                         a worker needs its own lcore"
                    ),
                );
            }
            if let Some(first) = lcores.insert(lcore, i) {
                return refuse(
                    format!("{at}.lcore"),
                    format!("lcore {lcore} is already used by workers[{first}]"),
                );
            }
            check_cpu(
                cpus,
                self.worker_cpu(worker),
                worker.cpu.is_some(),
                &format!("{at}.cpu"),
                &format!("{at}.lcore"),
            )?;
            if worker.queues.is_empty() {
                return refuse(
                    format!("{at}.queues"),
                    "a worker needs at least one RX queue to poll",
                );
            }
            for (j, queue) in worker.queues.iter().enumerate() {
                let at = format!("{at}.queues[{j}]");
                let Some(port) = self.port_index(&queue.port) else {
                    return refuse(format!("{at}.port"), self.no_such_port(&queue.port));
                };
                if let Some(first) = polled.insert((&queue.port, queue.queue), at.clone()) {
                    return refuse(
                        at,
                        format!(
                            "queue {} of port `{}` is already polled by {first}; \
                             each RX queue has exactly one worker",
                            queue.queue, queue.port
                        ),
                    );
                }
                queues[port].insert(queue.queue, at);
            }
        }
        for (port, queues) in self.ports.iter().zip(&queues) {
            // BTreeMap: in order, so the first number that is not its own
            // index is the first gap.
            let gap = queues
                .iter()
                .enumerate()
                .find(|(index, (&queue, _))| usize::from(queue) != *index);
            if let Some((missing, (_, at))) = gap {
                let present: Vec<u16> = queues.keys().copied().collect();
                return refuse(
                    at.clone(),
                    format!(
                        "port `{}` has RX queues {} but not {missing}; \
                         a port's queues are numbered 0..n-1",
                        port.name,
                        and_list(&present, "none")
                    ),
                );
            }
            if queues.is_empty() {
                return refuse(
                    "workers",
                    format!(
                        "port `{0}` has no RX queue; list {{ port: {0}, queue: 0 }} \
                         under a worker's queues",
                        port.name
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_limits(&self) -> Checked {
        if self.limits.connections == 0 {
            return refuse("limits.connections", "must be at least 1");
        }
        if self.limits.connections > MAX_CONNECTIONS {
            return refuse(
                "limits.connections",
                format!(
                    "{} is above the maximum {MAX_CONNECTIONS} connections per worker (a \
                     worker's connection table numbers its entries in 30 bits); add workers \
                     to track more",
                    self.limits.connections
                ),
            );
        }
        for (key, value) in [
            ("tcp", self.timeouts.tcp),
            ("tcpfin", self.timeouts.tcpfin),
            ("udp", self.timeouts.udp),
        ] {
            if value == 0 {
                return refuse(format!("timeouts.{key}"), "must be at least 1 second");
            }
        }
        Ok(())
    }

    fn check_services(&self) -> Checked {
        let mut services = HashMap::new();
        let mut marked = HashMap::new();
        // The rules between one service's addresses and another's, from
        // sets made once: a VIP is no real's address, a real no VIP.
        let vips: HashSet<Ipv4Addr> = self.vips().collect();
        let real_addresses = self.real_addresses();
        for (i, service) in self.services.iter().enumerate() {
            self.check_service_identity(i, service)?;
            let at = format!("services[{i}]");
            if service.mark.is_none() && real_addresses.contains(&service.vip) {
                return refuse(
                    format!("{at}.vip"),
                    format!(
                        "{} is also a real's address; a VIP is rvs's own",
                        service.vip
                    ),
                );
            }
            if let Some(j) = service.reals.iter().position(|r| vips.contains(&r.address)) {
                return refuse(
                    format!("{at}.reals[{j}].address"),
                    format!(
                        "real {} is a VIP of this configuration; a real is a server behind rvs",
                        service.reals[j].address
                    ),
                );
            }
            if let Some(mark) = service.mark {
                if let Some(first) = marked.insert(mark, i) {
                    return refuse(
                        format!("{at}.mark"),
                        format!("mark {mark} is already served by services[{first}]"),
                    );
                }
            } else if let Some(protocol) = service.protocol {
                if let Some(first) = services.insert((protocol, service.vip, service.port), i) {
                    return refuse(
                        at,
                        format!(
                            "service {protocol} {} is already defined by services[{first}]",
                            SocketAddrV4::new(service.vip, service.port)
                        ),
                    );
                }
            }
            self.check_service_settings(i, service)?;
        }
        if self.fullnat.port_min == 0 || self.fullnat.port_min > self.fullnat.port_max {
            return refuse(
                "fullnat",
                format!(
                    "port range {}-{} is empty or starts at 0; port_min must be from 1 to port_max",
                    self.fullnat.port_min, self.fullnat.port_max
                ),
            );
        }
        let reals: usize = self.services.iter().map(|s| s.reals.len()).sum();
        self.check_reals(reals)?;
        if !self.control.socket.starts_with('/') {
            return refuse(
                "control.socket",
                format!("`{}` is not an absolute path", self.control.socket),
            );
        }
        if self.services.iter().any(|s| !s.local_addresses.is_empty()) {
            self.check_local_port_share()?;
        }
        Ok(())
    }

    /// Every rule of one service at index `index` but those that compare it
    /// with the others (a service defined twice, a mark served twice): what
    /// validation checks of a service, and all that a change to that one
    /// service must pass besides [`Self::check_reals`],
    /// [`Self::check_local_port_share`] and [`Self::check_match_free`].
    pub(crate) fn check_service(&self, index: usize, service: &Service) -> Checked {
        self.check_service_identity(index, service)?;
        self.check_service_settings(index, service)
    }

    /// What names the service: a mark of `marks`, or VIP, port, protocol.
    fn check_service_identity(&self, index: usize, service: &Service) -> Checked {
        let at = format!("services[{index}]");
        match service.mark {
            Some(mark) => self.check_mark_service(&at, service, mark),
            None => self.check_address_service(&at, service),
        }
    }

    /// The count of reals over all services against `limits.reals`.
    pub(crate) fn check_reals(&self, reals: usize) -> Checked {
        if reals > self.limits.reals as usize {
            return refuse(
                "limits.reals",
                format!(
                    "the services list {reals} reals, more than limits.reals ({}); raise it",
                    self.limits.reals
                ),
            );
        }
        Ok(())
    }

    /// With local addresses in use, the FullNAT port range must give every
    /// worker a port.
    pub(crate) fn check_local_port_share(&self) -> Checked {
        let workers = self.workers.len() as u32;
        let range = u32::from(self.fullnat.port_max) - u32::from(self.fullnat.port_min) + 1;
        if range < workers {
            return refuse(
                "fullnat",
                format!(
                    "port range {}-{} has fewer ports than the {workers} workers that share it",
                    self.fullnat.port_min, self.fullnat.port_max
                ),
            );
        }
        Ok(())
    }

    /// A new address service at `index` must not take a VIP:port:protocol
    /// that `marks` lists.
    pub(crate) fn check_match_free(&self, index: usize, service: &Service) -> Checked {
        let Some(protocol) = service.protocol.filter(|_| service.mark.is_none()) else {
            return Ok(());
        };
        for (i, mark) in self.marks.iter().enumerate() {
            for (k, m) in mark.matches.iter().enumerate() {
                if (m.protocol, m.vip, m.port) == (protocol, service.vip, service.port) {
                    return match_taken(
                        &format!("marks[{i}].matches[{k}]"),
                        m,
                        &format!("services[{index}]"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The rules of one service's settings, reals and local addresses.
    fn check_service_settings(&self, i: usize, service: &Service) -> Checked {
        let at = format!("services[{i}]");
        if service.persistent == Some(0) {
            return refuse(
                format!("{at}.persistent"),
                "a persistence timeout must be at least 1 second",
            );
        }
        if let Some(mask) = service.netmask {
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return refuse(format!("{at}.netmask"), format!("{mask} is not a netmask"));
            }
            if service.persistent.is_none() {
                return refuse(
                    format!("{at}.netmask"),
                    "a netmask only applies to a persistent service",
                );
            }
        }
        let udp_only = match service.mark {
            Some(mark) => self
                .marks
                .iter()
                .filter(|m| m.mark == mark)
                .flat_map(|m| &m.matches)
                .all(|m| m.protocol == Protocol::Udp),
            None => service.protocol == Some(Protocol::Udp),
        };
        if service.one_packet && !udp_only {
            return refuse(
                format!("{at}.one_packet"),
                "one-packet scheduling is for UDP services only",
            );
        }
        for (k, flag) in service.flags.iter().enumerate() {
            let scheduler = service.scheduler;
            match SchedFlags::parse(scheduler, flag) {
                Ok(_) => {}
                Err(SchedFlagError::Invalid(_)) => {
                    return refuse(
                        format!("{at}.flags[{k}]"),
                        format!(
                            "invalid scheduler flag `{flag}`; expected sh-fallback, sh-port, \
                             mh-fallback, mh-port or flag-1..3"
                        ),
                    )
                }
                Err(SchedFlagError::Incompatible { .. }) => {
                    return refuse(
                        format!("{at}.flags[{k}]"),
                        format!("incompatible scheduler flag `{flag}` (scheduler is {scheduler})"),
                    )
                }
            }
        }
        let mut reals = HashMap::new();
        for (j, real) in service.reals.iter().enumerate() {
            let at = format!("{at}.reals[{j}]");
            let address = real.address;
            check_unicast(&format!("{at}.address"), address)?;
            if let Some(owner) = self
                .owner_of(address)
                .or_else(|| self.floating_owner(address))
            {
                return refuse(
                    format!("{at}.address"),
                    format!(
                        "real {address} is an address of port `{}`, that is of rvs \
                         itself",
                        owner.name
                    ),
                );
            }
            if let Some((port, net)) = self.subnet_edge(address) {
                return refuse(
                    format!("{at}.address"),
                    format!(
                        "real {address} is the network or broadcast address of port \
                         `{}`'s subnet {net}, not a host",
                        port.name
                    ),
                );
            }
            if !self.reachable(address) {
                return refuse(
                    format!("{at}.address"),
                    format!(
                        "real {address} is not reachable: no connected subnet or route \
                         covers it"
                    ),
                );
            }
            if real.port == Some(0) {
                return refuse(format!("{at}.port"), "a real needs a port from 1 to 65535");
            }
            let port = real.port_or(service.port);
            if let Some(first) = reals.insert((address, port), j) {
                return refuse(
                    at,
                    format!("real {address}:{port} is already listed as reals[{first}]"),
                );
            }
            if real.weight > MAX_WEIGHT {
                return refuse(
                    format!("{at}.weight"),
                    format!("weight {} is above the maximum {MAX_WEIGHT}", real.weight),
                );
            }
            if let Some(weight) = real.drained_from {
                if real.weight != 0 {
                    return refuse(
                        format!("{at}.weight"),
                        format!(
                            "a drained real (drained_from: {weight}) has weight 0; rvsctl \
                             undrain gives it back its weight"
                        ),
                    );
                }
                if weight > MAX_WEIGHT {
                    return refuse(
                        format!("{at}.drained_from"),
                        format!("weight {weight} is above the maximum {MAX_WEIGHT}"),
                    );
                }
            }
            if real.l_threshold != 0 && real.u_threshold != 0 && real.l_threshold > real.u_threshold
            {
                return refuse(
                    format!("{at}.l_threshold"),
                    format!(
                        "the lower threshold {} is above the upper one {}",
                        real.l_threshold, real.u_threshold
                    ),
                );
            }
            self.check_forward(&at, service, real)?;
            check_checks(&format!("{at}.checks"), &real.checks, port)?;
        }
        self.check_local_addresses(&at, service)?;
        self.check_health(&at, service)
    }

    /// The service's checks, quorum and sorry server (REFERENCE.md §6).
    fn check_health(&self, at: &str, service: &Service) -> Checked {
        check_checks(&format!("{at}.checks"), &service.checks, service.port)?;
        if service.quorum == 0 {
            return refuse(
                format!("{at}.quorum"),
                "a quorum must be at least 1 (the weight the live reals add up to)",
            );
        }
        if let Some(sorry) = &service.sorry_server {
            let at = format!("{at}.sorry_server");
            let address = sorry.address;
            check_unicast(&format!("{at}.address"), address)?;
            let own = self
                .owner_of(address)
                .or_else(|| self.floating_owner(address));
            if own.is_some() || !self.reachable(address) {
                return refuse(
                    format!("{at}.address"),
                    format!(
                        "sorry server {address} must be a host reachable through a connected \
                         subnet or a route, not an address of rvs"
                    ),
                );
            }
            if sorry.port == Some(0) || (sorry.port.is_none() && service.port == 0) {
                return refuse(
                    format!("{at}.port"),
                    "a sorry server needs a port from 1 to 65535",
                );
            }
            let stand_in = Real {
                port: sorry.port,
                forward: sorry.forward.unwrap_or_else(|| sorry_forward(service)),
                ..Real::at(address)
            };
            self.check_forward(&at, service, &stand_in)?;
        }
        Ok(())
    }

    /// What each forwarding mode needs of a real (REFERENCE.md §1).
    fn check_forward(&self, at: &str, service: &Service, real: &Real) -> Checked {
        let mapped = real.port.is_some_and(|port| port != service.port);
        match real.forward {
            Forward::Dr | Forward::Tun if mapped => refuse(
                format!("{at}.port"),
                format!(
                    "port mapping is not possible in {} mode: the real receives the \
                     packet as the client sent it, to port {}; drop `port` or use nat/fullnat",
                    real.forward, service.port
                ),
            ),
            Forward::Dr if !self.ports.iter().any(|port| port.connects(real.address)) => refuse(
                format!("{at}.address"),
                format!(
                    "real {} is not on a connected subnet: DR rewrites only the MAC address, \
                     so the real must share a link with rvs (use tun or fullnat to reach it \
                     through a router)",
                    real.address
                ),
            ),
            Forward::FullNat if service.local_addresses.is_empty() => refuse(
                format!("{at}.forward"),
                "fullnat needs local addresses: add `local_addresses: [LIP, ...]` to the \
                 service (each an address of a port)",
            ),
            _ => Ok(()),
        }
    }

    fn check_local_addresses(&self, at: &str, service: &Service) -> Checked {
        for (k, lip) in service.local_addresses.iter().enumerate() {
            let floating = self
                .ports
                .iter()
                .any(|p| p.floating_addresses.iter().any(|a| a.addr() == *lip));
            if self.owner_of(*lip).is_none() && !floating {
                return refuse(
                    format!("{at}.local_addresses[{k}]"),
                    format!(
                        "local address {lip} is not on any port; add it to a port's \
                         `addresses` (or, shared by a director pair, `floating_addresses`) \
                         so rvs owns it and answers ARP for it"
                    ),
                );
            }
            if service.local_addresses[..k].contains(lip) {
                return refuse(
                    format!("{at}.local_addresses[{k}]"),
                    format!("local address {lip} is listed twice"),
                );
            }
        }
        if !service.local_addresses.is_empty()
            && service.reals.iter().any(|r| r.forward != Forward::FullNat)
        {
            return refuse(
                format!("{at}.local_addresses"),
                "local addresses only serve fullnat reals, and a service's reals must then all \
                 be fullnat",
            );
        }
        Ok(())
    }

    /// A service named by VIP, port and protocol.
    fn check_address_service(&self, at: &str, service: &Service) -> Checked {
        let vip = service.vip;
        if vip.is_unspecified() {
            return refuse(
                format!("{at}.vip"),
                "required key `vip` is missing (a service needs vip, port and protocol, or `mark`)",
            );
        }
        if service.protocol.is_none() {
            return refuse(
                format!("{at}.protocol"),
                "required key `protocol` is missing",
            );
        }
        check_unicast(&format!("{at}.vip"), vip)?;
        if let Some(conflict) = self.vip_conflict(vip) {
            return refuse(
                format!("{at}.vip"),
                format!("{conflict}; a VIP is rvs's own"),
            );
        }
        if let Some(owner) = self.owner_of(vip) {
            return refuse(
                format!("{at}.vip"),
                format!(
                    "{vip} is an address of port `{}`; a VIP must be an address of its own",
                    owner.name
                ),
            );
        }
        if let Some(owner) = self.floating_owner(vip) {
            return refuse(format!("{at}.vip"), floating_vip(vip, owner));
        }
        if service.port == 0 && service.persistent.is_none() {
            return refuse(
                format!("{at}.port"),
                "Zero port specified for non-persistent service: port 0 (every port of the \
                 VIP) needs `persistent`",
            );
        }
        Ok(())
    }

    /// A service named by a mark: its matches live in `marks`.
    fn check_mark_service(&self, at: &str, service: &Service, mark: u32) -> Checked {
        if !service.vip.is_unspecified() || service.port != 0 || service.protocol.is_some() {
            return refuse(
                at,
                "a mark service takes its VIP:port:protocol matches from `marks`; drop vip, \
                 port and protocol",
            );
        }
        if !self.marks.iter().any(|m| m.mark == mark) {
            return refuse(
                format!("{at}.mark"),
                format!("mark {mark} is not defined under `marks`"),
            );
        }
        Ok(())
    }

    /// Mark groups: numbered once, each match a VIP:port:protocol of its own.
    fn check_marks(&self) -> Checked {
        let real_addresses = self.real_addresses();
        let mut numbers = HashMap::new();
        let mut seen: HashMap<(Protocol, Ipv4Addr, u16), String> = self
            .services
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let protocol = s.protocol.filter(|_| s.mark.is_none())?;
                Some(((protocol, s.vip, s.port), format!("services[{i}]")))
            })
            .collect();
        for (i, mark) in self.marks.iter().enumerate() {
            let at = format!("marks[{i}]");
            if mark.mark == 0 {
                return refuse(format!("{at}.mark"), "a mark is a number from 1");
            }
            if let Some(first) = numbers.insert(mark.mark, i) {
                return refuse(
                    format!("{at}.mark"),
                    format!("mark {} is already defined by marks[{first}]", mark.mark),
                );
            }
            if mark.matches.is_empty() {
                return refuse(format!("{at}.matches"), "a mark needs at least one match");
            }
            for (k, m) in mark.matches.iter().enumerate() {
                let at = format!("{at}.matches[{k}]");
                check_unicast(&format!("{at}.vip"), m.vip)?;
                let conflict = if real_addresses.contains(&m.vip) {
                    Some(format!("{} is also a real's address", m.vip))
                } else {
                    self.vip_conflict(m.vip)
                };
                if let Some(conflict) = conflict {
                    return refuse(
                        format!("{at}.vip"),
                        format!("{conflict}; a VIP is rvs's own"),
                    );
                }
                if self.owner_of(m.vip).is_some() {
                    return refuse(
                        format!("{at}.vip"),
                        format!("{} is an address of a port, not a VIP", m.vip),
                    );
                }
                if let Some(owner) = self.floating_owner(m.vip) {
                    return refuse(format!("{at}.vip"), floating_vip(m.vip, owner));
                }
                if m.port == 0 {
                    return refuse(format!("{at}.port"), "a match needs a port from 1 to 65535");
                }
                if let Some(other) = seen.insert((m.protocol, m.vip, m.port), at.clone()) {
                    return match_taken(&at, m, &other);
                }
            }
        }
        Ok(())
    }

    fn check_mempool_size(&self) -> Checked {
        let needed = self.mbufs_needed();
        let mbufs = self.mempool.mbufs;
        if u64::from(mbufs) < needed {
            return refuse(
                "mempool.mbufs",
                format!(
                    "{mbufs} mbufs are too few for this config, which can hold {needed} at \
                     once (every RX/TX descriptor ring full, plus per worker its mempool \
                     cache, a burst of {BURST} per port each way and limits.arp_pending); \
                     set at least {needed}, or shrink the rings, mempool.cache or \
                     limits.arp_pending"
                ),
            );
        }
        Ok(())
    }

    /// The port one of whose addresses is `addr`.
    fn owner_of(&self, addr: Ipv4Addr) -> Option<&Port> {
        self.ports
            .iter()
            .find(|port| port.addresses.iter().any(|net| net.addr() == addr))
    }

    /// The port one of whose floating addresses is `addr`.
    fn floating_owner(&self, addr: Ipv4Addr) -> Option<&Port> {
        self.ports
            .iter()
            .find(|port| port.floating_addresses.iter().any(|net| net.addr() == addr))
    }

    /// Every VIP: of address services and of the mark groups' matches.
    fn vips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let services = self
            .services
            .iter()
            .filter(|s| s.mark.is_none())
            .map(|s| s.vip);
        let marks = self
            .marks
            .iter()
            .flat_map(|m| m.matches.iter().map(|m| m.vip));
        services.chain(marks)
    }

    /// Every real's address, of every service.
    fn real_addresses(&self) -> HashSet<Ipv4Addr> {
        self.services
            .iter()
            .flat_map(|s| &s.reals)
            .map(|r| r.address)
            .collect()
    }

    /// The port and connected subnet of which `addr` is the network or
    /// broadcast address.
    fn subnet_edge(&self, addr: Ipv4Addr) -> Option<(&Port, Ipv4Net)> {
        self.ports.iter().find_map(|port| {
            port.addresses
                .iter()
                .find(|net| net.is_edge(addr))
                .map(|net| (port, *net))
        })
    }

    /// What other role `vip` has in this configuration, besides a real's
    /// address (a rule between services, checked from a set), that a VIP
    /// must not: a route's next hop, a subnet's network or broadcast
    /// address.
    fn vip_conflict(&self, vip: Ipv4Addr) -> Option<String> {
        if self.routes.iter().any(|r| r.via == vip) {
            return Some(format!("{vip} is also a route's next hop"));
        }
        self.subnet_edge(vip).map(|(port, net)| {
            format!(
                "{vip} is the network or broadcast address of port `{}`'s subnet {net}",
                port.name
            )
        })
    }

    /// Whether a connected subnet or a route covers `addr`.
    fn reachable(&self, addr: Ipv4Addr) -> bool {
        self.ports.iter().any(|port| port.connects(addr))
            || self.routes.iter().any(|route| route.prefix.contains(addr))
    }

    fn no_such_port(&self, name: &str) -> String {
        let names: Vec<&str> = self.ports.iter().map(|port| port.name.as_str()).collect();
        format!("no port named `{name}` (ports: {})", names.join(", "))
    }
}

/// Why `vip` may not be one of port `owner`'s floating addresses.
fn floating_vip(vip: Ipv4Addr, owner: &Port) -> String {
    format!(
        "{vip} is a floating address of port `{}`; with `ownership: kernel` a VIP follows the \
         kernel interfaces already: list it as a VIP only",
        owner.name
    )
}

/// The forwarding mode of a sorry server that names none: its service's
/// first real's, else NAT.
pub fn sorry_forward(service: &Service) -> Forward {
    service
        .reals
        .first()
        .map_or(Forward::Nat, |real| real.forward)
}

fn check_checks(at: &str, checks: &[super::Check], port: u16) -> Checked {
    for (k, check) in checks.iter().enumerate() {
        if let Some((key, reason)) = check.refusal(port) {
            return refuse(format!("{at}[{k}].{key}"), reason);
        }
    }
    Ok(())
}

/// A mark's match at `at` whose VIP:port:protocol `other` already takes.
fn match_taken(at: &str, m: &MarkMatch, other: &str) -> Checked {
    refuse(
        at,
        format!(
            "{} {}:{} is already taken by {other}",
            m.protocol, m.vip, m.port
        ),
    )
}

/// A Linux network interface name, as the kernel's dev_valid_name takes
/// it: 1 to `max` bytes (Linux allows [`IFNAME_MAX`]; `why_max` says why
/// `max`), not `.` or `..`, no `/`, `:`, blank or control character.
fn check_interface_name(at: &str, name: &str, max: usize, why_max: &str) -> Checked {
    let bad = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control());
    if name.is_empty() || name.len() > max || name == "." || name == ".." || bad.is_some() {
        return refuse(
            at,
            format!(
                "`{name}` is not a usable interface name: 1 to {max} characters ({why_max}), \
                 without `/`, `:` or blanks"
            ),
        );
    }
    Ok(())
}

fn lcore_range(lcore: u32) -> String {
    format!(
        "lcore {lcore} is out of range; DPDK numbers lcores 0 to {} (RTE_MAX_LCORE {MAX_LCORE})",
        MAX_LCORE - 1
    )
}

/// Refuses pinning to `cpu` if this process cannot run there; the key path is
/// the `cpu` key when it was written, else the lcore whose number it took.
fn check_cpu(cpus: &HostCpus, cpu: u32, explicit: bool, cpu_key: &str, lcore_key: &str) -> Checked {
    match cpus.refuse(cpu) {
        None => Ok(()),
        Some(reason) if explicit => refuse(cpu_key, reason),
        Some(reason) => {
            let cpu_name = cpu_key.rsplit('.').next().unwrap_or(cpu_key);
            refuse(
                lcore_key,
                format!(
                    "{reason}; the lcore is pinned to the CPU of its own number unless \
                     `{cpu_name}` says otherwise"
                ),
            )
        }
    }
}

/// A port's own address: unicast, and not the network or broadcast address
/// of its subnet (those exist only for subnets larger than /31).
fn check_host_address(at: &str, net: &Ipv4Net) -> Checked {
    check_unicast(at, net.addr())?;
    if net.prefix_len() < 31 {
        let broadcast = Ipv4Addr::from(u32::from(net.network()) | !u32::from(net.mask()));
        let what = if net.addr() == net.network() {
            Some("network")
        } else if net.addr() == broadcast {
            Some("broadcast")
        } else {
            None
        };
        if let Some(what) = what {
            return refuse(
                at,
                format!("{net}: {} is the {what} address of its subnet", net.addr()),
            );
        }
    }
    Ok(())
}

fn check_unicast(at: &str, addr: Ipv4Addr) -> Checked {
    if addr.is_unspecified() || addr.is_multicast() || addr.is_broadcast() || addr.is_loopback() {
        return refuse(
            at,
            format!("{addr} is not a unicast address a host can own"),
        );
    }
    Ok(())
}

/// "client 10.99.1.1/24, real 10.99.2.1/24", or "none".
fn addresses(ports: &[&Port]) -> String {
    let listed: Vec<String> = ports
        .iter()
        .flat_map(|port| {
            port.addresses
                .iter()
                .map(move |net| format!("{} {net}", port.name))
        })
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    }
}

/// "0", "0 and 2", "0, 1 and 3"; `empty` for none.
fn and_list<T: std::fmt::Display>(items: &[T], empty: &str) -> String {
    match items {
        [] => empty.to_owned(),
        [one] => one.to_string(),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(T::to_string).collect();
            format!("{} and {last}", init.join(", "))
        }
    }
}

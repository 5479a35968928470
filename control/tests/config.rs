//! The config model against conf/rvs.yaml and a table of bad configs, each
//! checked for the key path and the reason it is refused with.

use rvs_control::config::{
    self, CpuList, Forward, HostCpus, Ipv4Net, Ownership, Protocol, SchedulerKind, SyncDaemon,
    SyncState,
};
use std::net::Ipv4Addr;
use std::path::Path;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/rvs.yaml");

/// Two ports, one worker, one service: the smallest config that uses every
/// section the table below breaks.
const MINIMAL: &str = "\
ports:
  - name: client
    device: net_af_packet0,iface=veth0
    addresses: [10.99.1.1/24]
  - name: real
    device: net_af_packet1,iface=veth1
    addresses: [10.99.2.1/24]
workers:
  - lcore: 1
    queues:
      - { port: client, queue: 0 }
      - { port: real, queue: 0 }
services:
  - vip: 10.99.1.100
    port: 80
    protocol: tcp
    reals:
      - address: 10.99.2.11
";

/// A fixed machine with CPUs 0-1, so that results do not depend on the host.
fn two_cpus() -> HostCpus {
    let list = CpuList::parse("0-1").unwrap();
    HostCpus {
        online: list.clone(),
        allowed: list,
    }
}

#[test]
fn reference_config_parses_and_validates() {
    let config = config::load(Path::new(REFERENCE)).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.eal.main_lcore, 0);
    assert_eq!(config.eal.args, ["--in-memory"]);
    assert_eq!(config.ports.len(), 2);
    assert_eq!(config.port_index("real"), Some(1));
    assert_eq!(
        config.ports[0].addresses,
        ["10.99.1.1/24".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(config.route_port(&config.routes[0]), Some(1));
    assert_eq!(config.worker_cpu(&config.workers[0]), 1);
    assert_eq!(config.main_cpu(), 0);
    assert_eq!(config.rx_queues(0), 1);
    let service = &config.services[0];
    assert_eq!(service.scheduler, SchedulerKind::Rr);
    assert_eq!(service.reals[1].port_or(service.port), 80);
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let config = config::parse_on(MINIMAL, "minimal.yaml", &two_cpus()).unwrap();
    assert_eq!(config.eal.main_lcore, 0);
    assert_eq!(config.eal.main_cpu, None);
    assert_eq!(config.main_cpu(), 0);
    assert!(config.eal.args.is_empty());
    assert_eq!((config.mempool.mbufs, config.mempool.cache), (16383, 256));
    let port = &config.ports[0];
    assert_eq!(
        (port.rx_descriptors, port.tx_descriptors, port.mtu),
        (1024, 1024, 1500)
    );
    assert!(config.routes.is_empty());
    assert_eq!(
        (
            config.worker_idle.idle_polls,
            config.worker_idle.sleep_us,
            config.worker_idle.min_sleep_us
        ),
        (64, 100, 5)
    );
    assert_eq!(config.workers[0].cpu, None);
    assert_eq!(config.worker_cpu(&config.workers[0]), 1);
    assert_eq!(
        (config.limits.connections, config.limits.arp_pending),
        (262144, 256)
    );
    let timeouts = &config.timeouts;
    assert_eq!(
        (timeouts.tcp, timeouts.tcpfin, timeouts.udp),
        (900, 120, 300)
    );
    let service = &config.services[0];
    assert_eq!(service.protocol, Some(Protocol::Tcp));
    assert_eq!(service.scheduler, SchedulerKind::Wlc);
    let real = &service.reals[0];
    assert_eq!(real.address, Ipv4Addr::new(10, 99, 2, 11));
    assert_eq!(real.port, None);
    assert_eq!(real.port_or(service.port), 80);
    assert_eq!(real.weight, 1);
    assert_eq!(real.forward, Forward::Nat);
    assert_eq!(config.ownership, Ownership::Static);
    assert!(config.sync.is_off());
    assert!(config.ports[0].floating_addresses.is_empty());
}

#[test]
fn a_sync_daemon_given_its_interface_takes_the_kernel_s_defaults() {
    let text = with("sync:\n  backup: { mcast_interface: rvs-client }\n");
    let config = config::parse_on(&text, "sync.yaml", &two_cpus()).unwrap();
    assert_eq!(config.sync.master, None);
    assert_eq!(
        config.sync.daemon(SyncState::Backup),
        Some(&SyncDaemon {
            mcast_interface: "rvs-client".into(),
            syncid: 0,
            sync_maxlen: 1472,
            mcast_group: Ipv4Addr::new(224, 0, 0, 81),
            mcast_port: 8848,
            mcast_ttl: 1,
        })
    );
    let config = config::parse_on(
        &floating("10.99.1.254/24, 10.99.1.253/32"),
        "f.yaml",
        &two_cpus(),
    )
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.ownership, Ownership::Kernel);
    assert_eq!(
        config.ports[0].floating_addresses,
        [
            "10.99.1.254/24".parse::<Ipv4Net>().unwrap(),
            "10.99.1.253/32".parse().unwrap()
        ]
    );
    assert!(
        !config.ports[0].connects(Ipv4Addr::new(10, 99, 3, 1)),
        "a floating address adds no subnet"
    );
}

#[test]
fn aliases_parse() {
    let text = MINIMAL.replace(
        "      - address: 10.99.2.11\n",
        "      - { address: 10.99.2.11, forward: masq }\n",
    );
    let config = config::parse_on(&text, "alias.yaml", &two_cpus()).unwrap();
    assert_eq!(config.services[0].reals[0].forward, Forward::Nat);
}

/// `MINIMAL` with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(MINIMAL.contains(from), "fixture lacks {from:?}");
    MINIMAL.replacen(from, to, 1)
}

/// `MINIMAL` with `extra` appended.
fn with(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

/// `MINIMAL` with `ownership: kernel`, the client port's kernel interface
/// `k0`, and `from` replaced by `to`.
fn kernel(from: &str, to: &str) -> String {
    let text = edit(from, to).replacen(
        "[10.99.1.1/24]\n",
        "[10.99.1.1/24]\n    kernel_interface: k0\n",
        1,
    );
    format!("{text}ownership: kernel\n")
}

/// [`kernel`] with the client port's `floating_addresses: [list]`.
fn floating(list: &str) -> String {
    kernel(
        "[10.99.1.1/24]\n",
        &format!("[10.99.1.1/24]\n    floating_addresses: [{list}]\n"),
    )
}

#[test]
fn bad_configs_are_refused_with_key_path_and_reason() {
    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (what, config text, key path, substring of the reason)
        ("unknown top-level key", with("bogus: 1\n"),
         "bogus", "unknown key `bogus`; expected one of eal, mempool, ports"),
        ("unknown nested key", with("eal:\n  main_lcore: 0\n  bogus: 1\n"),
         "eal.bogus", "unknown key `bogus`; expected one of main_lcore, main_cpu, args"),
        ("unknown key in a list item", edit("  - lcore: 1\n", "  - lcore: 1\n    cpus: 1\n"),
         "workers[0].cpus", "unknown key `cpus`; expected one of lcore, cpu, queues"),
        ("missing ports", MINIMAL[MINIMAL.find("workers:").unwrap()..].to_owned(),
         "ports", "required key `ports` is missing"),
        ("missing service protocol", edit("    protocol: tcp\n", ""),
         "services[0].protocol", "required key `protocol` is missing"),
        ("bad address", edit("address: 10.99.2.11", "address: 10.99.2.300"),
         "services[0].reals[0].address", "invalid IPv4 address \"10.99.2.300\""),
        ("bare port address", edit("[10.99.1.1/24]", "[10.99.1.1]"),
         "ports[0].addresses[0]", "has no prefix length"),
        ("bad CIDR length", edit("[10.99.1.1/24]", "[10.99.1.1/40]"),
         "ports[0].addresses[0]", "invalid prefix length in \"10.99.1.1/40\""),
        ("route prefix with host bits",
         with("routes:\n  - { prefix: 10.99.3.1/24, via: 10.99.2.254 }\n"),
         "routes[0].prefix", "10.99.3.1/24 has host bits set; did you mean 10.99.3.0/24?"),
        ("a real that is a VIP",
         edit("      - address: 10.99.2.11\n", "      - address: 10.99.2.11\n      - address: 10.99.1.100\n"),
         "services[0].vip", "10.99.1.100 is also a real's address; a VIP is rvs's own"),
        ("a real that is a subnet's broadcast address",
         edit("      - address: 10.99.2.11\n", "      - address: 10.99.2.255\n"),
         "services[0].reals[0].address", "real 10.99.2.255 is the network or broadcast address of port `real`'s subnet 10.99.2.1/24"),
        ("a real that is a subnet's network address",
         edit("      - address: 10.99.2.11\n", "      - address: 10.99.2.0\n"),
         "services[0].reals[0].address", "is the network or broadcast address"),
        ("a VIP that is a real's address",
         with("  - { vip: 10.99.2.11, port: 81, protocol: tcp, reals: [ { address: 10.99.2.12 } ] }\n"),
         "services[0].reals[0].address", "real 10.99.2.11 is a VIP of this configuration; a real is a server behind rvs"),
        ("a VIP that is a route's next hop",
         edit("services:\n", "routes:\n  - { prefix: 10.99.3.0/24, via: 10.99.2.254 }\nservices:\n  - { vip: 10.99.2.254, port: 81, protocol: tcp, reals: [ { address: 10.99.2.12 } ] }\n"),
         "services[0].vip", "10.99.2.254 is also a route's next hop"),
        ("route via outside connected subnets",
         with("routes:\n  - { prefix: 10.99.3.0/24, via: 10.9.9.9 }\n"),
         "routes[0].via",
         "next hop 10.9.9.9 is not in any connected subnet \
          (ports' addresses: client 10.99.1.1/24, real 10.99.2.1/24)"),
        ("route via outside the named port",
         with("routes:\n  - { prefix: 10.99.3.0/24, via: 10.99.1.254, port: real }\n"),
         "routes[0].via", "not in a connected subnet of port `real`"),
        ("route through an unknown port",
         with("routes:\n  - { prefix: 10.99.3.0/24, via: 10.99.2.254, port: rael }\n"),
         "routes[0].port", "no port named `rael` (ports: client, real)"),
        ("duplicate port name", edit("name: real", "name: client"),
         "ports[1].name", "port name `client` is already used by ports[0]"),
        ("duplicate device", edit("net_af_packet1,", "net_af_packet0,"),
         "ports[1].device", "device `net_af_packet0` is already used by ports[0]"),
        ("a kernel interface name with a slash",
         edit("[10.99.1.1/24]\n", "[10.99.1.1/24]\n    kernel_interface: a/b\n"),
         "ports[0].kernel_interface", "`a/b` is not a usable interface name"),
        ("a kernel interface name too long",
         edit("[10.99.1.1/24]\n", "[10.99.1.1/24]\n    kernel_interface: thirteen-char\n"),
         "ports[0].kernel_interface", "1 to 12 characters"),
        ("one kernel interface for two ports",
         edit("[10.99.2.1/24]\n", "[10.99.2.1/24]\n    kernel_interface: k0\n")
             .replacen("[10.99.1.1/24]\n", "[10.99.1.1/24]\n    kernel_interface: k0\n", 1),
         "ports[1].kernel_interface", "kernel interface `k0` is already that of ports[0]"),
        ("address owned twice", edit("[10.99.2.1/24]", "[10.99.1.1/24]"),
         "ports[1].addresses[0]", "10.99.1.1 is already an address at ports[0].addresses[0]"),
        ("worker on the main lcore", edit("lcore: 1", "lcore: 0"),
         "workers[0].lcore",
         "lcore 0 is the main lcore (eal.main_lcore); a worker needs its own lcore"),
        ("duplicate lcore",
         edit("services:", "  - lcore: 1\n    cpu: 0\n    queues: [{ port: client, queue: 1 }]\nservices:"),
         "workers[1].lcore", "lcore 1 is already used by workers[0]"),
        ("lcore beyond RTE_MAX_LCORE", edit("lcore: 1", "lcore: 128\n    cpu: 1"),
         "workers[0].lcore", "DPDK numbers lcores 0 to 127"),
        ("cpu that does not exist", edit("lcore: 1", "lcore: 1\n    cpu: 4095"),
         "workers[0].cpu", "CPU 4095 does not exist on this machine (online CPUs: 0-1)"),
        ("default cpu that does not exist", edit("lcore: 1", "lcore: 5"),
         "workers[0].lcore", "CPU 5 does not exist on this machine"),
        ("main cpu that does not exist", with("eal:\n  main_cpu: 9\n"),
         "eal.main_cpu", "CPU 9 does not exist on this machine"),
        ("queue gap", edit("{ port: client, queue: 0 }", "{ port: client, queue: 0 }\n      - { port: client, queue: 2 }"),
         "workers[0].queues[1]", "port `client` has RX queues 0 and 2 but not 1"),
        ("queue listed twice", edit("{ port: real, queue: 0 }", "{ port: client, queue: 0 }"),
         "workers[0].queues[1]", "queue 0 of port `client` is already polled by workers[0].queues[0]"),
        ("port without queues", edit("      - { port: real, queue: 0 }\n", ""),
         "workers", "port `real` has no RX queue"),
        ("unknown port in queue", edit("{ port: real, queue: 0 }", "{ port: rael, queue: 0 }"),
         "workers[0].queues[1].port", "no port named `rael` (ports: client, real)"),
        ("no workers", edit("workers:\n  - lcore: 1\n    queues:\n      - { port: client, queue: 0 }\n      - { port: real, queue: 0 }\n", "workers: []\n"),
         "workers", "at least one worker is needed"),
        ("unknown scheduler", edit("protocol: tcp", "protocol: tcp\n    scheduler: foo"),
         "services[0].scheduler", "unknown scheduler `foo`; expected one of rr, wrr, lc, wlc, sed, nq"),
        ("flag of another scheduler", edit("protocol: tcp", "protocol: tcp\n    scheduler: rr\n    flags: [sh-port]"),
         "services[0].flags[0]", "incompatible scheduler flag `sh-port` (scheduler is rr)"),
        ("unknown flag", edit("protocol: tcp", "protocol: tcp\n    scheduler: sh\n    flags: [sh-sticky]"),
         "services[0].flags[0]", "invalid scheduler flag `sh-sticky`"),
        ("netmask without persistence", edit("protocol: tcp", "protocol: tcp\n    netmask: 255.255.255.0"),
         "services[0].netmask", "only applies to a persistent service"),
        ("not a netmask", edit("protocol: tcp", "protocol: tcp\n    persistent: 60\n    netmask: 255.0.255.0"),
         "services[0].netmask", "255.0.255.0 is not a netmask"),
        ("mark not defined", edit("  - vip: 10.99.1.100\n    port: 80\n    protocol: tcp\n", "  - mark: 7\n"),
         "services[0].mark", "mark 7 is not defined under `marks`"),
        ("mark service with a vip", edit("    protocol: tcp\n", "    protocol: tcp\n    mark: 7\n")
            + "marks:\n  - { mark: 7, matches: [ { vip: 10.99.1.100, port: 81, protocol: tcp } ] }\n",
         "services[0]", "a mark service takes its VIP:port:protocol matches from `marks`"),
        ("mark match taken by a service", edit("  - vip: 10.99.1.100\n    port: 80\n    protocol: tcp\n", "  - mark: 7\n")
            + "  - { vip: 10.99.1.100, port: 80, protocol: tcp }\n"
            + "marks:\n  - { mark: 7, matches: [ { vip: 10.99.1.100, port: 80, protocol: tcp } ] }\n",
         "marks[0].matches[0]", "tcp 10.99.1.100:80 is already taken by services[1]"),
        ("service without vip", edit("  - vip: 10.99.1.100\n    port: 80\n", "  - port: 80\n"),
         "services[0].vip", "required key `vip` is missing"),
        ("one-packet TCP", edit("protocol: tcp", "protocol: tcp\n    one_packet: true"),
         "services[0].one_packet", "UDP services only"),
        ("thresholds upside down", edit("address: 10.99.2.11", "address: 10.99.2.11\n        u_threshold: 5\n        l_threshold: 9"),
         "services[0].reals[0].l_threshold", "above the upper one"),
        ("unknown protocol", edit("protocol: tcp", "protocol: sctp"),
         "services[0].protocol", "unknown protocol `sctp`; expected tcp or udp"),
        ("port mapping in DR", edit("address: 10.99.2.11", "address: 10.99.2.11\n        port: 8080\n        forward: route"),
         "services[0].reals[0].port", "port mapping is not possible in dr mode"),
        ("port mapping in TUN", edit("address: 10.99.2.11", "address: 10.99.2.11\n        port: 8080\n        forward: tun"),
         "services[0].reals[0].port", "port mapping is not possible in tun mode"),
        ("DR real behind a router", edit("address: 10.99.2.11", "address: 10.99.3.11\n        forward: dr")
            + "routes:\n  - { prefix: 10.99.3.0/24, via: 10.99.2.254 }\n",
         "services[0].reals[0].address", "real 10.99.3.11 is not on a connected subnet"),
        ("FullNAT without local addresses", edit("address: 10.99.2.11", "address: 10.99.2.11\n        forward: fullnat"),
         "services[0].reals[0].forward", "fullnat needs local addresses"),
        ("LIP not on any port", edit("address: 10.99.2.11", "address: 10.99.2.11\n        forward: fullnat\n    local_addresses: [10.99.2.100]"),
         "services[0].local_addresses[0]", "local address 10.99.2.100 is not on any port"),
        ("LIP with a NAT real", edit("[10.99.2.1/24]", "[10.99.2.1/24, 10.99.2.100/24]")
            .replacen("address: 10.99.2.11", "address: 10.99.2.11\n    local_addresses: [10.99.2.100]", 1),
         "services[0].local_addresses", "must then all be fullnat"),
        ("empty FullNAT port range", with("fullnat: { port_min: 3000, port_max: 2000 }\n"),
         "fullnat", "port range 3000-2000 is empty"),
        ("a drained real with a weight", edit("address: 10.99.2.11", "address: 10.99.2.11\n        drained_from: 3"),
         "services[0].reals[0].weight", "a drained real (drained_from: 3) has weight 0"),
        ("drained from weight 70000", edit("address: 10.99.2.11", "address: 10.99.2.11\n        weight: 0\n        drained_from: 70000"),
         "services[0].reals[0].drained_from", "weight 70000 is above the maximum 65535"),
        ("a check key of another checker", edit("address: 10.99.2.11", "address: 10.99.2.11\n        checks: [ { type: tcp_check, path: /health } ]"),
         "services[0].reals[0].checks[0].path", "`path` is not a key of TCP_CHECK"),
        ("a misc check without a script", edit("protocol: tcp", "protocol: tcp\n    checks: [ { type: misc_check } ]"),
         "services[0].checks[0].misc_path", "MISC_CHECK needs `misc_path`"),
        ("an unknown checker", edit("protocol: tcp", "protocol: tcp\n    checks: [ { type: ping_check } ]"),
         "services[0].checks[0].type", "unknown variant `ping_check`"),
        ("a digest that is no MD5", edit("protocol: tcp", "protocol: tcp\n    checks: [ { type: http_get, digest: abc } ]"),
         "services[0].checks[0].digest", "is not an MD5 in hex"),
        ("a negative delay_loop", edit("protocol: tcp", "protocol: tcp\n    checks: [ { type: tcp_check, delay_loop: -1 } ]"),
         "services[0].checks[0].delay_loop", "-1 s is negative"),
        ("quorum 0", edit("protocol: tcp", "protocol: tcp\n    quorum: 0"),
         "services[0].quorum", "a quorum must be at least 1"),
        ("a sorry server of rvs's own", edit("protocol: tcp", "protocol: tcp\n    sorry_server: { address: 10.99.2.1 }"),
         "services[0].sorry_server.address", "must be a host reachable"),
        ("a DR sorry server behind a router", edit("protocol: tcp", "protocol: tcp\n    sorry_server: { address: 10.99.3.9, forward: dr }")
            + "routes:\n  - { prefix: 10.99.3.0/24, via: 10.99.2.254 }\n",
         "services[0].sorry_server.address", "is not on a connected subnet"),
        ("weight 70000", edit("address: 10.99.2.11", "address: 10.99.2.11\n        weight: 70000"),
         "services[0].reals[0].weight", "weight 70000 is above the maximum 65535"),
        ("service port out of range", edit("port: 80", "port: 70000"),
         "services[0].port", "70000 is out of range; expected an integer from 0 to 65535"),
        ("port given as text", edit("port: 80", "port: http"),
         "services[0].port", "expected an integer from 0 to 65535, found string \"http\""),
        ("service port 0", edit("port: 80", "port: 0"),
         "services[0].port", "Zero port specified for non-persistent service"),
        ("real unreachable", edit("address: 10.99.2.11", "address: 10.8.0.5"),
         "services[0].reals[0].address",
         "real 10.8.0.5 is not reachable: no connected subnet or route covers it"),
        ("real listed twice", edit("      - address: 10.99.2.11\n", "      - address: 10.99.2.11\n      - { address: 10.99.2.11, port: 80 }\n"),
         "services[0].reals[1]", "real 10.99.2.11:80 is already listed as reals[0]"),
        ("duplicate service",
         with("  - { vip: 10.99.1.100, port: 80, protocol: tcp }\n"),
         "services[1]", "service tcp 10.99.1.100:80 is already defined by services[0]"),
        ("VIP is a port address", edit("vip: 10.99.1.100", "vip: 10.99.1.1"),
         "services[0].vip", "10.99.1.1 is an address of port `client`"),
        ("mempool below the floor", with("mempool:\n  mbufs: 512\n"),
         "mempool.mbufs", "512 mbufs are too few; at least 1024"),
        ("mempool too small", with("mempool:\n  mbufs: 4000\n"),
         "mempool.mbufs", "4000 mbufs are too few for this config, which can hold 4736"),
        ("mempool cache too large", with("mempool:\n  cache: 1024\n"),
         "mempool.cache", "above DPDK's largest per-lcore cache, 512"),
        ("zero timeout", with("timeouts:\n  udp: 0\n"),
         "timeouts.udp", "must be at least 1 second"),
        ("zero connections", with("limits:\n  connections: 0\n"),
         "limits.connections", "must be at least 1"),
        ("more connections than a table can number", with("limits:\n  connections: 1073741825\n"),
         "limits.connections", "1073741825 is above the maximum 1073741824 connections per worker"),
        ("u32::MAX connections", with("limits:\n  connections: 4294967295\n"),
         "limits.connections", "4294967295 is above the maximum"),
        ("EAL argument not a string", with("eal:\n  args: [--no-huge, -m, 512]\n"),
         "eal.args[2]", "expected a string, found integer 512; put it in quotes"),
        ("section of the wrong shape", with("timeouts: [1, 2]\n"),
         "timeouts", "expected a mapping of keys to values, found a list"),
        ("floating addresses with static ownership",
         edit("[10.99.1.1/24]\n", "[10.99.1.1/24]\n    kernel_interface: k0\n    floating_addresses: [10.99.1.254/24]\n"),
         "ports[0].floating_addresses", "they need `ownership: kernel`"),
        ("floating addresses without a kernel interface",
         edit("[10.99.1.1/24]\n", "[10.99.1.1/24]\n    floating_addresses: [10.99.1.254/24]\n")
             .replacen("[10.99.2.1/24]\n", "[10.99.2.1/24]\n    kernel_interface: k1\n", 1)
             + "ownership: kernel\n",
         "ports[0].floating_addresses", "need the port's `kernel_interface`"),
        ("kernel ownership without a kernel interface", with("ownership: kernel\n"),
         "ownership", "no port has one"),
        ("an unknown ownership", with("ownership: vrrp\n"),
         "ownership", "unknown variant `vrrp`, expected `static` or `kernel`"),
        ("a bare floating address", floating("10.99.1.254"),
         "ports[0].floating_addresses[0]", "has no prefix length"),
        ("a floating address outside the port's subnets", floating("10.99.3.1/24"),
         "ports[0].floating_addresses[0]",
         "10.99.3.1 is in no subnet of port `client` (its addresses: 10.99.1.1/24); a floating \
          address adds no connected subnet"),
        ("a floating address of another port's subnet", floating("10.99.2.254/24"),
         "ports[0].floating_addresses[0]", "10.99.2.254 is in no subnet of port `client`"),
        ("a floating address that is the port's own", floating("10.99.1.1/24"),
         "ports[0].floating_addresses[0]", "10.99.1.1 is already an address at ports[0].addresses[0]"),
        ("a floating address listed twice", floating("10.99.1.254/24, 10.99.1.254/32"),
         "ports[0].floating_addresses[1]", "10.99.1.254 is already an address at ports[0].floating_addresses[0]"),
        ("a floating address that is its subnet's broadcast", floating("10.99.1.255/32"),
         "ports[0].floating_addresses[0]", "10.99.1.255 is the network or broadcast address of the subnet 10.99.1.1/24"),
        ("a floating address that is a VIP", floating("10.99.1.100/24"),
         "services[0].vip", "10.99.1.100 is a floating address of port `client`; with `ownership: kernel`"),
        ("a real that is a floating address",
         kernel("[10.99.2.1/24]\n", "[10.99.2.1/24]\n    kernel_interface: k1\n    floating_addresses: [10.99.2.11/24]\n"),
         "services[0].reals[0].address", "real 10.99.2.11 is an address of port `real`, that is of rvs itself"),
        ("a route via a floating address",
         format!("{}routes:\n  - {{ prefix: 10.99.3.0/24, via: 10.99.1.254 }}\n", floating("10.99.1.254/24")),
         "routes[0].via", "next hop 10.99.1.254 is an address of port `client` itself"),
        ("a sorry server at a floating address",
         floating("10.99.1.254/24").replacen("protocol: tcp", "protocol: tcp\n    sorry_server: { address: 10.99.1.254 }", 1),
         "services[0].sorry_server.address", "must be a host reachable"),
        ("a sync daemon without its interface", with("sync:\n  master: { syncid: 1 }\n"),
         "sync.master.mcast_interface", "required key `mcast_interface` is missing"),
        ("a sync daemon of no state", with("sync:\n  primary: { mcast_interface: eth0 }\n"),
         "sync.primary", "unknown key `primary`; expected master or backup"),
        ("an unknown sync daemon key", with("sync:\n  backup: { mcast_interface: eth0, sync_id: 1 }\n"),
         "sync.backup.sync_id",
         "unknown key `sync_id`; expected one of mcast_interface, syncid, sync_maxlen, mcast_group, mcast_port, mcast_ttl"),
        ("a syncid past 255", with("sync:\n  master: { mcast_interface: eth0, syncid: 256 }\n"),
         "sync.master.syncid", "256 is out of range; expected an integer from 0 to 255"),
        ("a sync interface name too long", with("sync:\n  master: { mcast_interface: sixteen-chars-16 }\n"),
         "sync.master.mcast_interface",
         "`sixteen-chars-16` is not a usable interface name: 1 to 15 characters (Linux's limit)"),
        ("an alias label as the sync interface", with("sync:\n  master: { mcast_interface: \"eth0:1\" }\n"),
         "sync.master.mcast_interface", "without `/`, `:` or blanks"),
        ("a sync message too small for a connection", with("sync:\n  backup: { mcast_interface: eth0, sync_maxlen: 43 }\n"),
         "sync.backup.sync_maxlen", "43 bytes is out of range"),
        ("a sync message larger than a datagram", with("sync:\n  backup: { mcast_interface: eth0, sync_maxlen: 65508 }\n"),
         "sync.backup.sync_maxlen", "65508 bytes is out of range"),
        ("a unicast sync group", with("sync:\n  master: { mcast_interface: eth0, mcast_group: 10.0.0.1 }\n"),
         "sync.master.mcast_group", "10.0.0.1 is not an IPv4 multicast address (224.0.0.0/4)"),
        ("a sync group that is no address", with("sync:\n  master: { mcast_interface: eth0, mcast_group: 224.0.0 }\n"),
         "sync.master.mcast_group", "invalid IPv4 address \"224.0.0\""),
        ("sync port 0", with("sync:\n  master: { mcast_interface: eth0, mcast_port: 0 }\n"),
         "sync.master.mcast_port", "a UDP port from 1 to 65535"),
        ("sync TTL 0", with("sync:\n  master: { mcast_interface: eth0, mcast_ttl: 0 }\n"),
         "sync.master.mcast_ttl", "a TTL from 1 to 255"),
    ];
    let mut failures = Vec::new();
    for (what, text, key_path, reason) in &cases {
        match config::parse_on(text, "x.yaml", &two_cpus()) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(err) => {
                if err.key_path() != *key_path || !err.reason().contains(reason) {
                    failures.push(format!(
                        "{what}: got `{err}`, want key path `{key_path}` and reason with `{reason}`"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn display_names_file_position_key_path_and_reason() {
    let cases = [
        (
            edit("address: 10.99.2.11", "address: 10.0.0.300"),
            "x.yaml:18:18: services[0].reals[0].address: invalid IPv4 address \"10.0.0.300\"",
        ),
        (
            with("eal:\n  main_lcore: 0\n  bogus: 1\n"),
            "x.yaml:21:3: eal.bogus: unknown key `bogus`; \
             expected one of main_lcore, main_cpu, args",
        ),
        (
            // A missing top-level key has no better place than the whole file.
            MINIMAL[MINIMAL.find("workers:").unwrap()..].to_owned(),
            "x.yaml: ports: required key `ports` is missing",
        ),
        (
            "ports: [\n".to_owned(),
            "x.yaml:2:1: did not find expected node content, \
             while parsing a flow node",
        ),
        (
            "# nothing yet\n".to_owned(),
            "x.yaml: the file is empty; it needs at least `ports` and `workers`",
        ),
        (
            with("sync:\n  master:\n    mcast_interface: eth0\n    mcast_ttl: 0\n"),
            "x.yaml:22:16: sync.master.mcast_ttl: a TTL from 1 to 255 (1 keeps the messages on \
             the link)",
        ),
        (
            floating("10.99.3.1/24"),
            "x.yaml:6:26: ports[0].floating_addresses[0]: 10.99.3.1 is in no subnet of port \
             `client` (its addresses: 10.99.1.1/24); a floating address adds no connected \
             subnet, so it must be a host of one the port has",
        ),
    ];
    for (text, want) in cases {
        let err = config::parse_on(&text, "x.yaml", &two_cpus()).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn unreadable_file_names_path_and_os_error() {
    let err = config::load(Path::new("/nonexistent/rvs.yaml")).unwrap_err();
    assert_eq!(err.key_path(), "");
    assert_eq!(err.line_column(), None);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/rvs.yaml: cannot read: No such file or directory"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
}

/// `config::load` of `path` on a thread; the test fails if it has not
/// returned within 2 s (an unbounded or blocking read never would).
fn load_within_2s(path: &Path) -> Result<config::Config, config::ConfigError> {
    let (done, answer) = std::sync::mpsc::channel();
    let owned = path.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(config::load(&owned));
    });
    answer
        .recv_timeout(std::time::Duration::from_secs(2))
        .unwrap_or_else(|_| panic!("config::load({}) still reading after 2 s", path.display()))
}

#[test]
fn only_a_regular_file_of_at_most_32_mib_is_read() {
    let dir = std::env::temp_dir().join(format!("rvs-config-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    let big = dir.join("big.yaml");
    // Sparse: refused by its size, nothing read.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(32 * 1024 * 1024 + 1)
        .unwrap();
    for (path, reason) in [
        (
            Path::new("/dev/zero"),
            "not a regular file (a character device); a configuration is read from a regular file",
        ),
        (
            fifo.as_path(),
            "not a regular file (a FIFO); a configuration is read from a regular file",
        ),
        (
            big.as_path(),
            "33554433 bytes, over the limit of 32 MiB for a configuration",
        ),
    ] {
        let err = load_within_2s(path).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: {reason}", path.display()));
        assert_eq!((err.key_path(), err.line_column()), ("", None));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn this_machine_refuses_cpu_4095() {
    let text = edit("lcore: 1", "lcore: 1\n    cpu: 4095");
    let err = config::parse(&text, "x.yaml").unwrap_err();
    assert_eq!(err.key_path(), "workers[0].cpu");
    assert!(err
        .reason()
        .starts_with("CPU 4095 does not exist on this machine (online CPUs: "));
}

#[test]
fn every_shipped_config_loads() {
    let conf = Path::new(REFERENCE).parent().unwrap();
    let mut loaded = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "yaml") {
            config::load(&path).unwrap_or_else(|err| panic!("{err}"));
            loaded += 1;
        }
    }
    assert!(loaded >= 1);
}

//! A service changed while rvsd runs schedules exactly like the same service
//! in a freshly started rvsd: for dh, sh and mh with each of their flags and
//! for twos (whose draws are seeded per worker), 10,000 new connections from
//! distinct clients land on the same reals whether the service came from the
//! file at start, was edited live (`rvsadm -E`) or was added live (`rvsadm
//! -A` and `-a`). Directors of an ECMP cluster rely on this: two of them,
//! one configured from its file and one by rvsadm, must pick the same real
//! for a client.
//!
//! The service is a mark group of 16 VIPs (port 80), so that dh, which
//! hashes the destination, has destinations to spread. The control
//! thread's state and the engine are the real ones; only the worker loop is
//! replaced by taking the published snapshot by hand.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::{ethernet, tcp, Capture};
use rvs_control::config::{self, Config, CpuList, HostCpus};
use rvs_control::proto::{Command, RealSpec, ServiceKey, ServiceSpec};
use rvs_control::server::Reply;
use rvs_dataplane::buf::VecBuf;
use rvs_dataplane::counters::{RealBook, WorkerCounters};
use rvs_dataplane::engine::{Engine, EngineLimits, WorkerPlace};
use rvs_dataplane::mesh::Mesh;
use rvs_dataplane::supervisor::Supervisor;
use rvs_dataplane::wire::arp::ArpOperation;
use rvs_dataplane::wire::ethernet::{EtherType, MacAddr};
use rvs_dataplane::wire::ipv4::Ipv4Packet;
use rvs_dataplane::wire::tcp::TcpFlags;

const CLIENTS: u32 = 10_000;
const CLIENT_PORT: u16 = 0;
const REAL_PORT: u16 = 1;
const MACS: [MacAddr; 2] = [
    MacAddr([0x02, 0xd0, 0, 0, 0, 0]),
    MacAddr([0x02, 0xd1, 0, 0, 0, 0]),
];
/// The engine under test is worker 1 of 2, so that its per-worker seed is
/// not the default one.
const PLACE: WorkerPlace = WorkerPlace { index: 1, count: 2 };

/// The mark group's VIPs are 10.99.1.100 and the next ones.
const VIPS: u32 = 16;
const MARK: u32 = 1;

const BASE: &str = "\
eal: { main_lcore: 0, main_cpu: 0 }
ports:
  - { name: client, device: net_null0, addresses: [10.99.1.1/24] }
  - { name: real, device: net_null1, addresses: [10.99.2.1/24] }
workers:
  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: real, queue: 0 } ] }
  - { lcore: 2, cpu: 1, queues: [ { port: client, queue: 1 }, { port: real, queue: 1 } ] }
";

/// (address, weight) of the reals, in list order; one is quiesced, so that
/// the fallback flags have something to fall back from.
const REALS: [(&str, u32); 5] = [
    ("10.99.2.11", 1),
    ("10.99.2.12", 3),
    ("10.99.2.13", 0),
    ("10.99.2.14", 2),
    ("10.99.2.15", 1),
];

fn vip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 99, 1, 100)) + n % VIPS)
}

/// The configuration text shared by all: ports, workers and the mark group.
fn base_text() -> String {
    let mut text = format!("{BASE}marks:\n  - mark: {MARK}\n    matches:\n");
    for n in 0..VIPS {
        text.push_str(&format!(
            "      - {{ vip: {}, port: 80, protocol: tcp }}\n",
            vip(n)
        ));
    }
    text
}

fn cpus() -> HostCpus {
    let list = CpuList::parse("0-2").expect("a CPU list");
    HostCpus {
        online: list.clone(),
        allowed: list,
    }
}

/// The base configuration with the mark service.
fn config_with(scheduler: &str, flags: &[&str]) -> Config {
    let mut text = format!(
        "{}services:\n  - mark: {MARK}\n    scheduler: {scheduler}\n    flags: [{}]\n    reals:\n",
        base_text(),
        flags.join(", ")
    );
    for (address, weight) in REALS {
        text.push_str(&format!(
            "      - {{ address: {address}, weight: {weight} }}\n"
        ));
    }
    config::parse_on(&text, "live.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
}

fn base_config() -> Config {
    config::parse_on(&base_text(), "live.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
}

/// rvsd's control thread and one of its workers' engines.
struct Director {
    control: Supervisor,
    mesh: Arc<Mesh>,
    engine: Engine<VecBuf>,
    io: Capture,
}

impl Director {
    /// As rvsd starts with `config`.
    fn start(config: Config) -> Director {
        let counters: Vec<Arc<WorkerCounters>> = (0..PLACE.count)
            .map(|_| Arc::new(WorkerCounters::default()))
            .collect();
        let book = Arc::new(RealBook::new(usize::from(PLACE.count), 1024));
        let mesh = Arc::new(Mesh::new(usize::from(PLACE.count)));
        let control = Supervisor::new(
            config,
            cpus(),
            MACS.to_vec(),
            Arc::clone(&mesh),
            counters.clone(),
            Arc::clone(&book),
        )
        .expect("a control plane");
        let mut engine = Engine::new(
            Arc::clone(control.snapshot()),
            PLACE,
            EngineLimits {
                connections: CLIENTS as usize + 1024,
                arp_pending: 8,
                expire_budget: 1024,
                // Room for every client: the test sends SYNs no real answers.
                unverified: CLIENTS as usize + 1024,
            },
            Arc::clone(&counters[usize::from(PLACE.index)]),
            book,
        );
        engine.set_now(1);
        Director {
            control,
            mesh,
            engine,
            io: Capture::default(),
        }
    }

    /// Applies control commands as rvsadm sends them, then lets the worker
    /// take the snapshot they publish, as its loop does.
    fn edit(&mut self, commands: Vec<Command>) {
        for command in commands {
            match self.control.handle(command.clone()) {
                Reply::Now(Ok(_)) => {}
                other => panic!("{command:?}: {other:?}"),
            }
        }
        self.control.tick();
        let worker = usize::from(PLACE.index);
        let mut swapped = false;
        while let Some(snapshot) = self.mesh.snapshots[worker].pop() {
            drop(self.engine.swap_snapshot(snapshot));
            swapped = true;
        }
        assert!(swapped, "the edit published a snapshot");
    }

    /// The real that a new connection from client number `n` goes to; none
    /// when no real takes it (a hash landing on the quiesced real).
    fn pick(&mut self, n: u32) -> Option<Ipv4Addr> {
        let client = Ipv4Addr::from(0xac10_0000 + n);
        let sport = 1024 + (n.wrapping_mul(7919) % 60000) as u16;
        let frame = ethernet(
            MacAddr([0x02, 0xc0, 0, 0, 0, 2]),
            MACS[0],
            EtherType::IPV4,
            &tcp(client, sport, vip(n), 80, TcpFlags::SYN, &[]),
        );
        // Handed over as if another worker had received it: no steering.
        self.engine
            .handle_redirected(VecBuf::new(&frame), CLIENT_PORT, &mut self.io);
        let sent = self.io.take();
        assert!(sent.len() <= 1, "client {n}: at most one frame out");
        let frame = sent.first()?;
        Some(Ipv4Packet::new_checked(&frame.1[14..]).unwrap().dst())
    }

    /// Every real's MAC learned, so that no SYN waits for ARP.
    fn learn_reals(&mut self) {
        for (i, (address, _)) in REALS.iter().enumerate() {
            let mac = MacAddr([0x02, 0x11, 0, 0, 0, i as u8]);
            let arp = common::arp_frame(
                ArpOperation::REQUEST,
                mac,
                address.parse().unwrap(),
                MacAddr::ZERO,
                Ipv4Addr::new(10, 99, 2, 1),
            );
            self.engine
                .handle_redirected(VecBuf::new(&arp), REAL_PORT, &mut self.io);
        }
        self.io.take();
    }

    fn picks(&mut self) -> Vec<Option<Ipv4Addr>> {
        self.learn_reals();
        (0..CLIENTS).map(|n| self.pick(n)).collect()
    }
}

fn service_spec(scheduler: &str, flags: &[&str]) -> ServiceSpec {
    ServiceSpec {
        scheduler: scheduler.to_owned(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        ..ServiceSpec::new(ServiceKey::Mark(MARK))
    }
}

/// `rvsadm -A` and one `rvsadm -a` per real. IPVS puts a new real at the
/// head of the list, so the reals are added last first.
fn add_commands(scheduler: &str, flags: &[&str]) -> Vec<Command> {
    let mut commands = vec![Command::AddService {
        service: service_spec(scheduler, flags),
    }];
    for (address, weight) in REALS.iter().rev() {
        commands.push(Command::AddReal {
            service: ServiceKey::Mark(MARK),
            real: RealSpec {
                addr: address.parse().unwrap(),
                port: 0,
                forward: rvs_control::proto::Forward::Nat,
                weight: *weight,
                u_threshold: 0,
                l_threshold: 0,
            },
        });
    }
    commands
}

/// Checks the three ways of getting the service against each other.
fn same_picks_however_configured(scheduler: &str, flags: &[&str]) {
    let what = format!("{scheduler} [{}]", flags.join(","));
    let mut fresh = Director::start(config_with(scheduler, flags));
    let expected = fresh.picks();
    let reals: std::collections::HashSet<_> = expected.iter().flatten().collect();
    assert!(
        reals.len() >= 3,
        "{what}: the clients spread over the reals"
    );

    let mut edited = Director::start(config_with("rr", &[]));
    edited.edit(vec![Command::EditService {
        service: service_spec(scheduler, flags),
    }]);
    assert_eq!(edited.control.config(), fresh.control.config(), "{what}");
    let picks = edited.picks();
    let differ = expected.iter().zip(&picks).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "{what}: edited live, {differ} of {CLIENTS} clients picked another real"
    );

    let mut added = Director::start(base_config());
    added.edit(add_commands(scheduler, flags));
    assert_eq!(added.control.config(), fresh.control.config(), "{what}");
    let picks = added.picks();
    let differ = expected.iter().zip(&picks).filter(|(a, b)| a != b).count();
    assert_eq!(
        differ, 0,
        "{what}: added by rvsadm, {differ} of {CLIENTS} clients picked another real"
    );
}

#[test]
fn dh_schedules_alike_however_configured() {
    same_picks_however_configured("dh", &[]);
}

#[test]
fn sh_schedules_alike_however_configured() {
    same_picks_however_configured("sh", &[]);
}

#[test]
fn sh_port_schedules_alike_however_configured() {
    same_picks_however_configured("sh", &["sh-port"]);
}

#[test]
fn sh_fallback_schedules_alike_however_configured() {
    same_picks_however_configured("sh", &["sh-fallback"]);
}

#[test]
fn sh_fallback_and_port_schedule_alike_however_configured() {
    same_picks_however_configured("sh", &["sh-fallback", "sh-port"]);
}

#[test]
fn mh_schedules_alike_however_configured() {
    same_picks_however_configured("mh", &[]);
}

#[test]
fn mh_port_schedules_alike_however_configured() {
    same_picks_however_configured("mh", &["mh-port"]);
}

#[test]
fn mh_fallback_schedules_alike_however_configured() {
    same_picks_however_configured("mh", &["mh-fallback"]);
}

#[test]
fn mh_fallback_and_port_schedule_alike_however_configured() {
    same_picks_however_configured("mh", &["mh-fallback", "mh-port"]);
}

#[test]
fn twos_draws_alike_however_configured() {
    same_picks_however_configured("twos", &[]);
}

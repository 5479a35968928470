//! The rules of the commands that change rvsd's configuration
//! (`rvs_control::edit`), tested on their own: refusals in ipvsadm's words
//! or the YAML file's, ipvsadm's conventions, and the effects rvsd carries
//! out besides.

mod common;

use common::{base, cpus, ip, BASE};
use rvs_control::config::{Config, SyncDaemon, SyncState};
use rvs_control::edit::{self, Edit, Effect, RealPurge};
use rvs_control::model::{Forward, SchedulerKind, Timeouts};
use rvs_control::proto::{errors, Command, LaddrSpec, RealSpec, ServiceKey, ServiceSpec};

fn tcp(vip: &str, port: u16) -> ServiceKey {
    ServiceKey::tcp(ip(vip), port)
}

fn add_service(key: ServiceKey, scheduler: &str) -> Command {
    Command::AddService {
        service: ServiceSpec {
            scheduler: scheduler.to_owned(),
            ..ServiceSpec::new(key)
        },
    }
}

fn real(addr: &str, port: u16, forward: Forward) -> RealSpec {
    RealSpec {
        addr: ip(addr),
        port,
        forward,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn add_real(key: ServiceKey, addr: &str, port: u16, forward: Forward) -> Command {
    Command::AddReal {
        service: key,
        real: real(addr, port, forward),
    }
}

fn laddr(addr: &str, ifname: Option<&str>) -> LaddrSpec {
    LaddrSpec {
        addr: ip(addr),
        ifname: ifname.map(str::to_owned),
    }
}

/// Applies `commands` in order, as rvsd adopts each; panics on a refusal.
fn after(commands: &[Command]) -> Config {
    let mut config = base();
    for command in commands {
        if let Some(next) = apply(&config, command).config {
            config = next;
        }
    }
    config
}

fn apply(config: &Config, command: &Command) -> Edit {
    edit::apply(config, command, &cpus()).unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

fn start(state: SyncState, interface: &str) -> Command {
    Command::StartDaemon {
        state,
        daemon: SyncDaemon::on(interface),
    }
}

fn stop(state: SyncState) -> Command {
    Command::StopDaemon { state }
}

#[test]
fn sync_daemons_start_once_stop_once_and_run_both_at_once() {
    let master = SyncDaemon {
        syncid: 5,
        ..SyncDaemon::on("eth1")
    };
    let started = apply(
        &base(),
        &Command::StartDaemon {
            state: SyncState::Master,
            daemon: master.clone(),
        },
    );
    assert_eq!(started.effect, Effect::None, "rvsd follows `sync` itself");
    let running = started.config.unwrap();
    assert_eq!(running.sync.master, Some(master.clone()));
    assert_eq!(running.sync.backup, None);
    assert_eq!(
        Config {
            sync: Default::default(),
            ..running.clone()
        },
        base(),
        "nothing else changes"
    );
    let both = apply(&running, &start(SyncState::Backup, "eth1"))
        .config
        .unwrap();
    assert_eq!(both.sync.master, Some(master));
    assert_eq!(both.sync.backup, Some(SyncDaemon::on("eth1")));
    // The kernel's EEXIST and ESRCH, in ipvsadm's words.
    assert_eq!(
        edit::apply(&both, &start(SyncState::Master, "eth2"), &cpus()).unwrap_err(),
        errors::DAEMON_RUNNING
    );
    let backup_only = apply(&both, &stop(SyncState::Master)).config.unwrap();
    assert_eq!(backup_only.sync.master, None);
    assert_eq!(
        edit::apply(&backup_only, &stop(SyncState::Master), &cpus()).unwrap_err(),
        errors::NO_DAEMON
    );
    let none = apply(&backup_only, &stop(SyncState::Backup))
        .config
        .unwrap();
    assert_eq!(none, base());
    // A setting the configuration refuses, as the YAML file would say it.
    let bad = Command::StartDaemon {
        state: SyncState::Backup,
        daemon: SyncDaemon {
            mcast_group: ip("10.1.1.1"),
            ..SyncDaemon::on("eth1")
        },
    };
    assert_eq!(
        edit::apply(&base(), &bad, &cpus()).unwrap_err(),
        "sync.backup.mcast_group: 10.1.1.1 is not an IPv4 multicast address (224.0.0.0/4); \
         IPVS sync's group is 224.0.0.81"
    );
}

#[test]
fn refusals_use_ipvsadm_words_or_the_files_and_change_nothing() {
    let web = tcp("10.0.0.1", 80);
    let dns = ServiceKey::udp(ip("10.0.0.1"), 53);
    let setup = vec![
        add_service(web, "rr"),
        add_real(web, "192.168.1.2", 80, Forward::Nat),
        add_service(dns, "rr"),
    ];
    #[rustfmt::skip]
    let cases: Vec<(&str, Command, &str)> = vec![
        ("a service twice", add_service(web, "wlc"), errors::SERVICE_EXISTS),
        ("an unknown scheduler", add_service(tcp("10.0.0.2", 80), "maglev"), errors::SCHEDULER_NOT_FOUND),
        ("editing a missing service", Command::EditService { service: ServiceSpec::new(tcp("10.0.0.9", 80)) }, errors::NO_SUCH_SERVICE),
        ("deleting a missing service", Command::DeleteService { service: tcp("10.0.0.9", 80) }, errors::NO_SUCH_SERVICE),
        ("zeroing a missing service", Command::Zero { service: Some(tcp("10.0.0.9", 80)) }, errors::NO_SUCH_SERVICE),
        ("a real of a missing service", add_real(tcp("10.0.0.9", 80), "192.168.1.2", 80, Forward::Nat), errors::SERVICE_NOT_DEFINED),
        ("a real twice", add_real(web, "192.168.1.2", 80, Forward::Dr), errors::DESTINATION_EXISTS),
        ("editing a missing real", Command::EditReal { service: web, real: real("192.168.1.3", 80, Forward::Nat) }, errors::NO_SUCH_DESTINATION),
        ("deleting a missing real", Command::DeleteReal { service: web, addr: ip("192.168.1.2"), port: 81, purge: false }, errors::NO_SUCH_DESTINATION),
        ("an unreachable real", add_real(web, "172.16.0.1", 80, Forward::Nat),
         "services[0].reals[0].address: real 172.16.0.1 is not reachable: no connected subnet or route"),
        ("a FullNAT real without local addresses", add_real(dns, "192.168.1.2", 53, Forward::FullNat),
         "services[1].reals[0].forward: fullnat needs local addresses"),
        ("a mark not under `marks`", add_service(ServiceKey::Mark(9), "rr"), "services[2].mark: mark 9 is not defined under `marks`"),
        ("a local address of no port", Command::AddLaddr { service: dns, laddr: laddr("10.0.0.77", None) }, "services[1].local_addresses[0]:"),
        ("a local address on an unknown port", Command::AddLaddr { service: dns, laddr: laddr("192.168.1.250", Some("eth9")) }, "no port named `eth9`"),
        ("a local address on another port", Command::AddLaddr { service: dns, laddr: laddr("192.168.1.250", Some("client")) }, "192.168.1.250 is not an address of port `client`"),
        ("removing a missing local address", Command::DelLaddr { service: dns, laddr: laddr("192.168.1.250", None) }, "no such local address 192.168.1.250"),
        ("a listing", Command::ListServices { service: None }, "not a command that edits the configuration"),
    ];
    let running = after(&setup);
    for (what, command, error) in cases {
        let refused = edit::apply(&running, &command, &cpus()).expect_err(what);
        assert!(refused.starts_with(error), "{what}: {refused}");
    }
    // The same local address twice: refused once it is there.
    let with_laddr = after(
        &[
            setup.clone(),
            vec![Command::AddLaddr {
                service: dns,
                laddr: laddr("192.168.1.250", Some("dpdk0")),
            }],
        ]
        .concat(),
    );
    let again = Command::AddLaddr {
        service: dns,
        laddr: laddr("192.168.1.250", None),
    };
    assert_eq!(
        edit::apply(&with_laddr, &again, &cpus()).unwrap_err(),
        "local address 192.168.1.250 already exists"
    );
}

#[test]
fn a_new_real_goes_to_the_head_of_the_list_as_in_ipvs() {
    let web = tcp("10.0.0.1", 80);
    let config = after(&[
        add_service(web, "rr"),
        add_real(web, "192.168.1.2", 80, Forward::Nat),
        add_real(web, "192.168.1.3", 8080, Forward::Nat),
    ]);
    let reals: Vec<_> = config.services[0]
        .reals
        .iter()
        .map(|r| (r.address, r.port))
        .collect();
    assert_eq!(
        reals,
        [(ip("192.168.1.3"), Some(8080)), (ip("192.168.1.2"), None)],
        "the service port is not repeated on the real"
    );
}

#[test]
fn editing_a_service_resets_what_the_command_does_not_give() {
    let web = tcp("10.0.0.1", 80);
    let config = after(&[
        Command::AddService {
            service: ServiceSpec {
                scheduler: "sh".into(),
                flags: vec!["sh-port".into()],
                persistent: Some(20),
                ..ServiceSpec::new(web)
            },
        },
        add_real(web, "192.168.1.2", 80, Forward::Dr),
        Command::EditService {
            service: ServiceSpec::new(web),
        },
    ]);
    let service = &config.services[0];
    assert_eq!(service.scheduler, SchedulerKind::Wlc, "ipvsadm's default");
    assert!(service.flags.is_empty() && service.persistent.is_none());
    assert_eq!(service.reals.len(), 1, "reals stay");
}

#[test]
fn set_timeouts_leaves_a_zero_unchanged() {
    let config = after(&[Command::SetTimeouts {
        tcp: 30,
        tcpfin: 0,
        udp: 60,
    }]);
    assert_eq!(
        config.timeouts,
        Timeouts {
            tcp: 30,
            tcpfin: Timeouts::default().tcpfin,
            udp: 60
        }
    );
}

#[test]
fn deleting_a_real_ends_its_connections_only_when_asked() {
    let web = tcp("10.0.0.1", 80);
    let every_port = tcp("10.0.0.2", 0);
    let running = after(&[
        add_service(web, "rr"),
        add_real(web, "192.168.1.2", 8080, Forward::Nat),
        Command::AddService {
            service: ServiceSpec {
                persistent: Some(300),
                ..ServiceSpec::new(every_port)
            },
        },
        add_real(every_port, "192.168.1.2", 0, Forward::Nat),
    ]);
    let delete = |service, port, purge| Command::DeleteReal {
        service,
        addr: ip("192.168.1.2"),
        port,
        purge,
    };
    let kept = apply(&running, &delete(web, 8080, false));
    assert_eq!(kept.effect, Effect::None);
    assert!(kept.config.unwrap().services[0].reals.is_empty());
    assert_eq!(
        apply(&running, &delete(web, 8080, true)).effect,
        Effect::Purge(RealPurge {
            service: web,
            address: ip("192.168.1.2"),
            port: Some(8080),
        })
    );
    assert_eq!(
        apply(&running, &delete(every_port, 0, true)).effect,
        Effect::Purge(RealPurge {
            service: every_port,
            address: ip("192.168.1.2"),
            port: None,
        }),
        "a port-zero service's real serves every port"
    );
}

#[test]
fn zeroing_changes_no_configuration_and_names_the_services() {
    let web = tcp("10.0.0.1", 80);
    let dns = ServiceKey::udp(ip("10.0.0.1"), 53);
    let running = after(&[add_service(web, "rr"), add_service(dns, "rr")]);
    let all = apply(&running, &Command::Zero { service: None });
    assert_eq!(all.config, None);
    assert_eq!(all.effect, Effect::Zero(vec![web, dns]));
    let one = apply(&running, &Command::Zero { service: Some(dns) });
    assert_eq!(one.effect, Effect::Zero(vec![dns]));
}

#[test]
fn clear_removes_every_service_and_nothing_else() {
    let web = tcp("10.0.0.1", 80);
    let running = after(&[
        add_service(web, "rr"),
        Command::SetTimeouts {
            tcp: 30,
            tcpfin: 0,
            udp: 0,
        },
    ]);
    let cleared = apply(&running, &Command::Clear {}).config.unwrap();
    assert!(cleared.services.is_empty());
    assert_eq!(cleared.timeouts.tcp, 30);
    assert_eq!(cleared.ports, running.ports);
}

#[test]
fn a_whole_file_replaces_the_running_one_only_where_it_may() {
    let running = base();
    let text = format!(
        "{BASE}services:\n  - {{ vip: 10.0.0.1, port: 80, protocol: tcp, reals: [ {{ address: 192.168.1.2 }} ] }}\n"
    );
    let (next, diff) = edit::replace(&running, &text, "new.yaml", &cpus()).unwrap();
    assert_eq!(next.services.len(), 1);
    assert_eq!(diff.services_added.len(), 1);
    assert!(diff.settings.is_empty());

    let other_box = BASE.replace("device: net_null1", "device: net_null7");
    let refused = edit::replace(&running, &other_box, "other.yaml", &cpus()).unwrap_err();
    assert!(
        refused.starts_with(
            "other.yaml:4:20: ports[1].device: \"net_null1\" in the running rvsd, \"net_null7\" \
             here; `ports` changes only with a restart"
        ),
        "{refused}"
    );
    // The sync daemons change while rvsd runs, as --start-daemon changes
    // them; who owns the VIPs needs a restart.
    let synced = format!("{text}sync:\n  master: {{ mcast_interface: eth1, syncid: 3 }}\n");
    let (next, diff) = edit::replace(&running, &synced, "sync.yaml", &cpus()).unwrap();
    assert_eq!(next.sync.master.as_ref().map(|d| d.syncid), Some(3));
    assert_eq!(
        diff.settings
            .iter()
            .map(|s| (s.key.as_str(), s.from.as_str()))
            .collect::<Vec<_>>(),
        [("sync", "none")]
    );
    let resynced = synced.replace("syncid: 3", "syncid: 4");
    let (_, diff) = edit::replace(&next, &resynced, "sync.yaml", &cpus()).unwrap();
    assert_eq!(
        diff.settings
            .iter()
            .map(|s| (s.key.as_str(), s.from.as_str(), s.to.as_str()))
            .collect::<Vec<_>>(),
        [("sync.master.syncid", "3", "4")]
    );
    let kernel = BASE.replace(
        "addresses: [10.0.0.254/24] }",
        "addresses: [10.0.0.254/24], kernel_interface: k0 }",
    ) + "ownership: kernel\n";
    let refused = edit::replace(&running, &kernel, "kernel.yaml", &cpus()).unwrap_err();
    assert!(
        refused.contains("`ownership` changes only with a restart"),
        "{refused}"
    );
    let invalid = text.replace("192.168.1.2 }", "192.168.1.300 }");
    let refused = edit::replace(&running, &invalid, "bad.yaml", &cpus()).unwrap_err();
    assert!(
        refused.starts_with("bad.yaml:13:67: services[0].reals[0].address: "),
        "names the file and line: {refused}"
    );
    assert!(
        refused.contains("invalid IPv4 address \"192.168.1.300\""),
        "{refused}"
    );
}

/// `BASE` with room for 6 reals and two workers sharing a FullNAT port
/// range of one port, so that batches meet every rule that counts across
/// services.
fn tight() -> Config {
    let text = BASE.replace(
        "  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: dpdk0, queue: 0 } ] }\n",
        "  - { lcore: 1, cpu: 1, queues: [ { port: client, queue: 0 }, { port: dpdk0, queue: 0 } ] }\n  \
         - { lcore: 2, cpu: 1, queues: [ { port: client, queue: 1 }, { port: dpdk0, queue: 1 } ] }\n",
    ) + "limits: { reals: 6 }\nfullnat: { port_min: 5000, port_max: 5000 }\n";
    rvs_control::config::parse_on(&text, "tight.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"))
}

/// What rvsd did before batches: each command applied alone to what the
/// ones before left, a refused one skipped.
fn one_by_one(running: &Config, commands: &[Command]) -> edit::BatchEdit {
    let mut config = running.clone();
    let mut changed = false;
    let mut effects = Vec::new();
    let mut refused = Vec::new();
    for (index, command) in commands.iter().enumerate() {
        match edit::apply(&config, command, &cpus()) {
            Ok(edit) => {
                if let Some(next) = edit.config {
                    config = next;
                    changed = true;
                }
                if edit.effect != Effect::None {
                    effects.push(edit.effect);
                }
            }
            Err(err) => refused.push((index, err)),
        }
    }
    edit::BatchEdit {
        config: changed.then_some(config),
        effects,
        refused,
    }
}

#[test]
fn a_batch_refuses_and_applies_exactly_what_one_by_one_would() {
    let web = tcp("10.0.0.1", 80);
    let zero_port = tcp("10.0.0.2", 0);
    let matched = tcp("10.0.0.5", 80);
    let dns = ServiceKey::udp(ip("10.0.0.1"), 53);
    let persistent = |key| Command::EditService {
        service: ServiceSpec {
            persistent: Some(60),
            ..ServiceSpec::new(key)
        },
    };
    let delete = |key| Command::DeleteService { service: key };
    let lip = |key| Command::AddLaddr {
        service: key,
        laddr: laddr("192.168.1.250", None),
    };
    #[rustfmt::skip]
    let batches: Vec<(&str, Vec<Command>)> = vec![
        ("a state invalid on the way is refused on the way, not judged by the end",
         vec![add_service(zero_port, "rr"), persistent(zero_port)]),
        ("refusals in ipvsadm's words, the rest applied",
         vec![add_service(web, "rr"), add_service(web, "wlc"), add_service(tcp("10.0.0.3", 80), "maglev"),
              add_real(web, "192.168.1.2", 80, Forward::Nat), add_real(web, "192.168.1.2", 80, Forward::Nat),
              add_real(tcp("10.0.0.9", 80), "192.168.1.2", 80, Forward::Nat)]),
        ("an index in a message counts the services left, not those removed",
         vec![add_service(web, "rr"), add_service(dns, "rr"), delete(web),
              add_real(dns, "172.16.0.1", 53, Forward::Nat), add_real(dns, "192.168.1.7", 53, Forward::FullNat)]),
        ("removed, added again at the end, edited",
         vec![add_service(web, "rr"), add_service(dns, "rr"), delete(web), add_service(web, "sh"),
              add_real(web, "192.168.1.3", 80, Forward::Nat), Command::Clear {}, add_service(dns, "wlc"),
              delete(web)]),
        ("a mark's match is no service's",
         vec![add_service(matched, "rr"), add_service(ServiceKey::Mark(5), "rr"), add_service(ServiceKey::Mark(9), "rr")]),
        ("reals counted over services", {
            let mut commands = vec![add_service(web, "rr"), add_service(dns, "rr")];
            for n in 1..=4 {
                commands.push(add_real(web, &format!("192.168.1.{n}"), 80, Forward::Nat));
                commands.push(add_real(dns, &format!("192.168.1.{n}"), 53, Forward::Nat));
            }
            commands.push(Command::DeleteReal { service: web, addr: ip("192.168.1.1"), port: 80, purge: true });
            commands.push(add_real(dns, "192.168.1.9", 53, Forward::Nat));
            commands
        }),
        ("local addresses: the port share, and reals that must be fullnat",
         vec![add_service(web, "rr"), add_real(web, "192.168.1.2", 80, Forward::Nat), lip(web),
              Command::DeleteReal { service: web, addr: ip("192.168.1.2"), port: 80, purge: false }, lip(web),
              Command::DelLaddr { service: web, laddr: laddr("192.168.1.250", None) }]),
        ("timeouts and zeroing",
         vec![Command::SetTimeouts { tcp: 30, tcpfin: 0, udp: 60 }, add_service(web, "rr"), Command::Zero { service: None },
              Command::Zero { service: Some(dns) }, Command::Zero { service: Some(web) }]),
        ("sync daemons: each started and stopped once, a bad setting refused",
         vec![start(SyncState::Master, "eth1"), start(SyncState::Master, "eth2"), stop(SyncState::Backup),
              Command::StartDaemon { state: SyncState::Backup, daemon: SyncDaemon { sync_maxlen: 20, ..SyncDaemon::on("eth1") } },
              start(SyncState::Backup, "eth1"), stop(SyncState::Master), stop(SyncState::Master),
              start(SyncState::Master, "eth3")]),
        ("only -Z: nothing to adopt", vec![Command::Zero { service: None }]),
        ("nothing", vec![]),
    ];
    let mut messages = Vec::new();
    for (what, commands) in &batches {
        for running in [base(), tight()] {
            let batch = edit::apply_batch(&running, commands, &cpus())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(batch, one_by_one(&running, commands), "{what}");
            messages.extend(batch.refused.into_iter().map(|(_, message)| message));
        }
    }
    // Every rule that counts across services was met.
    for rule in [
        "limits.reals: the services list 7 reals, more than limits.reals (6)",
        "fullnat: port range 5000-5000 has fewer ports than the 2 workers",
        "marks[0].matches[0]: tcp 10.0.0.5:80 is already taken by services[0]",
        "services[0].reals[0].address: real 172.16.0.1 is not reachable",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(rule)),
            "{rule}: {messages:#?}"
        );
    }
    // The first case, for the record: both lines refused, as ipvsadm -R would.
    let refused = edit::apply_batch(&base(), &batches[0].1, &cpus())
        .unwrap()
        .refused;
    assert_eq!(refused.len(), 2);
    assert!(
        refused[0]
            .1
            .starts_with("services[0].port: Zero port specified"),
        "{refused:?}"
    );
    assert_eq!(refused[1], (1, errors::NO_SUCH_SERVICE.to_owned()));
    let listing = edit::apply_batch(&base(), &[Command::ListServices { service: None }], &cpus());
    assert!(listing
        .unwrap_err()
        .starts_with("batch: command 0 is not a command that edits"));
}

/// Random batches over a small world of services, reals, local addresses
/// and marks, where most commands collide with something: each refused and
/// applied as one by one would.
#[test]
fn random_batches_match_one_by_one() {
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below as u64) as usize
    };
    let keys = [
        tcp("10.0.0.1", 80),
        tcp("10.0.0.2", 0),
        tcp("10.0.0.5", 80),
        ServiceKey::udp(ip("10.0.0.1"), 53),
        ServiceKey::Mark(5),
        ServiceKey::Mark(9),
    ];
    let schedulers = ["rr", "wlc", "sh", "mh", "maglev"];
    let reals = ["192.168.1.2", "192.168.1.3", "172.16.0.1", "192.168.1.250"];
    let forwards = [Forward::Nat, Forward::Dr, Forward::FullNat, Forward::Tun];
    for _ in 0..300 {
        let commands: Vec<Command> = (0..25)
            .map(|_| {
                let key = keys[next(keys.len())];
                let real_spec = RealSpec {
                    weight: next(3) as u32,
                    ..real(
                        reals[next(reals.len())],
                        [80, 53, 0][next(3)],
                        forwards[next(forwards.len())],
                    )
                };
                match next(14) {
                    0..=3 => add_service(key, schedulers[next(schedulers.len())]),
                    4 => Command::EditService {
                        service: ServiceSpec {
                            persistent: [None, Some(60), Some(0)][next(3)],
                            ..ServiceSpec::new(key)
                        },
                    },
                    5 => Command::DeleteService { service: key },
                    6 | 7 => Command::AddReal {
                        service: key,
                        real: real_spec,
                    },
                    8 => Command::EditReal {
                        service: key,
                        real: real_spec,
                    },
                    9 => Command::DeleteReal {
                        service: key,
                        addr: real_spec.addr,
                        port: real_spec.port,
                        purge: next(2) == 0,
                    },
                    10 => Command::AddLaddr {
                        service: key,
                        laddr: laddr("192.168.1.250", None),
                    },
                    11 => Command::DelLaddr {
                        service: key,
                        laddr: laddr("192.168.1.250", None),
                    },
                    12 => Command::Zero {
                        service: [None, Some(key)][next(2)],
                    },
                    _ => [
                        Command::Clear {},
                        Command::SetTimeouts {
                            tcp: 10,
                            tcpfin: 0,
                            udp: 20,
                        },
                        start(SyncState::Master, "eth1"),
                        Command::StartDaemon {
                            state: SyncState::Backup,
                            daemon: SyncDaemon {
                                mcast_ttl: [0, 1][next(2)],
                                ..SyncDaemon::on("eth1")
                            },
                        },
                        stop([SyncState::Master, SyncState::Backup][next(2)]),
                    ][next(5)]
                    .clone(),
                }
            })
            .collect();
        for running in [base(), tight()] {
            let batch =
                edit::apply_batch(&running, &commands, &cpus()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(batch, one_by_one(&running, &commands), "{commands:#?}");
        }
    }
}

#[test]
fn drain_keeps_the_weight_for_undrain_and_an_edit_ends_it() {
    let web = tcp("10.0.0.1", 80);
    let mut weighted = real("192.168.1.2", 8080, Forward::Nat);
    weighted.weight = 3;
    let running = after(&[
        add_service(web, "wrr"),
        Command::AddReal {
            service: web,
            real: weighted.clone(),
        },
    ]);
    let target = (web, ip("192.168.1.2"), 8080);
    let drain = Command::Drain {
        service: target.0,
        addr: target.1,
        port: target.2,
    };
    let undrain = Command::Undrain {
        service: target.0,
        addr: target.1,
        port: target.2,
    };
    let drained = apply(&running, &drain).config.unwrap();
    let r = &drained.services[0].reals[0];
    assert_eq!((r.weight, r.drained_from), (0, Some(3)));
    // Twice changes nothing: the weight to restore stays 3.
    let again = apply(&drained, &drain).config.unwrap();
    assert_eq!(again, drained);
    let back = apply(&drained, &undrain).config.unwrap();
    let r = &back.services[0].reals[0];
    assert_eq!((r.weight, r.drained_from), (3, None));
    assert_eq!(back, running);
    // Undrain of a real not drained, or of no such real, is refused.
    let refused = edit::apply(&running, &undrain, &cpus()).unwrap_err();
    assert!(refused.contains("is not drained"), "{refused}");
    let missing = Command::Drain {
        service: web,
        addr: ip("192.168.1.9"),
        port: 8080,
    };
    assert_eq!(
        edit::apply(&running, &missing, &cpus()).unwrap_err(),
        errors::NO_SUCH_DESTINATION
    );
    // ipvsadm -e sets the weight: the real is no longer drained.
    let edited = apply(
        &drained,
        &Command::EditReal {
            service: web,
            real: weighted,
        },
    )
    .config
    .unwrap();
    assert_eq!(edited.services[0].reals[0].drained_from, None);
}

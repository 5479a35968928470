//! rvsadm's command-line grammar: ipvsadm 1.31's options, defaults and
//! error messages.

use rvs_control::ipvsadm::{format, parse, parse_restore_line, Action, Format, Listing};
use rvs_control::proto::{
    Command, DaemonInfo, Forward, LaddrSpec, Rates, RealInfo, RealSpec, ServiceInfo, ServiceKey,
    ServiceSpec, Stats, SyncDaemon, SyncState,
};
use std::net::Ipv4Addr;

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn action(line: &str) -> Action {
    parse(&words(line)).unwrap_or_else(|err| panic!("{line}: {err:?}"))
}

fn command(line: &str) -> Command {
    match action(line) {
        Action::Apply(cmd) => cmd,
        other => panic!("{line}: not a command: {other:?}"),
    }
}

fn error(line: &str) -> String {
    match parse(&words(line)) {
        Ok(action) => panic!("{line}: parsed as {action:?}"),
        Err(err) => err.message,
    }
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn web() -> ServiceKey {
    ServiceKey::tcp(ip("10.0.0.1"), 80)
}

#[test]
fn seed_script_lines() {
    assert_eq!(command("-C"), Command::Clear {});
    assert_eq!(
        command("--set 30 5 60"),
        Command::SetTimeouts {
            tcp: 30,
            tcpfin: 5,
            udp: 60
        }
    );
    let mut spec = ServiceSpec::new(web());
    spec.scheduler = "rr".into();
    spec.persistent = Some(20);
    assert_eq!(
        command("-A -t 10.0.0.1:80 -s rr -p 20"),
        Command::AddService { service: spec }
    );
    assert_eq!(
        command("-a -t 10.0.0.1:80 -r 192.168.1.2 -g -w 1"),
        Command::AddReal {
            service: web(),
            real: RealSpec {
                addr: ip("192.168.1.2"),
                port: 80,
                forward: Forward::Dr,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            }
        }
    );
    assert_eq!(
        action("-L -n"),
        Action::List(Listing::Services {
            service: None,
            format: Format {
                numeric: true,
                ..Format::default()
            }
        })
    );
}

#[test]
fn long_forms_and_clusters_mean_the_same() {
    let pairs = [
        ("-A -t 10.0.0.1:80 -s rr -p 20", "--add-service --tcp-service 10.0.0.1:80 --scheduler rr --persistent 20"),
        ("-A -t 10.0.0.1:80 -s rr -p 20", "-At 10.0.0.1:80 -srr --persistent=20"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 3", "--add-server --tcp-service=10.0.0.1:80 --real-server 192.168.1.2:8080 --masquerading --weight 3"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 3", "-a -t 10.0.0.1:http -r 192.168.1.2:8080 -m -w3"),
        ("-e -u 10.0.0.1:53 -r 192.168.1.2 -i", "--edit-server --udp-service 10.0.0.1:53 --real-server 192.168.1.2 --ipip"),
        ("-d -f 7 -r 192.168.1.2:0", "--delete-server --fwmark-service 7 --real-server 192.168.1.2:0"),
        ("-D -t 10.0.0.1:80", "--delete-service -t 10.0.0.1:80"),
        ("-Z", "--zero"),
        ("-C", "--clear"),
        ("-L -n", "-Ln"),
        ("-L -n", "--list --numeric"),
        ("-l -n -c", "-lnc"),
        ("-L -t 10.0.0.1:80 --stats", "--list --tcp-service 10.0.0.1:80 --stats --sort"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 --fullnat", "-a -t 10.0.0.1:80 -r 192.168.1.2:80 --fullnat -w 1"),
        ("-A -f 1 -s sh -b sh-port,sh-fallback", "-A -f 1 -s sh --sched-flags flag-2,flag-1"),
        ("-E -t 10.0.0.1:80 -s sh -b flag-1", "-E -t 10.0.0.1:80 -s sh -b sh-fallback"),
        ("-P -t 10.0.0.1:80 -z 192.168.1.250 -F dpdk0", "--add-laddr --tcp-service 10.0.0.1:80 --laddr 192.168.1.250 --ifname dpdk0"),
        ("-G", "--get-laddr"),
    ];
    for (short, long) in pairs {
        assert_eq!(action(short), action(long), "{short} vs {long}");
    }
}

#[test]
fn no_arguments_lists() {
    let none: [&str; 0] = [];
    assert_eq!(
        parse(&none).unwrap(),
        Action::List(Listing::Services {
            service: None,
            format: Format::default()
        })
    );
}

#[test]
fn edit_resets_omitted_options_to_defaults() {
    // -E without -s: wlc, no persistence, no flags, no ops.
    assert_eq!(
        command("-E -t 10.0.0.1:80"),
        Command::EditService {
            service: ServiceSpec::new(web())
        }
    );
    assert_eq!(
        command("-E -t 10.0.0.1:80 -p"),
        Command::EditService {
            service: ServiceSpec {
                persistent: Some(360),
                ..ServiceSpec::new(web())
            }
        }
    );
    // -e without a forwarding option: direct routing, weight 1, no
    // thresholds; DR forces the service port.
    assert_eq!(
        command("-e -t 10.0.0.1:80 -r 192.168.1.2:8080"),
        Command::EditReal {
            service: web(),
            real: RealSpec {
                addr: ip("192.168.1.2"),
                port: 80,
                forward: Forward::Dr,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            }
        }
    );
}

#[test]
fn persistence_and_ports() {
    let Command::AddService { service } = command("-A -t 10.0.0.1 -p") else {
        panic!()
    };
    assert_eq!(service.key, ServiceKey::tcp(ip("10.0.0.1"), 0));
    assert_eq!(service.persistent, Some(360));
    let Command::AddService { service } = command("-A -t 10.0.0.1:80 -p -M 255.255.255.0") else {
        panic!()
    };
    assert_eq!(service.persistent, Some(360));
    assert_eq!(service.netmask, Some(ip("255.255.255.0")));
    // An explicit /32 is the default.
    let Command::AddService { service } = command("-A -t 10.0.0.1:80 -p 10 -M 255.255.255.255")
    else {
        panic!()
    };
    assert_eq!(service.netmask, None);
    // Masquerading keeps the real's own port; a mark service copies 0.
    let Command::AddReal { real, .. } = command("-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m") else {
        panic!()
    };
    assert_eq!(real.port, 8080);
    let Command::AddReal { real, .. } = command("-a -f 3 -r 192.168.1.2 -g") else {
        panic!()
    };
    assert_eq!(real.port, 0);
    let Command::AddReal { real, .. } = command("-a -f 3 -r 192.168.1.2:443 -i") else {
        panic!()
    };
    assert_eq!(real.port, 443);
    assert_eq!(
        command("-d -t 10.0.0.1:80 -r 192.168.1.2"),
        Command::DeleteReal {
            service: web(),
            addr: ip("192.168.1.2"),
            port: 80,
            purge: false,
        }
    );
    let Command::AddService { service } = command("-A -u 10.0.0.1:53 -o") else {
        panic!()
    };
    assert!(service.ops);
}

#[test]
fn listings() {
    assert_eq!(
        action("-L -c -n"),
        Action::List(Listing::Connections {
            format: Format {
                numeric: true,
                ..Format::default()
            }
        })
    );
    assert_eq!(action("-L --timeout"), Action::List(Listing::Timeouts));
    assert_eq!(action("-L --daemon"), Action::List(Listing::Daemons));
    assert_eq!(
        action("-L -u 10.0.0.1:53 --rate --exact --nosort"),
        Action::List(Listing::Services {
            service: Some(ServiceKey::udp(ip("10.0.0.1"), 53)),
            format: Format {
                rate: true,
                exact: true,
                nosort: true,
                ..Format::default()
            }
        })
    );
    assert_eq!(action("-S -n"), Action::Save);
    assert_eq!(action("-R"), Action::Restore);
    assert_eq!(action("-h"), Action::Help);
    assert_eq!(action("--version"), Action::Version);
    assert_eq!(
        action("--get-laddr -t 10.0.0.1:80"),
        Action::List(Listing::Laddrs {
            service: Some(web())
        })
    );
    assert_eq!(
        command("--del-laddr -t 10.0.0.1:80 -z 192.168.1.250"),
        Command::DelLaddr {
            service: web(),
            laddr: LaddrSpec {
                addr: ip("192.168.1.250"),
                ifname: None
            }
        }
    );
    assert_eq!(
        command("-Z -t 10.0.0.1:80"),
        Command::Zero {
            service: Some(web())
        }
    );
}

#[test]
fn ipvsadm_error_messages() {
    let cases = [
        ("-A -t 10.0.0.1 -s rr", "Zero port specified for non-persistent service"),
        ("-E -t 10.0.0.1:0", "Zero port specified for non-persistent service"),
        ("-A -t 10.0.0.1:53 -o", "One-Packet Scheduling is only for UDP virtual services"),
        ("-E -t 10.0.0.1:80 -m", "Illegal 'forwarding-method' option with the 'edit-service' command"),
        ("-A -t 10.0.0.1:80 -w 3", "Illegal 'weight' option with the 'add-service' command"),
        ("-A -t 10.0.0.1:80 -r 192.168.1.2", "Illegal 'real-server' option with the 'add-service' command"),
        ("-A -t 10.0.0.1:80 -n", "Illegal 'numeric' option with the 'add-service' command"),
        ("-D -t 10.0.0.1:80 -s rr", "Illegal 'scheduler' option with the 'delete-service' command"),
        ("-a -t 10.0.0.1:80 -s rr -r 192.168.1.2", "Illegal 'scheduler' option with the 'add-server' command"),
        ("-d -t 10.0.0.1:80 -r 192.168.1.2 -w 2", "Illegal 'weight' option with the 'delete-server' command"),
        ("-C -t 10.0.0.1:80", "Illegal 'service-address' option with the 'flush' command"),
        ("-S -c", "Illegal 'connection' option with the 'save' command"),
        ("-Z -n", "Illegal 'numeric' option with the 'zero' command"),
        ("--set 1 2 3 -n", "Illegal 'numeric' option with the 'set' command"),
        ("-L -s rr", "Illegal 'scheduler' option with the 'list' command"),
        ("-A -s rr", "You need to supply the 'service-address' option for the 'add-service' command"),
        ("-D", "You need to supply the 'service-address' option for the 'delete-service' command"),
        ("-a -t 10.0.0.1:80", "You need to supply the 'real-server' option for the 'add-server' command"),
        ("-e -r 192.168.1.2 -t 10.0.0.1:80 -r 192.168.1.3", "multiple 'real-server' options specified"),
        ("-A -t 10.0.0.1:80 -t 10.0.0.2:80", "multiple 'service-address' options specified"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -m -g", "multiple 'forwarding-method' options specified"),
        ("-L -c --timeout", "The option 'timeout' conflicts with the 'connection' option in the 'list' command"),
        ("-L -t 10.0.0.1:80 -c", "The option 'service-address' conflicts with the 'connection' option in the 'list' command"),
        ("-L -c --stats", "options conflicts in the list command"),
        ("-L --timeout --persistent-conn", "options conflicts in the list command"),
        ("-A -t 10.0.0.1:80 -p 0", "invalid timeout value `0' specified"),
        ("-A -t 10.0.0.1:80 -p 2678401", "invalid timeout value `2678401' specified"),
        ("--set 1 2", "--set option requires 3 timeout values"),
        ("--set 1 2 x", "invalid timeout value `x' specified"),
        ("--set 1 2 3 4", "unexpected argument 4"),
        ("-L extra", "unexpected argument extra"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -w 65536", "illegal weight specified"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -w -1", "illegal weight specified"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -x y", "illegal u_threshold specified"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -y 2147483648", "illegal l_threshold specified"),
        ("-A -t 80 -s rr", "illegal virtual server address[:port] specified"),
        ("-A -t 10.0.0.300:80", "illegal virtual server address[:port] specified"),
        ("-A -t 10.0.0.1:99999", "illegal virtual server address[:port] specified"),
        ("-A -t 10.0.0.1:nosuchservice", "illegal virtual server address[:port] specified"),
        ("-a -t 10.0.0.1:80 -r 192.168.1", "illegal real server address[:port] specified"),
        ("-A -f 0", "invalid fwmark value `0' specified"),
        ("-A -f x1", "invalid fwmark value `x1' specified"),
        ("-A -t 10.0.0.1:80 -p -M 255.255.0", "illegal virtual server persistent mask specified"),
        ("-A -t 10.0.0.1:80 -s rr -b sh-port", "incompatible scheduler flag `sh-port'"),
        ("-A -t 10.0.0.1:80 -b sh-port", "incompatible scheduler flag `sh-port'"),
        ("-A -t 10.0.0.1:80 -s sh -b bogus", "invalid scheduler flag `bogus'"),
        ("-a -t 10.0.0.1:80 -r 192.168.1.2 -i --tun-type vxlan", "illegal tunnel type specified"),
        ("-L -A", "invalid option `-A'"),
        ("-L --bogus", "--bogus: unknown option"),
        ("-Lq", "-q: unknown option"),
        ("-A -t", "-t: missing argument"),
        ("-L --numeric=yes", "--numeric: option does not take an argument"),
        ("--add-laddr -t 10.0.0.1:80", "You need to supply the 'laddr' option for the 'add-laddr' command"),
        ("--add-laddr -t 10.0.0.1:80 -z 1.2.3", "illegal local address `1.2.3' specified"),
        ("--get-laddr -z 1.2.3.4", "Illegal 'laddr' option with the 'get-laddr' command"),
    ];
    for (line, message) in cases {
        assert_eq!(error(line), message, "{line}");
    }
}

#[test]
fn command_must_come_first() {
    for line in ["-t 10.0.0.1:80 -A", "-n", "foo"] {
        let err = parse(&words(line)).unwrap_err();
        assert!(err.try_help, "{line}");
        assert_eq!(err.message, "", "{line}");
    }
}

#[test]
fn kernel_only_and_unsupported_options_say_so() {
    let cases = [
        (
            "--start-daemon master --mcast-group ff02::81",
            "rvsadm: --mcast-group: rvs is IPv4 only for now",
        ),
        (
            "-A --sctp-service 10.0.0.1:80",
            "rvsadm: --sctp-service: rvs serves TCP and UDP only",
        ),
        ("-A -f 1 -6", "rvsadm: -6: rvs is IPv4 only for now"),
        (
            "-A -t 10.0.0.1:5060 --pe sip",
            "rvsadm: --pe: rvs has no persistence engines",
        ),
        (
            "-a -t 10.0.0.1:80 -r 192.168.1.2 -i --tun-type gue",
            "rvsadm: --tun-type: rvs tunnels with IP-in-IP only (--tun-type ipip)",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(error(line), message, "{line}");
    }
}

#[test]
fn start_daemon_takes_ipvsadm_s_options_and_defaults() {
    let start = |line: &str| match command(line) {
        Command::StartDaemon { state, daemon } => (state, daemon),
        other => panic!("{line}: {other:?}"),
    };
    // Nothing but the state: ipvsadm's eth0 and syncid 0, the kernel's
    // defaults for the rest.
    assert_eq!(
        start("--start-daemon master"),
        (
            SyncState::Master,
            SyncDaemon {
                mcast_interface: "eth0".into(),
                syncid: 0,
                sync_maxlen: 1472,
                mcast_group: ip("224.0.0.81"),
                mcast_port: 8848,
                mcast_ttl: 1,
            }
        )
    );
    assert_eq!(
        start(
            "--start-daemon backup --mcast-interface rvs-client --syncid 255 --sync-maxlen 65507 \
             --mcast-group 239.0.0.1 --mcast-port 1 --mcast-ttl 255"
        ),
        (
            SyncState::Backup,
            SyncDaemon {
                mcast_interface: "rvs-client".into(),
                syncid: 255,
                sync_maxlen: 65507,
                mcast_group: ip("239.0.0.1"),
                mcast_port: 1,
                mcast_ttl: 255,
            }
        )
    );
    // popt's spellings: `--opt=value`, and the options in any order.
    assert_eq!(
        start("--start-daemon=backup --syncid=3 --mcast-interface=eth1").1,
        SyncDaemon {
            syncid: 3,
            ..SyncDaemon::on("eth1")
        }
    );
    // ipvsadm checks --sync-maxlen against a datagram only; the
    // configuration's rule (at least a header and a record) is rvsd's.
    assert_eq!(
        start("--start-daemon master --sync-maxlen 1").1.sync_maxlen,
        1
    );
    assert_eq!(
        command("--stop-daemon backup"),
        Command::StopDaemon {
            state: SyncState::Backup
        }
    );
    // ipvsadm allows a syncid with --stop-daemon and with -L; it changes
    // nothing.
    assert_eq!(
        command("--stop-daemon master --syncid 4"),
        Command::StopDaemon {
            state: SyncState::Master
        }
    );
    for line in [
        "-L --daemon",
        "-l --daemon",
        "--list --daemon",
        "-L --daemon --syncid 3",
    ] {
        assert_eq!(action(line), Action::List(Listing::Daemons), "{line}");
    }
}

#[test]
fn daemon_errors_are_ipvsadm_s() {
    let cases = [
        (
            "--start-daemon primary",
            "illegal start-daemon parameter specified",
        ),
        (
            "--start-daemon Master",
            "illegal start-daemon parameter specified",
        ),
        // ipvsadm's words for --stop-daemon, its typo included.
        ("--stop-daemon both", "illegal start_daemon specified"),
        ("--start-daemon", "--start-daemon: missing argument"),
        (
            "--start-daemon master --syncid 256",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --syncid -1",
            "illegal syncid specified",
        ),
        (
            "--start-daemon master --sync-maxlen 0",
            "illegal sync-maxlen specified",
        ),
        (
            "--start-daemon master --sync-maxlen 65508",
            "illegal sync-maxlen specified",
        ),
        (
            "--start-daemon master --mcast-port 0",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-port 65536",
            "illegal mcast-port specified",
        ),
        (
            "--start-daemon master --mcast-ttl 0",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --mcast-ttl x",
            "illegal mcast-ttl specified",
        ),
        (
            "--start-daemon master --mcast-group 10.0.0.1",
            "invalid IPv4 mcast-group `10.0.0.1'",
        ),
        (
            "--start-daemon master --mcast-group 224.0.0",
            "invalid IPv4 mcast-group `224.0.0'",
        ),
        (
            "--start-daemon master --mcast-group ::zz",
            "invalid IPv6 mcast-group `::zz'",
        ),
        (
            "--start-daemon master --mcast-group fe80::1",
            "invalid IPv6 mcast-group `fe80::1'",
        ),
        (
            "--start-daemon master --syncid 1 --syncid 2",
            "multiple 'syncid' options specified",
        ),
        (
            "--start-daemon master -n",
            "Illegal 'numeric' option with the 'start-daemon' command",
        ),
        (
            "--start-daemon master -t 10.0.0.1:80",
            "Illegal 'service-address' option with the 'start-daemon' command",
        ),
        (
            "--stop-daemon master --mcast-interface eth0",
            "Illegal 'mcast-interface' option with the 'stop-daemon' command",
        ),
        (
            "--stop-daemon master --mcast-ttl 2",
            "Illegal 'mcast-ttl' option with the 'stop-daemon' command",
        ),
        (
            "-L --mcast-group 224.0.0.81",
            "Illegal 'mcast-group' option with the 'list' command",
        ),
        (
            "-A -t 10.0.0.1:80 --syncid 1",
            "Illegal 'syncid' option with the 'add-service' command",
        ),
        (
            "-L --daemon -c",
            "The option 'daemon' conflicts with the 'connection' option in the 'list' command",
        ),
        (
            "-L --daemon --stats",
            "options conflicts in the list command",
        ),
        (
            "-L --daemon --persistent-conn",
            "options conflicts in the list command",
        ),
        ("--start-daemon master extra", "unexpected argument extra"),
        (
            "--start-daemon master --start-daemon backup",
            "invalid option `--start-daemon'",
        ),
    ];
    for (line, message) in cases {
        assert_eq!(error(line), message, "{line}");
    }
    // The state is read with the command, before any option, as ipvsadm.
    assert_eq!(
        error("--start-daemon primary --syncid 999"),
        "illegal start-daemon parameter specified"
    );
}

#[test]
fn daemon_listing_is_ipvsadm_s_line_per_daemon() {
    let daemons = [
        DaemonInfo {
            state: SyncState::Master,
            daemon: SyncDaemon {
                syncid: 1,
                ..SyncDaemon::on("eth0")
            },
        },
        DaemonInfo {
            state: SyncState::Backup,
            daemon: SyncDaemon {
                syncid: 0,
                sync_maxlen: 8972,
                mcast_group: ip("239.255.0.1"),
                mcast_port: 9000,
                mcast_ttl: 3,
                ..SyncDaemon::on("bond0.100")
            },
        },
    ];
    let listing = format::daemons(&daemons);
    assert_eq!(
        listing,
        "master sync daemon (mcast=eth0, syncid=1, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n\
         backup sync daemon (mcast=bond0.100, syncid=0, maxlen=8972, group=239.255.0.1, port=9000, ttl=3)\n"
    );
    // What ipvsadm prints on a kernel that reports no more than interface
    // and syncid starts every line the same.
    for (line, daemon) in listing.lines().zip(&daemons) {
        let plain = format!(
            "{} sync daemon (mcast={}, syncid={}",
            daemon.state, daemon.daemon.mcast_interface, daemon.daemon.syncid
        );
        assert!(line.starts_with(&plain), "{line}");
    }
    assert_eq!(format::daemons(&[]), "", "no daemon: no line, as ipvsadm");
}

#[test]
fn restore_lines() {
    assert_eq!(parse_restore_line("").unwrap(), None);
    assert_eq!(parse_restore_line("   # a comment").unwrap(), None);
    assert_eq!(
        parse_restore_line("-A -t 10.0.0.1:80 -s rr\n").unwrap(),
        Some(Action::Apply(Command::AddService {
            service: ServiceSpec {
                scheduler: "rr".into(),
                ..ServiceSpec::new(web())
            }
        }))
    );
    // -R inside -R is refused, as ipvsadm refuses it.
    assert!(parse_restore_line("-R").unwrap_err().try_help);
}

/// A configuration exercising every option `-S` writes.
fn saved_fixture() -> Vec<ServiceInfo> {
    let real = |addr: &str, port, forward, weight, u_threshold, l_threshold| RealInfo {
        spec: RealSpec {
            addr: ip(addr),
            port,
            forward,
            weight,
            u_threshold,
            l_threshold,
        },
        active_conns: 0,
        inact_conns: 0,
        persist_conns: 0,
        stats: Stats::default(),
        rates: Rates::default(),
    };
    let info = |spec, reals, laddrs| ServiceInfo {
        spec,
        stats: Stats::default(),
        rates: Rates::default(),
        reals,
        laddrs,
    };
    vec![
        info(
            ServiceSpec {
                scheduler: "wrr".into(),
                persistent: Some(360),
                netmask: Some(ip("255.255.255.0")),
                ..ServiceSpec::new(web())
            },
            vec![
                real("192.168.1.2", 8080, Forward::Nat, 3, 100, 10),
                real("192.168.1.3", 80, Forward::Dr, 0, 0, 0),
            ],
            vec![],
        ),
        info(
            ServiceSpec {
                scheduler: "rr".into(),
                ops: true,
                ..ServiceSpec::new(ServiceKey::udp(ip("10.0.0.1"), 53))
            },
            vec![real("192.168.1.2", 53, Forward::Tun, 1, 0, 5)],
            vec![],
        ),
        info(
            ServiceSpec {
                scheduler: "mh".into(),
                flags: vec!["mh-fallback".into(), "mh-port".into()],
                ..ServiceSpec::new(ServiceKey::tcp(ip("10.0.0.2"), 443))
            },
            vec![real("192.168.1.9", 8443, Forward::FullNat, 65535, 0, 0)],
            vec![
                LaddrSpec {
                    addr: ip("192.168.1.250"),
                    ifname: Some("dpdk0".into()),
                },
                LaddrSpec {
                    addr: ip("192.168.1.251"),
                    ifname: None,
                },
            ],
        ),
        info(
            ServiceSpec {
                scheduler: "sh".into(),
                flags: vec!["sh-port".into()],
                persistent: Some(60),
                ..ServiceSpec::new(ServiceKey::Mark(5))
            },
            vec![real("192.168.1.4", 0, Forward::Tun, 1, 0, 0)],
            vec![],
        ),
    ]
}

#[test]
fn save_output_restores_the_same_commands() {
    let services = saved_fixture();
    let saved = format::save(&services);
    let restored: Vec<Command> = saved
        .lines()
        .map(|line| match parse_restore_line(line) {
            Ok(Some(Action::Apply(cmd))) => cmd,
            other => panic!("{line}: {other:?}"),
        })
        .collect();
    let mut expected = Vec::new();
    let mut sorted: Vec<&ServiceInfo> = services.iter().collect();
    sorted.sort_by_key(|info| info.spec.key.sort_key());
    for info in sorted {
        expected.push(Command::AddService {
            service: info.spec.clone(),
        });
        // Local addresses before the reals: a FullNAT real needs one.
        for laddr in &info.laddrs {
            expected.push(Command::AddLaddr {
                service: info.spec.key,
                laddr: laddr.clone(),
            });
        }
        let mut reals: Vec<&RealInfo> = info.reals.iter().collect();
        reals.sort_by_key(|real| (u32::from(real.spec.addr), real.spec.port));
        for real in reals {
            expected.push(Command::AddReal {
                service: info.spec.key,
                real: real.spec.clone(),
            });
        }
    }
    assert_eq!(restored, expected, "saved:\n{saved}");
}

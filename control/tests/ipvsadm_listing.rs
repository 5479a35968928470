//! Golden tests of rvsadm's listings against ipvsadm 1.31's formats.
//!
//! The expected texts were rendered independently with ipvsadm's own
//! printf format strings (print_title, print_service_entry, print_largenum,
//! list_conn) and are compared byte for byte, trailing spaces included.

use rvs_control::ipvsadm::{format, Format};
use rvs_control::proto::{
    ConnEntry, Forward, LaddrEntry, LaddrInfo, LaddrSpec, Protocol, Rates, RealInfo, RealSpec,
    ServiceInfo, ServiceKey, ServiceSpec, Stats, Timeouts,
};
use std::net::Ipv4Addr;

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

fn stats(values: [u64; 5]) -> Stats {
    Stats {
        conns: values[0],
        in_pkts: values[1],
        out_pkts: values[2],
        in_bytes: values[3],
        out_bytes: values[4],
    }
}

fn rates(values: [u64; 5]) -> Rates {
    Rates {
        cps: values[0],
        inpps: values[1],
        outpps: values[2],
        inbps: values[3],
        outbps: values[4],
    }
}

#[allow(clippy::too_many_arguments)]
fn real(
    addr: &str,
    port: u16,
    forward: Forward,
    weight: u32,
    thresholds: (u32, u32),
    conns: (u32, u32, u32),
    stat: [u64; 5],
    rate: [u64; 5],
) -> RealInfo {
    RealInfo {
        spec: RealSpec {
            addr: ip(addr),
            port,
            forward,
            weight,
            u_threshold: thresholds.0,
            l_threshold: thresholds.1,
        },
        active_conns: conns.0,
        inact_conns: conns.1,
        persist_conns: conns.2,
        stats: stats(stat),
        rates: rates(rate),
    }
}

/// The services in daemon order (not sorted), mirroring the generator.
fn fixture() -> Vec<ServiceInfo> {
    let zero = [0; 5];
    let mut web = ServiceSpec::new(ServiceKey::tcp(ip("10.0.0.1"), 80));
    web.scheduler = "wrr".into();
    web.persistent = Some(360);
    let mut dns = ServiceSpec::new(ServiceKey::udp(ip("10.0.0.1"), 53));
    dns.scheduler = "rr".into();
    dns.ops = true;
    let mut mark = ServiceSpec::new(ServiceKey::Mark(5));
    mark.scheduler = "sh".into();
    mark.flags = vec!["sh-port".into()];
    mark.persistent = Some(60);
    mark.netmask = Some(ip("255.255.255.0"));
    let mut tls = ServiceSpec::new(ServiceKey::tcp(ip("10.0.0.2"), 443));
    tls.scheduler = "mh".into();
    tls.flags = vec!["mh-fallback".into(), "mh-port".into()];
    vec![
        ServiceInfo {
            spec: web,
            stats: stats([
                1234,
                99_999_999,
                100_000_000,
                123_456_789_012,
                99_999_999_999_999,
            ]),
            rates: rates([5, 100, 200, 300_000_000, 45_000_000_000]),
            reals: vec![
                real(
                    "192.168.1.3",
                    80,
                    Forward::Nat,
                    2,
                    (0, 0),
                    (0, 1, 4),
                    [1, 2, 3, 4, 5],
                    zero,
                ),
                real(
                    "192.168.1.2",
                    80,
                    Forward::Nat,
                    1,
                    (100, 50),
                    (3, 12, 7),
                    [
                        1233,
                        99_999_997,
                        1_999_999_999,
                        123_456_789_008,
                        99_999_999_999_995,
                    ],
                    [123_456_789, 100, 200, 300_000_000, 45_000_000_000],
                ),
            ],
            laddrs: vec![],
        },
        ServiceInfo {
            spec: dns,
            stats: Stats::default(),
            rates: Rates::default(),
            reals: vec![real(
                "192.168.1.2",
                53,
                Forward::Dr,
                1,
                (0, 0),
                (0, 0, 0),
                zero,
                zero,
            )],
            laddrs: vec![],
        },
        ServiceInfo {
            spec: mark,
            stats: Stats::default(),
            rates: Rates::default(),
            reals: vec![real(
                "192.168.1.4",
                0,
                Forward::Tun,
                1,
                (0, 0),
                (0, 0, 0),
                zero,
                zero,
            )],
            laddrs: vec![],
        },
        ServiceInfo {
            spec: tls,
            stats: Stats::default(),
            rates: Rates::default(),
            reals: vec![real(
                "192.168.1.9",
                8443,
                Forward::FullNat,
                65535,
                (0, 0),
                (0, 0, 0),
                zero,
                zero,
            )],
            laddrs: vec![
                LaddrSpec {
                    addr: ip("192.168.1.250"),
                    ifname: Some("dpdk0".into()),
                },
                LaddrSpec {
                    addr: ip("192.168.1.251"),
                    ifname: None,
                },
            ],
        },
    ]
}

fn numeric() -> Format {
    Format {
        numeric: true,
        ..Format::default()
    }
}

#[test]
fn list_numeric() {
    assert_eq!(format::services(&fixture(), &numeric()), LIST);
}

#[test]
fn list_nosort_keeps_daemon_order() {
    let format = Format {
        nosort: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_NOSORT);
}

#[test]
fn list_stats() {
    let format = Format {
        stats: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_STATS);
}

#[test]
fn list_stats_exact() {
    let format = Format {
        stats: true,
        exact: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_STATS_EXACT);
}

#[test]
fn list_rate() {
    let format = Format {
        rate: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_RATE);
}

#[test]
fn list_thresholds() {
    let format = Format {
        thresholds: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_THRESHOLDS);
}

#[test]
fn list_persistent_conn() {
    let format = Format {
        persistent_conn: true,
        ..numeric()
    };
    assert_eq!(format::services(&fixture(), &format), LIST_PERSISTENT_CONN);
}

#[test]
fn list_one_service_has_no_version_line() {
    let services = fixture();
    assert_eq!(format::service(&services[0], &numeric()), LIST_ONE);
    let format = Format {
        stats: true,
        ..numeric()
    };
    assert_eq!(format::service(&services[0], &format), LIST_ONE_STATS);
}

#[test]
fn list_empty_table() {
    assert_eq!(
        format::services(&[], &numeric()),
        concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        )
    );
}

#[test]
fn largenum_boundaries() {
    let cases: &[(u64, &str, &str)] = &[
        (0, "        0", "        0"),
        (99_999_999, " 99999999", " 99999999"),
        (100_000_000, "  100000K", " 100000000"),
        (999_999_999, "  999999K", " 999999999"),
        (1_000_000_000, "    1000M", " 1000000000"),
        (99_999_999_999, "   99999M", " 99999999999"),
        (100_000_000_000, "     100G", " 100000000000"),
        (99_999_999_999_999, "   99999G", " 99999999999999"),
        (100_000_000_000_000, "     100T", " 100000000000000"),
        (u64::MAX, "18446744T", " 18446744073709551615"),
    ];
    for (value, short, exact) in cases {
        assert_eq!(format::largenum(*value, false), *short, "{value}");
        assert_eq!(format::largenum(*value, true), *exact, "{value} exact");
    }
}

fn conn(
    protocol: Protocol,
    expires: u32,
    state: &str,
    client: (&str, u16),
    vip: (&str, u16),
    real: (&str, u16),
) -> ConnEntry {
    ConnEntry {
        protocol,
        client: ip(client.0),
        client_port: client.1,
        vip: ip(vip.0),
        vport: vip.1,
        real: ip(real.0),
        real_port: real.1,
        state: state.into(),
        expires_secs: expires,
    }
}

#[test]
fn list_connections() {
    let entries = [
        conn(
            Protocol::Tcp,
            899,
            "ESTABLISHED",
            ("10.0.0.2", 40000),
            ("10.0.0.1", 80),
            ("192.168.1.2", 80),
        ),
        conn(
            Protocol::Udp,
            6000,
            "UDP",
            ("10.0.0.200", 65535),
            ("10.0.0.1", 53),
            ("192.168.1.2", 53),
        ),
        conn(
            Protocol::Tcp,
            59,
            "NONE",
            ("10.0.0.0", 0),
            ("10.0.0.1", 80),
            ("192.168.1.3", 80),
        ),
    ];
    let mut text = format::connections_title(&numeric());
    for entry in &entries {
        text.push_str(&format::connection(entry));
    }
    assert_eq!(text, CONNECTIONS);
    let format = Format {
        persistent_conn: true,
        ..numeric()
    };
    assert_eq!(
        format::connections_title(&format),
        CONNECTIONS_PERSISTENT_TITLE
    );
}

#[test]
fn list_timeouts() {
    let timeouts = Timeouts {
        tcp: 900,
        tcpfin: 120,
        udp: 300,
    };
    assert_eq!(
        format::timeouts(&timeouts),
        "Timeout (tcp tcpfin udp): 900 120 300\n"
    );
}

#[test]
fn save_numeric() {
    assert_eq!(
        format::save(&fixture()),
        concat!(
            "-A -t 10.0.0.1:80 -s wrr -p 360\n",
            "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1 -x 100 -y 50\n",
            "-a -t 10.0.0.1:80 -r 192.168.1.3:80 -m -w 2\n",
            "-A -t 10.0.0.2:443 -s mh -b mh-fallback,mh-port\n",
            // Local addresses first: `-R` applies line by line, and a
            // FullNAT real needs one.
            "--add-laddr -z 192.168.1.250 -t 10.0.0.2:443 -F dpdk0\n",
            "--add-laddr -z 192.168.1.251 -t 10.0.0.2:443\n",
            "-a -t 10.0.0.2:443 -r 192.168.1.9:8443 --fullnat -w 65535\n",
            "-A -u 10.0.0.1:53 -s rr -o\n",
            "-a -u 10.0.0.1:53 -r 192.168.1.2:53 -g -w 1\n",
            "-A -f 5 -s sh -p 60 -M 255.255.255.0 -b sh-port\n",
            "-a -f 5 -r 192.168.1.4:0 -i -w 1 --tun-type ipip\n",
        )
    );
}

#[test]
fn save_seed_script_service() {
    let mut spec = ServiceSpec::new(ServiceKey::tcp(ip("10.0.0.1"), 80));
    spec.scheduler = "rr".into();
    spec.persistent = Some(360);
    let info = ServiceInfo {
        spec,
        stats: Stats::default(),
        rates: Rates::default(),
        reals: vec![real(
            "192.168.1.2",
            80,
            Forward::Nat,
            1,
            (0, 0),
            (0, 0, 0),
            [0; 5],
            [0; 5],
        )],
        laddrs: vec![],
    };
    assert_eq!(
        format::save(&[info]),
        "-A -t 10.0.0.1:80 -s rr -p 360\n-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 1\n"
    );
}

#[test]
fn list_laddrs() {
    let info = LaddrInfo {
        service: ServiceKey::tcp(ip("10.0.0.2"), 443),
        laddrs: vec![LaddrEntry {
            addr: ip("192.168.1.250"),
            ifname: Some("dpdk0".into()),
            conflicts: 3,
            conns: 1200,
        }],
    };
    assert_eq!(
        format::laddrs(&[info]),
        concat!(
            "VIP:VPORT            TOTAL    SNAT_IP              CONFLICTS  CONNS\n",
            "10.0.0.2:443         1\n",
            "                              192.168.1.250        3          1200\n",
        )
    );
}

const LIST: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    "TCP  10.0.0.1:80 wrr persistent 360\n",
    "  -> 192.168.1.2:80               Masq    1      3          12        \n",
    "  -> 192.168.1.3:80               Masq    2      0          1         \n",
    "TCP  10.0.0.2:443 mh (mh-fallback,mh-port)\n",
    "  -> 192.168.1.9:8443             FullNat 65535  0          0         \n",
    "UDP  10.0.0.1:53 rr ops\n",
    "  -> 192.168.1.2:53               Route   1      0          0         \n",
    "FWM  5 sh (sh-port) persistent 60 mask 255.255.255.0\n",
    "  -> 192.168.1.4:0                Tunnel  1      0          0         \n",
);

const LIST_NOSORT: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    "TCP  10.0.0.1:80 wrr persistent 360\n",
    "  -> 192.168.1.3:80               Masq    2      0          1         \n",
    "  -> 192.168.1.2:80               Masq    1      3          12        \n",
    "UDP  10.0.0.1:53 rr ops\n",
    "  -> 192.168.1.2:53               Route   1      0          0         \n",
    "FWM  5 sh (sh-port) persistent 60 mask 255.255.255.0\n",
    "  -> 192.168.1.4:0                Tunnel  1      0          0         \n",
    "TCP  10.0.0.2:443 mh (mh-fallback,mh-port)\n",
    "  -> 192.168.1.9:8443             FullNat 65535  0          0         \n",
);

const LIST_STATS: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80                      1234 99999999  100000K     123G   99999G\n",
    "  -> 192.168.1.2:80                   1233 99999997    1999M     123G   99999G\n",
    "  -> 192.168.1.3:80                      1        2        3        4        5\n",
    "TCP  10.0.0.2:443                        0        0        0        0        0\n",
    "  -> 192.168.1.9:8443                    0        0        0        0        0\n",
    "UDP  10.0.0.1:53                         0        0        0        0        0\n",
    "  -> 192.168.1.2:53                      0        0        0        0        0\n",
    "FWM  5                                   0        0        0        0        0\n",
    "  -> 192.168.1.4:0                       0        0        0        0        0\n",
);

const LIST_STATS_EXACT: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80                      1234 99999999 100000000 123456789012 99999999999999\n",
    "  -> 192.168.1.2:80                   1233 99999997 1999999999 123456789008 99999999999995\n",
    "  -> 192.168.1.3:80                      1        2        3        4        5\n",
    "TCP  10.0.0.2:443                        0        0        0        0        0\n",
    "  -> 192.168.1.9:8443                    0        0        0        0        0\n",
    "UDP  10.0.0.1:53                         0        0        0        0        0\n",
    "  -> 192.168.1.2:53                      0        0        0        0        0\n",
    "FWM  5                                   0        0        0        0        0\n",
    "  -> 192.168.1.4:0                       0        0        0        0        0\n",
);

const LIST_RATE: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80                         5      100      200  300000K   45000M\n",
    "  -> 192.168.1.2:80               123456789      100      200  300000K   45000M\n",
    "  -> 192.168.1.3:80                      0        0        0        0        0\n",
    "TCP  10.0.0.2:443                        0        0        0        0        0\n",
    "  -> 192.168.1.9:8443                    0        0        0        0        0\n",
    "UDP  10.0.0.1:53                         0        0        0        0        0\n",
    "  -> 192.168.1.2:53                      0        0        0        0        0\n",
    "FWM  5                                   0        0        0        0        0\n",
    "  -> 192.168.1.4:0                       0        0        0        0        0\n",
);

const LIST_THRESHOLDS: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80 wrr persistent 360\n",
    "  -> 192.168.1.2:80               100        50         3          12        \n",
    "  -> 192.168.1.3:80               0          0          0          1         \n",
    "TCP  10.0.0.2:443 mh (mh-fallback,mh-port)\n",
    "  -> 192.168.1.9:8443             0          0          0          0         \n",
    "UDP  10.0.0.1:53 rr ops\n",
    "  -> 192.168.1.2:53               0          0          0          0         \n",
    "FWM  5 sh (sh-port) persistent 60 mask 255.255.255.0\n",
    "  -> 192.168.1.4:0                0          0          0          0         \n",
);

const LIST_PERSISTENT_CONN: &str = concat!(
    "IP Virtual Server version 1.2.1 (size=4096)\n",
    "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80 wrr persistent 360\n",
    "  -> 192.168.1.2:80               1         7           3          12        \n",
    "  -> 192.168.1.3:80               2         4           0          1         \n",
    "TCP  10.0.0.2:443 mh (mh-fallback,mh-port)\n",
    "  -> 192.168.1.9:8443             65535     0           0          0         \n",
    "UDP  10.0.0.1:53 rr ops\n",
    "  -> 192.168.1.2:53               1         0           0          0         \n",
    "FWM  5 sh (sh-port) persistent 60 mask 255.255.255.0\n",
    "  -> 192.168.1.4:0                1         0           0          0         \n",
);

const LIST_ONE: &str = concat!(
    "Prot LocalAddress:Port Scheduler Flags\n",
    "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
    "TCP  10.0.0.1:80 wrr persistent 360\n",
    "  -> 192.168.1.2:80               Masq    1      3          12        \n",
    "  -> 192.168.1.3:80               Masq    2      0          1         \n",
);

const LIST_ONE_STATS: &str = concat!(
    "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
    "  -> RemoteAddress:Port\n",
    "TCP  10.0.0.1:80                      1234 99999999  100000K     123G   99999G\n",
    "  -> 192.168.1.2:80                   1233 99999997    1999M     123G   99999G\n",
    "  -> 192.168.1.3:80                      1        2        3        4        5\n",
);

const CONNECTIONS: &str = concat!(
    "IPVS connection entries\n",
    "pro expire state       source             virtual            destination\n",
    "TCP 14:59  ESTABLISHED 10.0.0.2:40000     10.0.0.1:80        192.168.1.2:80\n",
    "UDP 100:00 UDP         10.0.0.200:65535   10.0.0.1:53        192.168.1.2:53\n",
    "TCP 00:59  NONE        10.0.0.0:0         10.0.0.1:80        192.168.1.3:80\n",
);

const CONNECTIONS_PERSISTENT_TITLE: &str = concat!(
    "IPVS connection entries\n",
    "pro expire state       source             virtual            destination        pe name          pe_data\n",
);

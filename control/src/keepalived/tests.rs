use super::*;
use crate::config::{
    CheckKind, Forward, Protocol, SchedulerKind, Seconds, SorryServer, StatusCodes, Sync,
    SyncDaemon, Url,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Component;

/// Files held in memory, by path.
struct Memory(BTreeMap<PathBuf, String>);

impl Memory {
    fn new(files: &[(&str, &str)]) -> Self {
        Memory(
            files
                .iter()
                .map(|(path, text)| (normal(Path::new(path)), (*text).to_owned()))
                .collect(),
        )
    }
}

/// `path` without `.` components and with `..` applied.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Files for Memory {
    fn read(&self, path: &Path) -> Result<String, String> {
        self.0.get(&normal(path)).cloned().ok_or_else(|| {
            format!(
                "{}: cannot read: No such file or directory (os error 2)",
                path.display()
            )
        })
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, String> {
        let dir = normal(dir);
        Ok(self
            .0
            .keys()
            .filter(|path| path.parent() == Some(dir.as_path()))
            .filter_map(|path| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .collect())
    }

    fn identity(&self, path: &Path) -> PathBuf {
        normal(path)
    }
}

/// The import of `k.conf` among `files`.
fn import_of(files: &[(&str, &str)]) -> Result<Import, Refusal> {
    import_from(&Memory::new(files), Path::new("k.conf"))
}

/// The refusal of the one file `k.conf` holding `text`.
fn refusal(text: &str) -> String {
    match import_of(&[("k.conf", text)]) {
        Ok(import) => panic!("imported: {:#?}", import.services),
        Err(err) => err.to_string(),
    }
}

/// The running configuration of the NAT lab: a client port on
/// 10.99.1.0/24, a real port on 10.99.2.0/24, mark group 7.
fn running() -> Config {
    let text = "\
ports:
  - { name: client, device: net_null0, addresses: [10.99.1.1/24] }
  - { name: real, device: net_null1, addresses: [10.99.2.1/24] }
workers:
  - { lcore: 1, queues: [{ port: client, queue: 0 }, { port: real, queue: 0 }] }
marks:
  - mark: 7
    matches:
      - { vip: 10.99.1.110, port: 80, protocol: tcp }
      - { vip: 10.99.1.110, port: 443, protocol: tcp }
services:
  - { vip: 10.99.1.100, port: 22, protocol: tcp, reals: [{ address: 10.99.2.30 }] }
";
    let list = CpuList::parse("0-3").expect("a CPU list");
    let cpus = HostCpus {
        online: list.clone(),
        allowed: list,
    };
    config::parse_on(text, "running.yaml", &cpus).unwrap_or_else(|err| panic!("{err}"))
}

const OPERATOR: &str = r#"! Configuration File for keepalived
global_defs {
    router_id LVS_A
    notification_email {
        ops@example.com
    }
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress {
        10.99.1.100
    }
}

virtual_server 10.99.1.100 80 {
    delay_loop 6
    lb_algo wrr
    lb_kind NAT
    persistence_timeout 300
    protocol TCP
    retry 2

    real_server 10.99.2.11 80 {
        weight 3
        inhibit_on_failure
        TCP_CHECK {
            connect_timeout 3
        }
    }
    real_server 10.99.2.12 8080 {
        weight 1
        notify_down "/usr/local/bin/page ops r2"
        TCP_CHECK {
            connect_port 8080
            connect_timeout 2.5
            retry 4
        }
    }
}

include conf.d/*.conf
"#;

const WEB: &str = r#"# The web service, DR to the reals on the client segment.
virtual_server 10.99.1.100 443
{
    lb_algo rr
    lb_kind DR
    persistence_granularity 255.255.255.0
    sorry_server 10.99.1.50 443
    sorry_server_inhibit
    quorum 2
    hysteresis 1
    alpha
    quorum_down "/usr/local/bin/page ops quorum"
    virtualhost www.example.com
    real_server 10.99.1.11 443 {
        HTTP_GET {
            url {
                path /health
                status_code 200 300-302
                digest 9B3A0C85A887A256D6939DA88AABD8CD
            }
            url { path /ready }
            delay_before_retry 2
        }
    }
    real_server 10.99.1.12 443 {
        SSL_GET {
            url { path / }
            virtualhost other.example.com
            enable_sni
        }
    }
}
"#;

const DNS: &str = r#"virtual_server_group DNS {
    10.99.1.101 53
    10.99.1.102-103 53   ! two more VIPs
    fwmark 7
}

virtual_server group DNS {
    lb_algo sh
    sh-port
    protocol UDP
    ha_suspend
    real_server 10.99.2.21 53 {
        UDP_CHECK {
            payload 00 01 0a
            require_reply 00
        }
        MISC_CHECK {
            misc_path "/usr/local/bin/dig-check 10.99.2.21"
            misc_timeout 5
            misc_dynamic
        }
    }
}
"#;

fn operator_import() -> Import {
    import_of(&[
        ("k.conf", OPERATOR),
        ("conf.d/web.conf", WEB),
        ("conf.d/dns.conf", DNS),
        ("conf.d/notes.txt", "not included: no .conf"),
    ])
    .unwrap_or_else(|err| panic!("{err}"))
}

#[test]
fn a_realistic_operator_file_maps_onto_rvs_services() {
    let import = operator_import();
    let s = &import.services;
    // dns.conf is read before web.conf (name order); the group gives one
    // service per VIP and one for its fwmark.
    let names: Vec<String> = s
        .iter()
        .map(|s| match s.mark {
            Some(mark) => format!("fwmark {mark}"),
            None => format!("{:?} {}:{}", s.protocol.unwrap(), s.vip, s.port),
        })
        .collect();
    assert_eq!(
        names,
        [
            "Tcp 10.99.1.100:80",
            "Udp 10.99.1.101:53",
            "Udp 10.99.1.102:53",
            "Udp 10.99.1.103:53",
            "fwmark 7",
            "Tcp 10.99.1.100:443",
        ]
    );

    // NAT, persistence, TCP_CHECKs inheriting delay_loop and retry.
    let nat = &s[0];
    assert_eq!(nat.scheduler, SchedulerKind::Wrr);
    assert_eq!((nat.persistent, nat.netmask), (Some(300), None));
    let (r1, r2) = (&nat.reals[0], &nat.reals[1]);
    assert_eq!(
        (r1.address, r1.port, r1.weight, r1.forward),
        (Ipv4Addr::new(10, 99, 2, 11), None, 3, Forward::Nat)
    );
    assert!(r1.inhibit_on_failure && !r2.inhibit_on_failure);
    assert_eq!((r2.port, r2.weight), (Some(8080), 1));
    assert_eq!(
        r2.notify_down.as_deref(),
        Some("/usr/local/bin/page ops r2")
    );
    let c1 = &r1.checks[0];
    assert_eq!(c1.kind, CheckKind::TcpCheck);
    assert_eq!(
        (c1.delay_loop, c1.connect_timeout, c1.retry),
        (Some(Seconds::secs(6)), Some(Seconds::secs(3)), Some(2))
    );
    let c2 = &r2.checks[0];
    assert_eq!(
        (c2.connect_port, c2.connect_timeout, c2.retry),
        (Some(8080), Some(Seconds(2500)), Some(4))
    );

    // The group: UDP, sh with sh-port, UDP_CHECK and MISC_CHECK.
    for dns in &s[1..4] {
        assert_eq!(dns.protocol, Some(Protocol::Udp));
        assert_eq!(
            (dns.scheduler, dns.flags.as_slice()),
            (SchedulerKind::Sh, &["sh-port".to_owned()][..])
        );
        let real = &dns.reals[0];
        assert_eq!(real.port, None, "the real is on the service's port");
        let [udp, misc] = real.checks.as_slice() else {
            panic!("{:?}", real.checks)
        };
        assert_eq!(
            (
                udp.kind,
                udp.payload.as_deref(),
                udp.require_reply,
                udp.reply.as_deref()
            ),
            (CheckKind::UdpCheck, Some("00010a"), true, Some("00"))
        );
        assert_eq!(
            (
                misc.kind,
                misc.misc_path.as_deref(),
                misc.misc_timeout,
                misc.misc_dynamic
            ),
            (
                CheckKind::MiscCheck,
                Some("/usr/local/bin/dig-check 10.99.2.21"),
                Some(Seconds::secs(5)),
                true
            )
        );
    }
    let mark = &s[4];
    assert_eq!(
        (mark.vip, mark.port, mark.protocol),
        (Ipv4Addr::UNSPECIFIED, 0, None)
    );
    assert_eq!(mark.reals[0].port, Some(53));

    // DR, a sorry server, quorum, HTTP_GET with codes, ranges and a digest.
    let web = &s[5];
    assert_eq!(web.scheduler, SchedulerKind::Rr);
    assert_eq!(
        (web.persistent, web.netmask),
        (Some(360), Some(Ipv4Addr::new(255, 255, 255, 0))),
        "a granularity makes the service persistent, as in keepalived"
    );
    assert_eq!(
        web.sorry_server,
        Some(SorryServer {
            address: Ipv4Addr::new(10, 99, 1, 50),
            port: None,
            forward: Some(Forward::Dr),
        })
    );
    assert!(web.sorry_server_inhibit && web.alpha && !web.omega);
    assert_eq!((web.quorum, web.hysteresis), (2, 1));
    assert_eq!(
        web.quorum_down.as_deref(),
        Some("/usr/local/bin/page ops quorum")
    );
    assert!(web.reals.iter().all(|r| r.forward == Forward::Dr));
    let http = &web.reals[0].checks[0];
    assert_eq!(http.kind, CheckKind::HttpGet);
    assert_eq!(http.delay_before_retry, Some(Seconds::secs(2)));
    assert_eq!(
        http.url,
        vec![
            Url {
                path: "/health".into(),
                digest: Some("9b3a0c85a887a256d6939da88aabd8cd".into()),
                status_code: vec![
                    StatusCodes {
                        low: 200,
                        high: 200
                    },
                    StatusCodes {
                        low: 300,
                        high: 302
                    }
                ],
                virtualhost: Some("www.example.com".into()),
            },
            Url {
                path: "/ready".into(),
                digest: None,
                status_code: Vec::new(),
                virtualhost: Some("www.example.com".into()),
            },
        ]
    );
    let ssl = &web.reals[1].checks[0];
    assert_eq!(ssl.kind, CheckKind::SslGet);
    assert!(ssl.enable_sni);
    assert_eq!(ssl.url[0].virtualhost.as_deref(), Some("other.example.com"));
}

#[test]
fn skipped_blocks_and_no_effect_keywords_are_noted() {
    let import = operator_import();
    assert_eq!(
        import.notes,
        [
            "k.conf:2: global_defs ignored: keepalived's own settings (router id, mail, scripts)",
            "k.conf:9: vrrp_instance VI_1 ignored: VRRP belongs to keepalived itself (see the HA \
             issue)",
            "conf.d/dns.conf:11: ha_suspend has no effect: rvs holds its VIPs at all times, so \
             its checks always run",
            "conf.d/dns.conf:10: protocol is ignored for a fwmark service (as keepalived does): \
             the running configuration's `marks:` group 7 names its protocols",
        ]
    );
}

#[test]
fn the_import_replaces_the_running_services_and_keeps_the_rest() {
    let import = operator_import();
    let before = running();
    let after = import
        .into_config(before.clone())
        .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(after.services, import.services);
    assert_eq!((&after.ports, &after.marks), (&before.ports, &before.marks));
    // What is sent parses back, valid, to the same configuration.
    let text = yaml(&after, "k.conf").expect("YAML");
    assert!(text.starts_with("# rvsd's running configuration with the services of k.conf"));
    let list = CpuList::parse("0-3").expect("a CPU list");
    let cpus = HostCpus {
        online: list.clone(),
        allowed: list,
    };
    let back = config::parse_on(&text, "sent.yaml", &cpus).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(back, after);
}

#[test]
fn refusals_by_key_path_name_the_keepalived_line() {
    for (inner, expected) in [
        (
            "  real_server 10.99.2.11 80 {\n    weight 1\n  }\n  real_server 10.99.2.12 80 {\n    \
             weight 70000\n  }",
            "k.conf:6: weight: weight 70000 is above the maximum 65535",
        ),
        (
            "  real_server 192.0.2.1 80 {\n  }",
            "k.conf:2: real_server 192.0.2.1 80: real 192.0.2.1 is not reachable: no connected \
             subnet or route covers it",
        ),
        (
            "  lb_kind DR\n  real_server 10.99.2.11 8080 {\n  }",
            "k.conf:3: real_server 10.99.2.11 8080: port mapping is not possible in dr mode",
        ),
    ] {
        let import = import_of(&[("k.conf", &vs(inner))]).unwrap();
        let err = import.into_config(running()).unwrap_err().to_string();
        assert!(err.starts_with(expected), "{err}");
    }
    let text = "virtual_server 10.99.1.100 80 {\n  sorry_server 192.0.2.1 80\n}\n";
    let import = import_of(&[("k.conf", text)]).unwrap();
    assert!(import
        .into_config(running())
        .unwrap_err()
        .to_string()
        .starts_with("k.conf:2: sorry_server: sorry server 192.0.2.1 must be a host reachable"));
    // rvsd's own refusal of the YAML, by key path, is placed the same way.
    assert_eq!(
        import.reword("k.conf:40:7: services[0].sorry_server.address: no"),
        "k.conf:2: sorry_server: no"
    );
    assert_eq!(import.reword("something else"), "something else");
    assert_eq!(
        import.reword("k.conf:3:1: limits.reals: too many"),
        "k.conf:3:1: limits.reals: too many"
    );
}

#[test]
fn a_fwmark_needs_a_running_mark_group() {
    let import = import_of(&[(
        "k.conf",
        "virtual_server fwmark 9 {\n  real_server 10.99.2.11 80 {\n  }\n}\n",
    )])
    .unwrap();
    assert_eq!(
        import.into_config(running()).unwrap_err().to_string(),
        "k.conf:1: virtual_server fwmark 9: rvs serves fwmark 9 only through a `marks:` group \
         of that number in its configuration, and the running one has none (it defines 7); \
         add the group (its VIP:port:protocol matches) with rvsctl apply first"
    );
    let import = import_of(&[(
        "k.conf",
        "virtual_server fwmark 7 {\n  lb_algo lc\n  real_server 10.99.2.11 80 {\n  }\n}\n",
    )])
    .unwrap();
    let config = import.into_config(running()).unwrap();
    assert_eq!(config.services[0].mark, Some(7));
}

#[test]
fn a_file_without_virtual_servers_removes_every_service() {
    let import = import_of(&[("k.conf", "global_defs {\n}\n")]).unwrap();
    assert!(import.services.is_empty());
    assert_eq!(
        import.notes.last().map(String::as_str),
        Some("k.conf: declares no virtual_server: importing it removes every service")
    );
    assert!(import.into_config(running()).unwrap().services.is_empty());
}

/// A virtual server around `inner` (lines 2 on), for refusal cases.
fn vs(inner: &str) -> String {
    format!("virtual_server 10.99.1.100 80 {{\n{inner}\n}}\n")
}

/// A real server in a virtual server around `inner` (lines 3 on).
fn rs(inner: &str) -> String {
    vs(&format!("  real_server 10.99.2.11 80 {{\n{inner}\n  }}"))
}

#[test]
fn what_rvs_cannot_honour_is_refused_with_file_line_and_reason() {
    let cases: Vec<(String, &str)> = vec![
        (
            rs("    PING_CHECK {\n    }"),
            "k.conf:3: PING_CHECK: rvs has no PING_CHECK; it runs TCP_CHECK, HTTP_GET, SSL_GET, \
             MISC_CHECK and UDP_CHECK",
        ),
        (rs("    DNS_CHECK {\n    }"), "k.conf:3: DNS_CHECK: rvs has no DNS_CHECK;"),
        (rs("    SMTP_CHECK {\n    }"), "k.conf:3: SMTP_CHECK: rvs has no SMTP_CHECK;"),
        (rs("    BFD_CHECK {\n    }"), "k.conf:3: BFD_CHECK: rvs has no BFD_CHECK;"),
        (
            vs("  lb_kind FNAT"),
            "k.conf:2: lb_kind: keepalived has no FullNAT (DPVS's fork does); declare a \
             FullNAT service in rvs's YAML, with its local_addresses",
        ),
        (
            vs("  lb_kind nat"),
            "k.conf:2: lb_kind: `nat`: expected NAT, DR or TUN (in capitals",
        ),
        (
            vs("  lvs_method TUN type gue port 6080"),
            "k.conf:2: lvs_method: rvs tunnels with IP-in-IP only",
        ),
        (
            vs("  lb_algo fastest"),
            "k.conf:2: lb_algo: unknown scheduler `fastest`; expected one of rr, wrr,",
        ),
        (
            vs("  protocol TCP\n  ops"),
            "k.conf:3: ops: one-packet scheduling is for UDP services only",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        path /\n        regex \"OK\"\n      }\n    }"),
            "k.conf:6: regex: rvs checks a url's status code and digest, not its body against \
             a regex",
        ),
        (
            vs("  ip_family inet6"),
            "k.conf:2: ip_family: rvs serves IPv4 only for now",
        ),
        (
            "virtual_server 2001:db8::1 80 {\n}\n".to_owned(),
            "k.conf:1: virtual_server: rvs serves IPv4 only for now",
        ),
        (
            vs("  real_server 2001:db8::2 80 {\n  }"),
            "k.conf:2: real_server: rvs serves IPv4 only for now",
        ),
        (
            vs("  persistence_engine sip"),
            "k.conf:2: persistence_engine: rvs has no persistence engines",
        ),
        (vs("  protocol SCTP"), "k.conf:2: protocol: rvs balances TCP and UDP, not SCTP"),
        (vs("  smtp_alert"), "k.conf:2: smtp_alert: rvs sends no mail;"),
        (vs("  snmp_name web"), "k.conf:2: snmp_name: rvs has no SNMP agent"),
        (
            vs("  hashed"),
            "k.conf:2: hashed: IPVS's internal `hashed` flag is nothing an operator sets",
        ),
        (
            vs("  weight 3"),
            "k.conf:2: weight: rvs takes a weight per real_server, not per virtual_server",
        ),
        (
            vs("  sorry_server_inhibit"),
            "k.conf:2: sorry_server_inhibit: there is no sorry_server in this virtual_server",
        ),
        (vs("  quorum 0"), "k.conf:2: quorum: a quorum is at least 1"),
        (vs("  delay_loop 0"), "k.conf:2: delay_loop: must be above 0"),
        (
            vs("  delay_loop 0.0005"),
            "k.conf:2: delay_loop: `0.0005`: rvs keeps durations to the millisecond",
        ),
        (
            vs("  connect_timeout 3s"),
            "k.conf:2: connect_timeout: `3s` is not a number of seconds",
        ),
        (
            vs("  persistence_timeout 0"),
            "k.conf:2: persistence_timeout: must be at least 1 second",
        ),
        (
            vs("  frobnicate"),
            "k.conf:2: frobnicate: not a keyword of virtual_server that rvs knows, so it cannot \
             honour it",
        ),
        (
            vs("  TCP_CHECK {\n  }"),
            "k.conf:2: TCP_CHECK: a checker belongs in a real_server block",
        ),
        (vs("  real_server 10.99.2.11 80"), "k.conf:2: real_server: needs a { } block"),
        (
            vs("  real_server 10.99.2.11 http {\n  }"),
            "k.conf:2: real_server: `http` is not a whole number from 0 to 65535",
        ),
        (
            rs("    alpha"),
            "k.conf:3: alpha: rvs sets alpha per virtual_server (write it there)",
        ),
        (
            rs("    notify_up /usr/local/bin/up root"),
            "k.conf:3: notify_up: words after the command name a user (and group) to run it as",
        ),
        (
            rs("    weight"),
            "k.conf:3: weight: needs a value",
        ),
        (
            rs("    uthreshold 10 20"),
            "k.conf:3: uthreshold: takes one value",
        ),
        (
            rs("    frobnicate 1"),
            "k.conf:3: frobnicate: not a keyword of real_server that rvs knows",
        ),
        (
            rs("    TCP_CHECK {\n      bind_port 4000\n    }"),
            "k.conf:4: bind_port: rvs checks from any source port",
        ),
        (
            rs("    TCP_CHECK {\n      log_all_failures\n    }"),
            "k.conf:4: log_all_failures: rvs has no per-checker logging setting",
        ),
        (
            rs("    TCP_CHECK {\n      enable_sni\n    }"),
            "k.conf:4: enable_sni: not a keyword of TCP_CHECK that rvs knows",
        ),
        (
            rs("    MISC_CHECK {\n      connect_port 80\n      misc_path /bin/true\n    }"),
            "k.conf:4: connect_port: not a keyword of MISC_CHECK that rvs knows",
        ),
        (
            rs("    MISC_CHECK {\n      misc_path /bin/true\n      user nobody\n    }"),
            "k.conf:5: user: rvs runs the command as rvsd's own user",
        ),
        (
            rs("    MISC_CHECK {\n    }"),
            "k.conf:3: MISC_CHECK: MISC_CHECK needs misc_path, the command to run",
        ),
        (
            rs("    HTTP_GET {\n      connect_timeout 3\n    }"),
            "k.conf:3: HTTP_GET: HTTP_GET needs at least one url { path ... } block",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        status_code 200\n      }\n    }"),
            "k.conf:4: url: a url needs a path",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        path /\n        status_code 700\n      }\n    }"),
            "k.conf:6: status_code: `700` is not a status code (100-599)",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        path /\n        status_code 300-200\n      }\n    }"),
            "k.conf:6: status_code: `300-200` is not a status code",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        path /\n        digest abc\n      }\n    }"),
            "k.conf:6: digest: `abc` is not an MD5 in hex (32 hex digits)",
        ),
        (
            rs("    HTTP_GET {\n      url {\n        path health\n      }\n    }"),
            "k.conf:5: path: `health` must start with /",
        ),
        (
            rs("    SSL_GET {\n      url {\n        path /\n      }\n      sni_name x\n    }"),
            "k.conf:7: sni_name: rvs's SSL_GET has no sni_name setting",
        ),
        (
            rs("    UDP_CHECK {\n      require_reply 0X\n    }"),
            "k.conf:4: require_reply: rvs compares a reply byte for byte; it takes no X wildcards",
        ),
        (
            rs("    UDP_CHECK {\n      payload 0g\n    }"),
            "k.conf:4: payload: `0g` is not bytes in hex",
        ),
        (
            rs("    UDP_CHECK {\n      min_reply_length 4\n    }"),
            "k.conf:4: min_reply_length: rvs's UDP_CHECK checks what a reply starts with",
        ),
        (
            "virtual_server group WEB {\n}\n".to_owned(),
            "k.conf:1: virtual_server: virtual_server_group WEB is not defined",
        ),
        (
            "virtual_server_group G {\n  10.0.0.1 80\n}\nvirtual_server_group G {\n  10.0.0.2 80\n}\n"
                .to_owned(),
            "k.conf:4: virtual_server_group: virtual_server_group G is defined twice",
        ),
        (
            "virtual_server_group G {\n  10.0.0.9-3 80\n}\n".to_owned(),
            "k.conf:2: 10.0.0.9-3: range `10.0.0.9-3` runs backwards",
        ),
        (
            "virtual_server_group G {\n  10.0.0.0/16 80\n}\n".to_owned(),
            "k.conf:2: 10.0.0.0/16: `10.0.0.0/16` stands for 65536 addresses, more than the \
             4096 rvs expands",
        ),
        (
            "virtual_server_group G {\n  10.0.0.1/24 80\n}\n".to_owned(),
            "k.conf:2: 10.0.0.1/24: `10.0.0.1/24` has host bits set",
        ),
        (
            "virtual_server_group G {\n  fwmark 3 inet6\n}\n".to_owned(),
            "k.conf:2: fwmark: rvs serves IPv4 only for now",
        ),
        (
            "virtual_server_group G {\n}\n".to_owned(),
            "k.conf:1: virtual_server_group: the group has no entries",
        ),
        (
            "virtual_server 10.0.0.1 80 443 {\n}\n".to_owned(),
            "k.conf:1: virtual_server: expects `IP PORT`, `fwmark N` or `group NAME`",
        ),
        (
            "virtual_server 10.0.0.1 80\n".to_owned(),
            "k.conf:1: virtual_server: needs a { } block",
        ),
        (
            "SSL {\n  certificate /etc/ssl/c.pem\n}\n".to_owned(),
            "k.conf:1: SSL: rvs's SSL_GET presents no client certificate",
        ),
        (
            "vrrp_instance VI_1 {\n}\nlvs_sync_daemon eth0 VI_1\n".to_owned(),
            "k.conf:3: lvs_sync_daemon: not a keepalived block rvs knows",
        ),
        (
            "$PORT=80\n".to_owned(),
            "k.conf:1: $PORT=80: keepalived's parameters ($NAME) are not expanded",
        ),
        (
            rs("    @backup weight 2"),
            "k.conf:3: @backup: keepalived's conditional lines (@ID) are not expanded",
        ),
    ];
    for (text, expected) in cases {
        let got = refusal(&text);
        assert!(
            got.starts_with(expected),
            "{text}\ngot:      {got}\nexpected: {expected}"
        );
    }
}

#[test]
fn timing_and_virtualhost_inherit_downward() {
    let text = vs(
        "  delay_loop 10\n  connect_timeout 4\n  warmup 0\n  virtualhost vs.example\n  \
                   real_server 10.99.2.11 80 {\n    delay_loop 5\n    retry 3\n    \
                   virtualhost rs.example\n    HTTP_GET {\n      nb_get_retry 7\n      \
                   url {\n        path /a\n      }\n      url {\n        path /b\n        \
                   virtualhost url.example\n      }\n    }\n    TCP_CHECK {\n    }\n  }",
    );
    let import = import_of(&[("k.conf", &text)]).unwrap();
    let [http, tcp] = import.services[0].reals[0].checks.as_slice() else {
        panic!()
    };
    assert_eq!(
        (
            http.delay_loop,
            http.connect_timeout,
            http.retry,
            http.warmup
        ),
        (
            Some(Seconds::secs(5)),
            Some(Seconds::secs(4)),
            Some(7),
            Some(Seconds(0))
        )
    );
    assert_eq!(tcp.retry, Some(3));
    let hosts: Vec<_> = http.url.iter().map(|u| u.virtualhost.as_deref()).collect();
    assert_eq!(hosts, [Some("rs.example"), Some("url.example")]);
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let import = import_of(&[
        ("k.conf", "include sub/a.conf\n"),
        ("sub/a.conf", "include b.conf\n"),
        (
            "sub/b.conf",
            "virtual_server 10.99.1.100 80 {\n  real_server 10.99.2.11 80 {\n  }\n}\n",
        ),
    ])
    .unwrap();
    assert_eq!(
        import.services[0].reals[0].address,
        Ipv4Addr::new(10, 99, 2, 11)
    );
    // An include inside a block, as keepalived allows.
    let import = import_of(&[
        (
            "k.conf",
            "virtual_server 10.99.1.100 80 {\n  include reals.conf\n}\n",
        ),
        ("reals.conf", "real_server 10.99.2.11 80 {\n  weight 4\n}\n"),
    ])
    .unwrap();
    assert_eq!(import.services[0].reals[0].weight, 4);
    // A pattern that matches nothing is noted, as keepalived warns.
    let import = import_of(&[("k.conf", "include conf.d/*.conf\n")]).unwrap();
    assert_eq!(
        import.notes[0],
        "k.conf:1: include conf.d/*.conf matched no file"
    );
}

#[test]
fn include_refusals() {
    for (files, expected) in [
        (
            vec![(
                "k.conf",
                "virtual_server 10.99.1.100 80 {\n}\ninclude missing.conf\n",
            )],
            "k.conf:3: include: missing.conf: cannot read: No such file or directory (os error 2)",
        ),
        (
            vec![
                ("k.conf", "include a.conf\n"),
                ("a.conf", "include ../k.conf\n"),
            ],
            "a.conf:1: include: ../k.conf includes itself (an include cycle)",
        ),
        (
            vec![("k.conf", "include k.conf\n")],
            "k.conf:1: include: k.conf includes itself (an include cycle)",
        ),
        (
            vec![("k.conf", "include a.conf b.conf\n")],
            "k.conf:1: include: takes one file name or pattern",
        ),
        (
            vec![
                ("k.conf", "include a.conf\n"),
                ("a.conf", "virtual_server 10.0.0.1 80 {\n  quorum\n}\n"),
            ],
            "a.conf:2: quorum: needs a value",
        ),
    ] {
        let err = import_of(&files).unwrap_err().to_string();
        assert_eq!(err, expected);
    }
    let deep: Vec<(String, String)> = (0..=MAX_DEPTH + 1)
        .map(|i| {
            let name = if i == 0 {
                "k.conf".to_owned()
            } else {
                format!("{i}.conf")
            };
            (name, format!("include {}.conf\n", i + 1))
        })
        .collect();
    let files: Vec<(&str, &str)> = deep.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert!(import_of(&files)
        .unwrap_err()
        .to_string()
        .ends_with("include: includes nest more than 16 deep"));
    // The file named itself, unreadable: its own message.
    assert_eq!(
        import_of(&[]).unwrap_err().to_string(),
        "k.conf: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn group_entries_expand_ranges_and_prefixes() {
    let import = import_of(&[(
        "k.conf",
        "virtual_server_group G {\n  10.99.1.101-10.99.1.102 80\n  10.99.1.104/31 80\n  \
         10.99.1.120\n}\nvirtual_server group G {\n  persistence_timeout\n  \
         real_server 10.99.2.11 80 {\n  }\n}\n",
    )])
    .unwrap();
    let identities: Vec<(Ipv4Addr, u16, Option<u32>)> = import
        .services
        .iter()
        .map(|s| (s.vip, s.port, s.persistent))
        .collect();
    let vip = |last| Ipv4Addr::new(10, 99, 1, last);
    assert_eq!(
        identities,
        [
            (vip(101), 80, Some(360)),
            (vip(102), 80, Some(360)),
            (vip(104), 80, Some(360)),
            (vip(105), 80, Some(360)),
            (vip(120), 0, Some(360)),
        ]
    );
    // The port-0 service keeps its real's port.
    assert_eq!(import.services[4].reals[0].port, Some(80));
    assert_eq!(import.services[0].reals[0].port, None);
    // A clash between members is placed at the member's line.
    let import = import_of(&[(
        "k.conf",
        "virtual_server_group G {\n  10.99.1.101 80\n  10.99.1.101 80\n}\n\
         virtual_server group G {\n  real_server 10.99.2.11 80 {\n  }\n}\n",
    )])
    .unwrap();
    let err = import.into_config(running()).unwrap_err().to_string();
    assert!(
        err.starts_with("k.conf:3: 10.99.1.101 80: service tcp 10.99.1.101:80 is already"),
        "{err}"
    );
}

/// `global_defs` holding `line`, VRRP instance VI_1 (router id 51), and
/// one virtual server.
fn with_sync(line: &str) -> String {
    format!(
        "global_defs {{\n    router_id LVS_A\n    {line}\n}}\n\
         vrrp_instance VI_1 {{\n    interface rvs-client\n    virtual_router_id 51\n}}\n{}",
        vs("  real_server 10.99.2.11 80 {\n  }")
    )
}

fn sync_of(line: &str) -> Sync {
    import_of(&[("k.conf", &with_sync(line))])
        .unwrap_or_else(|err| panic!("{line}: {err}"))
        .sync
        .unwrap_or_else(|| panic!("{line}: no sync daemons"))
}

#[test]
fn lvs_sync_daemon_runs_both_daemons_with_keepalived_s_settings() {
    let both = |daemon: SyncDaemon| Sync {
        master: Some(daemon.clone()),
        backup: Some(daemon),
    };
    for (line, daemon) in [
        // No instance, no id: syncid 0, the kernel's defaults.
        ("lvs_sync_daemon eth1", SyncDaemon::on("eth1")),
        (
            "lvs_sync_daemon eth1 id 7 maxlen 9000 port 9999 ttl 2 group 239.1.2.3",
            SyncDaemon {
                syncid: 7,
                sync_maxlen: 9000,
                mcast_port: 9999,
                mcast_ttl: 2,
                mcast_group: Ipv4Addr::new(239, 1, 2, 3),
                ..SyncDaemon::on("eth1")
            },
        ),
        // An instance and no id: the instance's virtual_router_id.
        (
            "lvs_sync_daemon rvs-client inst VI_1",
            SyncDaemon {
                syncid: 51,
                ..SyncDaemon::on("rvs-client")
            },
        ),
        (
            "lvs_sync_daemon rvs-client VI_1 id 3",
            SyncDaemon {
                syncid: 3,
                ..SyncDaemon::on("rvs-client")
            },
        ),
        // keepalived's older form: IF INSTANCE SYNCID.
        (
            "lvs_sync_daemon rvs-client VI_1 4",
            SyncDaemon {
                syncid: 4,
                ..SyncDaemon::on("rvs-client")
            },
        ),
    ] {
        assert_eq!(sync_of(line), both(daemon), "{line}");
    }
    // The deprecated form in the VRRP instance: its router id is the syncid.
    let text = "vrrp_instance VI_2 {\n    lvs_sync_daemon_interface eth2\n    \
                virtual_router_id 52\n}\n";
    let import = import_of(&[("k.conf", text)]).unwrap();
    assert_eq!(
        import.sync,
        Some(both(SyncDaemon {
            syncid: 52,
            ..SyncDaemon::on("eth2")
        }))
    );
}

#[test]
fn lvs_sync_daemon_is_noted_and_the_rest_of_global_defs_skipped() {
    let import = import_of(&[("k.conf", &with_sync("lvs_sync_daemon eth1 inst VI_1"))]).unwrap();
    assert_eq!(
        import.notes[..3],
        [
            "k.conf:3: lvs_sync_daemon: rvs runs both its sync daemons, master and backup, with \
             these settings: beside rvsd keepalived runs VRRP only (--vrrp) and never starts or \
             stops rvs's daemons, so each director sends the connections it serves and takes \
             those its peer sends, whichever holds the VIPs",
            "k.conf:1: global_defs ignored but for lvs_sync_daemon: keepalived's own settings \
             (router id, mail, scripts)",
            "k.conf:5: vrrp_instance VI_1 ignored: VRRP belongs to keepalived itself (see the HA \
             issue)",
        ]
    );
}

#[test]
fn the_import_sets_the_sync_daemons_only_when_the_file_declares_them() {
    let mut running = running();
    running.sync.master = Some(SyncDaemon::on("eth9"));
    // None declared: the running ones stay, as keepalived leaves daemons
    // started by ipvsadm alone.
    let import = import_of(&[("k.conf", &vs("  real_server 10.99.2.11 80 {\n  }"))]).unwrap();
    assert_eq!(import.sync, None);
    let kept = import.into_config(running.clone()).unwrap();
    assert_eq!(kept.sync, running.sync);
    // Declared: both, replacing the running ones.
    let import = import_of(&[("k.conf", &with_sync("lvs_sync_daemon eth1 id 2"))]).unwrap();
    let config = import.into_config(running.clone()).unwrap();
    assert_eq!(config.sync.master.as_ref().map(|d| d.syncid), Some(2));
    assert_eq!(config.sync.backup, config.sync.master);
    // What rvsd would refuse is placed at the keepalived line.
    let import = import_of(&[("k.conf", &with_sync("lvs_sync_daemon eth1 maxlen 20"))]).unwrap();
    assert_eq!(
        import.into_config(running).unwrap_err().to_string(),
        "k.conf:3: lvs_sync_daemon: 20 bytes is out of range: a sync message holds its header \
         and at least one connection (44 bytes) and fits a UDP datagram (65507 bytes)"
    );
    assert_eq!(
        import.reword("k.conf:30:9: sync.backup.mcast_interface: no"),
        "k.conf:3: lvs_sync_daemon: no"
    );
}

#[test]
fn what_keepalived_would_ignore_in_lvs_sync_daemon_is_refused() {
    for (line, reason) in [
        (
            "lvs_sync_daemon",
            "needs the interface the sync multicast goes out of and comes in on",
        ),
        ("lvs_sync_daemon eth1 id", "`id` needs a value"),
        (
            "lvs_sync_daemon eth1 id 256",
            "id `256` is not a whole number from 0 to 255",
        ),
        (
            "lvs_sync_daemon eth1 maxlen 0",
            "maxlen `0` is not a whole number from 1 to 65507",
        ),
        (
            "lvs_sync_daemon eth1 port 65536",
            "port `65536` is not a whole number from 1 to 65535",
        ),
        (
            "lvs_sync_daemon eth1 ttl 0",
            "ttl `0` is not a whole number from 1 to 255",
        ),
        (
            "lvs_sync_daemon eth1 group 10.0.0.1",
            "group 10.0.0.1 is not a multicast address",
        ),
        (
            "lvs_sync_daemon eth1 group ff02::81",
            "rvs serves IPv4 only for now (IPv6 is on its roadmap)",
        ),
        (
            "lvs_sync_daemon eth1 group 224.0.0",
            "`224.0.0` is not an IPv4 address",
        ),
        (
            "lvs_sync_daemon eth1 inst VI_9",
            "vrrp_instance VI_9 is not defined; keepalived would run no sync daemon",
        ),
        (
            "lvs_sync_daemon eth1 VI_1 id 3 bogus 1",
            "`bogus` is not an option of lvs_sync_daemon (inst, id, maxlen, port, ttl, group)",
        ),
        (
            "lvs_sync_daemon eth1 id 3 VI_1",
            "`VI_1` is not an option of lvs_sync_daemon (inst, id, maxlen, port, ttl, group)",
        ),
    ] {
        assert_eq!(
            refusal(&with_sync(line)),
            format!("k.conf:3: lvs_sync_daemon: {reason}"),
            "{line}"
        );
    }
    let twice = with_sync("lvs_sync_daemon eth1\n    lvs_sync_daemon eth2");
    assert_eq!(
        refusal(&twice),
        "k.conf:4: lvs_sync_daemon: the sync daemons are already declared at k.conf:3 \
         (keepalived takes one declaration and ignores the others)"
    );
    let no_router_id = "global_defs {\n    lvs_sync_daemon eth1 VI_3\n}\nvrrp_instance VI_3 {\n}\n";
    assert_eq!(
        refusal(no_router_id),
        "k.conf:4: vrrp_instance: vrrp_instance VI_3 has no virtual_router_id, which \
         keepalived takes as the sync daemons' syncid"
    );
}

//! ipvsadm 1.31's listings, byte for byte, as pure functions of the
//! protocol's listing types.
//!
//! Every function returns whole lines, each ending in `\n`; column padding
//! is ipvsadm's, trailing spaces included (its last columns are
//! left-aligned and padded). Addresses are always numeric (see the module
//! docs of [`crate::ipvsadm`]).

use super::Format;
use crate::proto::{
    ConnEntry, DaemonInfo, Forward, LaddrInfo, RealInfo, ServiceInfo, ServiceKey, ServiceSpec,
    Timeouts,
};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// ipvsadm's first line of a full listing. rvs answers with the IPVS
/// version and connection-table size ipvsadm users know, so that scripts
/// matching the line keep working.
pub const VERSION_LINE: &str = "IP Virtual Server version 1.2.1 (size=4096)\n";

/// `-L`: the version line, the title and every service, sorted unless
/// `--nosort`.
pub fn services(list: &[ServiceInfo], format: &Format) -> String {
    let mut out = String::from(VERSION_LINE);
    out.push_str(&title(format));
    for service in sorted(list, format) {
        entry(&mut out, service, format);
    }
    out
}

/// `-L -t VIP:PORT`: the title and the one service, no version line.
pub fn service(service: &ServiceInfo, format: &Format) -> String {
    let mut out = title(format);
    entry(&mut out, service, format);
    out
}

/// `-S`: the configuration as rvsadm commands, sorted as `-L` sorts, in an
/// order `-R` can apply line by line.
pub fn save(list: &[ServiceInfo]) -> String {
    let mut out = String::new();
    for info in sorted(list, &Format::default()) {
        let spec = &info.spec;
        let name = rule_name(&spec.key);
        let _ = write!(out, "-A {name} -s {}", spec.scheduler);
        if let Some(timeout) = spec.persistent {
            let _ = write!(out, " -p {timeout}");
            if let Some(mask) = mask(spec) {
                let _ = write!(out, " -M {mask}");
            }
        }
        if spec.ops {
            out.push_str(" -o");
        }
        if !spec.flags.is_empty() {
            let _ = write!(out, " -b {}", spec.flags.join(","));
        }
        out.push('\n');
        // Local addresses before the reals: a FullNAT real needs one.
        for laddr in &info.laddrs {
            let _ = write!(out, "--add-laddr -z {} {name}", laddr.addr);
            if let Some(ifname) = &laddr.ifname {
                let _ = write!(out, " -F {ifname}");
            }
            out.push('\n');
        }
        for real in sorted_reals(&info.reals, &Format::default()) {
            let spec = &real.spec;
            let switch = match spec.forward {
                Forward::Nat => "-m",
                Forward::Dr => "-g",
                Forward::Tun => "-i",
                Forward::FullNat => "--fullnat",
            };
            let _ = write!(
                out,
                "-a {name} -r {}:{} {switch} -w {}",
                spec.addr, spec.port, spec.weight
            );
            // ipvsadm 1.31 names the tunnel type of every tunnel real.
            if spec.forward == Forward::Tun {
                out.push_str(" --tun-type ipip");
            }
            if spec.u_threshold != 0 {
                let _ = write!(out, " -x {}", spec.u_threshold);
            }
            if spec.l_threshold != 0 {
                let _ = write!(out, " -y {}", spec.l_threshold);
            }
            out.push('\n');
        }
    }
    out
}

/// `-L --timeout`.
pub fn timeouts(timeouts: &Timeouts) -> String {
    format!(
        "Timeout (tcp tcpfin udp): {} {} {}\n",
        timeouts.tcp, timeouts.tcpfin, timeouts.udp
    )
}

/// `-L --daemon`: a line per sync daemon, in the order given (rvsd's:
/// master first, as the kernel's). ipvsadm 1.31's list_daemon prints
/// `STATE sync daemon (mcast=IF, syncid=N` and then each of maxlen, group,
/// port and ttl that the kernel reports; Linux 4.3 and later report all
/// four always (defaults filled in at start), older kernels none. rvs has
/// every setting of every daemon, so it prints all four, as ipvsadm does
/// on any kernel of the last decade; a script reading the older, shorter
/// line's `mcast=IF, syncid=N` finds them at the same place.
pub fn daemons(list: &[DaemonInfo]) -> String {
    let mut out = String::new();
    for info in list {
        let daemon = &info.daemon;
        let _ = writeln!(
            out,
            "{} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
            info.state,
            daemon.mcast_interface,
            daemon.syncid,
            daemon.sync_maxlen,
            daemon.mcast_group,
            daemon.mcast_port,
            daemon.mcast_ttl
        );
    }
    out
}

/// `-L -c`: the two title lines; [`connection`] prints each entry.
pub fn connections_title(format: &Format) -> String {
    let mut out = String::from("IPVS connection entries\n");
    if format.persistent_conn {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} {:<18} {:<16} pe_data",
            "state", "source", "virtual", "destination", "pe name"
        );
    } else {
        let _ = writeln!(
            out,
            "pro expire {:<11} {:<18} {:<18} destination",
            "state", "source", "virtual"
        );
    }
    out
}

/// One `-L -c` line. (With `--persistent-conn` ipvsadm adds persistence
/// engine columns only for entries that have engine data; rvs's never do.)
pub fn connection(entry: &ConnEntry) -> String {
    let expire = format!(
        "{:02}:{:02}",
        entry.expires_secs / 60,
        entry.expires_secs % 60
    );
    let source = format!("{}:{}", entry.client, entry.client_port);
    let virtual_ = format!("{}:{}", entry.vip, entry.vport);
    let destination = format!("{}:{}", entry.real, entry.real_port);
    format!(
        "{:<3} {expire:<6} {:<11} {source:<18} {virtual_:<18} {destination}\n",
        entry.protocol.upper(),
        entry.state,
    )
}

/// `--get-laddr`, modelled on DPVS's listing: a line per service with its
/// number of local addresses, then a line per address.
pub fn laddrs(list: &[LaddrInfo]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<20} {:<10} {}\n",
        "VIP:VPORT", "TOTAL", "SNAT_IP", "CONFLICTS", "CONNS"
    );
    let mut list: Vec<&LaddrInfo> = list.iter().collect();
    list.sort_by_key(|info| info.service.sort_key());
    for info in list {
        let service = match info.service {
            ServiceKey::Inet { addr, port, .. } => format!("{addr}:{port}"),
            ServiceKey::Mark(mark) => format!("FWM {mark}"),
        };
        let _ = writeln!(out, "{service:<20} {}", info.laddrs.len());
        for laddr in &info.laddrs {
            let _ = writeln!(
                out,
                "{:<20} {:<8} {:<20} {:<10} {}",
                "", "", laddr.addr, laddr.conflicts, laddr.conns
            );
        }
    }
    out
}

/// ipvsadm's print_largenum: 9 columns, numbers from 10^8 on shortened to
/// K, M, G or T (thousands, millions...) unless `exact`.
pub fn largenum(value: u64, exact: bool) -> String {
    if exact {
        let digits = value.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    match value {
        0..=99_999_999 => format!("{value:>9}"),
        100_000_000..=999_999_999 => format!("{:>8}K", value / 1_000),
        1_000_000_000..=99_999_999_999 => format!("{:>8}M", value / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => format!("{:>8}G", value / 1_000_000_000),
        _ => format!("{:>8}T", value / 1_000_000_000_000),
    }
}

fn title(format: &Format) -> String {
    const PROT: &str = "Prot LocalAddress:Port";
    const REMOTE: &str = "  -> RemoteAddress:Port\n";
    if format.stats {
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        )
    } else if format.rate {
        format!(
            "{PROT:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n{REMOTE}",
            "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
        )
    } else if format.thresholds {
        format!(
            "{PROT:<33} {:<10} {:<10} {:<10} {:<10}\n{REMOTE}",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        )
    } else if format.persistent_conn {
        format!(
            "{PROT:<33} {:<9} {:<11} {:<10} {:<10}\n{REMOTE}",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        )
    } else {
        "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n".to_owned()
    }
}

fn sorted<'a>(list: &'a [ServiceInfo], format: &Format) -> Vec<&'a ServiceInfo> {
    let mut list: Vec<&ServiceInfo> = list.iter().collect();
    if !format.nosort {
        list.sort_by_key(|info| info.spec.key.sort_key());
    }
    list
}

fn sorted_reals<'a>(reals: &'a [RealInfo], format: &Format) -> Vec<&'a RealInfo> {
    let mut reals: Vec<&RealInfo> = reals.iter().collect();
    if !format.nosort {
        reals.sort_by_key(|real| (u32::from(real.spec.addr), real.spec.port));
    }
    reals
}

/// The persistence mask when it is not /32.
fn mask(spec: &ServiceSpec) -> Option<Ipv4Addr> {
    spec.netmask.filter(|mask| *mask != Ipv4Addr::BROADCAST)
}

/// `TCP  10.0.0.1:80` or `FWM  5`, cut at 33 characters as ipvsadm does.
fn listing_name(key: &ServiceKey) -> String {
    let mut name = match key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => format!("{:<4} {addr}:{port}", protocol.upper()),
        ServiceKey::Mark(mark) => format!("FWM  {mark}"),
    };
    name.truncate(33);
    name
}

/// `-t 10.0.0.1:80`, `-u ...` or `-f 5`.
fn rule_name(key: &ServiceKey) -> String {
    match key {
        ServiceKey::Inet {
            protocol,
            addr,
            port,
        } => {
            let switch = match protocol {
                crate::proto::Protocol::Tcp => "-t",
                crate::proto::Protocol::Udp => "-u",
            };
            format!("{switch} {addr}:{port}")
        }
        ServiceKey::Mark(mark) => format!("-f {mark}"),
    }
}

fn entry(out: &mut String, info: &ServiceInfo, format: &Format) {
    let spec = &info.spec;
    let name = listing_name(&spec.key);
    if format.stats {
        let s = &info.stats;
        let _ = write!(out, "{name:<33}");
        for value in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
            out.push_str(&largenum(value, format.exact));
        }
    } else if format.rate {
        let r = &info.rates;
        let _ = write!(out, "{name:<33}");
        for value in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
            out.push_str(&largenum(value, format.exact));
        }
    } else {
        let _ = write!(out, "{name} {}", spec.scheduler);
        if !spec.flags.is_empty() {
            let _ = write!(out, " ({})", spec.flags.join(","));
        }
        if let Some(timeout) = spec.persistent {
            let _ = write!(out, " persistent {timeout}");
            if let Some(mask) = mask(spec) {
                let _ = write!(out, " mask {mask}");
            }
        }
        if spec.ops {
            out.push_str(" ops");
        }
    }
    out.push('\n');

    for real in sorted_reals(&info.reals, format) {
        let mut dname = format!("{}:{}", real.spec.addr, real.spec.port);
        dname.truncate(28);
        if format.stats {
            let s = &real.stats;
            let _ = write!(out, "  -> {dname:<28}");
            for value in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
                out.push_str(&largenum(value, format.exact));
            }
            out.push('\n');
        } else if format.rate {
            let r = &real.rates;
            // ipvsadm prints a real's first three rates unabbreviated.
            let _ = write!(
                out,
                "  -> {dname:<28} {:>8} {:>8} {:>8}",
                r.cps, r.inpps, r.outpps
            );
            out.push_str(&largenum(r.inbps, format.exact));
            out.push_str(&largenum(r.outbps, format.exact));
            out.push('\n');
        } else if format.thresholds {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                real.spec.u_threshold, real.spec.l_threshold, real.active_conns, real.inact_conns
            );
        } else if format.persistent_conn {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                real.spec.weight, real.persist_conns, real.active_conns, real.inact_conns
            );
        } else {
            let _ = writeln!(
                out,
                "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                real.spec.forward.listing_name(),
                real.spec.weight,
                real.active_conns,
                real.inact_conns
            );
        }
    }
}

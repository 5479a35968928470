//! rvsctl's human output: aligned tables and the diff of an apply. Every
//! function returns whole lines ending in `\n`, without trailing spaces.

use crate::proto::{
    AddressInfo, ApplyReport, ConfigDiff, ConnEntry, LaddrInfo, PortView, RealSpec, RouteKind,
    RouteView, ServiceKey, SettingChange, WorkerView,
};
use std::fmt::Write;

/// Columns of text; numeric columns are right-aligned.
pub struct Table {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// `columns`: (header, numeric).
    pub fn new(columns: &[(&'static str, bool)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            numeric: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.len()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index > 0 {
                    line.push_str("  ");
                }
                let pad = widths[index].saturating_sub(cell.chars().count());
                if self.numeric[index] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `tcp 10.0.0.1:80`, as in the YAML (`protocol`, `vip`, `port`).
pub fn service_name(key: &ServiceKey) -> String {
    key.to_string()
}

fn real_text(real: &RealSpec) -> String {
    format!(
        "{}:{} ({}, weight {})",
        real.addr,
        real.port,
        real.forward.name(),
        real.weight
    )
}

fn settings_text(settings: &[SettingChange]) -> String {
    settings
        .iter()
        .map(|s| format!("{} {} -> {}", s.key, s.from, s.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The diff, one change a line: `+` added, `-` removed, `~` changed.
pub fn diff(diff: &ConfigDiff) -> String {
    let mut out = String::new();
    for setting in &diff.settings {
        let _ = writeln!(out, "~ {}: {} -> {}", setting.key, setting.from, setting.to);
    }
    for service in &diff.services_removed {
        let _ = writeln!(
            out,
            "- service {} ({}, {} real{})",
            service_name(&service.service),
            service.scheduler,
            service.reals,
            plural(service.reals as usize)
        );
    }
    for service in &diff.services_added {
        let _ = writeln!(
            out,
            "+ service {} ({}, {} real{})",
            service_name(&service.service),
            service.scheduler,
            service.reals,
            plural(service.reals as usize)
        );
    }
    for change in &diff.services_changed {
        let _ = writeln!(out, "~ service {}", service_name(&change.service));
        for setting in &change.settings {
            let _ = writeln!(
                out,
                "    ~ {}: {} -> {}",
                setting.key, setting.from, setting.to
            );
        }
        for real in &change.reals_removed {
            let _ = writeln!(out, "    - real {}", real_text(real));
        }
        for real in &change.reals_added {
            let _ = writeln!(out, "    + real {}", real_text(real));
        }
        for real in &change.reals_changed {
            let _ = writeln!(
                out,
                "    ~ real {}:{}: {}",
                real.addr,
                real.port,
                settings_text(&real.settings)
            );
        }
        if change.reals_reordered {
            out.push_str("    ~ reals listed in another order\n");
        }
    }
    out
}

/// One line counting what the diff changes.
pub fn diff_summary(diff: &ConfigDiff) -> String {
    let (mut added, mut removed, mut changed) = (0, 0, 0);
    for change in &diff.services_changed {
        added += change.reals_added.len();
        removed += change.reals_removed.len();
        changed += change.reals_changed.len();
    }
    format!(
        "{} setting{}; services: {} added, {} removed, {} changed; reals of changed services: \
         {added} added, {removed} removed, {changed} changed",
        diff.settings.len(),
        plural(diff.settings.len()),
        diff.services_added.len(),
        diff.services_removed.len(),
        diff.services_changed.len()
    )
}

/// What `rvsctl apply` and `rvsctl reload` print: the diff, its summary
/// and the outcome.
pub fn apply_report(report: &ApplyReport, dry_run: bool) -> String {
    let mut out = diff(&report.diff);
    let _ = writeln!(out, "{}: {}", report.file, diff_summary(&report.diff));
    let outcome = if report.applied {
        "applied"
    } else if report.diff.is_empty() {
        "no changes; nothing to apply"
    } else if dry_run {
        "dry run; nothing applied"
    } else {
        "not applied"
    };
    let _ = writeln!(out, "{}: {outcome}", report.file);
    out
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

pub fn ports(ports: &[PortView]) -> String {
    let mut table = Table::new(&[
        ("NAME", false),
        ("DEVICE", false),
        ("MAC", false),
        ("MTU", true),
        ("RXQ", true),
        ("TXQ", true),
        ("RXD", true),
        ("TXD", true),
        ("ADDRESSES", false),
    ]);
    for port in ports {
        table.row(vec![
            port.name.clone(),
            port.device.clone(),
            port.mac.clone(),
            port.mtu.to_string(),
            port.rx_queues.to_string(),
            port.tx_queues.to_string(),
            port.rx_descriptors.to_string(),
            port.tx_descriptors.to_string(),
            port.addresses.join(" "),
        ]);
    }
    table.render()
}

pub fn workers(workers: &[WorkerView]) -> String {
    let mut table = Table::new(&[
        ("WORKER", true),
        ("LCORE", true),
        ("CPU", true),
        ("QUEUES", false),
        ("RX_PKTS", true),
        ("RX_BYTES", true),
        ("TX_PKTS", true),
        ("TX_BYTES", true),
        ("CONNS", true),
        ("CREATED", true),
        ("EXPIRED", true),
        ("REDIRECTED", true),
        ("DROPS", true),
    ]);
    for worker in workers {
        table.row(vec![
            worker.index.to_string(),
            worker.lcore.to_string(),
            worker.cpu.to_string(),
            worker.queues.join(","),
            worker.rx_packets.to_string(),
            worker.rx_bytes.to_string(),
            worker.tx_packets.to_string(),
            worker.tx_bytes.to_string(),
            worker.conns.to_string(),
            worker.conns_created.to_string(),
            worker.conns_expired.to_string(),
            worker.redirected.to_string(),
            worker.drops.to_string(),
        ]);
    }
    let mut out = table.render();
    for worker in workers.iter().filter(|w| !w.drop_reasons.is_empty()) {
        let reasons: Vec<String> = worker
            .drop_reasons
            .iter()
            .map(|(reason, count)| format!("{reason} {count}"))
            .collect();
        let _ = writeln!(out, "worker {} drops: {}", worker.index, reasons.join(", "));
    }
    out
}

pub fn routes(routes: &[RouteView]) -> String {
    let mut table = Table::new(&[
        ("PREFIX", false),
        ("VIA", false),
        ("PORT", false),
        ("KIND", false),
    ]);
    for route in routes {
        table.row(vec![
            route.prefix.clone(),
            route.via.map_or("-".to_owned(), |via| via.to_string()),
            route.port.clone(),
            match route.kind {
                RouteKind::Connected => "connected",
                RouteKind::Static => "static",
            }
            .to_owned(),
        ]);
    }
    table.render()
}

pub fn neighbours(neighbours: &[crate::proto::NeighbourView]) -> String {
    let mut table = Table::new(&[
        ("ADDRESS", false),
        ("MAC", false),
        ("PORT", false),
        ("AGE", true),
        ("WORKERS", false),
    ]);
    for n in neighbours {
        let workers: Vec<String> = n.workers.iter().map(u16::to_string).collect();
        table.row(vec![
            n.addr.to_string(),
            n.mac.clone(),
            n.port.clone(),
            format!("{}s", n.age_secs),
            workers.join(","),
        ]);
    }
    table.render()
}

/// `rvsctl health`: a row per checker of every checked real.
pub fn health(report: &crate::health::HealthReport) -> String {
    if report.reals.is_empty() {
        return "no real is health-checked\n".to_owned();
    }
    let mut table = Table::new(&[
        ("SERVICE", false),
        ("REAL", false),
        ("STATE", false),
        ("SINCE", true),
        ("CHECKER", false),
        ("FAILURES", true),
        ("LAST", false),
    ]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    for real in &report.reals {
        let state = match (real.alive, real.weight) {
            (true, Some(weight)) => format!("up (weight {weight})"),
            (true, None) => "up".to_owned(),
            (false, _) => "DOWN".to_owned(),
        };
        for (i, checker) in real.checkers.iter().enumerate() {
            let first = i == 0;
            table.row(vec![
                if first {
                    real.service.to_string()
                } else {
                    String::new()
                },
                if first {
                    format!("{}:{}", real.addr, real.port)
                } else {
                    String::new()
                },
                if first { state.clone() } else { String::new() },
                if first {
                    format!("{:.0}s", (now - real.since).max(0.0))
                } else {
                    String::new()
                },
                format!(
                    "{} ({})",
                    checker.checker,
                    if checker.up { "up" } else { "down" }
                ),
                checker.failures.to_string(),
                checker
                    .last
                    .clone()
                    .unwrap_or_else(|| "not run yet".to_owned()),
            ]);
        }
    }
    table.render()
}

/// `rvsctl addresses`: one line per address, in the order given (rvsd's:
/// by address).
pub fn addresses(addresses: &[AddressInfo]) -> String {
    let mut table = Table::new(&[
        ("ADDRESS", false),
        ("KIND", false),
        ("INTERFACE", false),
        ("HELD", false),
    ]);
    for address in addresses {
        table.row(vec![
            address.address.to_string(),
            address.kind.name().to_owned(),
            address.interface.clone().unwrap_or_else(|| "-".to_owned()),
            if address.held { "yes" } else { "no" }.to_owned(),
        ]);
    }
    table.render()
}

pub fn laddrs(infos: &[LaddrInfo]) -> String {
    let mut table = Table::new(&[
        ("SERVICE", false),
        ("LADDR", false),
        ("PORT", false),
        ("CONNS", true),
        ("CONFLICTS", true),
    ]);
    for info in infos {
        for laddr in &info.laddrs {
            table.row(vec![
                service_name(&info.service),
                laddr.addr.to_string(),
                laddr.ifname.clone().unwrap_or_else(|| "-".to_owned()),
                laddr.conns.to_string(),
                laddr.conflicts.to_string(),
            ]);
        }
    }
    table.render()
}

/// Width of an `address:port` column: the longest IPv4 `a.b.c.d:port`.
const ENDPOINT: usize = 21;

/// The title of the connection listing; [`conn`] prints each row in the
/// same fixed columns, so a million rows stream without being held.
pub fn conns_title() -> String {
    format!(
        "{:<5} {:<ENDPOINT$} {:<ENDPOINT$} {:<ENDPOINT$} {:<11} EXPIRES\n",
        "PROTO", "CLIENT", "VIRTUAL", "REAL", "STATE"
    )
}

pub fn conn(entry: &ConnEntry) -> String {
    let protocol = match entry.protocol {
        crate::proto::Protocol::Tcp => "tcp",
        crate::proto::Protocol::Udp => "udp",
    };
    format!(
        "{protocol:<5} {:<ENDPOINT$} {:<ENDPOINT$} {:<ENDPOINT$} {:<11} {:02}:{:02}\n",
        format!("{}:{}", entry.client, entry.client_port),
        format!("{}:{}", entry.vip, entry.vport),
        format!("{}:{}", entry.real, entry.real_port),
        entry.state,
        entry.expires_secs / 60,
        entry.expires_secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{AddressKind, Forward, RealChange, ServiceChange, ServiceSummary};
    use std::net::Ipv4Addr;

    #[test]
    fn tables_align_without_trailing_spaces() {
        let mut table = Table::new(&[("NAME", false), ("COUNT", true), ("NOTE", false)]);
        table.row(vec!["a".into(), "1".into(), "".into()]);
        table.row(vec!["longer".into(), "12345".into(), "x".into()]);
        assert_eq!(
            table.render(),
            "NAME    COUNT  NOTE\n\
             a           1\n\
             longer  12345  x\n"
        );
    }

    #[test]
    fn addresses_one_line_each_with_kind_interface_and_held() {
        let info = |address: [u8; 4], kind, interface: Option<&str>, held| AddressInfo {
            address: Ipv4Addr::from(address),
            kind,
            interface: interface.map(str::to_owned),
            held,
        };
        let table = addresses(&[
            info([10, 99, 1, 1], AddressKind::Port, Some("rvs-client"), true),
            info([10, 99, 1, 100], AddressKind::Vip, Some("rvs-client"), true),
            info([10, 99, 2, 1], AddressKind::Port, None, true),
            info([10, 99, 2, 254], AddressKind::Floating, None, false),
        ]);
        assert_eq!(
            table,
            "ADDRESS      KIND      INTERFACE   HELD\n\
             10.99.1.1    port      rvs-client  yes\n\
             10.99.1.100  vip       rvs-client  yes\n\
             10.99.2.1    port      -           yes\n\
             10.99.2.254  floating  -           no\n"
        );
    }

    #[test]
    fn diff_lines() {
        let vip = Ipv4Addr::new(10, 99, 1, 100);
        let diff = ConfigDiff {
            settings: vec![SettingChange {
                key: "timeouts.tcp".into(),
                from: "900".into(),
                to: "30".into(),
            }],
            services_added: vec![ServiceSummary {
                service: ServiceKey::udp(vip, 53),
                scheduler: "rr".into(),
                reals: 1,
            }],
            services_removed: vec![],
            services_changed: vec![ServiceChange {
                service: ServiceKey::tcp(vip, 80),
                settings: vec![SettingChange {
                    key: "scheduler".into(),
                    from: "rr".into(),
                    to: "wrr".into(),
                }],
                reals_added: vec![RealSpec {
                    addr: Ipv4Addr::new(10, 99, 2, 13),
                    port: 80,
                    forward: Forward::Nat,
                    weight: 2,
                    u_threshold: 0,
                    l_threshold: 0,
                }],
                reals_removed: vec![],
                reals_changed: vec![RealChange {
                    addr: Ipv4Addr::new(10, 99, 2, 11),
                    port: 80,
                    settings: vec![SettingChange {
                        key: "weight".into(),
                        from: "1".into(),
                        to: "5".into(),
                    }],
                }],
                reals_reordered: true,
            }],
        };
        assert_eq!(
            super::diff(&diff),
            "~ timeouts.tcp: 900 -> 30\n\
             + service udp 10.99.1.100:53 (rr, 1 real)\n\
             ~ service tcp 10.99.1.100:80\n    \
             ~ scheduler: rr -> wrr\n    \
             + real 10.99.2.13:80 (nat, weight 2)\n    \
             ~ real 10.99.2.11:80: weight 1 -> 5\n    \
             ~ reals listed in another order\n"
        );
        let report = ApplyReport {
            file: "new.yaml".into(),
            diff,
            applied: false,
        };
        assert!(apply_report(&report, true).ends_with(
            "new.yaml: 1 setting; services: 1 added, 0 removed, 1 changed; reals of changed \
             services: 1 added, 0 removed, 1 changed\nnew.yaml: dry run; nothing applied\n"
        ));
    }

    #[test]
    fn conn_rows_line_up_with_the_title() {
        let entry = ConnEntry {
            protocol: crate::proto::Protocol::Tcp,
            client: Ipv4Addr::new(10, 99, 1, 2),
            client_port: 40000,
            vip: Ipv4Addr::new(10, 99, 1, 100),
            vport: 80,
            real: Ipv4Addr::new(10, 99, 2, 11),
            real_port: 80,
            state: "ESTABLISHED".into(),
            expires_secs: 899,
        };
        let title = conns_title();
        let row = conn(&entry);
        assert_eq!(
            row,
            "tcp   10.99.1.2:40000       10.99.1.100:80        10.99.2.11:80         ESTABLISHED 14:59\n"
        );
        assert_eq!(title.find("STATE"), row.find("ESTABLISHED"));
        assert_eq!(title.find("EXPIRES"), row.find("14:59"));
    }
}

//! rvsctl: the control words ipvsadm has none for. Applying a whole YAML
//! configuration with a diff, dumping the running one, reloading the file,
//! views of ports, workers, routes and addresses, and a filtered connection
//! listing.
//!
//! This module holds what both ends share and what can be tested without a
//! daemon: the diff and the rule of what may change while rvsd runs
//! ([`diff`]), the YAML dump, the split of a large file into upload pieces,
//! the connection filter, the human renderings ([`render`]) and rvsctl's
//! command line ([`cli`]).

pub mod cli;
pub mod diff;
pub mod render;
pub mod top;

use crate::config::Config;
use crate::proto::{ConnEntry, Protocol};
use std::net::Ipv4Addr;

/// The first lines of `rvsctl dump`.
pub const DUMP_HEADER: &str = "\
# rvsd's running configuration (rvsctl dump). `rvsctl apply` takes it back;
# while rvsd runs only services, timeouts, fullnat and sync change.
";

/// The configuration as YAML that `config::parse` reads back equal.
pub fn dump(config: &Config) -> Result<String, String> {
    let body = serde_yaml::to_string(config)
        .map_err(|err| format!("cannot write the configuration as YAML: {err}"))?;
    Ok(format!("{DUMP_HEADER}{body}"))
}

/// Splits `text` into pieces whose JSON string encodings are at most
/// `limit` bytes each, at character boundaries, so that each fits one
/// request line. `limit` must leave room for a few escaped characters
/// (12 bytes at least).
pub fn upload_pieces(text: &str, limit: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // Most YAML escapes little: start from half the limit, halve while
        // the escapes push it over.
        let mut take = rest.len().min(limit / 2).max(1);
        loop {
            while !rest.is_char_boundary(take) {
                take += 1;
            }
            let encoded = serde_json::to_string(&rest[..take]).map_or(usize::MAX, |s| s.len());
            if encoded <= limit || take <= 1 {
                break;
            }
            take /= 2;
        }
        pieces.push(&rest[..take]);
        rest = &rest[take..];
    }
    pieces
}

/// `rvsctl conns` filters; every one given must match.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnFilter {
    /// Connections to this VIP
    #[arg(long, value_name = "IP", value_parser = cli::ipv4)]
    pub vip: Option<Ipv4Addr>,
    /// Connections to this service port
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Connections to this real
    #[arg(long, value_name = "IP", value_parser = cli::ipv4)]
    pub real: Option<Ipv4Addr>,
    /// Connections from this client
    #[arg(long, value_name = "IP", value_parser = cli::ipv4)]
    pub client: Option<Ipv4Addr>,
    /// Connections in this IPVS state, any case (established, SYN_RECV...)
    #[arg(long, value_name = "NAME", ignore_case = true, value_parser = cli::conn_state())]
    pub state: Option<String>,
    /// Connections of this protocol
    #[arg(long, alias = "proto", value_parser = cli::protocol())]
    pub protocol: Option<Protocol>,
}

impl ConnFilter {
    pub fn matches(&self, conn: &ConnEntry) -> bool {
        self.protocol.is_none_or(|p| p == conn.protocol)
            && self.vip.is_none_or(|vip| vip == conn.vip)
            && self.port.is_none_or(|port| port == conn.vport)
            && self.real.is_none_or(|real| real == conn.real)
            && self.client.is_none_or(|client| client == conn.client)
            && self
                .state
                .as_deref()
                .is_none_or(|state| state.eq_ignore_ascii_case(&conn.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_on, CpuList, HostCpus};

    fn cpus() -> HostCpus {
        let list = CpuList::parse("0-3").expect("a CPU list");
        HostCpus {
            online: list.clone(),
            allowed: list,
        }
    }

    #[test]
    fn dump_parses_back_equal() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/rvs.yaml"))
                .expect("conf/rvs.yaml");
        let config = parse_on(&text, "rvs.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"));
        let dumped = dump(&config).unwrap();
        assert!(dumped.starts_with(DUMP_HEADER));
        let back =
            parse_on(&dumped, "dump.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}\n{dumped}"));
        assert_eq!(back, config);
        assert_eq!(
            dump(&back).unwrap(),
            dumped,
            "a dump of a dump is the same text"
        );
    }

    #[test]
    fn dump_of_ownership_floating_addresses_and_sync_parses_back_equal() {
        let text = "\
ports:
  - name: client
    device: net_null0
    addresses: [10.99.1.1/24]
    kernel_interface: rvs-client
    floating_addresses: [10.99.1.254/24, 10.99.1.253/32]
  - { name: real, device: net_null1, addresses: [10.99.2.1/24] }
workers:
  - { lcore: 1, queues: [{ port: client, queue: 0 }, { port: real, queue: 0 }] }
ownership: kernel
sync:
  master:
    mcast_interface: rvs-client
    syncid: 9
    sync_maxlen: 9000
    mcast_group: 239.1.2.3
    mcast_port: 9999
    mcast_ttl: 3
  backup: { mcast_interface: eth1 }
";
        let config = parse_on(text, "ha.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}"));
        let dumped = dump(&config).unwrap();
        for key in [
            "\nownership: kernel\n",
            "\n  floating_addresses:\n",
            "- 10.99.1.253/32",
            "\nsync:\n",
            "mcast_group: 239.1.2.3",
            // The backup's defaults are written out.
            "mcast_port: 8848",
        ] {
            assert!(dumped.contains(key), "{key} is missing from:\n{dumped}");
        }
        let back =
            parse_on(&dumped, "dump.yaml", &cpus()).unwrap_or_else(|e| panic!("{e}\n{dumped}"));
        assert_eq!(back, config);
        // With their defaults the keys are left out, as before they existed.
        let plain = parse_on(
            &text[..text.find("ownership:").unwrap()].replace(
                "    floating_addresses: [10.99.1.254/24, 10.99.1.253/32]\n",
                "",
            ),
            "plain.yaml",
            &cpus(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let dumped = dump(&plain).unwrap();
        for key in ["\nownership:", "floating_addresses:", "\nsync:"] {
            assert!(!dumped.contains(key), "{key} in:\n{dumped}");
        }
    }

    #[test]
    fn upload_pieces_fit_and_join_back() {
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!(
                "  - {{ address: 10.1.{}.{}, weight: 1 }} # \"é\\\t\n",
                i / 250,
                i % 250
            ));
        }
        text.push_str(&"\u{1}".repeat(3000));
        let limit = 4096;
        let pieces = upload_pieces(&text, limit);
        assert!(pieces.len() > 10);
        for piece in &pieces {
            assert!(!piece.is_empty());
            assert!(serde_json::to_string(piece).unwrap().len() <= limit);
        }
        assert_eq!(pieces.concat(), text);
        assert!(upload_pieces("", limit).is_empty());
    }

    #[test]
    fn conn_filter() {
        let conn = ConnEntry {
            protocol: Protocol::Tcp,
            client: Ipv4Addr::new(10, 0, 0, 2),
            client_port: 40000,
            vip: Ipv4Addr::new(10, 0, 0, 1),
            vport: 80,
            real: Ipv4Addr::new(192, 168, 1, 2),
            real_port: 8080,
            state: "ESTABLISHED".into(),
            expires_secs: 899,
        };
        assert!(ConnFilter::default().matches(&conn));
        let mut filter = ConnFilter {
            vip: Some(Ipv4Addr::new(10, 0, 0, 1)),
            port: Some(80),
            real: Some(Ipv4Addr::new(192, 168, 1, 2)),
            client: Some(Ipv4Addr::new(10, 0, 0, 2)),
            state: Some("established".into()),
            protocol: Some(Protocol::Tcp),
        };
        assert!(filter.matches(&conn));
        filter.port = Some(8080);
        assert!(!filter.matches(&conn), "--port is the service port");
        filter.port = None;
        filter.state = Some("SYN_RECV".into());
        assert!(!filter.matches(&conn));
        filter.state = None;
        filter.protocol = Some(Protocol::Udp);
        assert!(!filter.matches(&conn));
    }
}

//! The exposition of a known set of counters, in both formats.

use std::sync::atomic::Ordering::Relaxed;

use rvs_control::health::Health;

use super::*;
use crate::counters::bump;

fn sources(health: &Health) -> Arc<Sources> {
    let workers: Vec<Arc<WorkerCounters>> = (0..2).map(|_| Arc::default()).collect();
    bump(&workers[0].rx_packets, 10);
    bump(&workers[1].rx_packets, 5);
    workers[1].count_drop(DropReason::NoReal);
    let lip = |last| Ipv4Addr::new(10, 99, 2, last);
    let book = Arc::new(RealBook::new(2, 4).with_local_addresses(&[lip(2), lip(1)]));
    // Worker 0: 2 of 30 ports of .1 in use; worker 1: one of .2, which
    // the services no longer list.
    for counters in &book.local.workers {
        counters.ports.store(30, Relaxed);
    }
    book.local.workers[0].in_use[0].store(2, Relaxed);
    book.local.workers[1].in_use[1].store(1, Relaxed);
    book.workers[0][1].conns.store(3, Relaxed);
    book.workers[1][1].conns.store(4, Relaxed);
    book.workers[1][2].conns.store(1, Relaxed);
    book.workers[0][1].in_bytes.store(100, Relaxed);
    Arc::new(Sources {
        workers,
        book,
        health: health.reader(),
        ports: Vec::new(),
        kernel: Vec::new(),
        kernel_counters: Arc::new([]),
        table_capacity: 1000,
        mbufs: 4096,
        ipvs_compat: true,
    })
}

fn frame() -> Frame {
    let key = ServiceKey::tcp(Ipv4Addr::new(10, 99, 1, 100), 80);
    let real = |address: [u8; 4], id, weight| RealRow {
        service: usize::from(id == 3),
        address: Ipv4Addr::from(address),
        port: 80,
        forward: Forward::Nat,
        id,
        weight,
        up: None,
    };
    Frame {
        services: vec![
            ServiceRow {
                key,
                usable: 2,
                quorum_up: None,
            },
            ServiceRow {
                key: ServiceKey::Mark(7),
                usable: 1,
                quorum_up: Some(false),
            },
        ],
        reals: vec![
            real([10, 99, 2, 11], 1, 2),
            real([10, 99, 2, 12], 2, 1),
            real([10, 99, 2, 13], 3, 1),
        ],
        generation: 3,
        reload: Some((true, 1_700_000_000.5)),
        mbufs_free: 4000,
        local_addresses: vec![Ipv4Addr::new(10, 99, 2, 1)],
        control: Served {
            requests: 5,
            errors: 1,
            refused: 0,
        },
    }
}

#[test]
fn counters_are_summed_over_workers_and_labelled() {
    let health = Health::start().unwrap();
    let text = encode(&sources(&health), frame(), false);
    let real = r#"vip="10.99.1.100",port="80",protocol="tcp",real="10.99.2.11",real_port="80",forward="nat""#;
    for line in [
        "# TYPE rvs_real_connections_total counter".to_owned(),
        format!("rvs_real_connections_total{{{real}}} 7"),
        format!("rvs_real_bytes_total{{{real},direction=\"in\"}} 100"),
        format!("rvs_real_weight{{{real}}} 2"),
        format!("rvs_real_up{{{real}}} 1"),
        r#"rvs_service_connections_total{vip="10.99.1.100",port="80",protocol="tcp"} 8"#.to_owned(),
        r#"rvs_service_reals{vip="10.99.1.100",port="80",protocol="tcp"} 2"#.to_owned(),
        r#"rvs_worker_packets_total{worker="1",direction="rx"} 5"#.to_owned(),
        r#"rvs_drops_total{worker="1",reason="no_real"} 1"#.to_owned(),
        r#"rvs_drops_total{worker="0",reason="no_real"} 0"#.to_owned(),
        "rvs_config_generation 3".to_owned(),
        "rvs_config_reload_success 1".to_owned(),
        "node_ipvs_connections_total 8".to_owned(),
        r#"node_ipvs_backend_weight{local_address="10.99.1.100",local_port="80",local_mark="",proto="TCP",remote_address="10.99.2.12",remote_port="80"} 1"#.to_owned(),
        r#"rvs_real_weight{vip="",port="0",protocol="fwmark:7",real="10.99.2.13",real_port="80",forward="nat"} 1"#.to_owned(),
        r#"rvs_service_quorum_up{vip="",port="0",protocol="fwmark:7"} 0"#.to_owned(),
        r#"node_ipvs_backend_weight{local_address="",local_port="0",local_mark="7",proto="",remote_address="10.99.2.13",remote_port="80"} 1"#.to_owned(),
        r#"rvs_local_ports_in_use{local_address="10.99.2.1",worker="0"} 2"#.to_owned(),
        r#"rvs_local_ports_free{local_address="10.99.2.1",worker="0"} 28"#.to_owned(),
        r#"rvs_local_ports_free{local_address="10.99.2.1",worker="1"} 30"#.to_owned(),
        r#"rvs_local_ports_in_use{local_address="10.99.2.2",worker="1"} 1"#.to_owned(),
        "rvs_control_requests_total 5".to_owned(),
        "rvs_control_errors_total 1".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("# EOF"));
    assert!(
        !text.contains(r#"local_address="10.99.2.2",worker="0""#),
        "an address neither listed nor in use is left out:\n{text}"
    );
    assert!(
        !text.contains(r#"rvs_service_quorum_up{vip="10.99.1.100""#),
        "not checked: no quorum"
    );

    let open = encode(&sources(&health), frame(), true);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE rvs_real_connections counter"),
        "{open}"
    );
}

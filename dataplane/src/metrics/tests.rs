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
    let book = Arc::new(RealBook::new(2, 4));
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
        service: 0,
        address: Ipv4Addr::from(address),
        port: 80,
        forward: Forward::Nat,
        id,
        weight,
        up: None,
    };
    Frame {
        services: vec![ServiceRow {
            key,
            usable: 2,
            quorum_up: None,
        }],
        reals: vec![real([10, 99, 2, 11], 1, 2), real([10, 99, 2, 12], 2, 1)],
        generation: 3,
        reload: Some((true, 1_700_000_000.5)),
        mbufs_free: 4000,
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
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(!text.contains("# EOF"));
    assert!(
        !text.contains("rvs_service_quorum_up{"),
        "not checked: no quorum"
    );

    let open = encode(&sources(&health), frame(), true);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE rvs_real_connections counter"),
        "{open}"
    );
}

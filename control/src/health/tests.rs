//! The checkers against servers on the loopback: each kind's verdicts,
//! keepalived's retry rule, a hung script killed, a real leaving and
//! coming back through [`Health`].

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::thread;

use super::*;
use crate::config::Check;

fn probe(yaml: &str, port: u16) -> Probe {
    let check: Check = serde_yaml::from_str(yaml).expect("a check");
    assert_eq!(check.refusal(port), None);
    check.resolve(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port), None)
}

fn once(probe: &Probe) -> probe::Outcome {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(probe::run(probe))
}

/// An HTTP server answering every connection with `answer`.
fn http_server(answer: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvs-health-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tcp_check_up_and_refused() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert_eq!(
        once(&probe("{type: tcp_check, connect_timeout: 1}", port)),
        Ok(None)
    );
    drop(listener);
    let err = once(&probe("{type: tcp_check, connect_timeout: 1}", port)).unwrap_err();
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn http_get_status_and_digest() {
    let port = http_server("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n");
    // md5("ok\n")
    let good = "{type: http_get, path: /health, digest: eff5bc1ef8ec9d03e640fc4370f5eacd, connect_timeout: 2}";
    assert_eq!(once(&probe(good, port)), Ok(None));
    let bad = "{type: http_get, path: /health, digest: 00000000000000000000000000000000, connect_timeout: 2}";
    let err = once(&probe(bad, port)).unwrap_err();
    assert!(
        err.contains("digest eff5bc1ef8ec9d03e640fc4370f5eacd, expected 0000"),
        "{err}"
    );

    let port = http_server("HTTP/1.0 503 Busy\r\n\r\n");
    let err = once(&probe(
        "{type: http_get, path: /health, connect_timeout: 2}",
        port,
    ))
    .unwrap_err();
    assert_eq!(err, "HTTP_GET /health: status 503, expected 200-299");
    let listed = "{type: http_get, path: /, status_code: [200, \"500-503\"], connect_timeout: 2}";
    assert_eq!(once(&probe(listed, port)), Ok(None));
}

#[test]
fn misc_check_exit_codes_dynamic_weights_and_a_hung_script() {
    assert_eq!(
        once(&probe("{type: misc_check, misc_path: \"exit 0\"}", 0)),
        Ok(None)
    );
    let err = once(&probe("{type: misc_check, misc_path: \"exit 1\"}", 0)).unwrap_err();
    assert!(err.ends_with("exit status 1"), "{err}");
    let dynamic = "{type: misc_check, misc_path: \"exit 7\", misc_dynamic: true}";
    assert_eq!(once(&probe(dynamic, 0)), Ok(Some(5)));
    assert!(once(&probe("{type: misc_check, misc_path: \"exit 7\"}", 0)).is_err());

    // A script that hangs, and a child of it: both killed at misc_timeout.
    let dir = scratch("misc");
    let pids = dir.join("pids");
    let script = format!(
        "{{type: misc_check, misc_timeout: 0.5, misc_path: \"sleep 30 & echo $! $$ > {}; wait\"}}",
        pids.display()
    );
    let started = Instant::now();
    let err = once(&probe(&script, 0)).unwrap_err();
    let took = started.elapsed();
    assert!(err.contains("killed"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    thread::sleep(Duration::from_millis(200));
    for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init.
        assert!(
            state.is_empty() || state.contains(") Z"),
            "{pid} lives on: {state}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn udp_check_reply_and_refusal() {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = echo.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = echo.recv_from(&mut buf) {
            let mut reply = b"r1:".to_vec();
            reply.extend_from_slice(&buf[..n]);
            let _ = echo.send_to(&reply, from);
        }
    });
    // "hi", a reply starting "r1:" required.
    let check = "{type: udp_check, payload: \"6869\", reply: \"72313a\", connect_timeout: 1}";
    assert_eq!(once(&probe(check, port)), Ok(None));
    let wrong = "{type: udp_check, payload: \"6869\", reply: \"7a7a\", connect_timeout: 1}";
    assert!(once(&probe(wrong, port)).is_err());
    // Nobody on the port: ICMP port unreachable.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let err = once(&probe(
        "{type: udp_check, require_reply: true, connect_timeout: 1}",
        port,
    ))
    .unwrap_err();
    assert!(err.contains("connection refused"), "{err}");
}

/// Waits up to `limit` for `test` on the checker's states.
fn wait_for(
    health: &Health,
    limit: Duration,
    test: impl Fn(&HashMap<RealKey, RealState>) -> bool,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if test(&health.states()) {
            return started.elapsed();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("not within {limit:?}: {:?}", health.report());
}

/// A TCP listener on the loopback and the key of a real there.
fn listening_real() -> (TcpListener, u16, RealKey) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = ServiceKey::tcp(Ipv4Addr::new(10, 0, 1, 100), port);
    (listener, port, (service, Ipv4Addr::LOCALHOST, port))
}

#[test]
fn a_real_leaves_after_its_retries_and_returns_at_the_next_check() {
    let (listener, port, key) = listening_real();
    let dir = scratch("notify");
    let notes = dir.join("notes");
    let target = Target {
        key,
        probes: vec![probe(
            "{type: tcp_check, delay_loop: 0.3, retry: 2, delay_before_retry: 0.1, connect_timeout: 1, warmup: 0}",
            port,
        )],
        alpha: false,
        notify_up: Some(format!("echo up >> {}", notes.display())),
        notify_down: Some(format!("echo down >> {}", notes.display())),
    };
    let health = Health::start().unwrap();
    health.follow(vec![target.clone()]);
    wait_for(&health, Duration::from_secs(2), |s| {
        s.get(&key).is_some_and(|s| s.alive)
    });
    let report = health.report();
    assert_eq!(report.reals.len(), 1);
    drop(listener);
    let took = wait_for(&health, Duration::from_secs(3), |s| {
        s.get(&key).is_some_and(|s| !s.alive)
    });
    // delay_loop + retry × delay_before_retry, with slack for scheduling.
    assert!(
        took <= Duration::from_millis(300 + 2 * 100 + 500),
        "{took:?}"
    );
    let report = health.report();
    let checker = &report.reals[0].checkers[0];
    assert!(!checker.up && checker.failures == 3, "{checker:?}");
    assert!(
        checker
            .last
            .as_deref()
            .unwrap()
            .contains("connection refused"),
        "{checker:?}"
    );

    let _listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let took = wait_for(&health, Duration::from_secs(2), |s| {
        s.get(&key).is_some_and(|s| s.alive)
    });
    assert!(took <= Duration::from_millis(300 + 300), "{took:?}");
    assert!(health.changes().is_some());

    // Following the same target keeps its state; an empty list stops it.
    health.follow(vec![target]);
    thread::sleep(Duration::from_millis(50));
    assert!(health.states()[&key].alive);
    health.follow(Vec::new());
    wait_for(&health, Duration::from_secs(1), |s| s.is_empty());
    thread::sleep(Duration::from_millis(200));
    let notes = std::fs::read_to_string(&notes).unwrap_or_default();
    assert_eq!(notes, "down\nup\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn alpha_starts_down_until_the_first_good_check() {
    let (_listener, port, key) = listening_real();
    let health = Health::start().unwrap();
    health.follow(vec![Target {
        key,
        probes: vec![probe(
            "{type: tcp_check, delay_loop: 0.5, warmup: 0.3}",
            port,
        )],
        alpha: true,
        notify_up: None,
        notify_down: None,
    }]);
    wait_for(&health, Duration::from_secs(1), |s| {
        s.get(&key).is_some_and(|s| !s.alive)
    });
    wait_for(&health, Duration::from_secs(2), |s| {
        s.get(&key).is_some_and(|s| s.alive)
    });
}

/// A TLS server (self-signed certificate) answering every connection with
/// `answer`; returns its port and the SNI names it was sent.
fn tls_server(answer: &'static str) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["real.example".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&names);
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    continue;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                seen.lock().unwrap().push(sni);
                let mut request = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut tls, &mut request).await;
                let _ = tokio::io::AsyncWriteExt::write_all(&mut tls, answer.as_bytes()).await;
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
            }
        });
    });
    (port, names)
}

#[test]
fn ssl_get_over_tls_with_and_without_sni() {
    let (port, names) = tls_server("HTTP/1.0 200 OK\r\n\r\nok\n");
    let plain = "{type: ssl_get, path: /health, digest: eff5bc1ef8ec9d03e640fc4370f5eacd, connect_timeout: 2}";
    assert_eq!(once(&probe(plain, port)), Ok(None));
    let sni = "{type: ssl_get, path: /health, virtualhost: real.example, enable_sni: true, connect_timeout: 2}";
    assert_eq!(once(&probe(sni, port)), Ok(None));
    assert_eq!(
        *names.lock().unwrap(),
        [None, Some("real.example".to_owned())]
    );

    let (port, _) = tls_server("HTTP/1.0 500 Oops\r\n\r\n");
    let err = once(&probe("{type: ssl_get, path: /, connect_timeout: 2}", port)).unwrap_err();
    assert_eq!(err, "SSL_GET /: status 500, expected 200-299");
    // Not TLS at all.
    let port = http_server("HTTP/1.0 200 OK\r\n\r\nok\n");
    let err = once(&probe("{type: ssl_get, path: /, connect_timeout: 2}", port)).unwrap_err();
    assert!(err.starts_with("SSL_GET /: TLS: "), "{err}");
}

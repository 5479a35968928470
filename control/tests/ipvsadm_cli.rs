//! The rvsadm binary end to end against the control server, which answers
//! by rvsd's own rules (`common::Rules`): the seed script, listings,
//! `-S | -R`, paged connection listings, errors and exit codes.

mod common;

use common::{Rules, CONNECTIONS};
use rvs_control::server::Server;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

struct Daemon {
    dir: PathBuf,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Daemon {
    fn start(name: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("rvsadm-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rvsd.sock");
        let mut server = Server::bind(&path, 0o600, None).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut daemon = Rules::default();
            while !flag.load(Ordering::Relaxed) {
                server.poll(&mut daemon, Duration::from_millis(20)).unwrap();
            }
        });
        Daemon {
            dir,
            path,
            stop,
            thread: Some(thread),
        }
    }

    fn rvsadm(&self, line: &str) -> Output {
        rvsadm_at(&self.path, line, None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rvsadm_at(socket: &Path, line: &str, stdin: Option<&str>) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rvsadm"))
        .args(line.split_whitespace())
        .env("RVS_SOCKET", socket)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}, stderr {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failed(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn seed_script_then_listing() {
    let daemon = Daemon::start("seed");
    for line in [
        "-C",
        "--set 30 5 60",
        "-A -t 10.0.0.1:80 -s rr -p 20",
        "-a -t 10.0.0.1:80 -r 192.168.1.2 -g -w 1",
        "-a -t 10.0.0.1:80 -r 192.168.1.3 -g -w 1",
    ] {
        ok(&daemon.rvsadm(line));
    }
    assert_eq!(
        ok(&daemon.rvsadm("-L -n")),
        concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  10.0.0.1:80 rr persistent 20\n",
            "  -> 192.168.1.2:80               Route   1      0          0         \n",
            "  -> 192.168.1.3:80               Route   1      0          0         \n",
        )
    );
    assert_eq!(
        ok(&daemon.rvsadm("-L --timeout")),
        "Timeout (tcp tcpfin udp): 30 5 60\n"
    );
    assert_eq!(
        ok(&daemon.rvsadm("-L -t 10.0.0.1:80")),
        concat!(
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  10.0.0.1:80 rr persistent 20\n",
            "  -> 192.168.1.2:80               Route   1      0          0         \n",
            "  -> 192.168.1.3:80               Route   1      0          0         \n",
        )
    );
}

#[test]
fn daemon_refusals_print_ipvsadm_messages_and_exit_1() {
    let daemon = Daemon::start("refusals");
    ok(&daemon.rvsadm("-A -t 10.0.0.1:80"));
    assert_eq!(
        failed(&daemon.rvsadm("-A -t 10.0.0.1:80"), 1),
        "Service already exists\n"
    );
    assert_eq!(
        failed(&daemon.rvsadm("-A -t 10.0.0.2:80 -s foo"), 1),
        "Scheduler or persistence engine not found\n"
    );
    assert_eq!(
        failed(&daemon.rvsadm("-a -t 10.0.0.9:80 -r 192.168.1.2"), 1),
        "Service not defined\n"
    );
    assert_eq!(
        failed(&daemon.rvsadm("-L -t 10.0.0.9:80"), 1),
        "No such service\n"
    );
}

#[test]
fn command_line_errors_exit_2() {
    let daemon = Daemon::start("usage");
    assert_eq!(
        failed(&daemon.rvsadm("-E -t 10.0.0.1:80 -m"), 2),
        "Illegal 'forwarding-method' option with the 'edit-service' command\n"
    );
    assert_eq!(
        failed(&daemon.rvsadm("-t 10.0.0.1:80"), 2),
        "Try `rvsadm -h' or 'rvsadm --help' for more information.\n"
    );
    assert_eq!(
        failed(&daemon.rvsadm("--start-daemon primary"), 2),
        "illegal start-daemon parameter specified\n"
    );
    assert_eq!(
        failed(
            &daemon.rvsadm("--start-daemon master --mcast-group ff02::81"),
            2
        ),
        "rvsadm: --mcast-group: rvs is IPv4 only for now\n"
    );
    assert!(ok(&daemon.rvsadm("-h")).contains("rvsadm -A|E virtual-service"));
}

#[test]
fn sync_daemons_start_list_and_stop_as_with_ipvsadm() {
    let daemon = Daemon::start("sync");
    assert_eq!(ok(&daemon.rvsadm("-L --daemon")), "", "none runs");
    ok(&daemon.rvsadm("--start-daemon master --mcast-interface eth1 --syncid 7"));
    ok(&daemon.rvsadm(
        "--start-daemon backup --mcast-interface eth1 --syncid 7 --sync-maxlen 9000 \
         --mcast-group 239.1.1.1 --mcast-port 9999 --mcast-ttl 2",
    ));
    assert_eq!(
        ok(&daemon.rvsadm("-L --daemon")),
        concat!(
            "master sync daemon (mcast=eth1, syncid=7, maxlen=1472, group=224.0.0.81, ",
            "port=8848, ttl=1)\n",
            "backup sync daemon (mcast=eth1, syncid=7, maxlen=9000, group=239.1.1.1, ",
            "port=9999, ttl=2)\n",
        )
    );
    assert_eq!(
        failed(&daemon.rvsadm("--start-daemon master"), 1),
        "Daemon has already run\n"
    );
    ok(&daemon.rvsadm("--stop-daemon master"));
    assert_eq!(
        failed(&daemon.rvsadm("--stop-daemon master"), 1),
        "No daemon is running\n"
    );
    assert!(ok(&daemon.rvsadm("-l --daemon")).starts_with("backup sync daemon (mcast=eth1, "));
    // What ipvsadm takes and the configuration refuses, in its words.
    assert_eq!(
        failed(&daemon.rvsadm("--start-daemon master --sync-maxlen 20"), 1),
        "sync.master.sync_maxlen: 20 bytes is out of range: a sync message holds its header \
         and at least one connection (44 bytes) and fits a UDP datagram (65507 bytes)\n"
    );
    assert_eq!(
        failed(
            &daemon.rvsadm("--start-daemon master --mcast-interface a-name-too-long0"),
            1
        ),
        "sync.master.mcast_interface: `a-name-too-long0` is not a usable interface name: 1 to \
         15 characters (Linux's limit), without `/`, `:` or blanks\n"
    );
    // ipvsadm's default interface.
    ok(&daemon.rvsadm("--start-daemon master"));
    assert!(
        ok(&daemon.rvsadm("-L --daemon")).starts_with("master sync daemon (mcast=eth0, syncid=0, ")
    );
    // -R takes them too, each line refused or not as alone.
    let input = "--stop-daemon backup\n\
                 --start-daemon backup --mcast-interface eth2\n\
                 --start-daemon backup --syncid 9\n";
    assert_eq!(
        failed(&rvsadm_at(&daemon.path, "-R", Some(input)), 1),
        "rvsadm: -R line 3: Daemon has already run\n"
    );
    assert!(ok(&daemon.rvsadm("-L --daemon"))
        .ends_with("backup sync daemon (mcast=eth2, syncid=0, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)\n"));
}

#[test]
fn missing_daemon() {
    let output = rvsadm_at(Path::new("/nonexistent-rvs/rvsd.sock"), "-L -n", None);
    assert_eq!(
        failed(&output, 1),
        "rvsadm: cannot connect to rvsd at /nonexistent-rvs/rvsd.sock: No such file or directory (is rvsd running? set --socket or RVS_SOCKET)\n"
    );
    // --socket wins over the environment.
    let daemon = Daemon::start("flag");
    let line = format!("--socket {} --set 1 2 3", daemon.path.display());
    ok(&rvsadm_at(
        Path::new("/nonexistent-rvs/rvsd.sock"),
        &line,
        None,
    ));
}

#[test]
fn save_then_restore_reproduces_the_configuration() {
    let source = Daemon::start("save");
    for line in [
        "-A -t 10.0.0.1:80 -s wrr -p 360 -M 255.255.255.0",
        "-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 3 -x 100 -y 10",
        "-a -t 10.0.0.1:80 -r 192.168.1.3 -i -w 0",
        "-A -u 10.0.0.1:53 -s rr -o",
        "--add-laddr -u 10.0.0.1:53 -z 192.168.1.250 -F dpdk0",
        "-a -u 10.0.0.1:53 -r 192.168.1.2 --fullnat",
        "-A -f 5 -s sh -b sh-port -p",
        "-a -f 5 -r 192.168.1.4 -g",
    ] {
        ok(&source.rvsadm(line));
    }
    let saved = ok(&source.rvsadm("-S -n"));
    assert_eq!(
        saved,
        concat!(
            "-A -t 10.0.0.1:80 -s wrr -p 360 -M 255.255.255.0\n",
            "-a -t 10.0.0.1:80 -r 192.168.1.2:8080 -m -w 3 -x 100 -y 10\n",
            "-a -t 10.0.0.1:80 -r 192.168.1.3:80 -i -w 0 --tun-type ipip\n",
            "-A -u 10.0.0.1:53 -s rr -o\n",
            // rvsd keeps the address, not the port it was given with (-F).
            "--add-laddr -z 192.168.1.250 -u 10.0.0.1:53\n",
            "-a -u 10.0.0.1:53 -r 192.168.1.2:53 --fullnat -w 1\n",
            "-A -f 5 -s sh -p 360 -b sh-port\n",
            "-a -f 5 -r 192.168.1.4:0 -g -w 1\n",
        )
    );
    let target = Daemon::start("restore");
    ok(&rvsadm_at(&target.path, "-R", Some(&saved)));
    assert_eq!(ok(&target.rvsadm("-S")), saved);
    assert_eq!(
        ok(&target.rvsadm("-L -n --thresholds")),
        ok(&source.rvsadm("-L -n --thresholds"))
    );
}

#[test]
fn restore_refuses_a_bad_line_before_applying_anything() {
    let daemon = Daemon::start("restore-bad");
    let input = "-A -t 10.0.0.1:80 -s rr\n\n# comment\n-a -t 10.0.0.1:80 -r 192.168.1.2 -w 70000\n";
    let stderr = failed(&rvsadm_at(&daemon.path, "-R", Some(input)), 2);
    assert_eq!(stderr, "rvsadm: -R line 4: illegal weight specified\n");
    assert_eq!(ok(&daemon.rvsadm("-S")), "");
}

#[test]
fn connection_listing_pages_through_everything() {
    let daemon = Daemon::start("conns");
    let listing = ok(&daemon.rvsadm("-L -n -c"));
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2 + CONNECTIONS as usize);
    assert_eq!(lines[0], "IPVS connection entries");
    assert_eq!(
        lines[1],
        "pro expire state       source             virtual            destination"
    );
    assert_eq!(
        lines[2],
        "TCP 14:59  ESTABLISHED 10.1.0.0:0         10.0.0.1:80        192.168.1.2:80"
    );
    assert!(lines
        .last()
        .unwrap()
        .contains(&format!("10.1.0.0:{} ", CONNECTIONS - 1)));
}

#[test]
fn restore_reports_each_refused_line_and_applies_the_rest() {
    let daemon = Daemon::start("restore-refused");
    let input = "\
-A -t 10.0.0.1:80 -s rr
-A -t 10.0.0.1:80 -s wlc
-a -t 10.0.0.1:80 -r 192.168.1.2 -m
-a -t 10.0.0.9:80 -r 192.168.1.2 -m
-A -t 10.0.0.2:80 -s rr
-a -t 10.0.0.2:80 -r 192.168.1.7 --fullnat
--add-laddr -t 10.0.0.2:80 -z 192.168.1.250
-L -n
-a -t 10.0.0.1:80 -r 172.16.0.1 -m
-D -t 10.0.0.1:80
-A -t 10.0.0.1:80 -s sh
-a -t 10.0.0.1:80 -r 192.168.1.3 -m
";
    let output = rvsadm_at(&daemon.path, "-R", Some(input));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "rvsadm: -R line 2: Service already exists\n\
         rvsadm: -R line 4: Service not defined\n\
         rvsadm: -R line 6: services[1].reals[0].forward: fullnat needs local addresses: add \
         `local_addresses: [LIP, ...]` to the service (each an address of a port)\n\
         rvsadm: -R line 9: services[0].reals[0].address: real 172.16.0.1 is not reachable: \
         no connected subnet or route covers it\n"
    );
    // The listing on line 8 shows what the lines before it left.
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(
        listing.contains("TCP  10.0.0.1:80 rr\n  -> 192.168.1.2:80"),
        "{listing}"
    );
    assert_eq!(
        ok(&daemon.rvsadm("-S -n")),
        "-A -t 10.0.0.1:80 -s sh\n\
         -a -t 10.0.0.1:80 -r 192.168.1.3:80 -m -w 1\n\
         -A -t 10.0.0.2:80 -s rr\n\
         --add-laddr -z 192.168.1.250 -t 10.0.0.2:80\n"
    );
}

#[test]
fn restore_takes_time_in_proportion_to_its_lines() {
    let daemon = Daemon::start("restore-big");
    let mut input = String::new();
    for service in 0..4000 {
        input.push_str(&format!("-A -t 10.0.0.1:{} -s wrr\n", 1000 + service));
        for real in 2..6 {
            input.push_str(&format!(
                "-a -t 10.0.0.1:{} -r 192.168.1.{real} -m -w {real}\n",
                1000 + service
            ));
        }
    }
    // 20,000 lines, more than one request line: uploaded, one batch. One
    // by one they took minutes (each line validated the whole
    // configuration).
    let started = std::time::Instant::now();
    ok(&rvsadm_at(&daemon.path, "-R", Some(&input)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "{took:?}");
    let saved = ok(&daemon.rvsadm("-S -n"));
    assert_eq!(saved.lines().count(), 20_000);
}

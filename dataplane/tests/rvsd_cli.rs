//! rvsd's command line as the binary runs it: help, version, exit statuses,
//! the configuration check, and the generated completions and man page.
//! Nothing here starts DPDK.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn rvsd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rvsd"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("rvsd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvsd-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

fn path(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// conf/lab-nat.yaml's shape on one CPU, so that it is valid on any host.
const VALID: &str = r#"
eal: { main_lcore: 0, main_cpu: 0, args: ["--in-memory"] }
ports:
  - { name: client, device: "net_null0", addresses: ["10.99.1.1/24"] }
  - { name: real, device: "net_null1", addresses: ["10.99.2.1/24"] }
workers:
  - lcore: 1
    cpu: 0
    queues: [{ port: client, queue: 0 }, { port: real, queue: 0 }]
services:
  - vip: 10.99.1.100
    port: 80
    protocol: tcp
    scheduler: rr
    reals: [{ address: 10.99.2.11, port: 80, weight: 1, forward: nat }]
"#;

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["-h"]] {
        let help = rvsd(args);
        assert_eq!(help.status.code(), Some(0), "{args:?}");
        let help = text(&help.stdout);
        for word in [
            "--config <PATH>",
            "-c",
            "--check",
            "/etc/rvs/rvs.yaml",
            "Signals:",
        ] {
            assert!(help.contains(word), "{word}:\n{help}");
        }
        assert!(
            !help.contains("--completions") && !help.contains("--man"),
            "{help}"
        );
    }
    for args in [&["--version"][..], &["-V"]] {
        let version = rvsd(args);
        assert_eq!(version.status.code(), Some(0));
        assert_eq!(
            text(&version.stdout),
            format!("rvsd {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn command_line_errors_exit_2() {
    for args in [&["--frobnicate"][..], &["--config"], &["rvs.yaml"]] {
        let output = rvsd(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).starts_with("error: "), "{args:?}");
    }
}

#[test]
fn check_validates_and_exits() {
    let dir = scratch_dir("check");
    let good = dir.join("good.yaml");
    std::fs::write(&good, VALID).expect("config written");
    for args in [
        &["--check", "--config", path(&good)][..],
        &["-c", path(&good), "--check"],
    ] {
        let output = rvsd(args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            text(&output.stdout),
            format!("{}: configuration is valid\n", good.display())
        );
    }
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, VALID.replace("10.99.2.11", "10.99.2.300")).expect("config written");
    let output = rvsd(&["--check", &format!("--config={}", path(&bad))]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!("rvsd: invalid configuration: {}:", bad.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("services[0].reals[0].address: invalid IPv4 address"),
        "{stderr}"
    );
    let missing = rvsd(&["--check", "--config", "/nonexistent-rvs/rvs.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr)
        .starts_with("rvsd: invalid configuration: /nonexistent-rvs/rvs.yaml: cannot read"));
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

#[test]
fn completions_for_every_shell() {
    let dir = scratch_dir("completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = rvsd(&["--completions", shell]);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = text(&output.stdout);
        assert!(
            script.contains("config") && script.contains("check"),
            "{shell}:\n{script}"
        );
        if shell == "bash" {
            let file = dir.join("rvsd.bash");
            std::fs::write(&file, &script).expect("script saved");
            let syntax = Command::new("bash")
                .arg("-n")
                .arg(&file)
                .output()
                .expect("bash runs");
            assert!(syntax.status.success(), "{}", text(&syntax.stderr));
        }
    }
    let refused = rvsd(&["--completions", "bash", "--check"]);
    assert_eq!(refused.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

#[test]
fn the_man_page_is_written_into_a_directory() {
    let dir = scratch_dir("man");
    let output = rvsd(&["--man", path(&dir)]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(output.stdout.is_empty());
    let page = std::fs::read_to_string(dir.join("rvsd.1")).expect("rvsd.1");
    for option in ["\\-\\-config", "\\-\\-check", "\\-\\-version", "\\-\\-help"] {
        assert!(page.contains(option), "{option}:\n{page}");
    }
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
    let refused = rvsd(&["--man", "/nonexistent-rvs/man"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr),
        "rvsd: cannot write the man pages into /nonexistent-rvs/man: No such file or directory (os error 2)\n"
    );
}

//! rvsctl's command line: the clap definition parses what the hand parser
//! it replaced parsed, refuses what it refused, and is the one source of the
//! help, the man pages and the completion scripts; the binary keeps its
//! exit statuses.

use clap::error::ErrorKind;
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use rvs_control::cli::{completions, man_pages, Generate};
use rvs_control::client::DEFAULT_SOCKET;
use rvs_control::proto::{Protocol, ServiceKey};
use rvs_control::rvsctl::cli::{parse, Action, Cli, Invocation, Service};
use rvs_control::rvsctl::ConnFilter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

fn parse_words(words: &str) -> Result<Invocation, clap::Error> {
    parse(std::iter::once("rvsctl").chain(words.split_whitespace()))
}

fn run(words: &str) -> Cli {
    match parse_words(words) {
        Ok(Invocation::Run(cli)) => cli,
        other => panic!("`{words}`: {other:?}"),
    }
}

fn action(words: &str) -> Action {
    run(words).action
}

fn tcp(addr: Ipv4Addr, port: u16) -> Service {
    service(&format!("-t {addr}:{port}"))
}

/// The `Service` that `laddrs WORDS` parses to.
fn service(words: &str) -> Service {
    match action(&format!("laddrs {words}")) {
        Action::Laddrs { service } => service,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_definition_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn commands_and_options() {
    let cli = run("--socket /tmp/s --json apply new.yaml --dry-run");
    assert_eq!(cli.socket.as_deref(), Some("/tmp/s"));
    assert!(cli.json);
    assert_eq!(cli.generate, Generate::default());
    assert_eq!(
        cli.action,
        Action::Apply {
            file: "new.yaml".into(),
            dry_run: true
        }
    );
    assert_eq!(
        action("conns --vip 10.0.0.1 --port 80 --state established"),
        Action::Conns {
            filter: ConnFilter {
                vip: Some(VIP),
                port: Some(80),
                state: Some("established".into()),
                ..ConnFilter::default()
            }
        }
    );
    for state in ["syn_recv", "SYN_RECV", "Udp", "none"] {
        match action(&format!("conns --state {state}")) {
            Action::Conns { filter } => assert!(
                filter
                    .state
                    .is_some_and(|name| name.eq_ignore_ascii_case(state)),
                "{state}"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        service("-t 10.0.0.1:80").key(),
        Some(ServiceKey::tcp(VIP, 80))
    );
    assert_eq!(run("--socket=/x dump").socket.as_deref(), Some("/x"));
}

/// Every command and spelling the hand parser took, as one table:
/// (words, what they mean).
#[test]
fn every_command_and_spelling() {
    let no_service = service("");
    for (words, expected) in [
        (
            "apply -",
            Action::Apply {
                file: "-".into(),
                dry_run: false,
            },
        ),
        (
            "apply -n new.yaml",
            Action::Apply {
                file: "new.yaml".into(),
                dry_run: true,
            },
        ),
        ("dump", Action::Dump),
        (
            "import-keepalived /etc/keepalived/keepalived.conf",
            Action::ImportKeepalived {
                file: "/etc/keepalived/keepalived.conf".into(),
                dry_run: false,
            },
        ),
        (
            "import-keepalived -n k.conf",
            Action::ImportKeepalived {
                file: "k.conf".into(),
                dry_run: true,
            },
        ),
        (
            "import-keepalived k.conf --dry-run",
            Action::ImportKeepalived {
                file: "k.conf".into(),
                dry_run: true,
            },
        ),
        ("reload", Action::Reload { dry_run: false }),
        ("reload --dry-run", Action::Reload { dry_run: true }),
        ("reload -n", Action::Reload { dry_run: true }),
        ("ports", Action::Ports),
        ("workers", Action::Workers),
        ("routes", Action::Routes),
        ("addresses", Action::Addresses),
        ("neighbours", Action::Neighbours),
        ("neighbors", Action::Neighbours),
        ("version", Action::Version),
        (
            "laddrs",
            Action::Laddrs {
                service: no_service,
            },
        ),
        (
            "laddrs --tcp 10.0.0.1:80",
            Action::Laddrs {
                service: tcp(VIP, 80),
            },
        ),
        (
            "remove-real -t 10.0.0.1:80 -r 192.168.1.2",
            Action::RemoveReal {
                service: tcp(VIP, 80),
                real: (Ipv4Addr::new(192, 168, 1, 2), None),
                purge: false,
            },
        ),
        (
            "remove-real --purge -r 192.168.1.2:8080 --udp 10.0.0.1:53",
            Action::RemoveReal {
                service: service("-u 10.0.0.1:53"),
                real: (Ipv4Addr::new(192, 168, 1, 2), Some(8080)),
                purge: true,
            },
        ),
        (
            "conns",
            Action::Conns {
                filter: ConnFilter::default(),
            },
        ),
        (
            "conns --real 192.168.1.2 --client 10.0.0.2 --proto udp",
            Action::Conns {
                filter: ConnFilter {
                    real: Some(Ipv4Addr::new(192, 168, 1, 2)),
                    client: Some(Ipv4Addr::new(10, 0, 0, 2)),
                    protocol: Some(Protocol::Udp),
                    ..ConnFilter::default()
                },
            },
        ),
        (
            "conns --protocol tcp",
            Action::Conns {
                filter: ConnFilter {
                    protocol: Some(Protocol::Tcp),
                    ..ConnFilter::default()
                },
            },
        ),
    ] {
        assert_eq!(action(words), expected, "{words}");
    }
    assert_eq!(
        service("-u 10.0.0.1:53").key(),
        Some(ServiceKey::udp(VIP, 53))
    );
    assert_eq!(service("").key(), None);
}

#[test]
fn global_options_go_before_or_after_the_command() {
    for words in [
        "--json --socket /s conns --vip 10.0.0.1",
        "conns --vip 10.0.0.1 --json --socket /s",
        "conns --socket=/s --vip 10.0.0.1 --json",
    ] {
        let cli = run(words);
        assert_eq!(
            (cli.socket.as_deref(), cli.json),
            (Some("/s"), true),
            "{words}"
        );
        assert!(matches!(cli.action, Action::Conns { .. }), "{words}");
    }
}

#[test]
fn an_option_given_twice_takes_its_last_value() {
    assert_eq!(
        run("--socket /a dump --socket /b").socket.as_deref(),
        Some("/b")
    );
    assert_eq!(
        action("conns --port 80 --port 443"),
        Action::Conns {
            filter: ConnFilter {
                port: Some(443),
                ..ConnFilter::default()
            }
        }
    );
}

/// (words, the kind of error, what the message must say).
#[test]
fn usage_errors_are_precise() {
    for (words, kind, message) in [
        (
            "",
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            "Usage: rvsctl",
        ),
        (
            "--json",
            ErrorKind::MissingSubcommand,
            "requires a subcommand",
        ),
        ("frobnicate", ErrorKind::InvalidSubcommand, "'frobnicate'"),
        ("apply", ErrorKind::MissingRequiredArgument, "<FILE>"),
        ("apply a b", ErrorKind::UnknownArgument, "'b'"),
        ("apply --force a", ErrorKind::UnknownArgument, "'--force'"),
        (
            "import-keepalived",
            ErrorKind::MissingRequiredArgument,
            "<FILE>",
        ),
        ("import-keepalived a b", ErrorKind::UnknownArgument, "'b'"),
        (
            "conns --vip 10.0.0.300",
            ErrorKind::ValueValidation,
            "'10.0.0.300' is not an IPv4 address",
        ),
        ("conns --port", ErrorKind::InvalidValue, "--port <N>"),
        ("conns --port 65536", ErrorKind::ValueValidation, "65536"),
        (
            "conns --protocol sctp",
            ErrorKind::InvalidValue,
            "[possible values: tcp, udp]",
        ),
        (
            "conns --state bogus",
            ErrorKind::InvalidValue,
            "invalid value 'bogus' for '--state <NAME>'",
        ),
        (
            "conns --state syn-recv",
            ErrorKind::InvalidValue,
            "[possible values: NONE, ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT, TIME_WAIT, \
             CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, SYNACK, UDP]",
        ),
        (
            "conns --frobnicate 1",
            ErrorKind::UnknownArgument,
            "'--frobnicate'",
        ),
        ("ports now", ErrorKind::UnknownArgument, "'now'"),
        ("reload --force", ErrorKind::UnknownArgument, "'--force'"),
        (
            "laddrs -t 10.0.0.1",
            ErrorKind::ValueValidation,
            "expected VIP:PORT",
        ),
        (
            "laddrs -t 10.0.0.1:http",
            ErrorKind::ValueValidation,
            "'http' is not a port number",
        ),
        (
            "laddrs -t 10.0.0.1:80 -u 10.0.0.1:80",
            ErrorKind::ArgumentConflict,
            "cannot be used with",
        ),
        (
            "laddrs 10.0.0.1:80",
            ErrorKind::UnknownArgument,
            "'10.0.0.1:80'",
        ),
        (
            "remove-real -r 192.168.1.2",
            ErrorKind::MissingRequiredArgument,
            "--tcp",
        ),
        (
            "remove-real -t 10.0.0.1:80",
            ErrorKind::MissingRequiredArgument,
            "-r",
        ),
        (
            "remove-real -t 10.0.0.1:80 -r 192.168.1.300",
            ErrorKind::ValueValidation,
            "'192.168.1.300' is not an IPv4 address",
        ),
        (
            "remove-real -t 10.0.0.1:80 -r",
            ErrorKind::InvalidValue,
            "-r <RIP[:PORT]>",
        ),
        ("--socket", ErrorKind::InvalidValue, "--socket <PATH>"),
        ("--completions tcsh", ErrorKind::InvalidValue, "tcsh"),
        (
            "--man /tmp dump",
            ErrorKind::ArgumentConflict,
            "--completions and --man take no command",
        ),
        ("--json --man /tmp", ErrorKind::ArgumentConflict, "--man"),
    ] {
        let err = match parse_words(words) {
            Err(err) => err,
            Ok(parsed) => panic!("`{words}` parsed: {parsed:?}"),
        };
        assert_eq!(err.kind(), kind, "`{words}`: {err}");
        assert!(err.to_string().contains(message), "`{words}`: {err}");
        assert_eq!(err.exit_code(), 2, "`{words}`");
    }
}

#[test]
fn help_and_version_are_not_errors() {
    for (words, kind) in [
        ("--help", ErrorKind::DisplayHelp),
        ("-h", ErrorKind::DisplayHelp),
        ("help", ErrorKind::DisplayHelp),
        ("help conns", ErrorKind::DisplayHelp),
        ("conns --help", ErrorKind::DisplayHelp),
        ("--version", ErrorKind::DisplayVersion),
        ("-V", ErrorKind::DisplayVersion),
    ] {
        let err = parse_words(words).expect_err(words);
        assert_eq!(err.kind(), kind, "{words}");
        assert_eq!(err.exit_code(), 0, "{words}");
    }
}

#[test]
fn generation_takes_no_command() {
    assert_eq!(
        parse_words("--completions zsh").unwrap(),
        Invocation::Generate(Generate {
            completions: Some(Shell::Zsh),
            man: None,
        })
    );
    assert_eq!(
        parse_words("--man /tmp/man").unwrap(),
        Invocation::Generate(Generate {
            completions: None,
            man: Some(PathBuf::from("/tmp/man")),
        })
    );
}

#[test]
fn the_help_lists_every_command_and_the_default_socket() {
    let help = Cli::command().render_long_help().to_string();
    for command in Cli::command().get_subcommands() {
        assert!(help.contains(command.get_name()), "{}", command.get_name());
    }
    assert!(help.contains(DEFAULT_SOCKET), "{help}");
    assert!(help.contains("Exit status: 0 success"), "{help}");
    assert!(
        !help.contains("--completions") && !help.contains("--man"),
        "packaging options are hidden:\n{help}"
    );
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rvsctl-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// How roff spells a word in bold, as clap_mangen writes option names.
fn roff_bold(word: &str) -> String {
    format!("\\fB{}\\fR", word.replace('-', "\\-"))
}

/// Checks that `page` documents every visible option and positional of
/// `command`.
fn assert_documents_every_argument(page: &str, command: &Command, file: &Path) {
    for arg in command.get_arguments().filter(|arg| !arg.is_hide_set()) {
        let documented = match (arg.get_long(), arg.get_short()) {
            (Some(long), _) => page.contains(&roff_bold(&format!("--{long}"))),
            (None, Some(short)) => page.contains(&roff_bold(&format!("-{short}"))),
            (None, None) => arg
                .get_value_names()
                .into_iter()
                .flatten()
                .all(|name| page.contains(&format!("<\\fI{name}\\fR>"))),
        };
        assert!(
            documented,
            "{}: {} is missing",
            file.display(),
            arg.get_id()
        );
    }
}

#[test]
fn the_man_pages_document_every_command_and_option() {
    let dir = scratch_dir("man");
    man_pages(Cli::command(), &dir).expect("man pages written");
    let mut command = Cli::command();
    command.build();
    let read = |name: &str| {
        let file = dir.join(format!("{name}.1"));
        let page = std::fs::read_to_string(&file)
            .unwrap_or_else(|err| panic!("{}: {err}", file.display()));
        assert!(page.contains(".TH "), "{}: not a man page", file.display());
        (file, page)
    };
    let (file, page) = read("rvsctl");
    assert_documents_every_argument(&page, &command, &file);
    assert!(page.contains("Exit status: 0 success"));
    let subcommands: Vec<&Command> = command
        .get_subcommands()
        .filter(|sub| sub.get_name() != "help")
        .collect();
    assert_eq!(subcommands.len(), 17);
    for sub in subcommands {
        let name = format!("rvsctl-{}", sub.get_name());
        assert!(
            page.contains(&format!("{}(1)", name.replace('-', "\\-"))),
            "rvsctl.1 does not list {name}"
        );
        let (file, sub_page) = read(&name);
        assert_documents_every_argument(&sub_page, sub, &file);
    }
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

#[test]
fn every_shell_gets_a_completion_script() {
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        let mut script = Vec::new();
        completions(Cli::command(), shell, &mut script).expect("written");
        let script = String::from_utf8(script).expect("UTF-8");
        for word in [
            "remove-real",
            "laddrs",
            "import-keepalived",
            "vip",
            "socket",
        ] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
}

fn rvsctl(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_rvsctl"))
        .args(args)
        .env_remove("RVS_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("rvsctl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_binary_keeps_its_exit_statuses() {
    let help = rvsctl(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Usage: rvsctl"));
    let version = rvsctl(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert_eq!(
        text(&version.stdout),
        format!("rvsctl {}\n", env!("CARGO_PKG_VERSION"))
    );
    for args in [&[][..], &["frobnicate"], &["conns", "--port", "x"]] {
        let output = rvsctl(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
    let missing = rvsctl(&["--socket", "/nonexistent-rvs/rvsd.sock", "ports"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).starts_with("rvsctl: cannot connect to rvsd at /nonexistent-rvs/"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn the_binary_writes_completions_and_man_pages() {
    let bash = rvsctl(&["--completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", text(&bash.stderr));
    let dir = scratch_dir("bash");
    let script = dir.join("rvsctl.bash");
    std::fs::write(&script, &bash.stdout).expect("script saved");
    let syntax = Process::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(syntax.status.success(), "{}", text(&syntax.stderr));

    let man = dir.join("man");
    std::fs::create_dir(&man).expect("man directory");
    let written = rvsctl(&["--man", man.to_str().expect("UTF-8 path")]);
    assert_eq!(written.status.code(), Some(0), "{}", text(&written.stderr));
    assert!(man.join("rvsctl.1").is_file() && man.join("rvsctl-conns.1").is_file());

    let refused = rvsctl(&["--man", "/nonexistent-rvs/man"]);
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        text(&refused.stderr),
        "rvsctl: cannot write the man pages into /nonexistent-rvs/man: No such file or directory (os error 2)\n"
    );
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

/// rvsctl run with `stdin`, killed (and the test failed) if it has not
/// finished within 5 s: an unbounded or blocking read never would.
fn rvsctl_within_5s(args: &[&str], stdin: Stdio) -> Output {
    let mut child = Process::new(env!("CARGO_BIN_EXE_rvsctl"))
        .args(args)
        .env_remove("RVS_SOCKET")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rvsctl runs");
    let started = std::time::Instant::now();
    while child.try_wait().expect("rvsctl waited for").is_none() {
        if started.elapsed() > std::time::Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rvsctl {args:?} still running after 5 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("rvsctl's output")
}

#[test]
fn apply_reads_a_regular_file_or_a_stream_and_at_most_32_mib() {
    let socket = ["--socket", "/nonexistent-rvs/rvsd.sock"];
    let dir = scratch_dir("apply-input");
    let big = dir.join("big.yaml");
    let file = std::fs::File::create(&big).expect("big.yaml");
    file.set_len(32 * 1024 * 1024 + 1)
        .expect("a sparse 32 MiB + 1 file");
    let big = big.to_str().expect("UTF-8 path").to_owned();
    for (args, stdin, message) in [
        (
            vec!["apply", "/dev/zero"],
            Stdio::null(),
            "rvsctl: /dev/zero: not a regular file (a character device); a configuration is \
             read from a regular file\n"
                .to_owned(),
        ),
        (
            vec!["apply", "/"],
            Stdio::null(),
            "rvsctl: /: not a regular file (a directory); a configuration is read from a \
             regular file\n"
                .to_owned(),
        ),
        (
            vec!["apply", &big],
            Stdio::null(),
            format!(
                "rvsctl: {big}: 33554433 bytes, over the limit of 32 MiB for a configuration\n"
            ),
        ),
        (
            vec!["apply", "-"],
            Stdio::from(std::fs::File::open("/dev/zero").expect("/dev/zero")),
            "rvsctl: cannot read standard input: more than the limit of 32 MiB for a \
             configuration\n"
                .to_owned(),
        ),
    ] {
        let args: Vec<&str> = socket.iter().copied().chain(args).collect();
        let output = rvsctl_within_5s(&args, stdin);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&output.stderr), message, "{args:?}");
    }
    // A pipe is read to its end (`rvsctl apply <(generate)`); then, with no
    // rvsd, the connection fails: the text was taken.
    let fifo = dir.join("fifo");
    let status = Process::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, "services: []\n").expect("written"))
    };
    let fifo = fifo.to_str().expect("UTF-8 path").to_owned();
    let args: Vec<&str> = socket.iter().copied().chain(["apply", &fifo]).collect();
    let output = rvsctl_within_5s(&args, Stdio::null());
    writer.join().expect("the writer finished");
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).starts_with("rvsctl: cannot connect to rvsd"),
        "{}",
        text(&output.stderr)
    );
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

/// `import-keepalived` reads and judges the file before it asks rvsd
/// anything: a refusal names FILE:LINE with no rvsd running, the notes go
/// to standard error (the includes' first, as they are read), and a file
/// rvs can take gets as far as connecting.
#[test]
fn import_keepalived_refuses_before_asking_rvsd() {
    let socket = ["--socket", "/nonexistent-rvs/rvsd.sock"];
    let dir = scratch_dir("import");
    let refused = dir.join("keepalived.conf");
    std::fs::write(
        &refused,
        "vrrp_instance VI_1 {\n  state MASTER\n}\nvirtual_server 10.99.1.100 80 {\n  \
         real_server 10.99.2.11 80 {\n    PING_CHECK {\n    }\n  }\n}\n",
    )
    .expect("keepalived.conf");
    let path = refused.to_str().expect("UTF-8 path");
    let output = rvsctl(&[socket[0], socket[1], "import-keepalived", path]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "rvsctl: {path}:6: PING_CHECK: rvs has no PING_CHECK; it runs TCP_CHECK, HTTP_GET, \
             SSL_GET, MISC_CHECK and UDP_CHECK\n"
        )
    );
    assert!(output.stdout.is_empty());

    let good = dir.join("good.conf");
    std::fs::write(&good, "vrrp_instance VI_1 {\n}\ninclude services/*.conf\n").expect("good.conf");
    let path = good.to_str().expect("UTF-8 path");
    let output = rvsctl(&[socket[0], socket[1], "import-keepalived", "--dry-run", path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "rvsctl: {path}:3: include: cannot read directory {}: No such file or directory",
            dir.join("services").display()
        )),
        "{stderr}"
    );
    std::fs::create_dir(dir.join("services")).expect("services/");
    let output = rvsctl(&[socket[0], socket[1], "import-keepalived", "--dry-run", path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[..3],
        [
            format!(
                "rvsctl: note: {path}:3: include {}/*.conf matched no file",
                dir.join("services").display()
            ),
            format!(
                "rvsctl: note: {path}:1: vrrp_instance VI_1 ignored: VRRP belongs to keepalived \
                 itself (see the HA issue)"
            ),
            format!(
                "rvsctl: note: {path}: declares no virtual_server: importing it removes every \
                 service"
            ),
        ],
        "{stderr}"
    );
    assert!(
        lines[3].starts_with("rvsctl: cannot connect to rvsd"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).expect("scratch directory removed");
}

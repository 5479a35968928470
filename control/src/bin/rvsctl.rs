//! rvsctl: what ipvsadm has no words for. See `USAGE` and docs/control.md.

use rvs_control::client::{self, Client, ClientError};
use rvs_control::proto::{
    self, AddressView, ApplyReport, Command, ConfigDump, LaddrInfo, PortView, Protocol, RouteView,
    ServiceKey, Upload, WorkerView,
};
use rvs_control::rvsctl::{render, upload_pieces, ConnFilter};
use serde::Serialize;
use std::io::{self, BufWriter, Read, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
Usage: rvsctl [--socket PATH] [--json] COMMAND [OPTIONS]

Commands:
  apply FILE [--dry-run]   validate FILE (YAML; - for stdin), print what it
                           changes against the running state and apply it in
                           one step; --dry-run only prints the changes
  dump                     the running configuration as YAML that apply takes
  reload [--dry-run]       re-read rvsd's own config file and apply it (SIGHUP)
  ports                    ports: device, MAC, MTU, queues, addresses
  workers                  workers: lcore, CPU, queues and counters
  routes                   connected subnets and static routes
  addresses                port addresses, VIPs and FullNAT local addresses
  neighbours               next hops resolved by ARP, over all workers
  laddrs [-t|-u VIP:PORT]  FullNAT local addresses and their use
  remove-real -t|-u VIP:PORT -r RIP[:PORT] [--purge]
                           remove a real like rvsadm -d; with --purge its
                           established connections end too (without it they
                           continue until they close, as in IPVS)
  conns [FILTERS]          tracked connections, streamed; filters:
                             --vip IP --port N (service port) --real IP
                             --client IP --state NAME --protocol tcp|udp
  version                  rvsctl's and rvsd's versions

Options:
  --socket PATH            rvsd's control socket (default: $RVS_SOCKET, else
                           /run/rvs/rvsd.sock)
  --json                   print rvsd's answer as JSON (conns: one JSON
                           object a line)
  -h, --help               this text

Exit status: 0 success, 1 refused by rvsd or no rvsd, 2 a command-line error.
";

/// Exit status for a refusal by rvsd or no rvsd.
const FAILED: u8 = 1;
/// Exit status for a command-line error.
const USAGE_ERROR: u8 = 2;

/// How long apply, reload and dump wait for rvsd: validating and diffing a
/// configuration of 100,000 reals takes a while.
const LONG_TIMEOUT: Duration = Duration::from_secs(120);
/// Connection pages for `conns`.
const CONNECTION_PAGE: u32 = proto::MAX_CONNECTION_PAGE;
/// Room in a request line for everything but an upload's text.
const REQUEST_OVERHEAD: usize = 256;

#[derive(Debug, PartialEq, Eq)]
enum Action {
    Help,
    Version,
    Apply {
        file: String,
        dry_run: bool,
    },
    Dump,
    Reload {
        dry_run: bool,
    },
    Ports,
    Workers,
    Routes,
    Addresses,
    Neighbours,
    Laddrs {
        service: Option<ServiceKey>,
    },
    Conns {
        filter: ConnFilter,
    },
    RemoveReal {
        service: ServiceKey,
        addr: Ipv4Addr,
        port: Option<u16>,
        purge: bool,
    },
}

#[derive(Debug, PartialEq, Eq)]
struct Invocation {
    socket: Option<String>,
    json: bool,
    action: Action,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let invocation = match parse(&args) {
        Ok(invocation) => invocation,
        Err(message) => {
            eprintln!("rvsctl: {message}\nTry `rvsctl --help' for more information.");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let socket = client::socket_path(invocation.socket.as_deref());
    match run(&socket, invocation.json, invocation.action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Client(err)) => {
            eprintln!("rvsctl: {err}");
            ExitCode::from(FAILED)
        }
        Err(Failure::Input(message)) => {
            eprintln!("rvsctl: {message}");
            ExitCode::from(FAILED)
        }
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(err)) => {
            eprintln!("rvsctl: cannot write the output: {err}");
            ExitCode::from(FAILED)
        }
    }
}

fn parse(args: &[String]) -> Result<Invocation, String> {
    let mut socket = None;
    let mut json = false;
    let mut words = Vec::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--socket" => {
                socket = Some(iter.next().ok_or("--socket: missing argument")?.to_owned())
            }
            "--json" => json = true,
            "-h" | "--help" => {
                return Ok(Invocation {
                    socket,
                    json,
                    action: Action::Help,
                })
            }
            other => match other.strip_prefix("--socket=") {
                Some(path) => socket = Some(path.to_owned()),
                None => words.push(other),
            },
        }
    }
    let Some((&command, rest)) = words.split_first() else {
        return Err("no command given".to_owned());
    };
    let action = match command {
        "help" => Action::Help,
        "version" => no_options(command, rest, Action::Version)?,
        "apply" => {
            let mut file = None;
            let mut dry_run = false;
            for &word in rest {
                match word {
                    "--dry-run" | "-n" => dry_run = true,
                    "-" => file = Some(word),
                    _ if word.starts_with('-') => {
                        return Err(format!("apply: unknown option `{word}'"))
                    }
                    _ if file.is_some() => return Err("apply: one FILE only".to_owned()),
                    _ => file = Some(word),
                }
            }
            let file = file.ok_or("apply: missing FILE (a path, or - for stdin)")?;
            Action::Apply {
                file: file.to_owned(),
                dry_run,
            }
        }
        "reload" => match rest {
            [] => Action::Reload { dry_run: false },
            ["--dry-run" | "-n"] => Action::Reload { dry_run: true },
            [other, ..] => return Err(format!("reload: unexpected `{other}'")),
        },
        "dump" => no_options(command, rest, Action::Dump)?,
        "ports" => no_options(command, rest, Action::Ports)?,
        "workers" => no_options(command, rest, Action::Workers)?,
        "routes" => no_options(command, rest, Action::Routes)?,
        "addresses" => no_options(command, rest, Action::Addresses)?,
        "neighbours" | "neighbors" => no_options(command, rest, Action::Neighbours)?,
        "laddrs" => Action::Laddrs {
            service: match rest {
                [] => None,
                ["-t" | "--tcp", endpoint] => Some(service(Protocol::Tcp, endpoint)?),
                ["-u" | "--udp", endpoint] => Some(service(Protocol::Udp, endpoint)?),
                _ => return Err("laddrs: expected nothing, or -t|-u VIP:PORT".to_owned()),
            },
        },
        "conns" => Action::Conns {
            filter: conn_filter(rest)?,
        },
        "remove-real" => remove_real(rest)?,
        other => return Err(format!("unknown command `{other}'")),
    };
    Ok(Invocation {
        socket,
        json,
        action,
    })
}

fn no_options(command: &str, rest: &[&str], action: Action) -> Result<Action, String> {
    match rest.first() {
        None => Ok(action),
        Some(word) => Err(format!("{command}: unexpected `{word}'")),
    }
}

fn service(protocol: Protocol, endpoint: &str) -> Result<ServiceKey, String> {
    let (addr, port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| format!("`{endpoint}' is not VIP:PORT"))?;
    Ok(ServiceKey::Inet {
        protocol,
        addr: ipv4(addr)?,
        port: port
            .parse()
            .map_err(|_| format!("`{port}' is not a port number"))?,
    })
}

fn remove_real(words: &[&str]) -> Result<Action, String> {
    let (mut service_key, mut real, mut purge) = (None, None, false);
    let mut iter = words.iter();
    while let Some(&option) = iter.next() {
        match option {
            "--purge" => purge = true,
            "-t" | "--tcp" | "-u" | "--udp" | "-r" => {
                let value = *iter
                    .next()
                    .ok_or_else(|| format!("remove-real: {option}: missing argument"))?;
                match option {
                    "-r" => real = Some(value),
                    "-u" | "--udp" => service_key = Some(service(Protocol::Udp, value)?),
                    _ => service_key = Some(service(Protocol::Tcp, value)?),
                }
            }
            other => return Err(format!("remove-real: unknown option `{other}'")),
        }
    }
    let service = service_key.ok_or("remove-real: missing -t|-u VIP:PORT")?;
    let real = real.ok_or("remove-real: missing -r RIP[:PORT]")?;
    let (addr, port) = match real.rsplit_once(':') {
        Some((addr, port)) => (
            ipv4(addr)?,
            Some(
                port.parse()
                    .map_err(|_| format!("`{port}' is not a port number"))?,
            ),
        ),
        None => (ipv4(real)?, None),
    };
    Ok(Action::RemoveReal {
        service,
        addr,
        port,
        purge,
    })
}

fn ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("`{text}' is not an IPv4 address"))
}

fn conn_filter(words: &[&str]) -> Result<ConnFilter, String> {
    let mut filter = ConnFilter::default();
    let mut iter = words.iter();
    while let Some(&option) = iter.next() {
        let value = *iter
            .next()
            .ok_or_else(|| format!("conns: {option}: missing argument"))?;
        match option {
            "--vip" => filter.vip = Some(ipv4(value)?),
            "--port" => {
                filter.port = Some(
                    value
                        .parse()
                        .map_err(|_| format!("conns: --port: `{value}' is not a port number"))?,
                )
            }
            "--real" => filter.real = Some(ipv4(value)?),
            "--client" => filter.client = Some(ipv4(value)?),
            "--state" => filter.state = Some(value.to_owned()),
            "--protocol" | "--proto" => {
                filter.protocol = Some(match value {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return Err(format!("conns: --protocol: `{value}' is not tcp or udp")),
                })
            }
            _ => return Err(format!("conns: unknown option `{option}'")),
        }
    }
    Ok(filter)
}

enum Failure {
    Client(ClientError),
    /// The input could not be read; the message says which and why.
    Input(String),
    Output(io::Error),
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Failure::Client(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Output(err)
    }
}

fn run(socket: &Path, json: bool, action: Action) -> Result<(), Failure> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let connect = |timeout| Client::connect_with_timeout(socket, timeout);
    match action {
        Action::Help => out.write_all(USAGE.as_bytes())?,
        Action::RemoveReal {
            service,
            addr,
            port,
            purge,
        } => {
            // A real without a port is on the service port, as in ipvsadm.
            let port = port.unwrap_or(service.port());
            connect(client::DEFAULT_TIMEOUT)?.call(Command::DeleteReal {
                service,
                addr,
                port,
                purge,
            })?;
        }
        Action::Version => {
            let info: proto::VersionInfo =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::Version)?;
            if json {
                print_json(&mut out, &info)?;
            } else {
                writeln!(
                    out,
                    "rvsctl {} (control protocol v{})\nrvsd {} (control protocol v{})",
                    env!("CARGO_PKG_VERSION"),
                    proto::VERSION,
                    info.daemon,
                    info.protocol
                )?;
            }
        }
        Action::Apply { file, dry_run } => {
            let text = read_input(&file)?;
            let mut client = connect(LONG_TIMEOUT)?;
            let name = if file == "-" {
                "<stdin>".to_owned()
            } else {
                file
            };
            let report: ApplyReport = apply(&mut client, name, text, dry_run)?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                out.write_all(render::apply_report(&report, dry_run).as_bytes())?;
            }
        }
        Action::Reload { dry_run } => {
            let report: ApplyReport =
                connect(LONG_TIMEOUT)?.call_as(Command::ReloadConfig { dry_run })?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                out.write_all(render::apply_report(&report, dry_run).as_bytes())?;
            }
        }
        Action::Dump => {
            let dump: ConfigDump = connect(LONG_TIMEOUT)?.call_as(Command::DumpConfig)?;
            if json {
                print_json(&mut out, &dump)?;
            } else {
                out.write_all(dump.yaml.as_bytes())?;
            }
        }
        Action::Ports => {
            let ports: Vec<PortView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListPorts)?;
            view(&mut out, json, &ports, render::ports)?;
        }
        Action::Workers => {
            let workers: Vec<WorkerView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListWorkers)?;
            view(&mut out, json, &workers, render::workers)?;
        }
        Action::Routes => {
            let routes: Vec<RouteView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListRoutes)?;
            view(&mut out, json, &routes, render::routes)?;
        }
        Action::Addresses => {
            let addresses: Vec<AddressView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListAddresses)?;
            view(&mut out, json, &addresses, render::addresses)?;
        }
        Action::Neighbours => {
            let neighbours: Vec<proto::NeighbourView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListNeighbours)?;
            view(&mut out, json, &neighbours, render::neighbours)?;
        }
        Action::Laddrs { service } => {
            let laddrs: Vec<LaddrInfo> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::GetLaddr { service })?;
            view(&mut out, json, &laddrs, render::laddrs)?;
        }
        Action::Conns { filter } => {
            let mut client = connect(client::DEFAULT_TIMEOUT)?;
            if !json {
                out.write_all(render::conns_title().as_bytes())?;
            }
            for entry in client.connections(CONNECTION_PAGE) {
                let entry = entry?;
                if !filter.matches(&entry) {
                    continue;
                }
                if json {
                    serde_json::to_writer(&mut out, &entry).map_err(io::Error::from)?;
                    out.write_all(b"\n")?;
                } else {
                    out.write_all(render::conn(&entry).as_bytes())?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Sends the file in one request when it fits, else as an upload in pieces
/// that each fit a request line, then applies the upload.
fn apply(
    client: &mut Client,
    file: String,
    text: String,
    dry_run: bool,
) -> Result<ApplyReport, ClientError> {
    let encoded = |text: &str| serde_json::to_string(text).map_or(usize::MAX, |s| s.len());
    if encoded(&text).saturating_add(encoded(&file)) <= proto::MAX_REQUEST - REQUEST_OVERHEAD {
        return client.call_as(Command::ApplyConfig {
            file,
            text: Some(text),
            upload: None,
            dry_run,
        });
    }
    let mut upload = None;
    for piece in upload_pieces(&text, proto::MAX_REQUEST - REQUEST_OVERHEAD) {
        let answer: Upload = client.call_as(Command::UploadConfig {
            upload,
            text: piece.to_owned(),
        })?;
        upload = Some(answer.upload);
    }
    client.call_as(Command::ApplyConfig {
        file,
        text: None,
        upload,
        dry_run,
    })
}

fn read_input(file: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if file == "-" {
        io::stdin().read_to_string(&mut text).map(drop)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text).map(drop))
    };
    read.map_err(|err| {
        let name = if file == "-" { "standard input" } else { file };
        Failure::Input(format!("cannot read {name}: {err}"))
    })?;
    Ok(text)
}

fn view<T: Serialize>(
    out: &mut impl Write,
    json: bool,
    items: &[T],
    table: fn(&[T]) -> String,
) -> io::Result<()> {
    if json {
        print_json(out, &items)
    } else {
        out.write_all(table(items).as_bytes())
    }
}

fn print_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Invocation, String> {
        let args: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        parse(&args)
    }

    #[test]
    fn commands_and_options() {
        let invocation = parse_words("--socket /tmp/s --json apply new.yaml --dry-run").unwrap();
        assert_eq!(
            invocation,
            Invocation {
                socket: Some("/tmp/s".into()),
                json: true,
                action: Action::Apply {
                    file: "new.yaml".into(),
                    dry_run: true
                }
            }
        );
        assert_eq!(
            parse_words("conns --vip 10.0.0.1 --port 80 --state established")
                .unwrap()
                .action,
            Action::Conns {
                filter: ConnFilter {
                    vip: Some(Ipv4Addr::new(10, 0, 0, 1)),
                    port: Some(80),
                    state: Some("established".into()),
                    ..ConnFilter::default()
                }
            }
        );
        assert_eq!(
            parse_words("laddrs -t 10.0.0.1:80").unwrap().action,
            Action::Laddrs {
                service: Some(ServiceKey::tcp(Ipv4Addr::new(10, 0, 0, 1), 80))
            }
        );
        assert_eq!(
            parse_words("--socket=/x dump").unwrap().socket.as_deref(),
            Some("/x")
        );
    }

    #[test]
    fn usage_errors_are_precise() {
        for (words, message) in [
            ("", "no command given"),
            ("frobnicate", "unknown command `frobnicate'"),
            ("apply", "apply: missing FILE (a path, or - for stdin)"),
            ("apply a b", "apply: one FILE only"),
            ("apply --force a", "apply: unknown option `--force'"),
            (
                "conns --vip 10.0.0.300",
                "`10.0.0.300' is not an IPv4 address",
            ),
            ("conns --port", "conns: --port: missing argument"),
            (
                "conns --protocol sctp",
                "conns: --protocol: `sctp' is not tcp or udp",
            ),
            ("ports now", "ports: unexpected `now'"),
            ("laddrs -t 10.0.0.1", "`10.0.0.1' is not VIP:PORT"),
        ] {
            assert_eq!(parse_words(words).unwrap_err(), message, "{words}");
        }
    }
}

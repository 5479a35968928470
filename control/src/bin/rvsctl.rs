//! rvsctl: what ipvsadm has no words for. The command line is
//! `rvs_control::rvsctl::cli`; see also docs/control.md.

use clap::CommandFactory;
use rvs_control::client::{self, Client, ClientError};
use rvs_control::config;
use rvs_control::health::HealthReport;
use rvs_control::keepalived;
use rvs_control::proto::{
    self, AddressInfo, ApplyReport, Command, ConfigDump, LaddrInfo, PortView, RouteView, WorkerView,
};
use rvs_control::rvsctl::cli::{self, Action, Cli, Invocation};
use rvs_control::rvsctl::{render, top};
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Exit status for a refusal by rvsd or no rvsd (clap exits 2 for a
/// command-line error).
const FAILED: u8 = 1;

/// How long apply, reload and dump wait for rvsd: validating and diffing a
/// configuration of 100,000 reals takes a while.
const LONG_TIMEOUT: Duration = Duration::from_secs(120);
/// Connection pages for `conns`.
const CONNECTION_PAGE: u32 = proto::MAX_CONNECTION_PAGE;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(Invocation::Run(cli)) => cli,
        Ok(Invocation::Generate(generate)) => return generate.run(Cli::command()),
        // Help and --version exit 0, command-line errors 2.
        Err(err) => err.exit(),
    };
    let socket = client::socket_path(cli.socket.as_deref());
    match run(&socket, cli.json, cli.action) {
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

/// How often `drain --wait` asks for the real's connections.
const DRAIN_POLL: Duration = Duration::from_millis(250);

/// Waits until the real `addr:port` of `service` has no active connection,
/// or `timeout` seconds passed (then fails, saying what is left).
fn drain_wait(
    client: &mut Client,
    service: proto::ServiceKey,
    addr: std::net::Ipv4Addr,
    port: u16,
    timeout: Option<u64>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let started = std::time::Instant::now();
    loop {
        let services: Vec<proto::ServiceInfo> = client.call_as(Command::ListServices {
            service: Some(service),
        })?;
        let real = services
            .iter()
            .flat_map(|s| &s.reals)
            .find(|r| r.spec.addr == addr && r.spec.port == port)
            .ok_or_else(|| {
                Failure::Input(format!("real {addr}:{port} is gone from the service"))
            })?;
        if real.active_conns == 0 {
            writeln!(
                out,
                "real {addr}:{port} drained: no active connection ({} inactive) after {:.1} s",
                real.inact_conns,
                started.elapsed().as_secs_f64()
            )?;
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= Duration::from_secs(t)) {
            return Err(Failure::Input(format!(
                "real {addr}:{port} still has {} active and {} inactive connection(s) after {} s; \
                 it stays drained",
                real.active_conns,
                real.inact_conns,
                timeout.unwrap_or(0)
            )));
        }
        std::thread::sleep(DRAIN_POLL);
    }
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
        Action::RemoveReal {
            service,
            real: (addr, port),
            purge,
        } => {
            let service = service
                .key()
                .expect("clap requires -t or -u for remove-real");
            // A real without a port is on the service port, as in ipvsadm.
            let port = port.unwrap_or(service.port());
            connect(client::DEFAULT_TIMEOUT)?.call(Command::DeleteReal {
                service,
                addr,
                port,
                purge,
            })?;
        }
        Action::Drain {
            real,
            wait,
            timeout,
        } => {
            let (service, addr, port) = real.parts();
            let mut client = connect(client::DEFAULT_TIMEOUT)?;
            client.call(Command::Drain {
                service,
                addr,
                port,
            })?;
            if wait {
                drain_wait(&mut client, service, addr, port, timeout, &mut out)?;
            }
        }
        Action::Undrain { real } => {
            let (service, addr, port) = real.parts();
            connect(client::DEFAULT_TIMEOUT)?.call(Command::Undrain {
                service,
                addr,
                port,
            })?;
        }
        Action::Version => {
            let info: proto::VersionInfo =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::Version {})?;
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
        Action::ImportKeepalived { file, dry_run } => {
            let report = import_keepalived(socket, file, dry_run)?;
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
            let dump: ConfigDump = connect(LONG_TIMEOUT)?.call_as(Command::DumpConfig {})?;
            if json {
                print_json(&mut out, &dump)?;
            } else {
                out.write_all(dump.yaml.as_bytes())?;
            }
        }
        Action::Ports => {
            let ports: Vec<PortView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListPorts {})?;
            view(&mut out, json, &ports, render::ports)?;
        }
        Action::Workers => {
            let workers: Vec<WorkerView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListWorkers {})?;
            view(&mut out, json, &workers, render::workers)?;
        }
        Action::Routes => {
            let routes: Vec<RouteView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListRoutes {})?;
            view(&mut out, json, &routes, render::routes)?;
        }
        Action::Addresses => {
            let addresses: Vec<AddressInfo> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::Addresses {})?;
            view(&mut out, json, &addresses, render::addresses)?;
        }
        Action::Neighbours => {
            let neighbours: Vec<proto::NeighbourView> =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::ListNeighbours {})?;
            view(&mut out, json, &neighbours, render::neighbours)?;
        }
        Action::Health => {
            let report: HealthReport =
                connect(client::DEFAULT_TIMEOUT)?.call_as(Command::Health {})?;
            if json {
                print_json(&mut out, &report)?;
            } else {
                out.write_all(render::health(&report).as_bytes())?;
            }
        }
        Action::Top { iterations } => {
            let mut client = connect(client::DEFAULT_TIMEOUT)?;
            if io::stdout().is_terminal() {
                drop(out);
                return top_terminal(&mut client, iterations);
            }
            top_text(&mut client, iterations, &mut out)?;
        }
        Action::Laddrs { service } => {
            let service = service.key();
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

/// One look at rvsd for `top`.
fn sample(client: &mut Client) -> Result<top::Sample, ClientError> {
    Ok(top::Sample {
        services: client.call_as(Command::ListServices { service: None })?,
        workers: client.call_as(Command::ListWorkers {})?,
    })
}

const TOP_EVERY: Duration = Duration::from_secs(1);

/// `top` as text, a frame a second.
fn top_text(
    client: &mut Client,
    iterations: Option<u64>,
    out: &mut impl Write,
) -> Result<(), Failure> {
    let mut before = (sample(client)?, std::time::Instant::now());
    let mut shown = 0;
    while iterations.is_none_or(|n| shown < n) {
        std::thread::sleep(TOP_EVERY);
        let now = (sample(client)?, std::time::Instant::now());
        let view = top::view(&before.0, &now.0, now.1 - before.1);
        out.write_all(top::text(&view).as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
        before = now;
        shown += 1;
    }
    Ok(())
}

/// `top` on a terminal (ratatui): refreshed every second, q or Esc quits.
fn top_terminal(client: &mut Client, iterations: Option<u64>) -> Result<(), Failure> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use ratatui::layout::{Constraint, Layout};
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Paragraph, Row, Table};

    let mut before = (sample(client)?, std::time::Instant::now());
    let mut terminal = ratatui::init();
    let result = (|| -> Result<(), Failure> {
        let mut view: Option<top::View> = None;
        let mut shown = 0;
        let mut next = std::time::Instant::now();
        loop {
            if std::time::Instant::now() >= next {
                let now = (sample(client)?, std::time::Instant::now());
                if now.1 > before.1 {
                    view = Some(top::view(&before.0, &now.0, now.1 - before.1));
                    shown += 1;
                }
                before = now;
                next = before.1 + TOP_EVERY;
                let frame_view = view.clone();
                terminal.draw(|frame| {
                    let Some(v) = &frame_view else {
                        frame.render_widget(
                            Paragraph::new("rvsctl top: measuring..."),
                            frame.area(),
                        );
                        return;
                    };
                    let services = top::service_rows(v);
                    let workers = top::worker_rows(v);
                    let [title, upper, lower, drops] = Layout::vertical([
                        Constraint::Length(1),
                        Constraint::Min(4),
                        Constraint::Length(workers.len() as u16 + 3),
                        Constraint::Length(3),
                    ])
                    .areas(frame.area());
                    frame.render_widget(
                        Paragraph::new("rvsctl top: rates over the last second (q quits)")
                            .style(Style::default().add_modifier(Modifier::BOLD)),
                        title,
                    );
                    let header = |columns: &[&'static str]| {
                        Row::new(columns.to_vec())
                            .style(Style::default().add_modifier(Modifier::BOLD))
                    };
                    let table = Table::new(
                        services.into_iter().map(Row::new),
                        [
                            Constraint::Min(28),
                            Constraint::Length(7),
                            Constraint::Length(8),
                            Constraint::Length(9),
                            Constraint::Length(9),
                            Constraint::Length(9),
                            Constraint::Length(9),
                            Constraint::Length(10),
                        ],
                    )
                    .header(header(&top::SERVICE_COLUMNS))
                    .block(Block::bordered().title("services and reals"));
                    frame.render_widget(table, upper);
                    let table = Table::new(
                        workers.into_iter().map(Row::new),
                        [Constraint::Length(10); 5],
                    )
                    .header(header(&top::WORKER_COLUMNS))
                    .block(Block::bordered().title("workers"));
                    frame.render_widget(table, lower);
                    let list: Vec<String> = v
                        .drops
                        .iter()
                        .map(|(reason, rate)| format!("{reason} {}/s", top::short(*rate)))
                        .collect();
                    let text = if list.is_empty() {
                        "none".to_owned()
                    } else {
                        list.join(", ")
                    };
                    frame.render_widget(
                        Paragraph::new(text).block(Block::bordered().title("top drop reasons")),
                        drops,
                    );
                })?;
                if iterations.is_some_and(|n| shown >= n) {
                    return Ok(());
                }
            }
            let wait = next.saturating_duration_since(std::time::Instant::now());
            if event::poll(wait)? {
                if let Event::Key(key) = event::read()? {
                    let quit = matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL));
                    if key.kind == KeyEventKind::Press && quit {
                        return Ok(());
                    }
                }
            }
        }
    })();
    ratatui::restore();
    result
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
    if encoded(&text).saturating_add(encoded(&file))
        <= proto::MAX_REQUEST - client::REQUEST_OVERHEAD
    {
        return client.call_as(Command::ApplyConfig {
            file,
            text: Some(text),
            upload: None,
            dry_run,
        });
    }
    let upload = client.upload(&text)?;
    client.call_as(Command::ApplyConfig {
        file,
        text: None,
        upload: Some(upload),
        dry_run,
    })
}

/// `import-keepalived FILE`: the running configuration with its services
/// replaced by FILE's, applied as `apply` applies a file (named FILE). FILE
/// is read, and refused, before rvsd is asked anything; the notes on what
/// it holds but changes nothing go to standard error.
fn import_keepalived(socket: &Path, file: String, dry_run: bool) -> Result<ApplyReport, Failure> {
    let refused = |err: keepalived::Refusal| Failure::Input(err.to_string());
    let imported = keepalived::import(Path::new(&file)).map_err(refused)?;
    for note in &imported.notes {
        eprintln!("rvsctl: note: {note}");
    }
    let client = &mut Client::connect_with_timeout(socket, LONG_TIMEOUT)?;
    let dump: ConfigDump = client.call_as(Command::DumpConfig {})?;
    let running: config::Config = serde_yaml::from_str(&dump.yaml).map_err(|err| {
        Failure::Input(format!(
            "cannot read rvsd's running configuration (rvsctl dump): {err}"
        ))
    })?;
    let config = imported.into_config(running).map_err(refused)?;
    let text = keepalived::yaml(&config, &file).map_err(Failure::Input)?;
    apply(client, file, text, dry_run).map_err(|err| match err {
        ClientError::Daemon(message) => Failure::Input(imported.reword(&message)),
        other => Failure::Client(other),
    })
}

/// The text of `apply FILE`: a regular file, a pipe the caller hands us
/// (`apply <(generate)`: waiting for its writer is what was asked), or
/// standard input for `-`; never more than [`config::MAX_CONFIG_BYTES`],
/// and nothing else (`/dev/zero`, a directory) is read at all.
fn read_input(file: &str) -> Result<String, Failure> {
    let cannot = |name: &str, err: &dyn std::fmt::Display| {
        Failure::Input(format!("cannot read {name}: {err}"))
    };
    if file == "-" {
        return config::read_stream(&mut io::stdin().lock())
            .map_err(|err| cannot("standard input", &err));
    }
    let meta = std::fs::metadata(file).map_err(|err| cannot(file, &err))?;
    if meta.file_type().is_fifo() {
        let mut pipe = File::open(file).map_err(|err| cannot(file, &err))?;
        return config::read_stream(&mut pipe).map_err(|err| cannot(file, &err));
    }
    config::read_file(Path::new(file)).map_err(|err| match std::error::Error::source(&err) {
        Some(io) => cannot(file, &io),
        None => Failure::Input(err.to_string()),
    })
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

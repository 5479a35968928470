//! rvsadm: ipvsadm for rvs. See `rvs_control::ipvsadm` for the grammar and
//! where it differs from ipvsadm 1.31.

use rvs_control::client::{self, Client, ClientError};
use rvs_control::config;
use rvs_control::ipvsadm::{self, format, Action, Listing, ParseError};
use rvs_control::proto::{
    self, BatchReport, Command, DaemonInfo, LaddrInfo, ServiceInfo, Timeouts,
};
use std::io::{self, BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for a refusal by rvsd or no rvsd.
const FAILED: u8 = 1;
/// Exit status for a command-line error.
const USAGE_ERROR: u8 = 2;

/// Connection pages for `-L -c`.
const CONNECTION_PAGE: u32 = 1000;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let socket = match take_socket(&mut args) {
        Ok(socket) => client::socket_path(socket.as_deref()),
        Err(err) => return usage_error(&err),
    };
    let action = match ipvsadm::parse(&args) {
        Ok(action) => action,
        Err(err) => return usage_error(&err),
    };
    let mut session = Session {
        socket,
        client: None,
    };
    match session.run(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => usage_error(&err),
        Err(Failure::Reported) => ExitCode::from(FAILED),
        Err(Failure::Client(err)) => {
            report(&err);
            ExitCode::from(FAILED)
        }
        Err(Failure::Output(err)) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(Failure::Output(err)) => {
            eprintln!("rvsadm: cannot write the listing: {err}");
            ExitCode::from(FAILED)
        }
    }
}

/// Removes rvs's own `--socket PATH` / `--socket=PATH` from the arguments.
fn take_socket(args: &mut Vec<String>) -> Result<Option<String>, ParseError> {
    let mut socket = None;
    let mut index = 0;
    while index < args.len() {
        if args[index] == "--" {
            break;
        }
        if let Some(path) = args[index].strip_prefix("--socket=") {
            socket = Some(path.to_owned());
            args.remove(index);
        } else if args[index] == "--socket" {
            if index + 1 >= args.len() {
                return Err(ParseError {
                    message: "--socket: missing argument".into(),
                    try_help: false,
                });
            }
            socket = Some(args.remove(index + 1));
            args.remove(index);
        } else {
            index += 1;
        }
    }
    Ok(socket)
}

fn usage_error(err: &ParseError) -> ExitCode {
    if !err.message.is_empty() {
        eprintln!("{}", err.message);
    }
    if err.try_help {
        eprintln!("Try `rvsadm -h' or 'rvsadm --help' for more information.");
    }
    ExitCode::from(USAGE_ERROR)
}

/// Daemon refusals are printed as ipvsadm prints the kernel's (bare
/// message); rvsadm's own trouble is prefixed with its name.
fn report(err: &ClientError) {
    match err {
        ClientError::Daemon(message) => eprintln!("{message}"),
        other => eprintln!("rvsadm: {other}"),
    }
}

enum Failure {
    Usage(ParseError),
    /// Already told the user; exit with [`FAILED`].
    Reported,
    Client(ClientError),
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

/// Connects on first use, so `-h` and parse errors never need rvsd.
struct Session {
    socket: PathBuf,
    client: Option<Client>,
}

impl Session {
    fn client(&mut self) -> Result<&mut Client, ClientError> {
        if self.client.is_none() {
            self.client = Some(Client::connect(&self.socket)?);
        }
        Ok(self.client.as_mut().expect("connected above"))
    }

    fn run(&mut self, action: Action) -> Result<(), Failure> {
        let stdout = io::stdout();
        let mut out = BufWriter::new(stdout.lock());
        match action {
            Action::Help => {
                writeln!(out, "{}", ipvsadm::VERSION_TEXT)?;
                out.write_all(ipvsadm::usage().as_bytes())?;
            }
            Action::Version => writeln!(out, "{}", ipvsadm::VERSION_TEXT)?,
            Action::Apply(cmd) => {
                self.client()?.call(cmd)?;
            }
            Action::Save => {
                let services: Vec<ServiceInfo> = self
                    .client()?
                    .call_as(Command::ListServices { service: None })?;
                out.write_all(format::save(&services).as_bytes())?;
            }
            Action::Restore => self.restore()?,
            Action::List(listing) => self.list(listing, &mut out)?,
        }
        out.flush()?;
        Ok(())
    }

    fn list(&mut self, listing: Listing, out: &mut impl Write) -> Result<(), Failure> {
        match listing {
            Listing::Services { service, format } => {
                let services: Vec<ServiceInfo> =
                    self.client()?.call_as(Command::ListServices { service })?;
                let text = match (service, services.first()) {
                    (Some(_), Some(one)) => format::service(one, &format),
                    (Some(_), None) => {
                        return Err(ClientError::Daemon(
                            rvs_control::proto::errors::NO_SUCH_SERVICE.to_owned(),
                        )
                        .into())
                    }
                    (None, _) => format::services(&services, &format),
                };
                out.write_all(text.as_bytes())?;
            }
            Listing::Connections { format } => {
                let client = self.client()?;
                out.write_all(format::connections_title(&format).as_bytes())?;
                for entry in client.connections(CONNECTION_PAGE) {
                    out.write_all(format::connection(&entry?).as_bytes())?;
                }
            }
            Listing::Timeouts => {
                let timeouts: Timeouts = self.client()?.call_as(Command::GetTimeouts {})?;
                out.write_all(format::timeouts(&timeouts).as_bytes())?;
            }
            Listing::Daemons => {
                let daemons: Vec<DaemonInfo> = self.client()?.call_as(Command::ListDaemons {})?;
                out.write_all(format::daemons(&daemons).as_bytes())?;
            }
            Listing::Laddrs { service } => {
                let laddrs: Vec<LaddrInfo> =
                    self.client()?.call_as(Command::GetLaddr { service })?;
                out.write_all(format::laddrs(&laddrs).as_bytes())?;
            }
        }
        Ok(())
    }

    /// `-R`: parses all of stdin first, then applies the lines in order.
    /// A refused line is reported and the rest still applied, as ipvsadm
    /// does; the exit status then says something failed. The lines go to
    /// rvsd in batches ([`Command::Batch`]), as many as one request (or,
    /// beyond a request line, one upload) holds: rvsd checks each as if it
    /// came alone and adopts a batch in one step, so a restore costs time
    /// in proportion to its lines, not to lines times services.
    fn restore(&mut self) -> Result<(), Failure> {
        let mut actions = Vec::new();
        for (number, line) in io::stdin().lock().lines().enumerate() {
            let line = line?;
            match ipvsadm::parse_restore_line(&line) {
                Ok(Some(action)) => actions.push((number + 1, action)),
                Ok(None) => {}
                Err(mut err) => {
                    err.message = format!("rvsadm: -R line {}: {}", number + 1, err.message);
                    return Err(Failure::Usage(err));
                }
            }
        }
        let mut failed = false;
        let mut batch = Batch::default();
        for (number, action) in actions {
            let other = match action {
                Action::Apply(cmd) => {
                    if let Some(full) = batch.push(number, cmd) {
                        failed |= self.send(full)?;
                    }
                    continue;
                }
                other => other,
            };
            // -L/-S/-h inside -R: as ipvsadm, print to stdout, after the
            // lines before them took effect.
            failed |= self.send(std::mem::take(&mut batch))?;
            match self.run(other) {
                Ok(()) => {}
                Err(Failure::Client(ClientError::Daemon(message))) => {
                    eprintln!("rvsadm: -R line {number}: {message}");
                    failed = true;
                }
                Err(other) => return Err(other),
            }
        }
        failed |= self.send(batch)?;
        if failed {
            return Err(Failure::Reported);
        }
        Ok(())
    }

    /// Applies a batch of `-R` lines and reports those refused; true if
    /// any was.
    fn send(&mut self, batch: Batch) -> Result<bool, Failure> {
        if batch.lines.is_empty() {
            return Ok(false);
        }
        let client = self.client()?;
        let cmd = if batch.json.len() + 2 <= proto::MAX_REQUEST - client::REQUEST_OVERHEAD {
            Command::Batch {
                commands: batch.commands,
                upload: None,
            }
        } else {
            let json = format!("[{}]", batch.json);
            Command::Batch {
                commands: Vec::new(),
                upload: Some(client.upload(&json)?),
            }
        };
        let report: BatchReport = match client.call_as(cmd) {
            Ok(report) => report,
            Err(ClientError::Daemon(message)) => {
                let (first, last) = (batch.lines[0], batch.lines[batch.lines.len() - 1]);
                eprintln!("rvsadm: -R lines {first}-{last}: {message}");
                return Ok(true);
            }
            Err(err) => return Err(err.into()),
        };
        for refusal in &report.refused {
            let line = batch
                .lines
                .get(refusal.index as usize)
                .copied()
                .unwrap_or(0);
            eprintln!("rvsadm: -R line {line}: {}", refusal.error);
        }
        Ok(!report.refused.is_empty())
    }
}

/// `-R` lines gathered for one [`Command::Batch`].
#[derive(Default)]
struct Batch {
    /// The line number of each command.
    lines: Vec<usize>,
    commands: Vec<Command>,
    /// The commands as the JSON array's elements, comma separated.
    json: String,
}

impl Batch {
    /// Adds a line; returns the batch so far instead, and starts a new
    /// one with this line, when the line would take it past what rvsd
    /// takes at once.
    fn push(&mut self, number: usize, cmd: Command) -> Option<Batch> {
        let json = serde_json::to_string(&cmd).expect("a Command always serialises");
        let full = (self.json.len() + json.len() + 3 > config::MAX_CONFIG_BYTES)
            .then(|| std::mem::take(self));
        if !self.json.is_empty() {
            self.json.push(',');
        }
        self.json.push_str(&json);
        self.lines.push(number);
        self.commands.push(cmd);
        full
    }
}

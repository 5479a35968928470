//! What the command lines of rvsd and rvsctl share: two options that write
//! their shell completions and man pages from the same clap definition that
//! parses the command line, so what packaging installs cannot drift from
//! what the binary accepts.
//!
//! The options are hidden from `--help` (they are for packaging, not for the
//! operator) and take nothing else on the command line:
//!
//! ```sh
//! rvsctl --completions bash > rvsctl.bash   # bash, zsh, fish, elvish, powershell
//! rvsctl --man DIR                          # DIR/rvsctl.1, DIR/rvsctl-apply.1, ...
//! rvsd --man DIR                            # DIR/rvsd.1
//! ```
//!
//! rvsadm has neither: its grammar is ipvsadm's, which clap cannot express
//! (see [`crate::ipvsadm`]).

use clap::{Args, Command};
use clap_complete::{Generator, Shell};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--completions SHELL` and `--man DIR`, flattened into a binary's
/// definition.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct Generate {
    /// Print the completion script for SHELL on standard output
    #[arg(long, value_name = "SHELL", hide = true, exclusive = true)]
    pub completions: Option<Shell>,
    /// Write the man pages into DIR: NAME.1, and NAME-COMMAND.1 for each
    /// command
    #[arg(long, value_name = "DIR", hide = true, exclusive = true)]
    pub man: Option<PathBuf>,
}

impl Generate {
    /// Whether the command line asked for generated files.
    pub fn is_requested(&self) -> bool {
        self.completions.is_some() || self.man.is_some()
    }

    /// Writes what was asked for, for `command` (the binary's whole
    /// definition), and says how the binary exits: 0, or 1 after naming on
    /// stderr what could not be written. A closed pipe is no failure.
    pub fn run(&self, command: Command) -> ExitCode {
        let name = command.get_name().to_owned();
        match self.write(command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{name}: {err}");
                ExitCode::FAILURE
            }
        }
    }

    /// Writes what was asked for, for `command`; nothing when nothing was.
    /// An error says what could not be written, and keeps the kind of the
    /// I/O error.
    pub fn write(&self, command: Command) -> io::Result<()> {
        if let Some(shell) = self.completions {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            completions(command, shell, &mut out)
                .and_then(|()| out.flush())
                .map_err(|err| context(err, format!("cannot write the {shell} completions")))
        } else if let Some(dir) = &self.man {
            man_pages(command, dir).map_err(|err| {
                context(
                    err,
                    format!("cannot write the man pages into {}", dir.display()),
                )
            })
        } else {
            Ok(())
        }
    }
}

/// The completion script of `command` for `shell`.
pub fn completions(mut command: Command, shell: Shell, out: &mut dyn Write) -> io::Result<()> {
    let name = command.get_name().to_owned();
    command.set_bin_name(name);
    command.build();
    shell.try_generate(&command, out)
}

/// Writes the man pages of `command` into `dir`: `NAME.1`, and
/// `NAME-COMMAND.1` for each of its (visible) commands.
pub fn man_pages(command: Command, dir: &Path) -> io::Result<()> {
    clap_mangen::generate_to(command, dir)
}

fn context(err: io::Error, what: String) -> io::Error {
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

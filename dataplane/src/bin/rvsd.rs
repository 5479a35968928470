//! rvsd: the rvs director daemon.
//!
//! `rvsd [--config PATH] [--check]` reads the YAML configuration (default
//! /etc/rvs/rvs.yaml), brings up DPDK ports and workers and balances until
//! SIGTERM or SIGINT. SIGUSR1 prints a stats line on stderr.
//!
//! The command line is one clap definition, [`Cli`], which also writes
//! rvsd's completions and man page (`--completions SHELL`, `--man DIR`; see
//! `rvs_control::cli`). Exit status 2 for a command-line error or an
//! invalid configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, ValueHint};
use rvs_control::cli::Generate;
use rvs_dataplane::daemon;

/// Exit status for a command-line error (clap's) or an invalid
/// configuration.
const USAGE_ERROR: u8 = 2;

/// The rvs director: balances connections to real servers on DPDK ports
///
/// rvsd reads its YAML configuration, brings up the DPDK ports and workers
/// it names and balances until SIGTERM or SIGINT. A configuration mistake is
/// refused before DPDK is touched, with the file, the line, the key path and
/// the reason (exit status 2). rvsadm and rvsctl control it through its
/// control socket.
#[derive(Parser, Debug, PartialEq, Eq)]
#[command(
    name = "rvsd",
    version,
    after_help = "Signals: SIGTERM/SIGINT stop cleanly; SIGUSR1 prints counters as one JSON line; \
                  SIGHUP re-reads the configuration file."
)]
struct Cli {
    /// Configuration file
    #[arg(
        short,
        long,
        value_name = "PATH",
        default_value = "/etc/rvs/rvs.yaml",
        value_hint = ValueHint::FilePath
    )]
    config: PathBuf,
    /// Validate the configuration and exit
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    generate: Generate,
}

fn main() -> ExitCode {
    // Help and --version exit 0, command-line errors 2.
    let cli = Cli::parse();
    if cli.generate.is_requested() {
        return cli.generate.run(Cli::command());
    }

    let config = match daemon::load_config(&cli.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rvsd: invalid configuration: {e}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    if cli.check {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    match daemon::run(&config, &cli.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;

    fn parse(words: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("rvsd").chain(words.split_whitespace()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn spellings() {
        for (words, config, check) in [
            ("", "/etc/rvs/rvs.yaml", false),
            ("--check", "/etc/rvs/rvs.yaml", true),
            ("--config /x.yaml", "/x.yaml", false),
            ("-c /x.yaml --check", "/x.yaml", true),
            ("--check --config=/x.yaml", "/x.yaml", true),
        ] {
            let expected = Cli {
                config: PathBuf::from(config),
                check,
                generate: Generate::default(),
            };
            assert_eq!(parse(words).unwrap(), expected, "{words}");
        }
    }

    #[test]
    fn usage_errors_and_help() {
        for (words, kind, exit_code) in [
            ("--config", ErrorKind::InvalidValue, 2),
            ("--frobnicate", ErrorKind::UnknownArgument, 2),
            ("conf.yaml", ErrorKind::UnknownArgument, 2),
            ("--man /tmp --check", ErrorKind::ArgumentConflict, 2),
            ("--completions tcsh", ErrorKind::InvalidValue, 2),
            ("--help", ErrorKind::DisplayHelp, 0),
            ("-h", ErrorKind::DisplayHelp, 0),
            ("--version", ErrorKind::DisplayVersion, 0),
            ("-V", ErrorKind::DisplayVersion, 0),
        ] {
            let err = parse(words).expect_err(words);
            assert_eq!((err.kind(), err.exit_code()), (kind, exit_code), "{words}");
        }
    }

    #[test]
    fn the_man_page_documents_every_option() {
        let dir = std::env::temp_dir().join(format!("rvsd-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        rvs_control::cli::man_pages(Cli::command(), &dir).unwrap();
        let page = std::fs::read_to_string(dir.join("rvsd.1")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let bold = |word: String| format!("\\fB{}\\fR", word.replace('-', "\\-"));
        // Built, so that clap's own --help and --version are there too.
        let mut command = Cli::command();
        command.build();
        let visible = command.get_arguments().filter(|arg| !arg.is_hide_set());
        let mut checked = 0;
        for arg in visible {
            let long = arg.get_long().expect("rvsd's options all have a long name");
            assert!(
                page.contains(&bold(format!("--{long}"))),
                "--{long}:\n{page}"
            );
            if let Some(short) = arg.get_short() {
                assert!(
                    page.contains(&bold(format!("-{short}"))),
                    "-{short}:\n{page}"
                );
            }
            checked += 1;
        }
        assert_eq!(checked, 4, "--config, --check, --help, --version");
        assert!(page.contains("SIGUSR1"), "the note on signals:\n{page}");
    }
}

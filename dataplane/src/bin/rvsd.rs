//! rvsd: the rvs director daemon.
//!
//! `rvsd [--config PATH] [--check]` reads the YAML configuration (default
//! /etc/rvs/rvs.yaml), brings up DPDK ports and workers and balances until
//! SIGTERM or SIGINT. SIGUSR1 prints a stats line on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use rvs_dataplane::daemon;

const USAGE: &str = "usage: rvsd [--config PATH] [--check]

  --config PATH  configuration file (default /etc/rvs/rvs.yaml)
  --check        validate the configuration and exit
  --version      print the version and exit

Signals: SIGTERM/SIGINT stop cleanly; SIGUSR1 prints counters as one JSON line.";

fn main() -> ExitCode {
    let mut config_path = PathBuf::from("/etc/rvs/rvs.yaml");
    let mut check_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(path) => config_path = PathBuf::from(path),
                None => {
                    eprintln!("rvsd: --config needs a path\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--check" => check_only = true,
            "--version" | "-V" => {
                println!("rvsd {}", env!("CARGO_PKG_VERSION"));
                return ExitCode::SUCCESS;
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => match other.strip_prefix("--config=") {
                Some(path) => config_path = PathBuf::from(path),
                None => {
                    eprintln!("rvsd: unknown argument `{other}`\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }

    let config = match rvs_control::config::load(&config_path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("rvsd: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{}: configuration is valid", config_path.display());
        return ExitCode::SUCCESS;
    }
    match daemon::run(&config, &config_path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

//! `rvsctl import-keepalived`: the load-balancing part of a keepalived.conf
//! (its `virtual_server`, `virtual_server_group`, `real_server` and checker
//! blocks, with `include`) as rvs services, and its `lvs_sync_daemon` as
//! rvs's sync daemons ([`syncd`]).
//!
//! Promises:
//! - Pure but for reading files, and that goes through [`Files`]: the
//!   same import runs over the disk ([`Disk`]) and over files held in
//!   memory (the tests).
//! - Whatever keepalived's words ask that rvs cannot do is refused, with
//!   `FILE:LINE: keyword: reason` ([`Refusal`]); a keyword accepted without
//!   effect, and every block skipped as keepalived's own business (VRRP,
//!   `global_defs` but for its `lvs_sync_daemon`, static addresses and
//!   routes), is said in a note.
//! - [`Import::into_config`] puts the services (and the sync daemons, when
//!   the file declares them) into a running configuration, keeping all
//!   else of it (its `marks:` groups included), and validates the result as
//!   rvsd would; a refusal by key path names the keepalived line the key
//!   came from.
//!
//! The stages: [`source`] reads the files and splices the includes,
//! [`lex`] splits lines into words, [`parse`] makes the block tree,
//! [`map`] gives the keywords their meaning.

mod lex;
mod map;
mod parse;
mod source;
mod syncd;

pub use map::MAX_RANGE;
pub use parse::MAX_NESTING;
pub use source::{MAX_DEPTH, MAX_FILES};

use crate::config::{self, Config, CpuList, HostCpus, Service, Sync};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A line of a keepalived file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Why an import is refused: `FILE:LINE: keyword: reason`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `FILE:LINE`, or `FILE` alone where no line is to blame.
    place: Option<String>,
    /// The keyword (or block) refused; may be empty.
    what: String,
    reason: String,
}

impl Refusal {
    pub(crate) fn new(at: Pos, what: &str, reason: String) -> Self {
        Refusal {
            place: Some(at.to_string()),
            what: what.to_owned(),
            reason,
        }
    }

    /// A refusal of no line in particular of `file`.
    pub(crate) fn whole(file: &str, reason: String) -> Self {
        Refusal {
            place: Some(file.to_owned()),
            what: String::new(),
            reason,
        }
    }

    /// A refusal whose reason says all (it names its file itself).
    fn plain(reason: String) -> Self {
        Refusal {
            place: None,
            what: String::new(),
            reason,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(place) = &self.place {
            write!(f, "{place}: ")?;
        }
        if !self.what.is_empty() {
            write!(f, "{}: ", self.what)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Refusal {}

/// Where the files of a configuration come from.
pub trait Files {
    /// The text of the file at `path`, or why not (naming `path`).
    fn read(&self, path: &Path) -> Result<String, String>;
    /// The names of the entries of directory `dir`.
    fn list(&self, dir: &Path) -> Result<Vec<String>, String>;
    /// What is equal for two paths to one file (to find include cycles).
    fn identity(&self, path: &Path) -> PathBuf;
}

/// The files on disk: each a regular file of at most
/// [`config::MAX_CONFIG_BYTES`] ([`config::read_file`]).
pub struct Disk;

impl Files for Disk {
    fn read(&self, path: &Path) -> Result<String, String> {
        config::read_file(path).map_err(|err| err.to_string())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>, String> {
        let entries = std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        Ok(entries
            .filter_map(Result::ok)
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect())
    }

    fn identity(&self, path: &Path) -> PathBuf {
        std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
    }
}

/// The services a keepalived configuration declares.
#[derive(Debug)]
pub struct Import {
    /// The file named on the command line.
    pub file: String,
    /// In the order of the file, a group's members in theirs.
    pub services: Vec<Service>,
    /// The sync daemons of its `lvs_sync_daemon`: master and backup alike.
    pub sync: Option<Sync>,
    /// What was skipped or accepted without effect, each naming its line.
    pub notes: Vec<String>,
    /// Per service, where its keys were written.
    origins: Vec<map::Origin>,
    /// Where the sync daemons were declared.
    sync_origin: Option<syncd::SyncOrigin>,
}

/// Imports the keepalived configuration at `path` from the disk.
pub fn import(path: &Path) -> Result<Import, Refusal> {
    import_from(&Disk, path)
}

/// Imports the keepalived configuration at `path` from `files`.
pub fn import_from(files: &dyn Files, path: &Path) -> Result<Import, Refusal> {
    let file = path.display().to_string();
    let mut notes = Vec::new();
    let tokens = source::load(files, path, &mut notes).map_err(|err| {
        // The file named itself unreadable: its reason names it.
        if err.place.as_deref() == Some(file.as_str()) && err.what.is_empty() {
            Refusal::plain(err.reason)
        } else {
            err
        }
    })?;
    let nodes = parse::parse(tokens)?;
    let mapped = map::map(&nodes, &mut notes)?;
    if mapped.services.is_empty() {
        notes.push(format!(
            "{file}: declares no virtual_server: importing it removes every service"
        ));
    }
    let (sync, sync_origin) = mapped.sync.unzip();
    Ok(Import {
        file,
        services: mapped.services,
        sync,
        notes,
        origins: mapped.origins,
        sync_origin,
    })
}

impl Import {
    /// `running` with its services replaced by the imported ones, and its
    /// sync daemons by the imported ones when the file declares some; all
    /// else (ports, timeouts, `marks:`, the sync daemons of a file that
    /// declares none...) kept, validated as rvsd validates a configuration
    /// but for the lcores' CPUs (rvsd checked those against its own machine
    /// when it took the running configuration).
    pub fn into_config(&self, mut running: Config) -> Result<Config, Refusal> {
        for (service, origin) in self.services.iter().zip(&self.origins) {
            let Some(mark) = service.mark else {
                continue;
            };
            if running.marks.iter().all(|group| group.mark != mark) {
                let defined: Vec<String> =
                    running.marks.iter().map(|g| g.mark.to_string()).collect();
                let defined = if defined.is_empty() {
                    "it defines none".to_owned()
                } else {
                    format!("it defines {}", defined.join(", "))
                };
                return Err(self.refusal_at(
                    origin,
                    "mark",
                    format!(
                        "rvs serves fwmark {mark} only through a `marks:` group of that number \
                         in its configuration, and the running one has none ({defined}); add \
                         the group (its VIP:port:protocol matches) with rvsctl apply first"
                    ),
                ));
            }
        }
        running.services = self.services.clone();
        if let Some(sync) = &self.sync {
            running.sync = sync.clone();
        }
        let every_cpu = CpuList::parse(&format!("0-{}", u32::MAX)).unwrap_or_default();
        let cpus = HostCpus {
            online: every_cpu.clone(),
            allowed: every_cpu,
        };
        running
            .validate_on(&cpus)
            .map_err(|err| self.refusal(err.key_path(), err.reason()))?;
        Ok(running)
    }

    /// A refusal of the configuration key `key_path` (`services[2].quorum`,
    /// `sync.master.sync_maxlen`), placed at the keepalived line it came
    /// from.
    pub fn refusal(&self, key_path: &str, reason: &str) -> Refusal {
        if let (Some(origin), true) = (&self.sync_origin, is_sync_key(key_path)) {
            return Refusal::new(origin.at.clone(), &origin.keyword, reason.to_owned());
        }
        let service = key_path
            .strip_prefix("services[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(index, rest)| {
                let origin = self.origins.get(index.parse::<usize>().ok()?)?;
                Some((origin, rest.strip_prefix('.').unwrap_or(rest)))
            });
        match service {
            Some((origin, key)) => self.refusal_at(origin, key, reason.to_owned()),
            None => Refusal::whole(&self.file, format!("{key_path}: {reason}")),
        }
    }

    fn refusal_at(&self, origin: &map::Origin, key: &str, reason: String) -> Refusal {
        match origin.locate(key) {
            Some((at, what)) => Refusal::new(at.clone(), what, reason),
            None => Refusal::whole(&self.file, reason),
        }
    }

    /// rvsd's refusal `message` of the YAML an import sent as `file`
    /// (`FILE:LINE:COLUMN: services[0].reals[1].address: reason`), placed
    /// at the keepalived line the key came from; any other message as it is.
    pub fn reword(&self, message: &str) -> String {
        let Some(rest) = message
            .strip_prefix(self.file.as_str())
            .and_then(|rest| rest.strip_prefix(':'))
        else {
            return message.to_owned();
        };
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == ':');
        match rest.trim_start().split_once(": ") {
            Some((key_path, reason))
                if key_path.starts_with("services[") || is_sync_key(key_path) =>
            {
                self.refusal(key_path, reason).to_string()
            }
            _ => message.to_owned(),
        }
    }
}

/// Whether `key_path` is a key of the `sync:` section.
fn is_sync_key(key_path: &str) -> bool {
    key_path == "sync" || key_path.starts_with("sync.")
}

/// `config` as the YAML text rvsctl sends rvsd for the import of `file`.
pub fn yaml(config: &Config, file: &str) -> Result<String, String> {
    let body = serde_yaml::to_string(config)
        .map_err(|err| format!("cannot write the configuration as YAML: {err}"))?;
    Ok(format!(
        "# rvsd's running configuration with the services of {file} \
         (rvsctl import-keepalived)\n{body}"
    ))
}

#[cfg(test)]
mod tests;

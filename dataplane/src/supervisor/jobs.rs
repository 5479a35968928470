//! Whole-configuration work off the control thread: `rvsctl apply`,
//! `rvsctl reload` and SIGHUP read, parse, validate and diff a whole file
//! (seconds for 100,000 services), `rvsadm -R` applies its batches of
//! commands, and `rvsctl dump` writes the configuration, on the
//! supervisor's helper thread, so that the control socket keeps answering
//! everyone else meanwhile.
//!
//! Promises:
//! - The helper prepares everything adopting the result needs (the new
//!   configuration, its diff, its ids and its snapshot, and the answer
//!   encoded as JSON, which for 100,000 services is megabytes); the control
//!   thread only swaps them in, in O(1), if nothing changed the running
//!   configuration meanwhile. If something did (another client's edit), the
//!   prepared ids and snapshot are stale and the control thread redoes the
//!   work against what runs now: a file still replaces the whole
//!   configuration and the report says what it changed; a batch's
//!   commands are applied again, to what runs now.
//! - One job at a time, in the order they came: two applies never race.
//! - The helper never touches running state; a refused job changes nothing.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use rvs_control::config::{self, Config, HostCpus};
use rvs_control::edit::{self, BatchEdit};
use rvs_control::health::HealthView;
use rvs_control::proto::{self, ApplyReport, Command, ConfigDiff, ConfigDump};
use rvs_control::rvsctl;
use rvs_control::server::Ticket;
use serde_json::value::RawValue;

use super::build::{self, Tables};
use super::ids::Ids;
use crate::dpdk;
use crate::snapshot::Snapshot;
use crate::wire::ethernet::MacAddr;

/// Who waits for a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// A control client, answered through the server with this ticket.
    Client(Ticket),
    /// SIGHUP: the outcome goes to rvsd's log.
    Signal,
}

/// What a job does.
pub(super) enum Task {
    /// Replace the running configuration with a whole file's (apply,
    /// reload), or with `dry_run` only report what that would change.
    Replace {
        /// How errors and the report name the text.
        file: String,
        source: Source,
        dry_run: bool,
    },
    /// Edit commands as one unit (`rvsadm -R`).
    Batch(Commands),
    /// The running configuration as YAML (`rvsctl dump`), naming `file`.
    Dump { file: Option<String> },
}

/// A batch's commands: as sent, or an upload's text to decode on the
/// helper.
pub(super) enum Commands {
    Sent(Vec<Command>),
    Uploaded(String),
}

/// Where a replacement's text is.
pub(super) enum Source {
    Text(String),
    /// Read on the helper ([`config::read_file`]: a regular file, bounded).
    File(PathBuf),
}

/// A job as queued: who waits and what for.
pub(super) struct Job {
    pub origin: Origin,
    pub task: Task,
}

/// The running state a job starts from.
pub(super) struct Start {
    pub running: Arc<Config>,
    /// Of `running`: how many configurations were adopted before it.
    pub generation: u64,
    pub cpus: HostCpus,
    pub ids: Ids,
    pub tables: Tables,
    pub macs: Vec<MacAddr>,
    /// The health of the reals when the job started.
    pub health: Arc<HealthView>,
}

/// A finished job.
pub(super) struct Done {
    pub origin: Origin,
    /// The running configuration's generation the job started from.
    pub generation: u64,
    pub outcome: Outcome,
}

pub(super) enum Outcome {
    Replaced {
        file: String,
        dry_run: bool,
        /// Re-reading rvsd's own file (SIGHUP, `rvsctl reload`).
        reload: bool,
        result: Result<Box<Prepared>, String>,
    },
    Batched(Result<Box<PreparedBatch>, String>),
    /// The [`ConfigDump`], encoded.
    Dumped(Result<Box<RawValue>, String>),
}

/// A batch, ready to adopt.
pub(super) struct PreparedBatch {
    /// The commands, to apply again should the configuration have changed.
    pub commands: Vec<Command>,
    pub edit: BatchEdit,
    /// The ids and snapshot of `edit.config`, when there is one.
    pub built: Option<Built>,
    /// The `BatchReport`, encoded, for adopting as prepared.
    pub answer: Box<RawValue>,
}

/// A replacement, ready to adopt.
pub(super) struct Prepared {
    pub next: Config,
    /// What `next` changes against the configuration the job started from.
    pub diff: ConfigDiff,
    /// The ids and snapshot of `next`, when it is to be adopted (not a dry
    /// run, and it differs from what ran).
    pub built: Option<Built>,
    /// The [`ApplyReport`] of `diff`, encoded, for adopting as prepared.
    pub answer: Box<RawValue>,
}

pub(super) struct Built {
    pub ids: Ids,
    pub tables: Tables,
    pub snapshot: Snapshot,
}

/// The helper thread's two queues. The thread ends when the supervisor
/// drops them, after its current job; nothing waits for that, so a SIGTERM
/// during a long parse stops rvsd at once.
pub(super) struct Helper {
    work: mpsc::Sender<(Job, Start)>,
    done: mpsc::Receiver<Done>,
}

impl Helper {
    pub(super) fn start() -> Helper {
        let (work, jobs) = mpsc::channel::<(Job, Start)>();
        let (finished, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("rvsd-config".to_owned())
            .spawn(move || {
                for (job, start) in jobs {
                    if finished.send(run(job, start)).is_err() {
                        return;
                    }
                }
            })
            .expect("the control thread's helper starts");
        Helper { work, done }
    }

    /// Starts `job` from `start`.
    pub(super) fn submit(&self, job: Job, start: Start) {
        self.work
            .send((job, start))
            .expect("the helper runs until the supervisor drops it");
    }

    /// A finished job, if one is.
    pub(super) fn finished(&self) -> Option<Done> {
        self.done.try_recv().ok()
    }
}

/// `value` encoded as an answer's result.
pub(super) fn to_raw<T: serde::Serialize>(value: &T) -> Result<Box<RawValue>, String> {
    serde_json::value::to_raw_value(value).map_err(|e| format!("cannot encode the answer: {e}"))
}

fn run(job: Job, start: Start) -> Done {
    let generation = start.generation;
    let outcome = match job.task {
        Task::Replace {
            file,
            source,
            dry_run,
        } => {
            let reload = matches!(source, Source::File(_));
            let result = replace(&file, source, dry_run, start);
            Outcome::Replaced {
                file,
                dry_run,
                reload,
                result,
            }
        }
        Task::Batch(commands) => Outcome::Batched(batch(commands, start)),
        Task::Dump { file } => Outcome::Dumped(
            rvsctl::dump(&start.running).and_then(|yaml| to_raw(&ConfigDump { file, yaml })),
        ),
    };
    // The text, the parser's events and the YAML written are freed by now.
    dpdk::return_free_heap();
    Done {
        origin: job.origin,
        generation,
        outcome,
    }
}

fn batch(commands: Commands, start: Start) -> Result<Box<PreparedBatch>, String> {
    let Start {
        running,
        cpus,
        ids,
        tables,
        macs,
        health,
        ..
    } = start;
    let commands = match commands {
        Commands::Sent(commands) => commands,
        Commands::Uploaded(text) => proto::decode_commands(&text)?,
    };
    let edit = edit::apply_batch(&running, &commands, &cpus)?;
    let built = match &edit.config {
        Some(next) => Some(build(&running, next, ids, tables, &macs, &health)?),
        None => None,
    };
    let answer = to_raw(&edit.report())?;
    Ok(Box::new(PreparedBatch {
        commands,
        edit,
        built,
        answer,
    }))
}

/// The ids and snapshot of `next`, replacing `running`; refused, changing
/// nothing, when the real ids run out.
fn build(
    running: &Config,
    next: &Config,
    ids: Ids,
    mut tables: Tables,
    macs: &[MacAddr],
    health: &HealthView,
) -> Result<Built, String> {
    let ids = ids.reassigned(running, next)?;
    let snapshot = build::snapshot(next, macs, &ids, &mut tables, health);
    Ok(Built {
        ids,
        tables,
        snapshot,
    })
}

fn replace(
    file: &str,
    source: Source,
    dry_run: bool,
    start: Start,
) -> Result<Box<Prepared>, String> {
    let Start {
        running,
        cpus,
        ids,
        tables,
        macs,
        health,
        ..
    } = start;
    let text = match source {
        Source::Text(text) => text,
        Source::File(path) => config::read_file(&path).map_err(|err| err.to_string())?,
    };
    let (next, diff) = edit::replace(&running, &text, file, &cpus)?;
    drop(text);
    let built = if !dry_run && next != *running {
        let built = build(&running, &next, ids, tables, &macs, &health);
        Some(built.map_err(|err| format!("{file}: {err}"))?)
    } else {
        None
    };
    let report = ApplyReport {
        file: file.to_owned(),
        diff,
        applied: built.is_some(),
    };
    let answer = to_raw(&report)?;
    Ok(Box::new(Prepared {
        next,
        diff: report.diff,
        built,
        answer,
    }))
}

//! High availability on the control thread: which VIPs and floating
//! addresses this director holds (`ownership: kernel`: those keepalived's
//! VRRP has put on its kernel interfaces, followed over rtnetlink by
//! [`crate::addresses`]), and the connection sync daemons the
//! configuration asks for (`sync.master`, `sync.backup`, see
//! [`crate::sync`]).

use std::net::Ipv4Addr;
use std::sync::Arc;

use rvs_control::config::{Config, Ownership, SyncDaemon};
use rvs_control::listing;
use rvs_control::proto::{AddressInfo, AddressKind};

use crate::addresses::{AddressWatch, Present};
use crate::engine::WorkerPlace;
use crate::mesh::Mesh;
use crate::sync::{self, Daemon, DaemonSpec, SyncCounters};

/// What one sync daemon is told, from its configuration.
pub(super) fn spec(daemon: &SyncDaemon) -> DaemonSpec {
    DaemonSpec {
        interface: daemon.mcast_interface.clone(),
        syncid: daemon.syncid,
        maxlen: usize::from(daemon.sync_maxlen),
        group: daemon.mcast_group,
        port: daemon.mcast_port,
        ttl: daemon.mcast_ttl,
    }
}

/// The addresses held and the sync daemons running.
pub(super) struct Ha {
    mesh: Arc<Mesh>,
    workers: u16,
    watch: Option<AddressWatch>,
    /// The kernel interfaces `watch` follows.
    watched: Vec<String>,
    /// What they hold, as last seen.
    present: Present,
    master: Option<Daemon>,
    backup: Option<Daemon>,
    pub(super) counters: Arc<SyncCounters>,
}

impl Ha {
    /// Follows `config`'s ownership and starts its sync daemons; refused
    /// when a daemon cannot start (its interface is missing, say).
    pub(super) fn new(config: &Config, mesh: Arc<Mesh>, workers: u16) -> Result<Self, String> {
        let mut ha = Ha {
            mesh,
            workers,
            watch: None,
            watched: Vec::new(),
            present: Present::new(),
            master: None,
            backup: None,
            counters: Arc::new(SyncCounters::default()),
        };
        ha.follow(config)?;
        Ok(ha)
    }

    /// Brings the address watch and the sync daemons in line with
    /// `config`: a daemon whose settings changed is restarted.
    pub(super) fn follow(&mut self, config: &Config) -> Result<(), String> {
        let watched: Vec<String> = match config.ownership {
            Ownership::Static => Vec::new(),
            Ownership::Kernel => config
                .ports
                .iter()
                .filter_map(|p| p.kernel_interface.clone())
                .collect(),
        };
        if watched != self.watched {
            self.watch = None;
            self.present.clear();
            if !watched.is_empty() {
                let watch = AddressWatch::start(watched.clone())?;
                if let Some(first) = watch.latest() {
                    self.present = first;
                }
                self.watch = Some(watch);
            }
            self.watched = watched;
        }
        let master = config.sync.master.as_ref().map(spec);
        if self.master.as_ref().map(|d| &d.spec) != master.as_ref() {
            self.master = None;
            if let Some(spec) = master {
                let daemon =
                    sync::start_master(spec, Arc::clone(&self.mesh), Arc::clone(&self.counters))?;
                log_daemon("master", &daemon.spec);
                self.master = Some(daemon);
            }
        }
        let backup = config.sync.backup.as_ref().map(spec);
        if self.backup.as_ref().map(|d| &d.spec) != backup.as_ref() {
            self.backup = None;
            if let Some(spec) = backup {
                let place = WorkerPlace {
                    index: 0,
                    count: self.workers,
                };
                let daemon = sync::start_backup(
                    spec,
                    Arc::clone(&self.mesh),
                    place,
                    Arc::clone(&self.counters),
                )?;
                log_daemon("backup", &daemon.spec);
                self.backup = Some(daemon);
            }
        }
        Ok(())
    }

    /// Takes the latest view of the kernel interfaces' addresses; true
    /// when what this director holds changed (each change logged).
    pub(super) fn poll(&mut self, config: &Config) -> bool {
        let Some(now) = self.watch.as_ref().and_then(AddressWatch::latest) else {
            return false;
        };
        let before = self.addresses(config);
        self.present = now;
        let after = self.addresses(config);
        let mut changed = false;
        for (old, new) in before.iter().zip(&after) {
            if old.held != new.held && new.kind != AddressKind::Port {
                changed = true;
                let kind = new.kind.name();
                match (&new.interface, new.held) {
                    (Some(interface), true) => {
                        eprintln!("rvsd: holding {kind} {} (on {interface})", new.address)
                    }
                    _ => eprintln!("rvsd: released {kind} {}", new.address),
                }
            }
        }
        changed
    }

    /// Every address this director may serve, and whether it does now.
    pub(super) fn addresses(&self, config: &Config) -> Vec<AddressInfo> {
        listing::addresses(config, &|ip| self.present.get(&ip).cloned())
    }

    /// The VIPs and floating addresses not held now (none with
    /// `ownership: static`).
    pub(super) fn unheld(&self, config: &Config) -> Vec<Ipv4Addr> {
        if config.ownership == Ownership::Static {
            return Vec::new();
        }
        self.addresses(config)
            .into_iter()
            .filter(|a| !a.held && a.kind != AddressKind::Port)
            .map(|a| a.address)
            .collect()
    }
}

fn log_daemon(state: &str, spec: &DaemonSpec) {
    eprintln!(
        "rvsd: {state} sync daemon (mcast={}, syncid={}, maxlen={}, group={}, port={}, ttl={})",
        spec.interface, spec.syncid, spec.maxlen, spec.group, spec.port, spec.ttl
    );
}

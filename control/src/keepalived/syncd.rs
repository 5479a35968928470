//! keepalived's `lvs_sync_daemon` (in `global_defs`; keepalived.conf(5)):
//!
//! ```text
//! lvs_sync_daemon <INTERFACE> [[inst] <VRRP_INSTANCE>] [id <SYNC_ID>]
//!                 [maxlen <LEN>] [port <PORT>] [ttl <TTL>] [group <IP ADDR>]
//! ```
//!
//! and its deprecated form, `lvs_sync_daemon_interface <INTERFACE>` in a
//! `vrrp_instance`, as rvs's `sync:` daemons.
//!
//! Promises:
//! - The syncid is `id`'s, else the `virtual_router_id` of the VRRP
//!   instance named, else 0, as keepalived takes it; the other settings
//!   default as the kernel's (1472 bytes, 224.0.0.81:8848, TTL 1).
//! - Both of rvs's daemons, master and backup, get the same settings.
//!   keepalived with no VRRP instance named runs both as well; with one, it
//!   would run the master while the instance is MASTER and the backup
//!   otherwise. Beside rvsd, keepalived runs VRRP only (`--vrrp`) and never
//!   starts or stops rvs's daemons, so rvs runs both at all times: each
//!   director sends the connections it serves and takes those its peer
//!   sends, whichever of them holds the VIPs. A note says so.
//! - What keepalived would ignore with a warning (a bad value, an unknown
//!   word, a second `lvs_sync_daemon`) is refused with its line, as every
//!   keyword of the import is.

use super::map::{ipv4, ipv6_reason, no_block, refuse};
use super::parse::{Node, Word};
use super::{Pos, Refusal};
use crate::config::{Sync, SyncDaemon};
use std::collections::HashMap;

/// Where the sync daemons were declared: the line and its keyword.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SyncOrigin {
    pub at: Pos,
    pub keyword: String,
}

/// The sync daemons the top-level statements `nodes` declare, if any.
pub(super) fn sync(
    nodes: &[Node],
    notes: &mut Vec<String>,
) -> Result<Option<(Sync, SyncOrigin)>, Refusal> {
    let instances: HashMap<&str, &Node> = nodes
        .iter()
        .filter(|node| node.name() == "vrrp_instance")
        .filter_map(|node| Some((node.args.first()?.text.as_str(), node)))
        .collect();
    let mut found: Option<(SyncDaemon, &Node)> = None;
    for node in nodes {
        let declared = match node.name() {
            "global_defs" => children(node, "lvs_sync_daemon")
                .map(|n| Ok((global(n, &instances)?, n)))
                .collect::<Result<Vec<_>, Refusal>>()?,
            "vrrp_instance" => children(node, "lvs_sync_daemon_interface")
                .map(|n| Ok((in_instance(n, node)?, n)))
                .collect::<Result<Vec<_>, Refusal>>()?,
            _ => Vec::new(),
        };
        for (daemon, at) in declared {
            if let Some((_, first)) = &found {
                return Err(refuse(
                    at,
                    format!(
                        "the sync daemons are already declared at {} (keepalived takes one \
                         declaration and ignores the others)",
                        first.at()
                    ),
                ));
            }
            found = Some((daemon, at));
        }
    }
    let Some((daemon, at)) = found else {
        return Ok(None);
    };
    notes.push(format!(
        "{}: {}: rvs runs both its sync daemons, master and backup, with these settings: \
         beside rvsd keepalived runs VRRP only (--vrrp) and never starts or stops rvs's \
         daemons, so each director sends the connections it serves and takes those its peer \
         sends, whichever holds the VIPs",
        at.at(),
        at.name()
    ));
    let sync = Sync {
        master: Some(daemon.clone()),
        backup: Some(daemon),
    };
    let origin = SyncOrigin {
        at: at.at().clone(),
        keyword: at.name().to_owned(),
    };
    Ok(Some((sync, origin)))
}

/// The statements named `name` directly inside `node`'s block.
fn children<'a>(node: &'a Node, name: &'a str) -> impl Iterator<Item = &'a Node> {
    node.block
        .iter()
        .flatten()
        .filter(move |child| child.name() == name)
}

/// `global_defs`'s `lvs_sync_daemon`.
fn global(node: &Node, instances: &HashMap<&str, &Node>) -> Result<SyncDaemon, Refusal> {
    no_block(node)?;
    let Some((interface, rest)) = node.args.split_first() else {
        return Err(refuse(
            node,
            "needs the interface the sync multicast goes out of and comes in on".to_owned(),
        ));
    };
    let mut daemon = SyncDaemon::on(interface.text.clone());
    let mut instance: Option<&Word> = None;
    let mut syncid: Option<u32> = None;
    let mut index = 0;
    while index < rest.len() {
        let word = &rest[index];
        let option = word.text.as_str();
        let value = || {
            rest.get(index + 1)
                .ok_or_else(|| refuse(node, format!("`{option}` needs a value")))
        };
        match option {
            "inst" => instance = Some(value()?),
            "id" => syncid = Some(ranged(node, option, value()?, 0, 255)?),
            "maxlen" => {
                let max = crate::sync::MAX_MAXLEN as u32;
                daemon.sync_maxlen = ranged(node, option, value()?, 1, max)? as u16;
            }
            "port" => daemon.mcast_port = ranged(node, option, value()?, 1, 65535)? as u16,
            "ttl" => daemon.mcast_ttl = ranged(node, option, value()?, 1, 255)? as u8,
            "group" => {
                let word = value()?;
                if word.text.contains(':') {
                    return Err(refuse(node, ipv6_reason()));
                }
                let group = ipv4(node, word)?;
                if !group.is_multicast() {
                    return Err(refuse(
                        node,
                        format!("group {group} is not a multicast address"),
                    ));
                }
                daemon.mcast_group = group;
            }
            // keepalived's older form, `lvs_sync_daemon IF INSTANCE [SYNCID]`.
            _ if index == 0 => {
                instance = Some(word);
                index += 1;
                continue;
            }
            _ if index == 1 && instance.is_some() && syncid.is_none() => {
                syncid = Some(ranged(node, "id", word, 0, 255)?);
                index += 1;
                continue;
            }
            _ => {
                return Err(refuse(
                    node,
                    format!(
                        "`{option}` is not an option of lvs_sync_daemon (inst, id, maxlen, \
                         port, ttl, group)"
                    ),
                ))
            }
        }
        index += 2;
    }
    let syncid = match (syncid, instance) {
        (Some(syncid), _) => syncid,
        (None, None) => 0,
        (None, Some(name)) => {
            let vrrp = instances.get(name.text.as_str()).ok_or_else(|| {
                refuse(
                    node,
                    format!(
                        "vrrp_instance {} is not defined; keepalived would run no sync daemon",
                        name.text
                    ),
                )
            })?;
            router_id(vrrp)?
        }
    };
    daemon.syncid = syncid as u8;
    Ok(daemon)
}

/// `lvs_sync_daemon_interface IF` inside a `vrrp_instance` (deprecated):
/// the instance's `virtual_router_id` is the syncid.
fn in_instance(node: &Node, vrrp: &Node) -> Result<SyncDaemon, Refusal> {
    no_block(node)?;
    let [interface] = node.args.as_slice() else {
        return Err(refuse(node, "takes the interface name".to_owned()));
    };
    Ok(SyncDaemon {
        syncid: router_id(vrrp)? as u8,
        ..SyncDaemon::on(interface.text.clone())
    })
}

/// A VRRP instance's `virtual_router_id`, 1 to 255.
fn router_id(vrrp: &Node) -> Result<u32, Refusal> {
    let name = vrrp.args.first().map_or("", |word| word.text.as_str());
    let node = children(vrrp, "virtual_router_id").next().ok_or_else(|| {
        refuse(
            vrrp,
            format!(
                "vrrp_instance {name} has no virtual_router_id, which keepalived takes as the \
                 sync daemons' syncid"
            ),
        )
    })?;
    match node.args.as_slice() {
        [word] => ranged(node, "virtual_router_id", word, 1, 255),
        _ => Err(refuse(node, "takes one number from 1 to 255".to_owned())),
    }
}

/// `word`, the value of `option`, as a whole number from `min` to `max`.
fn ranged(node: &Node, option: &str, word: &Word, min: u32, max: u32) -> Result<u32, Refusal> {
    word.text
        .parse::<u32>()
        .ok()
        .filter(|value| (min..=max).contains(value))
        .ok_or_else(|| {
            refuse(
                node,
                format!(
                    "{option} `{}` is not a whole number from {min} to {max}",
                    word.text
                ),
            )
        })
}

//! Which addresses the kernel interfaces hold, read over rtnetlink: with
//! `ownership: kernel`, rvsd serves a VIP or a floating address only while
//! it is on one of its kernel interfaces, where keepalived's VRRP puts it
//! as the director becomes master and takes it away as it stops being one.
//!
//! A thread subscribes to the kernel's IPv4 address events
//! (`RTMGRP_IPV4_IFADDR`) and, after each (and once a second in any case,
//! should an event be lost to a full socket buffer), reads the whole
//! address list again and sends the addresses of the watched interfaces
//! to the control thread when they differ from the last it sent. Reading
//! the list rather than applying events one by one keeps the view right
//! whatever was missed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Address → the watched interface it is on.
pub type Present = BTreeMap<Ipv4Addr, String>;

/// The IPv4 addresses of every interface, as (interface index, address).
pub fn dump() -> std::io::Result<Vec<(u32, Ipv4Addr)>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut message = AddressMessage::default();
    message.header.family = AddressFamily::Inet;
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetAddress(message)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buffer = vec![0u8; request.buffer_len()];
    request.serialize(&mut buffer);
    socket.send(&buffer, 0)?;

    let mut found = Vec::new();
    loop {
        let mut reply: Vec<u8> = Vec::with_capacity(1 << 16);
        socket.recv(&mut reply, 0)?;
        let mut at = 0;
        while at < reply.len() {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&reply[at..])
                .map_err(|e| std::io::Error::other(format!("rtnetlink: {e}")))?;
            let length = message.header.length as usize;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(found),
                NetlinkPayload::Error(e) => {
                    return Err(std::io::Error::other(format!("rtnetlink: {e}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(address)) => {
                    // IFA_LOCAL is the interface's own address (IFA_ADDRESS
                    // the peer's on a point-to-point link).
                    let local = address.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    let any = address.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(std::net::IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    });
                    if let Some(ip) = local.or(any) {
                        found.push((address.header.index, ip));
                    }
                }
                _ => {}
            }
            if length == 0 {
                break;
            }
            at += length;
        }
    }
}

/// The addresses on `interfaces` now.
pub fn present(interfaces: &[String]) -> std::io::Result<Present> {
    let mut names: BTreeMap<u32, Option<String>> = BTreeMap::new();
    let mut present = Present::new();
    for (index, ip) in dump()? {
        let name = names
            .entry(index)
            .or_insert_with(|| crate::dpdk::interface_name(index));
        if let Some(name) = name.as_ref().filter(|n| interfaces.contains(n)) {
            present.insert(ip, name.clone());
        }
    }
    Ok(present)
}

/// The thread following the addresses of some interfaces.
pub struct AddressWatch {
    /// Each new view, the first at once.
    pub changes: Receiver<Present>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AddressWatch {
    /// Follows the addresses of `interfaces`.
    pub fn start(interfaces: Vec<String>) -> Result<Self, String> {
        let mut events = Socket::new(NETLINK_ROUTE)
            .map_err(|e| format!("cannot open an rtnetlink socket: {e}"))?;
        events
            .bind(&SocketAddr::new(0, libc::RTMGRP_IPV4_IFADDR as u32))
            .map_err(|e| format!("cannot subscribe to address events: {e}"))?;
        socket2::SockRef::from(&events)
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .map_err(|e| format!("cannot set a timeout on the rtnetlink socket: {e}"))?;
        let first = present(&interfaces).map_err(|e| format!("cannot read addresses: {e}"))?;
        let (send, changes) = mpsc::channel();
        let _ = send.send(first.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("rvs-addresses".into())
            .spawn(move || {
                let mut last = first;
                let mut events_buffer: Vec<u8> = Vec::with_capacity(1 << 16);
                while !stopping.load(Relaxed) {
                    // An event, or a second without one: read the list.
                    events_buffer.clear();
                    let _ = events.recv(&mut events_buffer, 0);
                    match present(&interfaces) {
                        Ok(now) if now != last => {
                            if send.send(now.clone()).is_err() {
                                return;
                            }
                            last = now;
                        }
                        Ok(_) => {}
                        Err(e) => eprintln!("rvsd: cannot read the kernel's addresses: {e}"),
                    }
                }
            })
            .map_err(|e| format!("cannot start the address thread: {e}"))?;
        Ok(AddressWatch {
            changes,
            stop,
            thread: Some(thread),
        })
    }

    /// The latest view since the last call, if any.
    pub fn latest(&self) -> Option<Present> {
        self.changes.try_iter().last()
    }
}

impl Drop for AddressWatch {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_address_is_read_from_the_kernel() {
        // Every network namespace has lo; it is up with 127.0.0.1 unless
        // a sandbox left it down, in which case the list is merely empty.
        let all = dump().expect("rtnetlink dump");
        let lo = present(&["lo".to_string()]).unwrap();
        if all.iter().any(|(_, ip)| *ip == Ipv4Addr::LOCALHOST) {
            assert_eq!(lo.get(&Ipv4Addr::LOCALHOST).map(String::as_str), Some("lo"));
        }
        assert!(present(&[]).unwrap().is_empty(), "no interface watched");
    }
}

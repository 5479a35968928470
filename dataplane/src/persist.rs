//! Persistence templates (IPVS `-p`): which real a client network was sent
//! to, per persistent service, so that its next connections go there too.
//!
//! A template is keyed by `<protocol, client network, VIP, service port>`
//! (service port 0 for a port-zero service, so every port of the VIP shares
//! it). Using a template re-arms it for the service's persistence timeout.
//! A template that still controls connections does not expire: it is re-armed
//! for [`CONTROLLED_REARM_SECS`] (as IPVS does) until its last connection is
//! gone. Templates count as PersistConn, never as Active/InActConn.
//!
//! One table per worker, bounded and allocated up front; a full table
//! schedules without a template (counted by the caller). Expired templates
//! are swept a bounded number per tick.

use std::net::Ipv4Addr;

use hashbrown::HashMap;

/// How long a template that controls connections lives past its timeout
/// before it is looked at again.
pub const CONTROLLED_REARM_SECS: u32 = 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey {
    pub protocol: u8,
    /// The client address with the service's netmask applied.
    pub client_net: Ipv4Addr,
    pub vip: Ipv4Addr,
    /// The service port (0 for a port-zero service).
    pub vport: u16,
    pub service_id: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct Template {
    pub key: TemplateKey,
    pub real_id: u32,
    pub expires: u32,
    /// Connections created through this template and still tracked.
    pub controls: u32,
    live: bool,
}

pub struct Templates {
    index: HashMap<TemplateKey, u32>,
    slots: Vec<Template>,
    free: Vec<u32>,
    sweep_at: usize,
}

impl Templates {
    pub fn new(capacity: usize) -> Self {
        let unused = Template {
            key: TemplateKey {
                protocol: 0,
                client_net: Ipv4Addr::UNSPECIFIED,
                vip: Ipv4Addr::UNSPECIFIED,
                vport: 0,
                service_id: 0,
            },
            real_id: 0,
            expires: 0,
            controls: 0,
            live: false,
        };
        Templates {
            // Twice the entries keeps hashbrown's tombstone rehashes in place.
            index: HashMap::with_capacity(capacity * 2),
            slots: vec![unused; capacity],
            free: (0..capacity as u32).rev().collect(),
            sweep_at: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn lookup(&self, key: &TemplateKey) -> Option<u32> {
        self.index.get(key).copied()
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Template {
        &self.slots[slot as usize]
    }

    /// Re-arms template `slot` until `expires`.
    #[inline]
    pub fn touch(&mut self, slot: u32, expires: u32) {
        let template = &mut self.slots[slot as usize];
        template.expires = template.expires.max(expires);
    }

    /// A new template sending `key` to `real_id` until `expires`; `None`
    /// when the table is full.
    pub fn insert(&mut self, key: TemplateKey, real_id: u32, expires: u32) -> Option<u32> {
        let slot = self.free.pop()?;
        self.slots[slot as usize] = Template {
            key,
            real_id,
            expires,
            controls: 0,
            live: true,
        };
        self.index.insert(key, slot);
        Some(slot)
    }

    /// Forgets template `slot` (its real went away); returns its real.
    pub fn remove(&mut self, slot: u32) -> Option<u32> {
        let template = self.slots.get_mut(slot as usize)?;
        if !template.live {
            return None;
        }
        template.live = false;
        self.index.remove(&template.key);
        self.free.push(slot);
        Some(template.real_id)
    }

    /// One more connection made through template `slot`.
    #[inline]
    pub fn control(&mut self, slot: u32) {
        if let Some(template) = self.slots.get_mut(slot as usize) {
            template.controls += 1;
        }
    }

    /// A connection made through template `slot` is gone.
    #[inline]
    pub fn release(&mut self, slot: u32) {
        if let Some(template) = self.slots.get_mut(slot as usize) {
            template.controls = template.controls.saturating_sub(1);
        }
    }

    /// Looks at up to `budget` slots: removes expired templates that control
    /// nothing (calling `on_remove` with their real), re-arms those that still
    /// control connections.
    pub fn sweep(&mut self, now: u32, budget: usize, mut on_remove: impl FnMut(u32)) {
        if self.slots.is_empty() || self.is_empty() {
            return;
        }
        for _ in 0..budget.min(self.slots.len()) {
            let slot = self.sweep_at;
            self.sweep_at = (self.sweep_at + 1) % self.slots.len();
            let template = &mut self.slots[slot];
            if !template.live || template.expires > now {
                continue;
            }
            if template.controls > 0 {
                template.expires = now + CONTROLLED_REARM_SECS;
            } else if let Some(real_id) = self.remove(slot as u32) {
                on_remove(real_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(client: u8) -> TemplateKey {
        TemplateKey {
            protocol: 6,
            client_net: Ipv4Addr::new(10, 0, 0, client),
            vip: Ipv4Addr::new(10, 0, 1, 100),
            vport: 80,
            service_id: 1,
        }
    }

    #[test]
    fn templates_expire_only_when_they_control_nothing() {
        let mut t = Templates::new(4);
        let a = t.insert(key(1), 7, 100).unwrap();
        let b = t.insert(key(2), 8, 100).unwrap();
        t.control(b);
        let mut removed = vec![];
        t.sweep(99, 8, |real| removed.push(real));
        assert!(removed.is_empty(), "not yet due");
        t.sweep(100, 8, |real| removed.push(real));
        assert_eq!(removed, vec![7], "a expired; b controls a connection");
        assert_eq!(t.lookup(&key(1)), None);
        assert_eq!(t.get(b).expires, 100 + CONTROLLED_REARM_SECS);
        t.release(b);
        t.sweep(100 + CONTROLLED_REARM_SECS, 8, |real| removed.push(real));
        assert_eq!(removed, vec![7, 8]);
        assert!(t.is_empty());
        let _ = a;
    }

    #[test]
    fn touch_extends_and_a_full_table_refuses() {
        let mut t = Templates::new(1);
        let a = t.insert(key(1), 7, 10).unwrap();
        t.touch(a, 50);
        t.touch(a, 20);
        assert_eq!(t.get(a).expires, 50, "never shortened");
        assert_eq!(t.insert(key(2), 8, 10), None);
        assert_eq!(t.remove(a), Some(7));
        assert_eq!(t.remove(a), None);
        assert!(t.insert(key(2), 8, 10).is_some());
    }
}

//! Which CPUs exist and which this process may run on, read from Linux's
//! text interfaces so that the control crate needs no `unsafe`
//! (`sched_getaffinity` would).

use std::fmt;
use std::fs;

/// A set of CPU numbers, written like the kernel writes it: `0-3,8,10-11`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CpuList {
    /// Sorted, non-overlapping, inclusive ranges.
    ranges: Vec<(u32, u32)>,
}

impl CpuList {
    /// Parses the kernel's list format (`/sys/devices/system/cpu/online`,
    /// `Cpus_allowed_list` in `/proc/self/status`). `None` if malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut ranges = Vec::new();
        for part in text.trim().split(',').filter(|p| !p.is_empty()) {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
                None => {
                    let cpu = part.trim().parse().ok()?;
                    (cpu, cpu)
                }
            };
            if first > last {
                return None;
            }
            ranges.push((first, last));
        }
        ranges.sort_unstable();
        Some(CpuList { ranges })
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.ranges
            .iter()
            .any(|&(first, last)| (first..=last).contains(&cpu))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(first, last)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

/// The CPUs of this machine as seen by this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCpus {
    /// CPUs the kernel has online.
    pub online: CpuList,
    /// CPUs this process may run on (its affinity mask: taskset, cgroup
    /// cpuset, container limits); a subset of `online`.
    pub allowed: CpuList,
}

impl HostCpus {
    /// Reads `/sys/devices/system/cpu/online` and the `Cpus_allowed_list`
    /// line of `/proc/self/status`. Where one cannot be read, falls back to
    /// the other, then to `0..available_parallelism()`.
    pub fn detect() -> Self {
        let online = fs::read_to_string("/sys/devices/system/cpu/online")
            .ok()
            .and_then(|text| CpuList::parse(&text));
        let allowed = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                    .and_then(CpuList::parse)
            });
        match (online, allowed) {
            (Some(online), Some(allowed)) => HostCpus { online, allowed },
            (Some(list), None) | (None, Some(list)) => HostCpus {
                online: list.clone(),
                allowed: list,
            },
            (None, None) => {
                let count = std::thread::available_parallelism().map_or(1, |n| n.get());
                let list = CpuList {
                    ranges: vec![(0, u32::try_from(count - 1).unwrap_or(u32::MAX))],
                };
                HostCpus {
                    online: list.clone(),
                    allowed: list,
                }
            }
        }
    }

    /// Why `cpu` cannot run a pinned lcore, or `None` if it can.
    pub fn refuse(&self, cpu: u32) -> Option<String> {
        if !self.online.contains(cpu) {
            Some(format!(
                "CPU {cpu} does not exist on this machine (online CPUs: {})",
                self.online
            ))
        } else if !self.allowed.contains(cpu) {
            Some(format!(
                "CPU {cpu} is online but this process may not run on it \
                 (allowed CPUs: {}; see taskset or the cgroup cpuset)",
                self.allowed
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_list_format() {
        let list = CpuList::parse("0-3,8,10-11\n").unwrap();
        assert!(list.contains(0) && list.contains(3) && list.contains(8) && list.contains(11));
        assert!(!list.contains(4) && !list.contains(9) && !list.contains(12));
        assert_eq!(list.to_string(), "0-3,8,10-11");
        assert_eq!(CpuList::parse("3-1"), None);
        assert_eq!(CpuList::parse("x"), None);
    }

    #[test]
    fn refusals() {
        let host = HostCpus {
            online: CpuList::parse("0-3").unwrap(),
            allowed: CpuList::parse("0-1").unwrap(),
        };
        assert_eq!(host.refuse(1), None);
        assert!(host.refuse(2).unwrap().contains("may not run on it"));
        assert!(host.refuse(7).unwrap().contains("does not exist"));
    }
}

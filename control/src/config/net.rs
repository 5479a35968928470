//! IPv4 prefixes in CIDR notation (`10.0.0.0/24`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with a prefix length, as written in CIDR notation.
///
/// Used both for a port address (`10.99.1.1/24`: the address, and the length of
/// its connected subnet) and for a route prefix (`10.99.3.0/24`, where
/// validation refuses host bits). Invariant: `prefix_len <= 32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// `None` when `prefix_len > 32`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then_some(Ipv4Net { addr, prefix_len })
    }

    /// The address as written, host bits included.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask, e.g. 255.255.255.0 for a /24.
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    /// The address with its host bits set: the subnet's broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    /// Whether `addr` is this subnet's network or broadcast address, which
    /// no host has (point-to-point /31 and host /32 prefixes have neither).
    pub fn is_edge(&self, addr: Ipv4Addr) -> bool {
        self.prefix_len < 31 && (addr == self.network() || addr == self.broadcast())
    }

    /// Whether `addr` lies in this prefix.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask_bits() == u32::from(self.network())
    }

    /// Whether the address has bits set beyond the prefix length.
    pub fn has_host_bits(&self) -> bool {
        self.addr != self.network()
    }

    fn mask_bits(&self) -> u32 {
        // A shift by 32 would overflow; /0 is the empty mask.
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not `a.b.c.d/len`; its Display is a complete sentence
/// fragment naming the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIpv4NetError(String);

impl fmt::Display for ParseIpv4NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseIpv4NetError {}

impl FromStr for Ipv4Net {
    type Err = ParseIpv4NetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let Some((addr, len)) = text.split_once('/') else {
            return Err(ParseIpv4NetError(match text.parse::<Ipv4Addr>() {
                Ok(_) => format!(
                    "\"{text}\" has no prefix length; write it in CIDR form, \
                     e.g. \"{text}/24\" (the length of its subnet) or \"{text}/32\""
                ),
                Err(_) => {
                    format!("invalid IPv4 prefix \"{text}\"; expected CIDR form like 10.0.0.0/24")
                }
            }));
        };
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| {
            ParseIpv4NetError(format!(
                "invalid IPv4 address \"{addr}\" in \"{text}\"; expected CIDR form like 10.0.0.0/24"
            ))
        })?;
        // u8::from_str accepts a leading '+'; CIDR does not.
        let len = len
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| len.parse::<u8>().ok())
            .flatten()
            .and_then(|len| Ipv4Net::new(addr, len));
        len.ok_or_else(|| {
            ParseIpv4NetError(format!(
                "invalid prefix length in \"{text}\"; expected 0 to 32 after the '/'"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_query() {
        let net: Ipv4Net = "10.99.1.1/24".parse().unwrap();
        assert_eq!(net.addr(), Ipv4Addr::new(10, 99, 1, 1));
        assert_eq!(net.prefix_len(), 24);
        assert_eq!(net.mask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(net.network(), Ipv4Addr::new(10, 99, 1, 0));
        assert!(net.has_host_bits());
        assert!(net.contains(Ipv4Addr::new(10, 99, 1, 254)));
        assert!(!net.contains(Ipv4Addr::new(10, 99, 2, 1)));
        assert_eq!(net.to_string(), "10.99.1.1/24");
    }

    #[test]
    fn edge_lengths() {
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.mask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(192, 0, 2, 1)));
        let host: Ipv4Net = "192.0.2.1/32".parse().unwrap();
        assert!(host.contains(Ipv4Addr::new(192, 0, 2, 1)));
        assert!(!host.contains(Ipv4Addr::new(192, 0, 2, 2)));
        assert!(!host.has_host_bits());
    }

    #[test]
    fn refused() {
        for (text, reason) in [
            ("10.0.0.1", "has no prefix length"),
            ("10.0.0.0/33", "invalid prefix length"),
            ("10.0.0.0/+8", "invalid prefix length"),
            ("10.0.0.0/", "invalid prefix length"),
            ("10.0.0.300/24", "invalid IPv4 address \"10.0.0.300\""),
            ("foo", "invalid IPv4 prefix"),
        ] {
            let err = text.parse::<Ipv4Net>().unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }
}

//! The SSRF address policy: which IP addresses a delivery may connect to.
//!
//! A webhook URL is chosen by a tenant, so without a guard the dispatcher could be pointed at
//! the host itself, the private network around it, or a cloud metadata service. The
//! [`AddressPolicy`] refuses every address in a special-purpose range (loopback, private,
//! link-local, CGNAT, multicast, reserved, ...) unless an operator's allow range contains it.
//! IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by the
//! embedded address, so `::ffff:127.0.0.1` is as loopback as `127.0.0.1`.
//!
//! Pure: it judges addresses it is given and never resolves a name. The transport resolves,
//! then connects only to the addresses this policy accepted.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A block of IP addresses in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a
/// block of one (`/32` or `/128`). The bits after the prefix are always zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpRangeError {
    #[error("cidr {input:?}: not an IP address; give a range such as 10.0.0.0/8 or fd00::/8")]
    Address { input: String },
    #[error("cidr {input:?}: the prefix length must be a number from 0 to {max}")]
    Prefix { input: String, max: u8 },
    #[error("cidr {input:?}: has address bits set after the prefix; write {network}")]
    HostBits { input: String, network: IpRange },
}

impl IpRange {
    /// Parses `address/prefix` or a bare address.
    ///
    /// # Errors
    /// An [`IpRangeError`] when the address or the prefix length is not valid, or when the
    /// address has bits set after the prefix (`10.0.0.1/8`; the error names `10.0.0.0/8`).
    pub fn parse(text: &str) -> Result<Self, IpRangeError> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address.parse().map_err(|_| IpRangeError::Address {
            input: shorten(text),
        })?;
        let max = max_prefix(address);
        let prefix = match prefix {
            None => max,
            Some(digits) => digits
                .parse::<u8>()
                .ok()
                // `u8::from_str` takes a leading `+`; a CIDR does not.
                .filter(|&n| n <= max && digits.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| IpRangeError::Prefix {
                    input: shorten(text),
                    max,
                })?,
        };
        let range = Self {
            network: mask(address, prefix),
            prefix,
        };
        if range.network != address {
            return Err(IpRangeError::HostBits {
                input: shorten(text),
                network: range,
            });
        }
        Ok(range)
    }

    /// The first address of the block.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length: 0 to 32 for IPv4, 0 to 128 for IPv6.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is in the block. An IPv4 block contains only IPv4 addresses and an IPv6
    /// block only IPv6 addresses; [`AddressPolicy`] handles IPv6 forms of IPv4 addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        same_family(self.network, ip) && mask(ip, self.prefix) == self.network
    }

    /// A block from parts known to be valid; for the tables below.
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for IpRange {
    type Err = IpRangeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl TryFrom<String> for IpRange {
    type Error = IpRangeError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<IpRange> for String {
    fn from(range: IpRange) -> Self {
        range.to_string()
    }
}

/// Error texts quote the input; a CIDR is short, so anything long is cut.
fn shorten(text: &str) -> String {
    text.chars().take(64).collect()
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    matches!(
        (a, b),
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_))
    )
}

/// `ip` with every bit after the first `prefix` cleared; `prefix` is at most the family's
/// width.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// The kind of special-purpose range an address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// `0.0.0.0/8`, `::`: "this host"; connecting to it reaches the host itself.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`, `fc00::/7` (and the deprecated
    /// site-local `fec0::/10`).
    Private,
    /// `169.254.0.0/16` (where cloud metadata services live), `fe80::/10`.
    LinkLocal,
    /// `100.64.0.0/10`, the carrier-grade NAT shared address space.
    Cgnat,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`.
    Documentation,
    /// Anything else set aside: `240.0.0.0/4`, `192.0.0.0/24`, `198.18.0.0/15`,
    /// `192.88.99.0/24`, local-use NAT64 `64:ff9b:1::/48`, benchmarking `2001:2::/48`, and IPv6
    /// outside the global unicast block `2000::/3`.
    Reserved,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Cgnat => "CGNAT",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Reserved => "reserved",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The special-purpose IPv4 ranges, most specific first (broadcast before `240.0.0.0/4`).
const SPECIAL_V4: &[(IpRange, AddressClass)] = &[
    (IpRange::v4(0, 0, 0, 0, 8), AddressClass::Unspecified),
    (IpRange::v4(10, 0, 0, 0, 8), AddressClass::Private),
    (IpRange::v4(100, 64, 0, 0, 10), AddressClass::Cgnat),
    (IpRange::v4(127, 0, 0, 0, 8), AddressClass::Loopback),
    (IpRange::v4(169, 254, 0, 0, 16), AddressClass::LinkLocal),
    (IpRange::v4(172, 16, 0, 0, 12), AddressClass::Private),
    (IpRange::v4(192, 0, 0, 0, 24), AddressClass::Reserved),
    (IpRange::v4(192, 0, 2, 0, 24), AddressClass::Documentation),
    (IpRange::v4(192, 88, 99, 0, 24), AddressClass::Reserved),
    (IpRange::v4(192, 168, 0, 0, 16), AddressClass::Private),
    (IpRange::v4(198, 18, 0, 0, 15), AddressClass::Reserved),
    (
        IpRange::v4(198, 51, 100, 0, 24),
        AddressClass::Documentation,
    ),
    (IpRange::v4(203, 0, 113, 0, 24), AddressClass::Documentation),
    (IpRange::v4(224, 0, 0, 0, 4), AddressClass::Multicast),
    (IpRange::v4(255, 255, 255, 255, 32), AddressClass::Broadcast),
    (IpRange::v4(240, 0, 0, 0, 4), AddressClass::Reserved),
];

/// The special-purpose IPv6 ranges, for addresses that embed no IPv4 address; anything outside
/// `2000::/3` and not listed here is reserved.
const SPECIAL_V6: &[(IpRange, AddressClass)] = &[
    (
        IpRange::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        AddressClass::Unspecified,
    ),
    (
        IpRange::v6([0, 0, 0, 0, 0, 0, 0, 1], 128),
        AddressClass::Loopback,
    ),
    (
        IpRange::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        AddressClass::Private,
    ),
    (
        IpRange::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::LinkLocal,
    ),
    (
        IpRange::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::Private,
    ),
    (
        IpRange::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        AddressClass::Multicast,
    ),
    (
        IpRange::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        AddressClass::Documentation,
    ),
    (
        IpRange::v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        AddressClass::Reserved,
    ),
    (
        IpRange::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        AddressClass::Reserved,
    ),
];

const GLOBAL_UNICAST_V6: IpRange = IpRange::v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The IPv4 address inside an IPv6 address that carries one: IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d` (except `::` and `::1`), NAT64 `64:ff9b::a.b.c.d`, and 6to4
/// `2002:AABB:CCDD::`.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    // Truncating casts pick the 32 bits wanted.
    let low32 = Ipv4Addr::from(bits as u32);
    let [a, b, c, d, e, f, ..] = ip.segments();
    match [a, b, c, d, e, f] {
        [0, 0, 0, 0, 0, 0xffff] => Some(low32),
        [0, 0, 0, 0, 0, 0] if bits > 1 => Some(low32),
        [0x64, 0xff9b, 0, 0, 0, 0] => Some(low32),
        [0x2002, ..] => Some(Ipv4Addr::from((bits >> 80) as u32)),
        _ => None,
    }
}

fn class_of_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let ip = IpAddr::V4(ip);
    SPECIAL_V4
        .iter()
        .find(|(range, _)| range.contains(ip))
        .map(|&(_, class)| class)
}

fn class_of_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let ip = IpAddr::V6(ip);
    SPECIAL_V6
        .iter()
        .find(|(range, _)| range.contains(ip))
        .map(|&(_, class)| class)
        .or_else(|| (!GLOBAL_UNICAST_V6.contains(ip)).then_some(AddressClass::Reserved))
}

/// An address the policy refuses, and why. Its `Display` reads "127.0.0.1 is loopback".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{address} is {class}")]
pub struct RefusedAddress {
    address: IpAddr,
    class: AddressClass,
}

impl RefusedAddress {
    /// The address as it was checked (an IPv6 form stays IPv6).
    pub fn address(&self) -> IpAddr {
        self.address
    }

    /// The class of the address, or of the IPv4 address it embeds.
    pub fn class(&self) -> AddressClass {
        self.class
    }
}

/// Which addresses deliveries may connect to: every public address, plus the special-purpose
/// addresses that an allow range contains. The default allows no special-purpose address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allow: Vec<IpRange>,
}

impl AddressPolicy {
    /// A policy that also allows every address in `allow`.
    pub fn new(allow: Vec<IpRange>) -> Self {
        Self { allow }
    }

    /// The allow ranges.
    pub fn allowed(&self) -> &[IpRange] {
        &self.allow
    }

    /// Judges one address. An IPv6 address that embeds an IPv4 address is judged by that
    /// address, and an allow range opens it when it contains either form.
    ///
    /// # Errors
    /// [`RefusedAddress`] when `ip` is in a special-purpose range that no allow range contains.
    pub fn check(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        let embedded = match ip {
            IpAddr::V4(_) => None,
            IpAddr::V6(v6) => embedded_ipv4(v6),
        };
        let allowed = self.allow.iter().any(|range| {
            range.contains(ip) || embedded.is_some_and(|v4| range.contains(IpAddr::V4(v4)))
        });
        if allowed {
            return Ok(());
        }
        let class = match (ip, embedded) {
            (_, Some(v4)) | (IpAddr::V4(v4), None) => class_of_v4(v4),
            (IpAddr::V6(v6), None) => class_of_v6(v6),
        };
        match class {
            Some(class) => Err(RefusedAddress { address: ip, class }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_hold_only_valid_ranges() {
        let tables = SPECIAL_V4.iter().chain(SPECIAL_V6).map(|&(range, _)| range);
        for range in tables.chain([GLOBAL_UNICAST_V6]) {
            assert_eq!(IpRange::parse(&range.to_string()), Ok(range), "{range}");
        }
    }

    #[test]
    fn embedded_addresses_come_out_of_each_form() {
        let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let v4 = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(embedded_ipv4(v6("::ffff:10.1.2.3")), v4("10.1.2.3"));
        assert_eq!(embedded_ipv4(v6("::10.1.2.3")), v4("10.1.2.3"));
        assert_eq!(embedded_ipv4(v6("64:ff9b::10.1.2.3")), v4("10.1.2.3"));
        assert_eq!(embedded_ipv4(v6("2002:a01:203::1")), v4("10.1.2.3"));
        assert_eq!(embedded_ipv4(v6("::1")), None);
        assert_eq!(embedded_ipv4(v6("::")), None);
        assert_eq!(embedded_ipv4(v6("2606:4700::1111")), None);
    }
}

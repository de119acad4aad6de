//! `IpRange::parse` (CIDR or a bare address): an accepted range has no bits set after its
//! prefix, contains its own network address, and writes a text that parses back to it (also as
//! JSON); a range refused for its host bits suggests a network that does parse.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use webhook_domain::{IpRange, IpRangeError};

fuzz_target!(|text: &str| {
    let range = match IpRange::parse(text) {
        Ok(range) => range,
        Err(IpRangeError::HostBits { network, .. }) => {
            let suggested = network.to_string();
            assert_eq!(IpRange::parse(&suggested), Ok(network), "{text:?}");
            let (address, _) = text.split_once('/').expect("host bits need a prefix");
            let address: IpAddr = address.parse().expect("host bits need an address");
            assert!(network.contains(address), "{network} lacks {address}");
            return;
        }
        Err(_) => return,
    };
    let width = match range.network() {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    assert!(range.prefix() <= width);
    let host_bits = match range.network() {
        IpAddr::V4(v4) => {
            u128::from(u32::from(v4))
                & u128::MAX
                    .checked_shr(96 + u32::from(range.prefix()))
                    .unwrap_or(0)
        }
        IpAddr::V6(v6) => u128::from(v6)
            .checked_shl(u32::from(range.prefix()))
            .unwrap_or(0),
    };
    assert_eq!(host_bits, 0, "{range} has host bits");
    assert!(range.contains(range.network()));
    if !text.contains('/') {
        assert_eq!(range.prefix(), width, "a bare address is a block of one");
    }
    let written = range.to_string();
    assert_eq!(
        IpRange::parse(&written),
        Ok(range),
        "{text:?} wrote {written}"
    );
    let json = serde_json::to_string(&range).expect("a range serialises");
    assert_eq!(
        serde_json::from_str::<IpRange>(&json).ok(),
        Some(range),
        "{json}"
    );
});

//! `AddressPolicy::check`, the SSRF guard's judgement: every address the standard library calls
//! unspecified, loopback, private, link-local, multicast, broadcast or documentation is refused
//! unless an allow range holds it; an IPv6 form that embeds an IPv4 address (mapped,
//! compatible, NAT64, 6to4) gets the same verdict as that address; an address inside an allow
//! range is always let through; and a refusal names the address as checked.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use webhook_domain::{AddressPolicy, IpRange};

#[derive(Debug, Arbitrary)]
struct Input {
    ip: IpAddr,
    /// Allow ranges as (address, prefix); those that do not parse are dropped.
    allow: Vec<(IpAddr, u8)>,
}

fn std_special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

/// The IPv6 forms that carry `v4`.
fn embeddings(v4: Ipv4Addr) -> [Ipv6Addr; 4] {
    let bits = u128::from(u32::from(v4));
    [
        v4.to_ipv6_mapped(),
        Ipv6Addr::from(bits),
        Ipv6Addr::from((0x64_ff9b_u128 << 96) | bits),
        Ipv6Addr::from((0x2002_u128 << 112) | (bits << 80)),
    ]
}

fuzz_target!(|input: Input| {
    let open = AddressPolicy::default();
    let verdict = open.check(input.ip);
    if std_special(input.ip) {
        assert!(verdict.is_err(), "{} let through", input.ip);
    }
    if let Err(refused) = verdict {
        assert_eq!(refused.address(), input.ip);
        assert_eq!(
            refused.to_string(),
            format!("{} is {}", input.ip, refused.class())
        );
    }
    if let IpAddr::V4(v4) = input.ip {
        // `::` and `::1` are themselves, not the IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
        let skip_compatible = u32::from(v4) <= 1;
        for (i, v6) in embeddings(v4).into_iter().enumerate() {
            if i == 1 && skip_compatible {
                continue;
            }
            let embedded = open.check(IpAddr::V6(v6));
            assert_eq!(
                embedded.map_err(|r| r.class()),
                verdict.map_err(|r| r.class()),
                "{v6} judged unlike {v4}"
            );
        }
    }

    let allow: Vec<IpRange> = input
        .allow
        .iter()
        .filter_map(|&(address, prefix)| IpRange::parse(&format!("{address}/{prefix}")).ok())
        .collect();
    let allowed = allow.iter().any(|range| range.contains(input.ip));
    let policy = AddressPolicy::new(allow);
    if allowed {
        assert_eq!(policy.check(input.ip), Ok(()));
    } else if policy.check(input.ip).is_ok() {
        // Opening ranges never closes anything: whatever the default allows stays allowed.
        assert!(
            verdict.is_ok() || input.ip.is_ipv6(),
            "{} opened by {policy:?}",
            input.ip
        );
    } else {
        assert!(verdict.is_err());
    }
});

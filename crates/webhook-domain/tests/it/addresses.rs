//! The SSRF address policy: which addresses are refused by default and why, what an allow range
//! opens, and how CIDR texts are read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use webhook_domain::{AddressClass, AddressPolicy, IpRange, IpRangeError};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn range(text: &str) -> IpRange {
    IpRange::parse(text).unwrap()
}

/// `address` refused by the default policy as `class`, with a reason naming both.
fn check_refused(address: &str, class: AddressClass) {
    let refused = AddressPolicy::default()
        .check(ip(address))
        .expect_err(address);
    assert_eq!(refused.class(), class, "{address}");
    assert_eq!(refused.address(), ip(address));
    assert_eq!(
        refused.to_string(),
        format!("{} is {}", ip(address), class.as_str())
    );
}

/// The IPv6 forms that carry an IPv4 address: IPv4-mapped, IPv4-compatible, NAT64
/// (`64:ff9b::/96`) and 6to4 (`2002::/16`, the address in bits 16 to 48).
fn embedding_forms(v4: Ipv4Addr) -> [(&'static str, IpAddr); 4] {
    let [a, b, c, d] = v4.octets();
    let bits = u128::from(u32::from(v4));
    [
        ("mapped", IpAddr::V6(v4.to_ipv6_mapped())),
        ("compatible", IpAddr::V6(Ipv6Addr::from(bits))),
        (
            "NAT64",
            IpAddr::V6(Ipv6Addr::new(
                0x64,
                0xff9b,
                0,
                0,
                0,
                0,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
            )),
        ),
        (
            "6to4",
            IpAddr::V6(Ipv6Addr::new(
                0x2002,
                u16::from_be_bytes([a, b]),
                u16::from_be_bytes([c, d]),
                0,
                0,
                0,
                0,
                1,
            )),
        ),
    ]
}

/// Every refused class, in one table: each IPv4 row is also checked in each IPv6 form that
/// embeds it (judged by the embedded address), and the IPv6 rows cover the native ranges.
#[test]
fn special_addresses_are_refused_by_default() {
    use AddressClass::{
        Broadcast, Cgnat, Documentation, LinkLocal, Loopback, Multicast, Private, Reserved,
        Unspecified,
    };
    let v4_rows: &[(&str, AddressClass)] = &[
        // Unspecified, "this network".
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("0.255.255.255", Unspecified),
        // Loopback.
        ("127.0.0.1", Loopback),
        ("127.0.0.2", Loopback),
        ("127.255.255.254", Loopback),
        // Private.
        ("10.0.0.1", Private),
        ("10.255.255.255", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.0.1", Private),
        ("192.168.255.255", Private),
        // Link-local, where cloud metadata services answer.
        ("169.254.169.254", LinkLocal),
        ("169.254.0.1", LinkLocal),
        ("169.254.255.255", LinkLocal),
        // Carrier-grade NAT.
        ("100.64.0.1", Cgnat),
        ("100.127.255.255", Cgnat),
        // Multicast.
        ("224.0.0.1", Multicast),
        ("239.255.255.255", Multicast),
        // Broadcast.
        ("255.255.255.255", Broadcast),
        // Documentation.
        ("192.0.2.1", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.9", Documentation),
        // Reserved.
        ("240.0.0.1", Reserved),
        ("255.255.255.254", Reserved),
        ("192.0.0.8", Reserved),
        ("198.18.0.1", Reserved),
        ("198.19.255.255", Reserved),
        ("192.88.99.1", Reserved),
    ];
    let v6_rows: &[(&str, AddressClass)] = &[
        ("::", Unspecified),
        ("::1", Loopback),
        ("fc00::1", Private),
        ("fd12:3456::1", Private),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
        ("fec0::1", Private),
        ("fe80::1", LinkLocal),
        ("febf::1", LinkLocal),
        ("ff02::1", Multicast),
        ("ff0e::1", Multicast),
        ("2001:db8::1", Documentation),
        ("2001:db8:ffff::1", Documentation),
        ("64:ff9b:1::1", Reserved),
        ("2001:2::1", Reserved),
        ("100::1", Reserved),
        ("4000::1", Reserved),
        ("8000::1", Reserved),
        ("::2:0:0:1", Reserved),
    ];
    let mut checked = std::collections::HashSet::new();
    for &(address, class) in v4_rows {
        check_refused(address, class);
        checked.insert(class);
        let v4: Ipv4Addr = address.parse().unwrap();
        for (form, embedded) in embedding_forms(v4) {
            // `::` and `::1` are IPv6's own unspecified and loopback addresses, not the
            // compatible forms of 0.0.0.0 and 0.0.0.1; both are refused either way.
            let refused = AddressPolicy::default()
                .check(embedded)
                .expect_err(&format!("{form} {embedded}"));
            assert_eq!(
                refused.class(),
                class,
                "{form} form {embedded} of {address}"
            );
            assert_eq!(refused.address(), embedded, "the address as given is named");
        }
    }
    for &(address, class) in v6_rows {
        check_refused(address, class);
        checked.insert(class);
    }
    // The table names every class there is.
    for class in [
        Unspecified,
        Loopback,
        Private,
        LinkLocal,
        Cgnat,
        Multicast,
        Broadcast,
        Documentation,
        Reserved,
    ] {
        assert!(checked.contains(&class), "no row for {class}");
    }
}

#[test]
fn public_addresses_are_allowed() {
    let public_v4 = [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.255.255",
        "169.255.0.0",
        "192.0.1.1",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
    ];
    for address in public_v4 {
        assert_eq!(
            AddressPolicy::default().check(ip(address)),
            Ok(()),
            "{address}"
        );
        for (form, embedded) in embedding_forms(address.parse().unwrap()) {
            assert_eq!(
                AddressPolicy::default().check(embedded),
                Ok(()),
                "{form} form {embedded} of {address}"
            );
        }
    }
    for address in [
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
        "2001:db9::1",
        "3fff:ffff::1",
    ] {
        assert_eq!(
            AddressPolicy::default().check(ip(address)),
            Ok(()),
            "{address}"
        );
    }
}

/// The URL standard reads several spellings as an IPv4 address; a webhook URL's
/// `ip_host` gives the address each one means, so the policy judges what would be connected to.
#[test]
fn url_spellings_of_an_address_are_read_as_that_address() {
    let rows: &[(&str, Option<&str>)] = &[
        ("http://127.0.0.1/", Some("127.0.0.1")),
        ("http://127.1/", Some("127.0.0.1")),
        ("http://0x7f000001/", Some("127.0.0.1")),
        ("http://2130706433/", Some("127.0.0.1")),
        ("http://0177.0.0.1/", Some("127.0.0.1")),
        ("http://0/", Some("0.0.0.0")),
        ("http://[::1]/", Some("::1")),
        ("http://[::ffff:127.0.0.1]/", Some("::ffff:127.0.0.1")),
        ("http://[::ffff:a9fe:a9fe]/", Some("::ffff:169.254.169.254")),
        (
            "http://169.254.169.254/latest/meta-data",
            Some("169.254.169.254"),
        ),
        ("https://example.com/hook", None),
        ("http://localhost:8080/", None),
    ];
    for &(url, expected) in rows {
        let parsed = webhook_domain::WebhookUrl::parse(url).unwrap();
        assert_eq!(parsed.ip_host(), expected.map(ip), "{url}");
        if let Some(address) = parsed.ip_host() {
            assert!(AddressPolicy::default().check(address).is_err(), "{url}");
        }
    }
}

#[test]
fn an_allow_range_opens_exactly_its_range() {
    let policy = AddressPolicy::new(vec![range("10.1.0.0/16"), range("fd00::/64")]);
    for open in ["10.1.0.0", "10.1.255.255", "::ffff:10.1.2.3", "fd00::1"] {
        assert_eq!(policy.check(ip(open)), Ok(()), "{open}");
    }
    for closed in [
        "10.0.255.255",
        "10.2.0.0",
        "127.0.0.1",
        "fd00:0:0:1::1",
        "::1",
    ] {
        assert!(policy.check(ip(closed)).is_err(), "{closed}");
    }
    // Loopback allowed for local development: both families and the mapped forms.
    let local = AddressPolicy::new(vec![range("127.0.0.0/8"), range("::1")]);
    for open in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
        assert_eq!(local.check(ip(open)), Ok(()), "{open}");
    }
    for closed in ["10.0.0.1", "169.254.169.254", "0.0.0.0", "::"] {
        assert!(local.check(ip(closed)).is_err(), "{closed}");
    }
    assert_eq!(local.allowed(), [range("127.0.0.0/8"), range("::1/128")]);
}

#[test]
fn cidr_texts_parse_to_their_blocks() {
    let rows: &[(&str, &str, u8)] = &[
        ("10.0.0.0/8", "10.0.0.0", 8),
        ("127.0.0.1", "127.0.0.1", 32),
        ("0.0.0.0/0", "0.0.0.0", 0),
        ("192.168.1.0/24", "192.168.1.0", 24),
        ("::1", "::1", 128),
        ("fd00::/8", "fd00::", 8),
        ("::/0", "::", 0),
        ("2001:db8::/32", "2001:db8::", 32),
    ];
    for &(text, network, prefix) in rows {
        let parsed = range(text);
        assert_eq!(
            (parsed.network(), parsed.prefix()),
            (ip(network), prefix),
            "{text}"
        );
        assert_eq!(range(&parsed.to_string()), parsed, "{text}");
    }
    assert_eq!(range("127.0.0.1").to_string(), "127.0.0.1/32");
    assert_eq!(range("::1").to_string(), "::1/128");
    assert!(range("0.0.0.0/0").contains(ip("255.255.255.255")));
    assert!(!range("0.0.0.0/0").contains(ip("::1")));
    assert!(!range("::/0").contains(ip("127.0.0.1")));
}

#[test]
fn bad_cidr_texts_are_refused_with_what_would_be_right() {
    let address = |input: &str| IpRangeError::Address {
        input: input.to_owned(),
    };
    let prefix = |input: &str, max| IpRangeError::Prefix {
        input: input.to_owned(),
        max,
    };
    let rows: &[(&str, IpRangeError)] = &[
        ("", address("")),
        ("localhost", address("localhost")),
        ("10.0.0/8", address("10.0.0/8")),
        ("10.0.0.256/32", address("10.0.0.256/32")),
        ("fe80::1%eth0", address("fe80::1%eth0")),
        (" 10.0.0.0/8", address(" 10.0.0.0/8")),
        ("10.0.0.0/33", prefix("10.0.0.0/33", 32)),
        ("10.0.0.0/", prefix("10.0.0.0/", 32)),
        ("10.0.0.0/+8", prefix("10.0.0.0/+8", 32)),
        ("10.0.0.0/-1", prefix("10.0.0.0/-1", 32)),
        ("10.0.0.0/8/8", prefix("10.0.0.0/8/8", 32)),
        ("::/129", prefix("::/129", 128)),
        (
            "10.0.0.1/8",
            IpRangeError::HostBits {
                input: "10.0.0.1/8".to_owned(),
                network: range("10.0.0.0/8"),
            },
        ),
    ];
    for (text, expected) in rows {
        assert_eq!(IpRange::parse(text).as_ref(), Err(expected), "{text}");
    }
    let message = IpRange::parse("10.0.0.1/8").unwrap_err().to_string();
    assert!(message.contains("write 10.0.0.0/8"), "{message}");
    let message = IpRange::parse("nope").unwrap_err().to_string();
    assert!(message.contains("10.0.0.0/8"), "{message}");
}

#[test]
fn ranges_are_their_text_in_serde() {
    let ranges: Vec<IpRange> = serde_json::from_str(r#"["127.0.0.0/8","::1"]"#).unwrap();
    assert_eq!(ranges, [range("127.0.0.0/8"), range("::1/128")]);
    assert_eq!(
        serde_json::to_string(&ranges).unwrap(),
        r#"["127.0.0.0/8","::1/128"]"#
    );
    let err = serde_json::from_str::<IpRange>(r#""10.0.0.0/40""#).unwrap_err();
    assert!(err.to_string().contains("prefix length"), "{err}");
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|bits| IpAddr::V4(Ipv4Addr::from(bits))),
        any::<u128>().prop_map(|bits| IpAddr::V6(Ipv6Addr::from(bits))),
        // IPv4-mapped forms, so that embedded addresses are exercised often.
        any::<u32>().prop_map(|bits| IpAddr::V6(Ipv4Addr::from(bits).to_ipv6_mapped())),
    ]
}

/// A random block and a random address inside it.
fn range_and_member() -> impl Strategy<Value = (IpRange, IpAddr)> {
    prop_oneof![
        (any::<u32>(), 0..=32u8, any::<u32>()).prop_map(|(net, prefix, host)| {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            let network = Ipv4Addr::from(net & keep);
            let member = Ipv4Addr::from((net & keep) | (host & !keep));
            (range(&format!("{network}/{prefix}")), IpAddr::V4(member))
        }),
        (any::<u128>(), 0..=128u8, any::<u128>()).prop_map(|(net, prefix, host)| {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            let network = Ipv6Addr::from(net & keep);
            let member = Ipv6Addr::from((net & keep) | (host & !keep));
            (range(&format!("{network}/{prefix}")), IpAddr::V6(member))
        }),
    ]
}

proptest! {
    #[test]
    fn any_address_inside_an_allowed_range_passes(
        (allowed, member) in range_and_member(),
        others in prop::collection::vec(range_and_member(), 0..3),
    ) {
        prop_assert!(allowed.contains(member));
        let mut allow: Vec<IpRange> = others.into_iter().map(|(r, _)| r).collect();
        allow.push(allowed);
        prop_assert_eq!(AddressPolicy::new(allow).check(member), Ok(()));
    }

    #[test]
    fn check_never_panics_and_explains_every_refusal(
        address in any_ip(),
        allow in prop::collection::vec(range_and_member(), 0..3),
    ) {
        let policy = AddressPolicy::new(allow.into_iter().map(|(r, _)| r).collect());
        if let Err(refused) = policy.check(address) {
            prop_assert_eq!(refused.address(), address);
            prop_assert!(refused.to_string().ends_with(refused.class().as_str()));
            // A refusal by the default policy is never lifted by refusing more.
            prop_assert!(AddressPolicy::default().check(address).is_err());
        }
    }

    #[test]
    fn parse_never_panics(text in "[0-9a-fA-F.:/%+ -]{0,48}") {
        if let Ok(parsed) = IpRange::parse(&text) {
            prop_assert_eq!(IpRange::parse(&parsed.to_string()), Ok(parsed));
            prop_assert!(parsed.contains(parsed.network()));
        }
    }

    #[test]
    fn mapped_forms_are_judged_as_their_ipv4_address(bits in any::<u32>()) {
        let v4 = Ipv4Addr::from(bits);
        let policy = AddressPolicy::default();
        let plain = policy.check(IpAddr::V4(v4)).map_err(|r| r.class());
        let mapped = policy.check(IpAddr::V6(v4.to_ipv6_mapped())).map_err(|r| r.class());
        prop_assert_eq!(plain, mapped);
    }
}

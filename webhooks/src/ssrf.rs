//! Where webhooks may connect: public addresses only, unless an operator allows a network.
//!
//! Checked on the address a connection is actually made to (after DNS), so a name that resolves
//! into a private range, or re-resolves there later, is refused. IPv4 addresses embedded in IPv6
//! forms (mapped, compatible, NAT64, 6to4) are judged as the IPv4 address they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Why an address is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedAddressSpace,
    Metadata,
    Documentation,
    Benchmarking,
    Multicast,
    Reserved,
}

impl Blocked {
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::Unspecified => "unspecified address",
            Blocked::Loopback => "loopback address",
            Blocked::Private => "private network",
            Blocked::LinkLocal => "link-local address",
            Blocked::SharedAddressSpace => "carrier-grade NAT range",
            Blocked::Metadata => "cloud metadata address",
            Blocked::Documentation => "documentation range",
            Blocked::Benchmarking => "benchmarking range",
            Blocked::Multicast => "multicast address",
            Blocked::Reserved => "reserved range",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("GF_WEBHOOK_ALLOWED_NETS: {0:?} is not a network in CIDR form (e.g. 127.0.0.0/8)")]
pub struct BadNetwork(pub String);

/// The operator's allow-list (`GF_WEBHOOK_ALLOWED_NETS`); empty by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Parses comma-separated CIDRs; blank entries are ignored.
    pub fn parse(list: &str) -> Result<Self, BadNetwork> {
        let allowed = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| IpNet::from_str(s).map_err(|_| BadNetwork(s.to_owned())))
            .collect::<Result<_, _>>()?;
        Ok(AddressPolicy { allowed })
    }

    /// Whether the operator allowed this address explicitly (also what permits plain http).
    pub fn explicitly_allowed(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// `Ok` when a webhook may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.explicitly_allowed(ip) {
            return Ok(());
        }
        match blocked(canonical(ip)) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }
}

/// IPv6 forms that carry an IPv4 address, reduced to it.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let s = v6.segments();
    let embedded =
        |hi: u16, lo: u16| IpAddr::V4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    match s {
        // NAT64 well-known prefix 64:ff9b::/96.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
        // 6to4 2002::/16 carries the IPv4 address in bits 16..48.
        [0x2002, hi, lo, ..] => embedded(hi, lo),
        // IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks); not :: or ::1.
        [0, 0, 0, 0, 0, 0, hi, lo] if (hi, lo) != (0, 0) && (hi, lo) != (0, 1) => embedded(hi, lo),
        _ => ip,
    }
}

fn blocked(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Blocked::Metadata,
        // Azure's wireserver (platform metadata and agent channel).
        _ if ip == Ipv4Addr::new(168, 63, 129, 16) => Blocked::Metadata,
        (0, ..) => Blocked::Unspecified,
        (10, ..) => Blocked::Private,
        (100, 64..=127, _) => Blocked::SharedAddressSpace,
        (127, ..) => Blocked::Loopback,
        (169, 254, _) => Blocked::LinkLocal,
        (172, 16..=31, _) => Blocked::Private,
        (192, 0, 0) => Blocked::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Blocked::Documentation,
        (192, 168, _) => Blocked::Private,
        (198, 18..=19, _) => Blocked::Benchmarking,
        (224..=239, ..) => Blocked::Multicast,
        (240..=255, ..) => Blocked::Reserved,
        _ => return None,
    })
}

fn blocked_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let s = ip.segments();
    Some(match s {
        _ if ip.is_unspecified() => Blocked::Unspecified,
        _ if ip.is_loopback() => Blocked::Loopback,
        // AWS's IPv6 metadata endpoint fd00:ec2::254, inside the unique-local range.
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254] => Blocked::Metadata,
        [x, ..] if x & 0xfe00 == 0xfc00 => Blocked::Private,
        [x, ..] if x & 0xffc0 == 0xfe80 => Blocked::LinkLocal,
        // Deprecated site-local fec0::/10.
        [x, ..] if x & 0xffc0 == 0xfec0 => Blocked::Private,
        [x, ..] if x & 0xff00 == 0xff00 => Blocked::Multicast,
        [0x2001, 0x0db8, ..] => Blocked::Documentation,
        // Local-use NAT64 64:ff9b:1::/48: translated inside someone's network.
        [0x64, 0xff9b, 1, ..] => Blocked::Private,
        // IPv4-translated ::ffff:0:0:0/96 (SIIT): a translator decides where it goes. (The
        // IPv4-mapped ::ffff:0:0/96 is judged as the IPv4 address it carries.)
        [0, 0, 0, 0, 0xffff, 0, ..] => Blocked::Reserved,
        // Teredo 2001::/32 tunnels to addresses we cannot see.
        [0x2001, 0, ..] => Blocked::Reserved,
        // Discard-only 100::/64.
        [0x0100, 0, 0, 0, ..] => Blocked::Reserved,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn every_blocked_range_is_refused() {
        let policy = AddressPolicy::default();
        for (address, reason) in [
            ("0.0.0.0", Blocked::Unspecified),
            ("127.0.0.1", Blocked::Loopback),
            ("127.255.0.9", Blocked::Loopback),
            ("10.1.2.3", Blocked::Private),
            ("172.16.0.1", Blocked::Private),
            ("172.31.255.255", Blocked::Private),
            ("192.168.1.1", Blocked::Private),
            ("100.64.0.1", Blocked::SharedAddressSpace),
            ("100.127.255.254", Blocked::SharedAddressSpace),
            ("169.254.10.1", Blocked::LinkLocal),
            ("169.254.169.254", Blocked::Metadata),
            ("192.0.2.1", Blocked::Documentation),
            ("198.18.0.1", Blocked::Benchmarking),
            ("224.0.0.1", Blocked::Multicast),
            ("255.255.255.255", Blocked::Reserved),
            ("::", Blocked::Unspecified),
            ("::1", Blocked::Loopback),
            ("fc00::1", Blocked::Private),
            ("fd12:3456::1", Blocked::Private),
            ("fd00:ec2::254", Blocked::Metadata),
            ("fe80::1", Blocked::LinkLocal),
            ("ff02::1", Blocked::Multicast),
            ("2001:db8::1", Blocked::Documentation),
            // IPv4 inside IPv6 is judged as IPv4.
            ("::ffff:127.0.0.1", Blocked::Loopback),
            ("::ffff:169.254.169.254", Blocked::Metadata),
            ("64:ff9b::10.0.0.1", Blocked::Private),
            ("2002:c0a8:0101::1", Blocked::Private),
            ("::10.0.0.1", Blocked::Private),
            ("168.63.129.16", Blocked::Metadata),
            ("64:ff9b:1::8.8.8.8", Blocked::Private),
            ("64:ff9b:1:ffff::1", Blocked::Private),
            ("::ffff:0:808:808", Blocked::Reserved),
            ("::ffff:0:0", Blocked::Unspecified),
        ] {
            assert_eq!(policy.check(ip(address)), Err(reason), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let policy = AddressPolicy::default();
        for address in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(policy.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn the_allow_list_opens_only_its_networks() {
        let policy = AddressPolicy::parse(" 127.0.0.0/8, ,::1/128").unwrap();
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::1")), Ok(()));
        assert!(policy.explicitly_allowed(ip("127.0.0.1")));
        assert!(!policy.explicitly_allowed(ip("8.8.8.8")));
        assert_eq!(policy.check(ip("10.0.0.1")), Err(Blocked::Private));
        assert_eq!(
            AddressPolicy::parse("127.0.0.1/33"),
            Err(BadNetwork("127.0.0.1/33".into()))
        );
        assert_eq!(
            AddressPolicy::parse("localhost"),
            Err(BadNetwork("localhost".into()))
        );
    }
}

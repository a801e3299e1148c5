//! Where deliveries may go: `https` endpoints on public addresses, unless a deployment for local
//! development says otherwise (`ALLOW_LOCAL_ENDPOINTS=true`: plain `http`, loopback, private and
//! link-local addresses, as the LocalStack stack's stub receivers need).
//!
//! A subscription's URL is checked when the configuration is read (its scheme, and its host when it
//! is an address), and every name is checked again when it is resolved ([`PublicOnly`]), so a name
//! that points at an internal address (the instance metadata service, a VPC host) is refused at
//! connection time too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether `ip` is on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation, in IPv4 or IPv6 (IPv4-mapped included).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || (a == 100 && (64..128).contains(&b))
        || a == 0)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

/// Why a subscription's URL is refused, or `None` when it may be delivered to.
pub fn refusal(url: &str, allow_local: bool) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if allow_local {
        return None;
    }
    if scheme != "https" {
        return Some(format!(
            "{url} is not https; plain http is for local development (ALLOW_LOCAL_ENDPOINTS)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let local_name = host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost");
    let local_address = host.parse::<IpAddr>().is_ok_and(|ip| !is_public(ip));
    (local_name || local_address).then(|| {
        format!("{url} is a loopback, private or link-local address; those are for local development (ALLOW_LOCAL_ENDPOINTS)")
    })
}

/// A DNS resolver that answers only public addresses: a name that resolves to none fails to
/// connect, with the reason.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves only to loopback, private or link-local addresses ({all:?}); deliveries go to public endpoints"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The resolver, shareable as reqwest wants it.
pub fn public_only() -> Arc<PublicOnly> {
    Arc::new(PublicOnly)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_real_deploy_delivers_to_https_on_public_hosts_only() {
        assert_eq!(refusal("https://hooks.example.com/busline", false), None);
        for refused in [
            "http://hooks.example.com/busline",
            "https://127.0.0.1/hooks",
            "https://localhost:8443/hooks",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]:443/hooks",
            "https://user@10.0.0.8/hooks",
        ] {
            assert!(refusal(refused, false).is_some(), "{refused}");
        }
        assert_eq!(refusal("http://127.0.0.1:8027/hooks", true), None);
    }
}

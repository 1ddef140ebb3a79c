//! Client address and `X-Forwarded-*`. The client IP is read from `X-Forwarded-For` only when the
//! connecting peer is a trusted proxy; then it is the right-most address in the chain that is not
//! itself trusted. Outgoing requests get a chain that ends with the peer, plus `-Proto` and `-Host`.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

static XFF: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
static XF_PROTO: http::HeaderName = http::HeaderName::from_static("x-forwarded-proto");
static XF_HOST: http::HeaderName = http::HeaderName::from_static("x-forwarded-host");

pub fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address as rampart believes it.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer.to_canonical();
    }
    let chain = forwarded_chain(headers);
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(**ip, trusted))
        .or(chain.first())
        .copied()
        .unwrap_or(peer)
        .to_canonical()
}

fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    headers
        .get_all(&XFF)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .collect()
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` on a request about to go upstream. Headers from an
/// untrusted peer are replaced; from a trusted one, extended (`-For`) or kept (`-Proto`, `-Host`).
pub fn set_forwarded_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    peer_trusted: bool,
    tls: bool,
    host: Option<&str>,
) {
    let peer = peer.to_canonical();
    let existing = if peer_trusted {
        let joined: Vec<&str> = headers
            .get_all(&XFF)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        (!joined.is_empty()).then(|| joined.join(", "))
    } else {
        None
    };
    let chain = match existing {
        Some(existing) => format!("{existing}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(&XFF, value);
    }
    if !(peer_trusted && headers.contains_key(&XF_PROTO)) {
        let proto = if tls { "https" } else { "http" };
        headers.insert(&XF_PROTO, HeaderValue::from_static(proto));
    }
    if !(peer_trusted && headers.contains_key(&XF_HOST)) {
        match host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(value) => {
                headers.insert(&XF_HOST, value);
            }
            None => {
                headers.remove(&XF_HOST);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert(&XFF, "1.2.3.4".parse().unwrap());
        let peer: IpAddr = "9.9.9.9".parse().unwrap();
        assert_eq!(client_ip(peer, &headers, &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn trusted_peer_yields_rightmost_untrusted() {
        let mut headers = HeaderMap::new();
        headers.insert(&XFF, "6.6.6.6, 1.2.3.4, 10.0.0.7".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = client_ip(peer, &headers, &nets(&["10.0.0.0/8"]));
        assert_eq!(ip, "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn chain_is_replaced_or_extended() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(&XFF, "1.2.3.4".parse().unwrap());
        headers.insert(&XF_PROTO, "https".parse().unwrap());
        set_forwarded_headers(&mut headers, peer, true, false, Some("a.example"));
        assert_eq!(headers[&XFF], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers[&XF_PROTO], "https");
        set_forwarded_headers(&mut headers, peer, false, false, Some("a.example"));
        assert_eq!(headers[&XFF], "10.0.0.1");
        assert_eq!(headers[&XF_PROTO], "http");
        assert_eq!(headers[&XF_HOST], "a.example");
    }
}

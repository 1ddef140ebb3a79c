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
    peer: &HeaderValue,
    peer_trusted: bool,
    tls: bool,
    host: Option<&HeaderValue>,
) {
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
        Some(existing) => HeaderValue::from_str(&format!(
            "{existing}, {}",
            peer.to_str().unwrap_or_default()
        )),
        None => Ok(peer.clone()),
    };
    if let Ok(value) = chain {
        headers.insert(&XFF, value);
    }
    if !(peer_trusted && headers.contains_key(&XF_PROTO)) {
        let proto = if tls { "https" } else { "http" };
        headers.insert(&XF_PROTO, HeaderValue::from_static(proto));
    }
    if !(peer_trusted && headers.contains_key(&XF_HOST)) {
        match host.filter(|value| value.to_str().is_ok()) {
            Some(value) => {
                headers.insert(&XF_HOST, value.clone());
            }
            None => {
                headers.remove(&XF_HOST);
            }
        }
    }
}

/// `ip` (canonical: an IPv4-mapped IPv6 address as IPv4) as a header value.
pub fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let mut buffer = [0u8; IP_TEXT_MAX];
    HeaderValue::from_str(format_ip(ip.to_canonical(), &mut buffer))
        .expect("an address's text is a valid header value")
}

/// Room for any address's text (the longest, an IPv4-mapped IPv6 address, is 45 bytes).
pub const IP_TEXT_MAX: usize = 48;

/// `ip` as text, written into `buffer`. IPv4 addresses are written digit by digit: `Display`
/// for them costs more than the rest of the forwarded headers together.
pub fn format_ip(ip: IpAddr, buffer: &mut [u8; IP_TEXT_MAX]) -> &str {
    let written = match ip {
        IpAddr::V4(v4) => {
            let mut length = 0;
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    buffer[length] = b'.';
                    length += 1;
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(octet).as_bytes();
                buffer[length..length + digits.len()].copy_from_slice(digits);
                length += digits.len();
            }
            length
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buffer[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    std::str::from_utf8(&buffer[..written]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    proptest::proptest! {
        #[test]
        fn formats_addresses_as_display_does(v4: u32, v6: u128) {
            for ip in [IpAddr::from(std::net::Ipv4Addr::from(v4)), IpAddr::from(std::net::Ipv6Addr::from(v6))] {
                let mut buffer = [0u8; IP_TEXT_MAX];
                proptest::prop_assert_eq!(format_ip(ip, &mut buffer), ip.to_string());
            }
        }
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
        let peer = ip_header_value("::ffff:10.0.0.1".parse().unwrap());
        assert_eq!(peer, "10.0.0.1");
        let mut headers = HeaderMap::new();
        headers.insert(&XFF, "1.2.3.4".parse().unwrap());
        headers.insert(&XF_PROTO, "https".parse().unwrap());
        set_forwarded_headers(
            &mut headers,
            &peer,
            true,
            false,
            Some(&HeaderValue::from_static("a.example")),
        );
        assert_eq!(headers[&XFF], "1.2.3.4, 10.0.0.1");
        assert_eq!(headers[&XF_PROTO], "https");
        set_forwarded_headers(
            &mut headers,
            &peer,
            false,
            false,
            Some(&HeaderValue::from_static("a.example")),
        );
        assert_eq!(headers[&XFF], "10.0.0.1");
        assert_eq!(headers[&XF_PROTO], "http");
        assert_eq!(headers[&XF_HOST], "a.example");
    }
}

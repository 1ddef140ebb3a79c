//! Hop-by-hop header handling (RFC 9110 §7.6.1): headers that describe one connection are removed
//! before a message is forwarded, both directions, including any named in `Connection`.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// Removes hop-by-hop headers and those listed in `Connection`. `Upgrade` goes too: rampart does
/// not tunnel protocol upgrades.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names answers that without a lookup per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let listed = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok());
    let present = headers.keys().filter(|name| is_hop_by_hop(name)).cloned();
    let remove: Vec<HeaderName> = listed.chain(present).collect();
    for name in &remove {
        headers.remove(name);
    }
}

/// Whether `name` is removed whatever `Connection` says. Names that `Connection` lists are only
/// removed when `Connection` is there, which this also answers.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    // A match on the text compiles to a length switch, cheaper than comparing names one by one.
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_listed_and_standard() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, x-secret-hop".parse().unwrap(),
        );
        headers.insert("x-secret-hop", "1".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.insert("x-keep", "yes".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["x-keep"], "yes");
    }

    #[test]
    fn removes_every_standard_hop_by_hop_header() {
        let mut headers = HeaderMap::new();
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ] {
            headers.insert(HeaderName::from_static(name), "x".parse().unwrap());
        }
        headers.insert(header::HOST, "example.com".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[header::HOST], "example.com");
    }

    #[test]
    fn leaves_end_to_end_headers_alone_and_removes_a_lone_upgrade() {
        let mut headers = HeaderMap::new();
        headers.insert("x-keep", "yes".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 2);
        assert!(!headers.contains_key(header::UPGRADE));
    }
}

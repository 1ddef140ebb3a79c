//! `Accept-Encoding` negotiation (RFC 9110 §12.5.3): the encoding with the highest q-value the
//! client accepts, ties broken by the server's preference order. Owns parsing only.

use super::Encoding;

/// The encoding to use for a client that sent `accept` (the `Accept-Encoding` values joined), or
/// `None` when it accepts none of `preference` (identity is always acceptable to rampart).
pub fn choose<'a>(
    accept: impl Iterator<Item = &'a str>,
    preference: &[Encoding],
) -> Option<Encoding> {
    // q-values in thousandths, per encoding in `Encoding::ALL` order; `None` = not listed.
    let mut listed: [Option<u16>; 3] = [None; 3];
    let mut wildcard: Option<u16> = None;
    for value in accept {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let token = parts.next().unwrap_or("").trim();
            if token.is_empty() {
                continue;
            }
            let mut q = 1000;
            for param in parts {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                if name.trim().eq_ignore_ascii_case("q") {
                    q = parse_q(value.trim()).unwrap_or(0);
                }
            }
            if token == "*" {
                wildcard = Some(q);
            } else if let Some(encoding) = Encoding::from_token(token) {
                let slot = &mut listed[encoding.index()];
                // The first mention wins, as most servers do.
                if slot.is_none() {
                    *slot = Some(q);
                }
            }
        }
    }
    let mut best: Option<(Encoding, u16)> = None;
    for &encoding in preference {
        let q = listed[encoding.index()].or(wildcard).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, top)| q > top) {
            best = Some((encoding, q));
        }
    }
    best.map(|(encoding, _)| encoding)
}

/// `q` as thousandths: "1", "0.5", "0.125"; anything else is malformed.
fn parse_q(text: &str) -> Option<u16> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: u16 = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for (i, digit) in frac.bytes().enumerate() {
        thousandths += u16::from(digit - b'0') * [100, 10, 1][i];
    }
    let q = whole + thousandths;
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const PREF: [Encoding; 3] = [Zstd, Br, Gzip];

    fn pick(header: &str) -> Option<Encoding> {
        choose(std::iter::once(header), &PREF)
    }

    #[test]
    fn q_values_decide_and_ties_follow_preference() {
        assert_eq!(pick("gzip"), Some(Gzip));
        assert_eq!(pick("gzip, deflate, br, zstd"), Some(Zstd));
        assert_eq!(pick("gzip, br"), Some(Br));
        assert_eq!(pick("gzip;q=1, br;q=0.5"), Some(Gzip));
        assert_eq!(pick("br;q=0.8, gzip;q=0.9, zstd;q=0.1"), Some(Gzip));
        assert_eq!(pick("zstd;q=0, br;q=0"), None);
        assert_eq!(pick("identity"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("deflate"), None);
        assert_eq!(pick("*"), Some(Zstd));
        assert_eq!(pick("*;q=0.5, zstd;q=0"), Some(Br));
        assert_eq!(pick("GZIP; Q=0.5"), Some(Gzip));
        assert_eq!(pick("x-gzip"), Some(Gzip));
        assert_eq!(pick("gzip;q=2"), None);
        assert_eq!(pick("gzip;q=0.0001"), None);
        assert_eq!(choose(["gzip", "br"].into_iter(), &PREF), Some(Br));
        assert_eq!(choose(std::iter::once("gzip, br"), &[Gzip, Br]), Some(Gzip));
    }

    #[test]
    fn q_parsing() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("abc"), None);
    }
}

//! Decoding and normalization of one inspected value before matching: URL decoding (repeated,
//! `%uXXXX`, overlong UTF-8 for `/`, `\`, `.`), HTML entities, `\uXXXX` / `\xHH` escapes, NFKC,
//! null-byte removal, SQL inline comments, whitespace collapsing and case folding. Every step
//! returns the input unchanged (borrowed) when it has nothing to do, so a plain value costs one
//! scan of its bytes and no allocation.

use std::borrow::Cow;

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// A value after decoding, ready for the prefilter.
#[derive(Debug)]
pub(crate) struct Normalized<'a> {
    pub text: Cow<'a, str>,
    /// A NUL byte appeared at some point of the decoding (it is removed from `text`).
    pub null_byte: bool,
}

/// Full normalization, except case folding (see [`fold_case_into`]), with at most `rounds` rounds of
/// URL / entity / escape decoding. `rounds` is 3 for raw values, 2 for values whose first URL
/// decoding round was done by the query or form parser (so `+` was read as a space only then).
pub(crate) fn normalize(raw: &str, rounds: u8) -> Normalized<'_> {
    if !needs_work(raw.as_bytes()) {
        return Normalized {
            text: Cow::Borrowed(raw),
            null_byte: false,
        };
    }
    let mut text = Cow::Borrowed(raw);
    for _ in 0..rounds {
        let mut changed = false;
        if let Cow::Owned(s) = percent_decode(&text, false) {
            text = Cow::Owned(s);
            changed = true;
        }
        if let Cow::Owned(s) = html_entities(&text) {
            text = Cow::Owned(s);
            changed = true;
        }
        if let Cow::Owned(s) = unescape(&text) {
            text = Cow::Owned(s);
            changed = true;
        }
        if !changed {
            break;
        }
    }
    let text = nfkc(text);
    let null_byte = text.contains('\0');
    let text = if null_byte {
        Cow::Owned(text.replace('\0', ""))
    } else {
        text
    };
    let text = strip_sql_comments(text);
    let text = collapse_whitespace(text);
    Normalized { text, null_byte }
}

/// Whether any step could change `b`: `%`, `&`, `\`, NUL and other control bytes, non-ASCII,
/// `/*`, or whitespace other than single spaces.
fn needs_work(b: &[u8]) -> bool {
    let mut prev = 0u8;
    for &c in b {
        match c {
            b'%' | b'&' | b'\\' | 0x80..=0xFF | 0..=0x1F | 0x7F => return true,
            b'*' if prev == b'/' => return true,
            b' ' if prev == b' ' => return true,
            _ => {}
        }
        prev = c;
    }
    false
}

/// Percent-decoding of one round. `plus` reads `+` as a space (query and form values, first
/// round only). Also decodes IIS-style `%uXXXX`, and repairs overlong UTF-8 encodings of ASCII
/// (`%c0%af` = `/`) the way old servers did, so they cannot hide a traversal. Invalid UTF-8
/// becomes U+FFFD.
pub(crate) fn percent_decode(s: &str, plus: bool) -> Cow<'_, str> {
    let b = s.as_bytes();
    if !(b.contains(&b'%') || plus && b.contains(&b'+')) {
        return Cow::Borrowed(s);
    }
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            if let (Some(h), Some(l)) = (hex_at(b, i + 1), hex_at(b, i + 2)) {
                out.push(h << 4 | l);
                i += 3;
                changed = true;
                continue;
            }
            if matches!(b.get(i + 1), Some(b'u' | b'U'))
                && let Some(cp) = hex4(b, i + 2)
                && let Some(ch) = char::from_u32(cp)
            {
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 6;
                changed = true;
                continue;
            }
        } else if c == b'+' && plus {
            out.push(b' ');
            i += 1;
            changed = true;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if !changed {
        return Cow::Borrowed(s);
    }
    Cow::Owned(into_string(out))
}

/// Bytes to text: valid UTF-8 as is; otherwise overlong two- and three-byte encodings of ASCII
/// are folded to the ASCII byte and the rest is decoded lossily.
fn into_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let b = e.into_bytes();
            let mut fixed = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                if (c == 0xC0 || c == 0xC1) && b.get(i + 1).is_some_and(|n| n & 0xC0 == 0x80) {
                    fixed.push(((c & 0x1F) << 6) | (b[i + 1] & 0x3F));
                    i += 2;
                    continue;
                }
                if c == 0xE0
                    && b.get(i + 1).is_some_and(|&n| n & 0xE0 == 0x80)
                    && b.get(i + 2).is_some_and(|n| n & 0xC0 == 0x80)
                {
                    fixed.push(((b[i + 1] & 0x01) << 6) | (b[i + 2] & 0x3F));
                    i += 3;
                    continue;
                }
                fixed.push(c);
                i += 1;
            }
            String::from_utf8_lossy(&fixed).into_owned()
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_at(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied().and_then(hex_val)
}

fn hex4(b: &[u8], i: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..4 {
        v = v << 4 | u32::from(hex_at(b, i + k)?);
    }
    Some(v)
}

/// Named entities browsers accept without the trailing `;`.
const LEGACY_NAMED: [(&str, char); 5] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("nbsp", '\u{a0}'),
];

/// HTML character references: named (`&lt;`, `&colon;`, the full HTML table), decimal
/// (`&#60;`, `&#0000060`) and hex (`&#x3c;`), with the `;` optional where browsers accept that.
pub(crate) fn html_entities(s: &str) -> Cow<'_, str> {
    let Some(first) = s.find('&') else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..first]);
    let mut rest = &s[first..];
    let mut changed = false;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        match entity(rest) {
            Some((decoded, len)) => {
                match decoded {
                    Decoded::Char(ch) => out.push(ch),
                    Decoded::Str(st) => out.push_str(st),
                }
                rest = &rest[len..];
                changed = true;
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

enum Decoded {
    Char(char),
    Str(&'static str),
}

/// Decodes the reference at the start of `s` (which starts with `&`): the value and the length
/// consumed.
fn entity(s: &str) -> Option<(Decoded, usize)> {
    let b = s.as_bytes();
    if b.get(1) == Some(&b'#') {
        let (radix, start) = if matches!(b.get(2), Some(b'x' | b'X')) {
            (16, 3)
        } else {
            (10, 2)
        };
        let digits = b[start..]
            .iter()
            .take_while(|c| {
                if radix == 16 {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let text = s[start..start + digits].trim_start_matches('0');
        let value = if text.is_empty() {
            0
        } else if text.len() > 7 {
            return None;
        } else {
            u32::from_str_radix(text, radix).ok()?
        };
        let mut len = start + digits;
        if b.get(len) == Some(&b';') {
            len += 1;
        }
        let ch = char::from_u32(value).unwrap_or('\u{fffd}');
        return Some((Decoded::Char(ch), len));
    }
    let name_len = b[1..]
        .iter()
        .take(32)
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if name_len == 0 {
        return None;
    }
    let name = &s[1..1 + name_len];
    if b.get(1 + name_len) == Some(&b';') {
        let table = &html_escape::NAMED_ENTITIES;
        if let Ok(i) = table.binary_search_by(|(n, _)| (*n).cmp(name.as_bytes())) {
            return Some((Decoded::Str(table[i].1), name_len + 2));
        }
    }
    LEGACY_NAMED
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n))
        .map(|&(n, c)| {
            (
                Decoded::Char(c),
                n.len() + 1 + usize::from(b.get(1 + n.len()) == Some(&b';')),
            )
        })
}

/// JavaScript / JSON style escapes inside strings: `\uXXXX` (with surrogate pairs), `\u{X…}`
/// and `\xHH`. Other backslashes are kept (they matter for Windows paths).
pub(crate) fn unescape(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if !b
        .windows(2)
        .any(|w| w[0] == b'\\' && matches!(w[1], b'u' | b'U' | b'x' | b'X'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut changed = false;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some((ch, len)) = escape_at(b, i)
        {
            out.push(ch);
            i += len;
            changed = true;
            continue;
        }
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8();
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

fn escape_at(b: &[u8], i: usize) -> Option<(char, usize)> {
    match b.get(i + 1)? {
        b'x' | b'X' => {
            let v = hex_at(b, i + 2)? << 4 | hex_at(b, i + 3)?;
            Some((char::from(v), 4))
        }
        b'u' | b'U' if b.get(i + 2) == Some(&b'{') => {
            let digits = b[i + 3..]
                .iter()
                .take(7)
                .take_while(|c| c.is_ascii_hexdigit())
                .count();
            if digits == 0 || b.get(i + 3 + digits) != Some(&b'}') {
                return None;
            }
            let mut v = 0u32;
            for &c in &b[i + 3..i + 3 + digits] {
                v = v << 4 | u32::from(hex_val(c)?);
            }
            Some((char::from_u32(v).unwrap_or('\u{fffd}'), digits + 4))
        }
        b'u' | b'U' => {
            let hi = hex4(b, i + 2)?;
            if (0xD800..0xDC00).contains(&hi)
                && b.get(i + 6) == Some(&b'\\')
                && matches!(b.get(i + 7), Some(b'u' | b'U'))
                && let Some(lo) = hex4(b, i + 8)
                && (0xDC00..0xE000).contains(&lo)
            {
                let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                return Some((char::from_u32(cp).unwrap_or('\u{fffd}'), 12));
            }
            Some((char::from_u32(hi).unwrap_or('\u{fffd}'), 6))
        }
        _ => None,
    }
}

/// Unicode compatibility normalization (fullwidth `＜` → `<`, ligatures, …), only for text that
/// is not already NFKC.
pub(crate) fn nfkc(s: Cow<'_, str>) -> Cow<'_, str> {
    if s.is_ascii() || is_nfkc_quick(s.chars()) == IsNormalized::Yes {
        return s;
    }
    Cow::Owned(s.nfkc().collect())
}

/// Replaces SQL inline comments `/* … */` with a space (`UNION/**/SELECT` → `UNION SELECT`).
/// MySQL version comments `/*!50000UNION*/` keep their content. An unterminated `/*` is kept,
/// since it is itself a signal after a quote.
pub(crate) fn strip_sql_comments(s: Cow<'_, str>) -> Cow<'_, str> {
    if !s.contains("/*") {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut rest: &str = &s;
    while let Some(start) = rest.find("/*") {
        let Some(end) = rest[start + 2..].find("*/") else {
            break;
        };
        out.push_str(&rest[..start]);
        let inner = &rest[start + 2..start + 2 + end];
        out.push(' ');
        if let Some(version) = inner.strip_prefix('!') {
            out.push_str(version.trim_start_matches(|c: char| c.is_ascii_digit()));
            out.push(' ');
        }
        rest = &rest[start + 2 + end + 2..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Collapses each run of whitespace to one space, or to one `\n` when the run holds a line
/// break (a line break separates shell commands, so it is kept distinct).
pub(crate) fn collapse_whitespace(s: Cow<'_, str>) -> Cow<'_, str> {
    let mut prev_space = false;
    let needed = s.chars().any(|c| {
        let hit = c.is_whitespace() && (c != ' ' || prev_space);
        prev_space = c == ' ';
        hit
    });
    if !needed {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut run: Option<char> = None;
    for c in s.chars() {
        if c.is_whitespace() {
            let sep = if c == '\n' || c == '\r' { '\n' } else { ' ' };
            run = Some(match run {
                Some('\n') => '\n',
                _ => sep,
            });
        } else {
            if let Some(sep) = run.take() {
                out.push(sep);
            }
            out.push(c);
        }
    }
    if let Some(sep) = run {
        out.push(sep);
    }
    Cow::Owned(out)
}

/// Case folding: lowercase (ASCII fast path, full Unicode lowercase otherwise) into a reused
/// buffer. Done only for values whose prefilter fired; the prefilter itself is ASCII
/// case-insensitive.
pub(crate) fn fold_case_into(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
    } else {
        out.push_str(&s.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut folded = String::from("leftover from an earlier value");
        fold_case_into(&normalize(s, 3).text, &mut folded);
        folded
    }

    #[test]
    fn plain_text_is_borrowed() {
        let n = normalize("/api/items/42", 3);
        assert!(matches!(n.text, Cow::Borrowed(_)));
        assert!(!n.null_byte);
    }

    #[test]
    fn url_decoding_repeats_up_to_three_rounds() {
        assert_eq!(norm("%27%20or%201%3D1"), "' or 1=1");
        assert_eq!(norm("%253Cscript%253E"), "<script>");
        assert_eq!(norm("%25253Cx"), "<x");
        // A fourth layer stays encoded.
        assert_eq!(norm("%2525253Cx"), "%3cx");
        assert_eq!(percent_decode("a+b%2Bc", true), "a b+c");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(norm("50% off"), "50% off");
        assert_eq!(norm("%u003cscript"), "<script");
    }

    #[test]
    fn overlong_utf8_is_folded_to_ascii() {
        assert_eq!(norm("..%c0%af..%c0%afetc"), "../../etc");
        assert_eq!(norm("%c0%ae%c0%ae/"), "../");
        assert_eq!(norm("..%c1%9c"), "..\\");
        assert_eq!(norm("%e0%80%af"), "/");
        assert_eq!(norm("%ff"), "\u{fffd}");
    }

    #[test]
    fn html_entities_named_decimal_hex() {
        assert_eq!(norm("&lt;script&gt;"), "<script>");
        assert_eq!(norm("&#60;&#x3C;&#0000060"), "<<<");
        assert_eq!(norm("java&#x09;script&colon;"), "java script:");
        assert_eq!(norm("&amp;lt;"), "<");
        assert_eq!(norm("AT&T and R&D"), "at&t and r&d");
        assert_eq!(norm("&unknown; &#;"), "&unknown; &#;");
    }

    #[test]
    fn backslash_escapes() {
        assert_eq!(norm("\\u003cscript\\u003e"), "<script>");
        assert_eq!(norm("\\x3cimg"), "<img");
        assert_eq!(norm("\\u{3c}b"), "<b");
        assert_eq!(norm("\\ud83d\\ude00"), "😀");
        assert_eq!(norm("..\\..\\windows"), "..\\..\\windows");
    }

    #[test]
    fn nfkc_and_case_folding() {
        assert_eq!(norm("＜ＳＣＲＩＰＴ＞"), "<script>");
        assert_eq!(norm("ﬁnance"), "finance");
        assert_eq!(norm("ＵＮＩＯＮ　ＳＥＬＥＣＴ"), "union select");
        assert_eq!(norm("Café"), "café");
    }

    #[test]
    fn null_bytes_are_flagged_and_removed() {
        let n = normalize("<%00script>", 3);
        assert!(n.null_byte);
        assert_eq!(n.text, "<script>");
    }

    #[test]
    fn sql_comments_and_whitespace() {
        assert_eq!(norm("1/**/UNION/**/SELECT"), "1 union select");
        assert_eq!(norm("/*!50000UNION*/ /*!50000SELECT*/"), " union select ");
        assert_eq!(norm("admin'/*"), "admin'/*");
        assert_eq!(norm("a \t\t b"), "a b");
        assert_eq!(norm("a\r\n  b"), "a\nb");
        assert_eq!(norm("1%0a%0aid"), "1\nid");
    }
}

//! Request bodies by content type: JSON (every string and key, with a JSON-path location),
//! urlencoded forms (each field), multipart (text parts and file names, never file contents),
//! and other bodies as text when they are UTF-8 and under 64 KiB.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::detector::{Collector, label};
use super::request::inspect_pairs;
use super::rules::scope;

/// Largest body of another type (or unparsable JSON) that is inspected as text.
pub(crate) const TEXT_LIMIT: usize = 64 * 1024;

pub(crate) fn inspect(body: &[u8], content_type: Option<&str>, c: &mut Collector<'_>) {
    if body.is_empty() {
        return;
    }
    let ct = content_type.unwrap_or("");
    let media = ct.split(';').next().unwrap_or("").trim();
    let is = |m: &str| media.eq_ignore_ascii_case(m);
    let lower_media = media.to_ascii_lowercase();
    if is("application/json") || lower_media.ends_with("+json") {
        // Streamed: strings are inspected where they lie in the body, no tree is built.
        let mut de = serde_json::Deserializer::from_slice(body);
        let mut path = Vec::new();
        let walked = Walk {
            path: &mut path,
            c: &mut *c,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if walked.is_err() {
            inspect_text(body, c);
        }
    } else if is("application/x-www-form-urlencoded") {
        inspect_pairs(&String::from_utf8_lossy(body), scope::BODY, "body:form:", c);
    } else if is("multipart/form-data") {
        if let Some(boundary) = boundary(ct) {
            inspect_multipart(body, boundary.as_bytes(), c);
        }
    } else {
        inspect_text(body, c);
    }
}

fn inspect_text(body: &[u8], c: &mut Collector<'_>) {
    if body.len() >= TEXT_LIMIT {
        return;
    }
    if let Ok(text) = std::str::from_utf8(body) {
        c.value(text, 3, scope::BODY, || "body".to_string());
    }
}

enum Seg<'a> {
    Key(Cow<'a, str>),
    Index(usize),
}

fn json_location(path: &[Seg<'_>]) -> String {
    let mut out = String::from("body:$");
    for seg in path {
        match seg {
            Seg::Key(k) => {
                let simple = !k.is_empty()
                    && k.len() <= 64
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if simple {
                    out.push('.');
                    out.push_str(k);
                } else {
                    let _ = write!(out, "[\"{}\"]", label(k));
                }
            }
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Visits one JSON value: strings and keys are inspected, containers walked with the path
/// kept up to date, everything else ignored.
struct Walk<'a, 'd, 'de> {
    path: &'a mut Vec<Seg<'de>>,
    c: &'a mut Collector<'d>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        let path = &*self.path;
        self.c.value(s, 3, scope::BODY, || json_location(path));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for i in 0.. {
            self.path.push(Seg::Index(i));
            let more = seq.next_element_seed(Walk {
                path: &mut *self.path,
                c: &mut *self.c,
            });
            self.path.pop();
            if more?.is_none() {
                break;
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            if self.c.excluded(&key) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            self.path.push(Seg::Key(key));
            if let Some(Seg::Key(k)) = self.path.last() {
                let path = &*self.path;
                self.c.value(k, 3, scope::BODY, || json_location(path));
            }
            let value = map.next_value_seed(Walk {
                path: &mut *self.path,
                c: &mut *self.c,
            });
            self.path.pop();
            value?;
        }
        Ok(())
    }
}

/// An object key, borrowed from the body when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s))
    }
}

/// The `boundary` parameter of a multipart content type, unquoted.
fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 200).then_some(v)
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from >= hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn inspect_multipart(body: &[u8], boundary: &[u8], c: &mut Collector<'_>) {
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary);
    let Some(mut pos) = find(body, &delim, 0) else {
        return;
    };
    loop {
        let start = pos + delim.len();
        if body[start..].starts_with(b"--") {
            break;
        }
        let next = find(body, &delim, start);
        let end = next.unwrap_or(body.len());
        inspect_part(&body[start..end], c);
        match next {
            Some(n) => pos = n,
            None => break,
        }
    }
}

fn inspect_part(part: &[u8], c: &mut Collector<'_>) {
    // Headers end at the first blank line; the content ends before the CRLF preceding the
    // next delimiter.
    let (head, content) = match find(part, b"\r\n\r\n", 0) {
        Some(i) => (&part[..i], &part[i + 4..]),
        None => match find(part, b"\n\n", 0) {
            Some(i) => (&part[..i], &part[i + 2..]),
            None => return,
        },
    };
    let content = content
        .strip_suffix(b"\r\n")
        .or_else(|| content.strip_suffix(b"\n"))
        .unwrap_or(content);
    let head = String::from_utf8_lossy(head);
    let mut name = String::new();
    let mut filename = None;
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for param in v.split(';').skip(1) {
            let Some((pk, pv)) = param.split_once('=') else {
                continue;
            };
            let pv = pv.trim().trim_matches('"').to_string();
            match pk.trim().to_ascii_lowercase().as_str() {
                "name" => name = pv,
                "filename" | "filename*" => filename = Some(pv),
                _ => {}
            }
        }
    }
    if c.excluded(&name) {
        return;
    }
    let location = || format!("body:multipart:{}", label(&name));
    match filename {
        Some(f) => c.value(&f, 3, scope::BODY, location),
        None => {
            if let Ok(text) = std::str::from_utf8(content) {
                c.value(text, 3, scope::BODY, location);
            }
        }
    }
}

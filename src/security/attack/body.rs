//! Request bodies by content type: JSON (every string and key, with a JSON-path location),
//! urlencoded forms (each field), multipart (text parts and file names, never file contents),
//! and other bodies as text when they are UTF-8 and under 64 KiB.

use std::fmt::Write as _;

use serde_json::Value;

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
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => {
                let mut path = Vec::new();
                walk_json(&v, &mut path, c);
            }
            Err(_) => inspect_text(body, c),
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
    Key(&'a str),
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

fn walk_json<'v>(v: &'v Value, path: &mut Vec<Seg<'v>>, c: &mut Collector<'_>) {
    match v {
        Value::String(s) => c.value(s, 3, scope::BODY, || json_location(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                walk_json(item, path, c);
                path.pop();
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                if c.excluded(key) {
                    continue;
                }
                path.push(Seg::Key(key));
                c.value(key, 3, scope::BODY, || json_location(path));
                walk_json(item, path, c);
                path.pop();
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
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

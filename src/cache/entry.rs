//! What the cache stores: a response ([`Entry`]: status, headers, identity body, when it was
//! stored and how long it stays fresh and servable stale) or, at a base key whose responses vary,
//! a [`VaryMarker`] naming the request headers that select the variant.
//!
//! Entries are immutable once stored, except for the encoded forms of the body (gzip, br, zstd),
//! each made the first time a client asks for it and kept with the entry. The binary form
//! ([`Cached::to_bytes`]) is what the Redis tier keeps.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::control::Lifetime;
use super::key::Key;
use crate::compression::Encoding;

/// Wall-clock milliseconds since the epoch: entry times are shared across instances.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where an entry came from, for purges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub route: Arc<str>,
    pub path: Arc<str>,
    /// The base key (equal to the entry's own key unless the response varies).
    pub base: Key,
}

/// How long an entry is usable, in wall-clock milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub stored_at_ms: u64,
    pub initial_age_ms: u64,
    pub fresh_ms: u64,
    pub swr_ms: u64,
    pub sie_ms: u64,
    /// Kept this long after the stale windows for a breaker fallback.
    pub keep_ms: u64,
}

impl Times {
    pub fn new(lifetime: &Lifetime, keep: Duration, now_ms: u64) -> Self {
        Self {
            stored_at_ms: now_ms,
            initial_age_ms: lifetime.initial_age.as_millis() as u64,
            fresh_ms: lifetime.fresh.as_millis() as u64,
            swr_ms: lifetime.stale_while_revalidate.as_millis() as u64,
            sie_ms: lifetime.stale_if_error.as_millis() as u64,
            keep_ms: keep.as_millis() as u64,
        }
    }

    pub fn age_ms(&self, now_ms: u64) -> u64 {
        self.initial_age_ms + now_ms.saturating_sub(self.stored_at_ms)
    }

    /// How stale the entry is (0 while fresh).
    pub fn staleness_ms(&self, now_ms: u64) -> u64 {
        self.age_ms(now_ms).saturating_sub(self.fresh_ms)
    }

    pub fn is_fresh(&self, now_ms: u64) -> bool {
        self.age_ms(now_ms) < self.fresh_ms
    }

    pub fn within_swr(&self, now_ms: u64) -> bool {
        self.staleness_ms(now_ms) < self.swr_ms
    }

    pub fn within_sie(&self, now_ms: u64) -> bool {
        self.staleness_ms(now_ms) < self.sie_ms
    }

    /// Until the store may drop it.
    pub fn remaining(&self, now_ms: u64) -> Duration {
        let total = self.fresh_ms + self.swr_ms.max(self.sie_ms).max(self.keep_ms);
        Duration::from_millis(total.saturating_sub(self.age_ms(now_ms)).max(1))
    }
}

/// A stored response.
#[derive(Debug)]
pub struct Entry {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// As the upstream sent it (identity, or the upstream's own encoding).
    pub body: Bytes,
    pub times: Times,
    pub origin: Origin,
    /// Encoded forms of `body`, by [`Encoding::index`].
    encoded: [OnceLock<Bytes>; 3],
}

impl Entry {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        times: Times,
        origin: Origin,
    ) -> Self {
        Self {
            status,
            headers,
            body,
            times,
            origin,
            encoded: Default::default(),
        }
    }

    /// The body encoded with `encoding`, and whether it was made just now (the caller then
    /// re-weighs the entry in the memory store).
    pub fn encoded(
        &self,
        encoding: Encoding,
        make: impl FnOnce(&[u8]) -> Option<Bytes>,
    ) -> Option<(Bytes, bool)> {
        let slot = &self.encoded[encoding.index()];
        if let Some(done) = slot.get() {
            return Some((done.clone(), false));
        }
        let made = make(&self.body)?;
        let _ = slot.set(made.clone());
        Some((made, true))
    }

    /// Approximate memory use, for the store's byte bound.
    pub fn weight(&self) -> u32 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        let encoded: usize = self
            .encoded
            .iter()
            .filter_map(|e| e.get())
            .map(Bytes::len)
            .sum();
        let total = 256 + headers + self.body.len() + encoded + self.origin.path.len();
        u32::try_from(total).unwrap_or(u32::MAX)
    }

    /// A copy refreshed by a `304 Not Modified`: the new headers replace the stored ones of the
    /// same name (RFC 9111 §4.3.4), times restart.
    pub fn refreshed(&self, update: &HeaderMap, times: Times) -> Entry {
        let mut headers = self.headers.clone();
        for name in update.keys() {
            if name == http::header::CONTENT_LENGTH || name == http::header::CONTENT_ENCODING {
                continue;
            }
            headers.remove(name);
            for value in update.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        Entry::new(
            self.status,
            headers,
            self.body.clone(),
            times,
            self.origin.clone(),
        )
    }
}

/// At a base key whose responses vary: the headers that select the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryMarker {
    pub names: Vec<HeaderName>,
    pub origin: Origin,
    /// Until the store may drop it (the latest variant's).
    pub until_ms: u64,
}

/// A value of the stores.
#[derive(Debug, Clone)]
pub enum Cached {
    Entry(Arc<Entry>),
    Vary(Arc<VaryMarker>),
}

impl Cached {
    pub fn origin(&self) -> &Origin {
        match self {
            Self::Entry(e) => &e.origin,
            Self::Vary(v) => &v.origin,
        }
    }

    pub fn remaining(&self, now_ms: u64) -> Duration {
        match self {
            Self::Entry(e) => e.times.remaining(now_ms),
            Self::Vary(v) => Duration::from_millis(v.until_ms.saturating_sub(now_ms).max(1)),
        }
    }

    pub fn weight(&self) -> u32 {
        match self {
            Self::Entry(e) => e.weight(),
            Self::Vary(v) => {
                128 + v.names.iter().map(|n| n.as_str().len() + 16).sum::<usize>() as u32
            }
        }
    }

    /// The binary form: `RC1`, a kind byte, then length-prefixed fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Writer(Vec::with_capacity(256));
        out.0.extend_from_slice(b"RC1");
        let origin = self.origin();
        match self {
            Self::Entry(e) => {
                out.0.push(b'E');
                out.u64(u64::from(e.status.as_u16()));
                for t in [
                    e.times.stored_at_ms,
                    e.times.initial_age_ms,
                    e.times.fresh_ms,
                    e.times.swr_ms,
                    e.times.sie_ms,
                    e.times.keep_ms,
                ] {
                    out.u64(t);
                }
                out.origin(origin);
                out.u64(e.headers.len() as u64);
                for (name, value) in &e.headers {
                    out.bytes(name.as_str().as_bytes());
                    out.bytes(value.as_bytes());
                }
                out.bytes(&e.body);
            }
            Self::Vary(v) => {
                out.0.push(b'V');
                out.u64(v.until_ms);
                out.origin(origin);
                out.u64(v.names.len() as u64);
                for name in &v.names {
                    out.bytes(name.as_str().as_bytes());
                }
            }
        }
        out.0
    }

    /// Parses [`Cached::to_bytes`]; `None` for anything else.
    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let mut r = Reader(data.strip_prefix(b"RC1")?);
        let kind = r.take(1)?[0];
        match kind {
            b'E' => {
                let status = StatusCode::from_u16(u16::try_from(r.u64()?).ok()?).ok()?;
                let times = Times {
                    stored_at_ms: r.u64()?,
                    initial_age_ms: r.u64()?,
                    fresh_ms: r.u64()?,
                    swr_ms: r.u64()?,
                    sie_ms: r.u64()?,
                    keep_ms: r.u64()?,
                };
                let origin = r.origin()?;
                let count = r.u64()?;
                let mut headers = HeaderMap::new();
                for _ in 0..count {
                    let name = HeaderName::from_bytes(r.bytes()?).ok()?;
                    let value = HeaderValue::from_bytes(r.bytes()?).ok()?;
                    headers.append(name, value);
                }
                let body = Bytes::copy_from_slice(r.bytes()?);
                Some(Self::Entry(Arc::new(Entry::new(
                    status, headers, body, times, origin,
                ))))
            }
            b'V' => {
                let until_ms = r.u64()?;
                let origin = r.origin()?;
                let count = r.u64()?;
                let mut names = Vec::new();
                for _ in 0..count {
                    names.push(HeaderName::from_bytes(r.bytes()?).ok()?);
                }
                Some(Self::Vary(Arc::new(VaryMarker {
                    names,
                    origin,
                    until_ms,
                })))
            }
            _ => None,
        }
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }
    fn origin(&mut self, origin: &Origin) {
        self.bytes(origin.route.as_bytes());
        self.bytes(origin.path.as_bytes());
        self.0.extend_from_slice(&origin.base.0);
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n)
    }
    fn origin(&mut self) -> Option<Origin> {
        let route = std::str::from_utf8(self.bytes()?).ok()?;
        let path = std::str::from_utf8(self.bytes()?).ok()?;
        let base = Key(self.take(32)?.try_into().ok()?);
        Some(Origin {
            route: Arc::from(route),
            path: Arc::from(path),
            base,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        Entry::new(
            StatusCode::OK,
            headers,
            Bytes::from_static(b"{\"ok\":true}"),
            Times {
                stored_at_ms: 1_000_000,
                initial_age_ms: 2000,
                fresh_ms: 10_000,
                swr_ms: 5000,
                sie_ms: 20_000,
                keep_ms: 0,
            },
            Origin {
                route: Arc::from("api"),
                path: Arc::from("/api/items"),
                base: Key([7; 32]),
            },
        )
    }

    #[test]
    fn times() {
        let t = entry().times;
        assert_eq!(t.age_ms(1_000_000), 2000);
        assert!(t.is_fresh(1_007_999));
        assert!(!t.is_fresh(1_008_000));
        assert!(t.within_swr(1_012_999));
        assert!(!t.within_swr(1_013_000));
        assert!(t.within_sie(1_027_999));
        assert!(!t.within_sie(1_028_000));
        assert_eq!(t.remaining(1_000_000), Duration::from_millis(28_000));
        assert_eq!(t.remaining(2_000_000), Duration::from_millis(1));
    }

    #[test]
    fn binary_form_round_trips() {
        let e = Arc::new(entry());
        let Some(Cached::Entry(back)) = Cached::from_bytes(&Cached::Entry(e.clone()).to_bytes())
        else {
            panic!()
        };
        assert_eq!(back.status, e.status);
        assert_eq!(back.headers, e.headers);
        assert_eq!(back.body, e.body);
        assert_eq!(back.times, e.times);
        assert_eq!(back.origin, e.origin);
        let marker = Arc::new(VaryMarker {
            names: vec![HeaderName::from_static("accept-language")],
            origin: e.origin.clone(),
            until_ms: 5,
        });
        let Some(Cached::Vary(back)) = Cached::from_bytes(&Cached::Vary(marker.clone()).to_bytes())
        else {
            panic!()
        };
        assert_eq!(back, marker);
        assert!(Cached::from_bytes(b"RC1E\x01").is_none());
        assert!(Cached::from_bytes(b"garbage").is_none());
    }

    #[test]
    fn encoded_forms_are_made_once_and_weighed() {
        let e = entry();
        let before = e.weight();
        let (first, made) = e
            .encoded(Encoding::Gzip, |b| Some(Bytes::copy_from_slice(&b[..4])))
            .unwrap();
        assert!(made);
        let (again, made) = e.encoded(Encoding::Gzip, |_| panic!("made twice")).unwrap();
        assert!(!made);
        assert_eq!(first, again);
        assert_eq!(e.weight(), before + 4);
    }

    #[test]
    fn a_304_refreshes_headers() {
        let e = entry();
        let mut update = HeaderMap::new();
        update.insert("x-multi", "c".parse().unwrap());
        update.insert("content-length", "0".parse().unwrap());
        let t = Times {
            stored_at_ms: 5,
            ..e.times
        };
        let r = e.refreshed(&update, t);
        assert_eq!(
            r.headers.get_all("x-multi").iter().collect::<Vec<_>>(),
            vec!["c"]
        );
        assert!(r.headers.get("content-length").is_none());
        assert_eq!(r.times.stored_at_ms, 5);
        assert_eq!(r.body, e.body);
    }
}

//! Cache keys: SHA-256 over the method, host, path, normalised query, the route's key headers,
//! the identity (unless the route is shared) and, for POST, the body — each part length-prefixed
//! so no two requests collide by concatenation. A response that varies (`Vary`) is stored under a
//! variant key: the base key and the values of the headers it names.
//!
//! The digest is the same on every instance, so the Redis tier is shared. Owns key computation
//! only; it must not look anything up.

use std::fmt;

use aws_lc_rs::digest;
use http::Method;
use http::header::{self, HeaderMap, HeaderName};

use super::settings::RoutePolicy;

/// A cache key: a SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
        }
        out
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            key[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Some(Self(key))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.hex()[..16])
    }
}

/// Who the cached response belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// The route is shared: one entry for everyone.
    Shared,
    /// The subject rampart authenticated.
    User(&'a str),
    /// The API key rampart authenticated.
    ApiKey(&'a str),
    /// Not authenticated by rampart: the credentials the app will see (`Authorization`,
    /// `Cookie`), so that two clients with different credentials never share an entry.
    Credentials,
    Anonymous,
}

/// What a key is made of.
pub struct KeyInput<'a> {
    pub method: &'a Method,
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    pub identity: Identity<'a>,
    /// POST only: the request body.
    pub body: Option<&'a [u8]>,
}

struct Hasher(digest::Context);

impl Hasher {
    fn new(domain: &[u8]) -> Self {
        let mut hasher = Self(digest::Context::new(&digest::SHA256));
        hasher.part(domain);
        hasher
    }

    fn part(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    /// Every value of `name`, in order, as one part each, preceded by their count.
    fn header(&mut self, headers: &HeaderMap, name: &HeaderName) {
        let values = headers.get_all(name);
        self.part(name.as_str().as_bytes());
        self.part(&(values.iter().count() as u64).to_le_bytes());
        for value in values {
            self.part(trim(value.as_bytes()));
        }
    }

    fn finish(self) -> Key {
        let digest = self.0.finish();
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        Key(key)
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// The request's base key under `policy`.
pub fn base_key(policy: &RoutePolicy, input: &KeyInput<'_>) -> Key {
    let mut hasher = Hasher::new(b"rampart-cache-v1");
    // HEAD is answered from GET's entries.
    let method = if input.method == Method::HEAD {
        "GET"
    } else {
        input.method.as_str()
    };
    hasher.part(method.as_bytes());
    hasher.part(input.host.unwrap_or("").as_bytes());
    hasher.part(input.path.as_bytes());
    hasher.part(normalise_query(input.query, &policy.ignore_query_params).as_bytes());
    for name in &policy.key_headers {
        hasher.header(input.headers, name);
    }
    match input.identity {
        Identity::Shared => hasher.part(b"shared"),
        Identity::User(user) => {
            hasher.part(b"user");
            hasher.part(user.as_bytes());
        }
        Identity::ApiKey(key) => {
            hasher.part(b"api-key");
            hasher.part(key.as_bytes());
        }
        Identity::Credentials => {
            hasher.part(b"credentials");
            hasher.header(input.headers, &header::AUTHORIZATION);
            hasher.header(input.headers, &header::COOKIE);
        }
        Identity::Anonymous => hasher.part(b"anonymous"),
    }
    if let Some(body) = input.body {
        hasher.part(b"body");
        hasher.header(input.headers, &header::CONTENT_TYPE);
        hasher.part(digest::digest(&digest::SHA256, body).as_ref());
    }
    hasher.finish()
}

/// The key of the variant of `base` that a request with `headers` selects, for a response that
/// varies on `names`.
pub fn variant_key(base: &Key, names: &[HeaderName], headers: &HeaderMap) -> Key {
    let mut hasher = Hasher::new(b"rampart-cache-variant-v1");
    hasher.part(&base.0);
    for name in names {
        hasher.header(headers, name);
    }
    hasher.finish()
}

/// The query with empty and ignored parameters removed and the rest sorted, so that `?b=2&a=1`
/// and `?a=1&b=2&utm_source=x` share an entry. Values stay as sent (encoded).
pub fn normalise_query(query: Option<&str>, ignored: &[String]) -> String {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !ignored.iter().any(|i| i == name)
        })
        .collect();
    pairs.sort_unstable();
    pairs.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RoutePolicy {
        let mut problems = Vec::new();
        let file: crate::config::file::RouteSection = toml::from_str(
            "name = \"r\"\nupstream = \"u\"\n[cache]\nkey_headers = [\"accept-language\"]\nignore_query_params = [\"utm_source\"]\n",
        )
        .unwrap();
        let cache = crate::cache::settings::CacheConfig {
            max_memory: 1 << 24,
            max_entry_bytes: 1 << 20,
            default_ttl: std::time::Duration::from_secs(60),
            store: crate::store::StoreKind::Memory,
            redis_timeout: std::time::Duration::from_millis(50),
            redis_max_entry_bytes: 1 << 19,
            lock_timeout: std::time::Duration::from_secs(1),
        };
        let policy = crate::config::cache::route_policy(
            &file,
            &crate::config::KeyPath::root(),
            Some(&cache),
            &mut problems,
        )
        .unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        (*policy).clone()
    }

    fn key(
        method: Method,
        query: Option<&str>,
        headers: &HeaderMap,
        identity: Identity<'_>,
    ) -> Key {
        base_key(
            &policy(),
            &KeyInput {
                method: &method,
                host: Some("api.example.com"),
                path: "/api/items",
                query,
                headers,
                identity,
                body: None,
            },
        )
    }

    #[test]
    fn parts_that_matter_change_the_key() {
        let none = HeaderMap::new();
        let base = key(Method::GET, Some("a=1&b=2"), &none, Identity::Anonymous);
        assert_eq!(
            base,
            key(Method::GET, Some("b=2&a=1"), &none, Identity::Anonymous)
        );
        assert_eq!(
            base,
            key(
                Method::GET,
                Some("b=2&utm_source=x&a=1&"),
                &none,
                Identity::Anonymous
            )
        );
        assert_eq!(
            base,
            key(Method::HEAD, Some("a=1&b=2"), &none, Identity::Anonymous)
        );
        assert_ne!(
            base,
            key(Method::GET, Some("a=1&b=3"), &none, Identity::Anonymous)
        );
        assert_ne!(
            base,
            key(Method::POST, Some("a=1&b=2"), &none, Identity::Anonymous)
        );
        assert_ne!(
            base,
            key(Method::GET, Some("a=1&b=2"), &none, Identity::User("alice"))
        );
        assert_ne!(
            key(Method::GET, None, &none, Identity::User("alice")),
            key(Method::GET, None, &none, Identity::User("bob"))
        );
        // A user named like an API key is still another identity.
        assert_ne!(
            key(Method::GET, None, &none, Identity::User("k")),
            key(Method::GET, None, &none, Identity::ApiKey("k"))
        );
        let mut french = HeaderMap::new();
        french.insert("accept-language", "fr".parse().unwrap());
        assert_ne!(
            base,
            key(Method::GET, Some("a=1&b=2"), &french, Identity::Anonymous)
        );
        // Unlisted headers do not matter.
        let mut other = HeaderMap::new();
        other.insert("user-agent", "x".parse().unwrap());
        assert_eq!(
            base,
            key(Method::GET, Some("a=1&b=2"), &other, Identity::Anonymous)
        );
    }

    #[test]
    fn credentials_the_app_sees_separate_clients() {
        let mut alice = HeaderMap::new();
        alice.insert("authorization", "Bearer a".parse().unwrap());
        let mut bob = HeaderMap::new();
        bob.insert("authorization", "Bearer b".parse().unwrap());
        let mut cookie = HeaderMap::new();
        cookie.insert("cookie", "session=a".parse().unwrap());
        let a = key(Method::GET, None, &alice, Identity::Credentials);
        assert_ne!(a, key(Method::GET, None, &bob, Identity::Credentials));
        assert_ne!(a, key(Method::GET, None, &cookie, Identity::Credentials));
        assert_eq!(
            key(Method::GET, None, &alice, Identity::Shared),
            key(Method::GET, None, &bob, Identity::Shared)
        );
    }

    #[test]
    fn bodies_and_variants() {
        let none = HeaderMap::new();
        let with_body = |body: &[u8]| {
            base_key(
                &policy(),
                &KeyInput {
                    method: &Method::POST,
                    host: None,
                    path: "/ai",
                    query: None,
                    headers: &none,
                    identity: Identity::Shared,
                    body: Some(body),
                },
            )
        };
        assert_eq!(with_body(b"{\"q\":1}"), with_body(b"{\"q\":1}"));
        assert_ne!(with_body(b"{\"q\":1}"), with_body(b"{\"q\":2}"));
        let base = with_body(b"x");
        let names = [HeaderName::from_static("accept-language")];
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        let mut de = HeaderMap::new();
        de.insert("accept-language", "de".parse().unwrap());
        assert_ne!(
            variant_key(&base, &names, &en),
            variant_key(&base, &names, &de)
        );
        assert_eq!(
            variant_key(&base, &names, &en),
            variant_key(&base, &names, &en)
        );
        assert_eq!(Key::from_hex(&base.hex()), Some(base));
        assert_eq!(Key::from_hex("zz"), None);
    }
}

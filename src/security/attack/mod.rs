//! Attack-pattern detection (SQL injection, XSS, path traversal, command injection, scanners):
//! a small, fast relative of the OWASP Core Rule Set. [`Detector::new`] compiles the rules once;
//! [`Detector::inspect`] looks at one request and returns a [`Verdict`] whose score the caller
//! compares with its threshold ([`DEFAULT_THRESHOLD`] unless configured) to block, log or ignore.
//!
//! # What is inspected
//! Each of these is one *value*, matched on its own, with its own location in [`Match`]:
//! - the path, decoded, as one value (`path`);
//! - each query parameter's name and value (`query:<name>`);
//! - header values (`header:<name>`): the user agent, `referer`, `origin` and every
//!   non-standard header. Standard headers whose values cannot carry an attack meaningfully
//!   (`accept*`, `host`, `connection`, `content-length`, `content-type`, caching and fetch
//!   metadata, …) are skipped, and so are `authorization`, `proxy-authorization` and values that
//!   are obviously tokens (20+ characters of a base64/hex/JWT alphabet with digits);
//! - each cookie's name and value, one by one (`cookie:<name>`);
//! - the body, when the caller buffered it: JSON (every string value and every key, recursively:
//!   `body:$.user.name`, `body:$.items[2]`), `application/x-www-form-urlencoded` (each field:
//!   `body:form:<name>`), `multipart/form-data` (each text part's value, and the file name of
//!   file parts, never file contents: `body:multipart:<name>`), and any other body as text
//!   (`body`) only if it is valid UTF-8 and under 64 KiB. A JSON body that does not parse is
//!   inspected as text under the same condition.
//!
//! [`DetectorSettings`] can exclude path prefixes (segment-aware: `/health` covers
//! `/health/live` but not `/healthz`; never applied to a path with `.`/`..` segments, `//` or
//! `\`, so a traversal cannot borrow an exclusion), parameter / field / cookie / header names
//! (their values are skipped; a JSON key skips its whole subtree), and rules or whole
//! categories.
//!
//! # Decoding
//! Before matching, each value is decoded so encodings do not slip through (module `decode`):
//! URL decoding repeated until stable (at most 3 rounds, counting the query/form parser's round,
//! which is the only one reading `+` as a space; `%uXXXX` and overlong UTF-8 such as `%c0%af`
//! included), HTML character references (named, decimal, hex, with or without `;`), `\uXXXX` and
//! `\xHH` escapes, Unicode NFKC (fullwidth `＜script＞` → `<script>`), removal of NUL bytes
//! (which are themselves a signal), SQL inline comments `/**/` replaced by a space (MySQL
//! `/*!50000UNION*/` keeps its content), whitespace runs collapsed to one space (or one newline,
//! a shell separator), and case folding.
//!
//! # Scoring
//! Every rule has a score. Within one value the scores of the distinct rules that fired add up;
//! the request's [`Verdict::score`] is the highest value score. Weak signals therefore combine
//! only inside the same value: an apostrophe in one field and the word "select" in another do
//! not add up. The tiers, with `DEFAULT_THRESHOLD = 10`:
//! - **10, a clear signature**, enough alone: `' or '1'='1`, `UNION SELECT`, `; DROP TABLE`,
//!   `sleep(5)`, `<script`, an event handler inside a tag, `javascript:` with code after it,
//!   `../../` in a bare value or any `..` segment in the path, a bare `/etc/passwd`, a NUL byte,
//!   `; cat /etc/passwd`, `$(id)` opening a value, `${jndi:`, a scanner user agent.
//! - **5–8, suspicious**: a quote followed by a SQL comment (8), `(select … from` (8),
//!   `information_schema` (8), an `<iframe`/`<object` (8), a breakout into an `on…=` attribute
//!   (8), `document.cookie` (6), three `../` in prose (6), `/etc/hosts` named in a sentence (6),
//!   a value opening with `;` or `|` (6), `'a'='a` (5), `@@version` (5).
//! - **2–4, weak**: a lone quote (2), a SQL keyword such as `select` or `drop` (2), `select …
//!   from` (3), a tag-like `<x` (3), a value ending in `--` or `#` (3), `alert(` (4), `file:/`
//!   (4), a single `../` in prose (3).
//!
//! So `' or 1=1--` scores well above 10, `I'd like to select the best option -- really` scores
//! 4, and `<b>hi</b>` scores 3.
//!
//! # Speed
//! Rules are matched behind an Aho-Corasick prefilter of literal triggers (module `engine`); regexes
//! run only on values where all of a rule's trigger groups appeared, decoding allocates only
//! when a value has something to decode, the lowercase copy is made once per request into a
//! reused buffer and only for values whose triggers fired, and JSON bodies are streamed (no
//! tree is built). The `benign_request_cost` and `json_request_cost` tests print the time per
//! request as information only (`cargo test --release --lib security::attack -- --nocapture
//! --test-threads=1 cost`). Measured on the 2-core development machine, release build: a
//! benign GET (`/api/items/42`, a 3-parameter query, 10 ordinary headers) about 1.3 µs; a chat
//! JSON POST with the same headers and a 300-byte body of prose with apostrophes and quotes
//! (which wake several SQL rules) about 3.6 µs.
//!
//! # Limits
//! This is signature matching, not parsing: it will miss novel obfuscations, and it flags some
//! legitimate text that is literally an attack pattern (a developer pasting `<script src=…>` or
//! `curl … | sh` into a chat prompt). Attacks split across several parameters are not combined.

mod body;
mod decode;
mod detector;
mod engine;
mod request;
mod rules;

pub use detector::Detector;

/// Score at which a request counts as an attack unless configured otherwise: one clear
/// signature reaches it, weak signals need to combine (see the module documentation).
pub const DEFAULT_THRESHOLD: u32 = 10;

/// What [`Detector::new`] is built from.
#[derive(Clone, Debug, Default)]
pub struct DetectorSettings {
    /// Path prefixes (segment-aware) that are never inspected.
    pub exclude_paths: Vec<String>,
    /// Query/form/JSON field names, cookie names, header names whose values are not inspected
    /// (case-insensitive).
    pub exclude_params: Vec<String>,
    /// Rule ids or whole categories (`sqli`, `xss`, `traversal`, `cmdi`, `scanner`) to skip.
    pub disabled_rules: Vec<String>,
}

/// The parts of one request that [`Detector::inspect`] looks at.
pub struct Inspection<'a> {
    /// Raw path as received (may be percent-encoded).
    pub path: &'a str,
    /// Raw query string, without the `?`.
    pub query: Option<&'a str>,
    /// Request headers, including `cookie` and `user-agent`.
    pub headers: &'a http::HeaderMap,
    /// The body, only when the caller buffered it.
    pub body: Option<&'a [u8]>,
    /// The `content-type` header value, e.g. `application/json; charset=utf-8`.
    pub content_type: Option<&'a str>,
}

/// Family of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    Sqli,
    Xss,
    Traversal,
    CommandInjection,
    Scanner,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Sqli,
        Category::Xss,
        Category::Traversal,
        Category::CommandInjection,
        Category::Scanner,
    ];

    /// The name used in settings, logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Category::Sqli => "sqli",
            Category::Xss => "xss",
            Category::Traversal => "traversal",
            Category::CommandInjection => "cmdi",
            Category::Scanner => "scanner",
        }
    }
}

/// One rule that fired on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Rule id, e.g. `sqli-union-select`.
    pub rule: &'static str,
    pub category: Category,
    /// Where: `path`, `query:id`, `header:user-agent`, `cookie:session`, `body:$.user.name`,
    /// `body:form:comment`, `body:multipart:file`, `body`. Names are truncated to 64 characters
    /// and escaped.
    pub location: String,
    /// This rule's contribution to its value's score.
    pub score: u32,
}

/// The result of inspecting one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The highest score of any one value (the sum of the rules that fired on it).
    pub score: u32,
    /// Every rule that fired, weak ones included, in inspection order.
    pub matches: Vec<Match>,
}

impl Verdict {
    /// Whether the score reaches `threshold` (a score of 0 is never an attack).
    pub fn is_attack(&self, threshold: u32) -> bool {
        self.score > 0 && self.score >= threshold
    }

    /// The match with the highest score (the first one on a tie).
    pub fn top(&self) -> Option<&Match> {
        self.matches
            .iter()
            .reduce(|best, m| if m.score > best.score { m } else { best })
    }
}

#[cfg(test)]
mod tests;

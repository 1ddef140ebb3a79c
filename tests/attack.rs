//! End to end: attack filtering in block and detect mode, exclusions, and progressive blocking of
//! addresses that keep attacking (seed 004: blocked for 15 minutes, allowlisted IPs never).

mod support;

use serde_json::{Value, json};
use support::*;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
trusted_proxies = ["127.0.0.1"]

[ip_rules]
allow = ["192.0.2.10"]

[attack_filter]
mode = "block"
exclude_params = ["markdown"]

[blocking]
threshold = 3
window = "1m"
duration = "15m"

[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "webhooks"
path_prefix = "/webhooks"
rewrite = "/echo"
upstream = "app"
[route.attack_filter]
mode = "detect"

[[route]]
name = "api"
path_prefix = "/"
rewrite = "/echo"
upstream = "app"
"#;

async fn get_from(client: &reqwest::Client, url: &str, ip: &str) -> reqwest::Response {
    client
        .get(url)
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn attacks_are_blocked_in_every_location_and_benign_traffic_passes() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let ip = "198.51.100.1";

    let benign = get_from(
        &client,
        &url(&running, "/items?q=O'Reilly+books&sort=price"),
        ip,
    )
    .await;
    assert_eq!(benign.status(), 200);
    let chat = client
        .post(url(&running, "/chat"))
        .header("x-forwarded-for", ip)
        .json(&json!({"messages": [{"role": "user", "content": "How do I select the best union rep? I'd like 50% off -- really"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);

    let attacks: Vec<reqwest::RequestBuilder> = vec![
        client.get(url(&running, "/items?id=1%27%20OR%20%271%27%3D%271")),
        client.get(url(&running, "/files/..%2f..%2f..%2fetc%2fpasswd")),
        client
            .get(url(&running, "/items"))
            .header("user-agent", "sqlmap/1.7.2#stable (https://sqlmap.org)"),
        client
            .post(url(&running, "/comments"))
            .json(&json!({"comment": {"text": "<script>alert(document.cookie)</script>"}})),
        client
            .post(url(&running, "/search"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("q=test%3B%20cat%20%2Fetc%2Fpasswd"),
        client.get(url(&running, "/items")).header(
            "cookie",
            "session=abc; pref=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        ),
    ];
    for (i, attack) in attacks.into_iter().enumerate() {
        // A different address each time so progressive blocking does not kick in here.
        let response = attack
            .header("x-forwarded-for", format!("203.0.113.{}", i + 1))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "attack {i}");
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["type"], "attack_detected", "attack {i}");
    }

    // An excluded parameter is not inspected (a known false-positive source).
    let excluded = client
        .post(url(&running, "/docs"))
        .json(&json!({"markdown": "Use `<script>` tags carefully"}))
        .send()
        .await
        .unwrap();
    assert_eq!(excluded.status(), 200);

    // Detect mode: logged and counted, not refused.
    let detected = get_from(
        &client,
        &url(
            &running,
            "/webhooks/x?id=1%20UNION%20SELECT%20password%20FROM%20users",
        ),
        ip,
    )
    .await;
    assert_eq!(detected.status(), 200);
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("event=\"attack_detected\"")
                && l.contains("route=\"webhooks\"")
                && l.contains("rule=\"sqli\"")),
        "{metrics}"
    );
}

#[tokio::test]
async fn repeated_attacks_block_the_address_for_the_configured_time() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let attacker = "203.0.113.50";
    let attack = url(&running, "/items?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    let benign = url(&running, "/items");

    for _ in 0..3 {
        let response = get_from(&client, &attack, attacker).await;
        assert_eq!(response.status(), 403);
    }
    // Now even benign requests from that address are refused, with Retry-After.
    let blocked = get_from(&client, &benign, attacker).await;
    assert_eq!(blocked.status(), 403);
    let retry_after: u64 = blocked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((890..=900).contains(&retry_after), "{retry_after}");
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["type"], "ip_blocked");

    // Other addresses are unaffected; an allowlisted address is never blocked.
    assert_eq!(
        get_from(&client, &benign, "198.51.100.7").await.status(),
        200
    );
    for _ in 0..5 {
        get_from(&client, &attack, "192.0.2.10").await;
    }
    assert_eq!(get_from(&client, &benign, "192.0.2.10").await.status(), 200);

    // The operator sees the block in the metrics and on the admin listener, and can lift it.
    let metrics = metrics_text(&client, &running).await;
    assert!(
        metrics.lines().any(|l| l == "rampart_blocked_addresses 1"),
        "{metrics}"
    );
    let blocks = get_json(&client, &admin_url(&running, "/security/blocks")).await;
    assert_eq!(blocks["blocks"][0]["ip"], attacker, "{blocks}");
    let lifted = client
        .delete(admin_url(&running, &format!("/security/blocks/{attacker}")))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    assert_eq!(get_from(&client, &benign, attacker).await.status(), 200);
}

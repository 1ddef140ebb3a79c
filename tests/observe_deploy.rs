//! `deploy/`: the Prometheus alert rules and the Grafana dashboard use only metric names that
//! rampart exports (checked against a live `/metrics` scrape after traffic that touches every
//! family they use), the scrape config points at `/metrics`, and `promtool check rules` accepts
//! the rules.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::*;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

/// Every `rampart_*` name in `text`, with the histogram suffixes removed.
fn names_in(text: &str) -> BTreeSet<String> {
    let pattern = regex::Regex::new(r"rampart_[a-z0-9_]+").unwrap();
    pattern
        .find_iter(text)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
                .to_owned()
        })
        .collect()
}

fn exported(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_files_use_only_exported_names() {
    let app = demo_app().await;
    let dead = closed_port();
    let running = start(
        &format!(
            r#"
[store.redis]
url = "{redis}"
key_prefix = "{prefix}"

[rate_limit]
store = "redis"

[[rate_limit.policy]]
name = "p"
limit = 100000
window = "1h"

[[upstream]]
name = "app"
targets = ["{{app}}"]

[[upstream]]
name = "dead"
targets = ["{dead}"]

[upstream.circuit_breaker]
min_requests = 2

[[route]]
name = "denied"
path_prefix = "/denied"
upstream = "app"

[route.ip_rules]
deny = ["127.0.0.1"]

[[route]]
name = "broken"
path_prefix = "/broken"
upstream = "dead"

[[route]]
name = "all"
upstream = "app"
limits = ["p"]

[[alert]]
name = "AlwaysFiring"
condition = "rss_above"
threshold = "1MiB"
"#,
            redis = redis_url(),
            prefix = unique_prefix()
        ),
        app,
    )
    .await;
    let client = client();
    for path in ["/echo", "/echo", "/denied", "/broken", "/broken", "/broken"] {
        client.get(url(&running, path)).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let scrape = metrics_text(&client, &running).await;
    let exported = exported(&scrape);

    let mut used = BTreeSet::new();
    for file in ["alerts.yml", "grafana-dashboard.json", "prometheus.yml"] {
        let text = std::fs::read_to_string(format!("{DEPLOY}/{file}")).unwrap();
        used.extend(names_in(&text));
    }
    assert!(used.len() >= 12, "the deploy files use {used:?}");
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "used in deploy/ but not exported: {missing:?}\nexported: {exported:?}"
    );

    let prometheus = std::fs::read_to_string(format!("{DEPLOY}/prometheus.yml")).unwrap();
    assert!(prometheus.contains("metrics_path: /metrics"));
    assert!(prometheus.contains("- alerts.yml"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DEPLOY}/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 10);
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let output = std::process::Command::new("promtool")
        .args(["check", "rules", &format!("{DEPLOY}/alerts.yml")])
        .output()
        .expect("promtool is installed (apt-get install prometheus; scripts/test does this)");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool: {report}");
    assert!(report.contains("SUCCESS: 7 rules found"), "{report}");
}

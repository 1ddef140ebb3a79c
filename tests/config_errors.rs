//! Bad config files are refused with file:line:column, the key path and what was expected;
//! `rampart check` prints the route table for a good one. Runs the real binary.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::binary;

struct Checked {
    code: i32,
    stdout: String,
    stderr: String,
}

fn check(name: &str, text: &str, env: &[(&str, &str)]) -> (Checked, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let output = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("RAMPART_TEST_UNSET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let checked = Checked {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    };
    (checked, path, dir)
}

/// Asserts exit 1 and exactly these problem lines (after the path prefix).
fn assert_problems(name: &str, text: &str, expected: &[&str]) {
    let (checked, path, _dir) = check(name, text, &[]);
    assert_eq!(checked.code, 1, "stderr: {}", checked.stderr);
    let prefix = format!("  {}:", path.display());
    let lines: Vec<String> = checked
        .stderr
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix).map(str::to_owned))
        .collect();
    assert_eq!(lines, expected, "full stderr:\n{}", checked.stderr);
}

const UPSTREAM: &str = "[[upstream]]\nname = \"app\"\ntargets = [\"127.0.0.1:3000\"]\n";

#[test]
fn unknown_key_is_named_with_its_position_and_the_allowed_keys() {
    assert_problems(
        "unknown.toml",
        &format!("[server]\nlisten = [\"127.0.0.1:8080\"]\nlisten_adress = \"x\"\n{UPSTREAM}"),
        &[
            "3:1: server.listen_adress: unknown field `listen_adress`, expected one of `listen`, `workers`, `tls`, `header_read_timeout`, `request_timeout`, `idle_timeout`, `max_header_bytes`, `max_body_bytes`, `trusted_proxies`, `drain_timeout`, `max_headers`, `max_uri_bytes`, `min_body_rate`, `body_rate_grace`, `https_redirect`",
        ],
    );
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_problems(
        "types.toml",
        &format!("{UPSTREAM}connect_timeout = 5\n"),
        &[
            "4:1: upstream[0].connect_timeout: expected a duration such as \"30s\", \"250ms\" or \"5m\"",
        ],
    );
    assert_problems(
        "size.toml",
        "[server]\nmax_body_bytes = \"lots\"\n",
        &[
            "2:1: server.max_body_bytes: invalid value: string \"lots\", expected a byte size such as 2097152, \"2MB\" or \"16KiB\"",
        ],
    );
    assert_problems(
        "list.toml",
        "[server]\nlisten = \"127.0.0.1:8080\"\n",
        &["2:1: server.listen: invalid type: string \"127.0.0.1:8080\", expected a sequence"],
    );
}

#[test]
fn syntax_errors_point_at_the_text() {
    let (checked, _, _dir) = check(
        "syntax.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"\n",
        &[],
    );
    assert_eq!(checked.code, 1);
    assert!(
        checked.stderr.contains("syntax.toml:2:"),
        "{}",
        checked.stderr
    );
    assert!(checked.stderr.contains("(syntax)"), "{}", checked.stderr);
}

#[test]
fn relations_and_addresses_are_all_reported_together() {
    let text = r#"[server]
listen = ["127.0.0.1:99999", "0.0.0.0:9901"]
trusted_proxies = ["10.0.0.0/33"]

[admin]
listen = "0.0.0.0:9901"

[[upstream]]
name = "app"
targets = ["127.0.0.1:3000"]

[[upstream]]
name = "app"
targets = ["no-port"]

[[route]]
name = "all"
upstream = "app"

[[route]]
name = "api"
path_prefix = "/api"
upstream = "app"

[[route]]
name = "ghost"
host = "api.example.com"
upstream = "missing"
"#;
    assert_problems(
        "relations.toml",
        text,
        &[
            "2:11: server.listen[0]: expected an IP address with a port such as \"127.0.0.1:8080\" or \"[::]:8080\", got \"127.0.0.1:99999\"",
            "3:20: server.trusted_proxies[0]: expected an IP address or CIDR such as \"10.0.0.0/8\", got \"10.0.0.0/33\"",
            "6:1: admin.listen: address 0.0.0.0:9901 is already used by `server.listen[1]`",
            "13:1: upstream[1].name: duplicate upstream name `app` (first defined at upstream[0])",
            "14:12: upstream[1].targets[0]: expected host:port such as \"127.0.0.1:3000\" or \"app.internal:8080\", got \"no-port\"",
            "20:1: route[1]: route `api` can never match: route `all` (route[0]) comes first and matches every request it would",
            "28:1: route[2].upstream: unknown upstream `missing`: expected one of `app`",
        ],
    );
}

#[test]
fn unset_environment_variables_are_named() {
    assert_problems(
        "env.toml",
        &format!("[server]\nlisten = [\"${{RAMPART_TEST_UNSET}}\"]\n{UPSTREAM}"),
        &[
            "2:11: server.listen[0]: environment variable `RAMPART_TEST_UNSET` is not set (write `${RAMPART_TEST_UNSET:-default}` to give a default)",
        ],
    );
    let (checked, _, _dir) = check(
        "env-ok.toml",
        &format!(
            "[server]\nlisten = [\"${{RAMPART_TEST_LISTEN}}\"]\n[admin]\nlisten = \"${{RAMPART_TEST_ADMIN:-127.0.0.1:9999}}\"\n{UPSTREAM}"
        ),
        &[("RAMPART_TEST_LISTEN", "127.0.0.1:18080")],
    );
    assert_eq!(checked.code, 0, "{}", checked.stderr);
    assert!(checked.stdout.contains("listen: 127.0.0.1:18080"));
    assert!(checked.stdout.contains("admin: 127.0.0.1:9999"));
}

#[test]
fn route_options_that_conflict_are_refused() {
    let text = format!(
        "{UPSTREAM}[[route]]\nname = \"a\"\npath = \"/x\"\npath_prefix = \"/y\"\nupstream = \"app\"\n[[route]]\nname = \"b\"\npath_prefix = \"/b\"\nstrip_prefix = true\nrewrite = \"/c\"\nupstream = \"app\"\n[[route]]\nname = \"bad name!\"\npath_prefix = \"nope\"\nmethods = [\"FETCH\"]\nupstream = \"app\"\n"
    );
    assert_problems(
        "conflicts.toml",
        &text,
        &[
            "6:1: route[0].path: set either `path_prefix` or `path`, not both",
            "13:1: route[1].rewrite: set either `strip_prefix` or `rewrite`, not both",
            "16:1: route[2].name: expected a name of 1-64 letters, digits, `-`, `_` or `.`, got \"bad name!\"",
            "17:1: route[2].path_prefix: expected a path starting with `/` without query or spaces, got \"nope\"",
            "18:12: route[2].methods[0]: expected an HTTP method such as \"GET\" or \"POST\", got \"FETCH\"",
        ],
    );
}

#[test]
fn missing_file_is_reported() {
    let output = Command::new(binary())
        .args(["check", "--config", "/nonexistent/rampart.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/rampart.toml:0:0: (file): cannot read the config file"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nport = 80\n").unwrap();
    let output = Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("bad.toml:2:1: server.port: unknown field `port`"),
        "{stderr}"
    );
}

#[test]
fn check_says_where_logs_traces_errors_and_alerts_go_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(
        &path,
        r#"
[log]
level = "warn"
access_log_sample = 0.25

[tracing]
endpoint = "http://otel-user:otel-pass@127.0.0.1:4318/v1/traces"
sample_ratio = 0.1

[error_reporting]
dsn = "https://publickey123@sentry.example.com/42"
environment = "staging"

[[notifier]]
name = "ops"
kind = "command"
command = ["true"]

[[alert]]
name = "errors"
condition = "error_rate"
threshold = "5%"
window = "5m"
for = "5m"
notify = ["ops"]

[[upstream]]
name = "app"
targets = ["127.0.0.1:3000"]

[[route]]
name = "all"
path_prefix = "/"
upstream = "app"
"#,
    )
    .unwrap();
    let output = Command::new(binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in:\n{stdout}"))
            .to_owned()
    };
    assert_eq!(
        line("logs:"),
        "logs: json to stdout at \"warn\", access log 25% of requests below 400, every error, files none"
    );
    assert_eq!(
        line("tracing:"),
        "tracing: OTLP to http://127.0.0.1:4318/v1/traces, sampling 10%"
    );
    assert_eq!(
        line("error reporting:"),
        "error reporting: Sentry at sentry.example.com, environment staging, sampling 100%"
    );
    assert_eq!(line("alerts:"), "alerts: 1 rules, 1 notifiers");
    for secret in ["otel-user", "otel-pass", "publickey123"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
}

#[test]
fn a_valid_config_prints_the_route_table() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo.toml");
    let output = Command::new(binary())
        .args(["check", "--config", examples])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("configuration is valid"));
    let header = stdout.lines().find(|l| l.starts_with('#')).unwrap();
    assert!(header.contains("ROUTE") && header.contains("UPSTREAM"));
    let app_row = stdout.lines().find(|l| l.contains(" app ")).unwrap();
    assert!(
        app_row.contains("/app*") && app_row.contains("without /app"),
        "{app_row}"
    );

    // The secure example: each route's checks in the SECURITY column.
    let secure = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/secure.toml");
    let output = Command::new(binary())
        .args(["check", "--config", secure])
        .env(
            "RAMPART_JWT_SECRET",
            "a-secret-that-is-long-enough-for-hs256!!",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let api_row = stdout.lines().find(|l| l.contains(" api ")).unwrap();
    assert!(
        api_row.contains("auth=users attack=block cors"),
        "{api_row}"
    );
    assert!(
        api_row.ends_with(" -"),
        "no limits on this route: {api_row}"
    );
    let login_row = stdout.lines().find(|l| l.contains(" login ")).unwrap();
    assert!(login_row.contains("validate"), "{login_row}");

    // The limits example: each route's policies in the LIMITS column.
    let limits = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/limits.toml");
    let output = Command::new(binary())
        .args(["check", "--config", limits])
        .env(
            "RAMPART_JWT_SECRET",
            "a-secret-that-is-long-enough-for-hs256!!",
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let login_row = stdout.lines().find(|l| l.contains(" login ")).unwrap();
    assert!(login_row.ends_with("login 5/15m by ip"), "{login_row}");
    let sensitive_row = stdout.lines().find(|l| l.contains(" sensitive ")).unwrap();
    assert!(
        sensitive_row.ends_with("sensitive 20/1m by user; api 100/1m by user"),
        "{sensitive_row}"
    );
}

#[test]
fn unusable_tls_files_are_refused_with_the_key_that_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let tls = |cert: &str, key: &str| {
        format!(
            "[server]\nlisten = []\n[server.tls]\nlisten = [\"127.0.0.1:8443\"]\ncert = \"{cert}\"\nkey = \"{key}\"\n{UPSTREAM}"
        )
    };
    // Missing certificate file, resolved relative to the config file's folder.
    let (missing, path, _dir) = check("tls.toml", &tls("missing.pem", "missing-key.pem"), &[]);
    assert_eq!(missing.code, 1);
    let expected = format!(
        "tls.toml:5:1: server.tls.cert: cannot read a PEM certificate chain from {}",
        path.parent().unwrap().join("missing.pem").display()
    );
    assert!(missing.stderr.contains(&expected), "{}", missing.stderr);

    // A certificate whose key belongs to another certificate.
    let first = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let second = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, first.cert.pem()).unwrap();
    std::fs::write(&key, second.signing_key.serialize_pem()).unwrap();
    let (mismatched, _, _dir2) = check(
        "tls-pair.toml",
        &tls(&cert.display().to_string(), &key.display().to_string()),
        &[],
    );
    assert_eq!(mismatched.code, 1);
    assert!(
        mismatched.stderr.contains(
            "tls-pair.toml:6:1: server.tls.key: certificate and key do not form a usable pair"
        ),
        "{}",
        mismatched.stderr
    );
}

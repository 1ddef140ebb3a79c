//! Subcommands: `serve`, `check`, `demo`. Each loads and validates config first and refuses to
//! start on any error, printing every problem with file:line:column, key and what was expected.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, ConfigErrors, PathMatch, Rewrite};
use crate::observe::logging::{self, LogHandle};
use crate::server::{self, Running, reload};

#[derive(Debug, Parser)]
#[command(
    name = "rampart",
    version,
    about = "The production layer in front of an AI-backed web service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy with a config file.
    Serve(ServeArgs),
    /// Validate a config file and print its route table; exit 0 when valid, 1 otherwise.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the built-in demo app on 127.0.0.1:3000 with rampart in front of it.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, short)]
    pub config: PathBuf,
    /// Reload when the config file changes (SIGHUP always reloads).
    #[arg(long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Config to run in front of the demo app (default: the built-in examples/demo.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Run only the demo app, without rampart.
    #[arg(long)]
    pub app_only: bool,
    /// Where the demo app listens.
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    #[arg(long)]
    pub watch: bool,
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { config } => check(&config),
        Command::Serve(args) => match load_or_report(&args.config) {
            Some(config) => serve(config, Some(args.config), args.watch),
            None => ExitCode::FAILURE,
        },
        Command::Demo(args) => demo(args),
    }
}

fn load_or_report(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(errors) => {
            report(&errors);
            None
        }
    }
}

fn report(errors: &ConfigErrors) {
    eprintln!(
        "error: invalid configuration ({} problem{})",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    for error in &errors.0 {
        eprintln!("  {error}");
    }
}

fn check(path: &Path) -> ExitCode {
    let Some(config) = load_or_report(path) else {
        return ExitCode::FAILURE;
    };
    println!("{}: configuration is valid", path.display());
    print!("{}", describe(&config));
    ExitCode::SUCCESS
}

/// Where logs, traces, error reports and alerts go, one line each, as `check` prints them.
/// Secrets stay out: a trace collector is shown without its credentials, a DSN by its host.
fn observability_summary(config: &Config) -> String {
    let log = &config.log;
    let format = match log.format {
        crate::config::LogFormat::Json => "json",
        crate::config::LogFormat::Pretty => "pretty",
    };
    let access = match (log.access_log, log.access_log_sample) {
        (false, _) => "off".to_owned(),
        (true, sample) if sample >= 1.0 => "every request".to_owned(),
        (true, sample) => format!("{}% of requests below 400, every error", sample * 100.0),
    };
    let files = log.file.as_ref().map_or_else(
        || "none".to_owned(),
        |file| {
            format!(
                "{} (combined.log, error.log; {} x {})",
                // `components` drops the `.` of `base/./logs`.
                file.directory.components().collect::<PathBuf>().display(),
                humansize(file.max_size),
                file.max_files
            )
        },
    );
    let tracing = config.tracing.as_ref().map_or_else(
        || "off".to_owned(),
        |tracing| {
            let mut endpoint = tracing.endpoint.clone();
            let _ = endpoint.set_username("");
            let _ = endpoint.set_password(None);
            format!(
                "OTLP to {endpoint}, sampling {}%",
                tracing.sample_ratio * 100.0
            )
        },
    );
    let errors = config.error_reporting.as_ref().map_or_else(
        || "off".to_owned(),
        |errors| {
            format!(
                "Sentry at {}, environment {}, sampling {}%",
                errors.dsn.host(),
                errors.environment,
                errors.sample_rate * 100.0
            )
        },
    );
    let alerts = &config.alerts;
    format!(
        "logs: {format} to stdout at \"{}\", access log {access}, files {files}\n\
         tracing: {tracing}\n\
         error reporting: {errors}\n\
         alerts: {} rules, {} notifiers\n",
        log.level,
        alerts.rules.len(),
        alerts.notifiers.len()
    )
}

/// Bytes in the largest whole unit: `5 MB`, `512 KB`, `100 B`.
fn humansize(bytes: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GB"), (1 << 20, "MB"), (1 << 10, "KB")];
    UNITS
        .iter()
        .find(|(size, _)| bytes >= *size && bytes.is_multiple_of(*size))
        .map_or_else(
            || format!("{bytes} B"),
            |(size, unit)| format!("{} {unit}", bytes / size),
        )
}

/// The listeners and the route table, as `check` prints them.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let listen: Vec<String> = config
        .server
        .listen
        .iter()
        .map(ToString::to_string)
        .collect();
    out.push_str(&format!("listen: {}\n", listen.join(", ")));
    if let Some(tls) = &config.server.tls {
        let tls_listen: Vec<String> = tls.listen.iter().map(ToString::to_string).collect();
        out.push_str(&format!("listen (tls): {}\n", tls_listen.join(", ")));
    }
    out.push_str(&format!("admin: {}\n", config.admin.listen));
    out.push_str(&observability_summary(config));
    let mut rows = vec![[
        "#".to_owned(),
        "ROUTE".into(),
        "HOST".into(),
        "MATCH".into(),
        "METHODS".into(),
        "UPSTREAM".into(),
        "FORWARDED PATH".into(),
        "TIMEOUT".into(),
        "SECURITY".into(),
        "LIMITS".into(),
    ]];
    for (i, route) in config.routes.iter().enumerate() {
        let upstream = &config.upstreams[route.upstream];
        let forwarded = match (&route.rewrite, &route.path) {
            (Rewrite::None, _) => "as is".to_owned(),
            (Rewrite::StripPrefix, PathMatch::Prefix(prefix)) => format!("without {prefix}"),
            (Rewrite::StripPrefix, PathMatch::Exact(_)) => "/".to_owned(),
            (Rewrite::Replace(with), matched) => format!("{} -> {with}", matched.as_str()),
        };
        rows.push([
            i.to_string(),
            route.name.clone(),
            route.host.as_ref().map_or("*".into(), ToString::to_string),
            route.path.to_string(),
            route.methods.as_ref().map_or("*".into(), |m| {
                m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
            }),
            format!(
                "{} ({})",
                upstream.name,
                upstream
                    .targets
                    .iter()
                    .map(|t| t.authority.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            forwarded,
            humantime::format_duration(route.timeout).to_string(),
            security_summary(config, route),
            limits_summary(route),
        ]);
    }
    let widths: Vec<usize> = (0..10)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The checks a route runs, in a few words: `auth=users attack=block cors csrf validate`.
fn security_summary(config: &Config, route: &crate::config::RouteConfig) -> String {
    let security = &route.security;
    let mut parts = Vec::new();
    if !security.auth.is_empty() {
        let names: Vec<&str> = security
            .auth
            .iter()
            .map(|&i| config.auth[i].name())
            .collect();
        parts.push(format!("auth={}", names.join("|")));
    }
    if let Some(filter) = &security.attack_filter {
        parts.push(format!("attack={:?}", filter.mode).to_ascii_lowercase());
    }
    if security.cors.is_some() {
        parts.push("cors".into());
    }
    if security.csrf {
        parts.push("csrf".into());
    }
    if !security.validations.is_empty() {
        parts.push("validate".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

/// The control runtime: signals, reloads, the admin listener, the demo app. Requests are served
/// on the server's own worker threads.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("rampart")
        .build()
        .expect("the tokio runtime starts")
}

/// Installs logging; prints why and returns `None` when the log files cannot be opened.
fn init_logs(config: &Config) -> Option<LogHandle> {
    match logging::init(&config.log) {
        Ok(log) => Some(log),
        Err(error) => {
            let directory = config
                .log
                .file
                .as_ref()
                .map(|f| f.directory.display().to_string());
            eprintln!(
                "error: cannot open the log files in {}: {error}",
                directory.unwrap_or_default()
            );
            None
        }
    }
}

fn serve(config: Config, path: Option<PathBuf>, watch: bool) -> ExitCode {
    let Some(log) = init_logs(&config) else {
        return ExitCode::FAILURE;
    };
    runtime().block_on(async move {
        let running = match server::start(config).await {
            Ok(running) => running,
            Err(error) => {
                tracing::error!(%error, "cannot start");
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        run_until_signal(running, path.as_deref(), watch, &log).await
    })
}

/// Serves until SIGTERM or SIGINT, reloading on SIGHUP and (with `watch`) on file changes.
async fn run_until_signal(
    running: Running,
    path: Option<&Path>,
    watch: bool,
    log: &LogHandle,
) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let (_watcher, mut changes) = match (watch, path) {
        (true, Some(path)) => match reload::watch_file(path) {
            Ok((watcher, changes)) => (Some(watcher), Some(changes)),
            Err(error) => {
                tracing::error!(%error, "cannot watch the config file; reload with SIGHUP instead");
                (None, None)
            }
        },
        _ => (None, None),
    };
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => match path {
                Some(path) => { reload::reload_from_file(&running, path, Some(log)).await; }
                None => tracing::warn!("SIGHUP ignored: the built-in config has no file to reload"),
            },
            Some(()) = async { match changes.as_mut() { Some(c) => c.recv().await, None => std::future::pending().await } } => {
                if let Some(path) = path {
                    reload::reload_from_file(&running, path, Some(log)).await;
                }
            }
        }
    }
    tracing::info!("shutdown signal received: draining");
    let report = running.shutdown().await;
    tracing::info!(cut_connections = report.cut_connections, "stopped");
    ExitCode::SUCCESS
}

fn demo(args: DemoArgs) -> ExitCode {
    if args.app_only {
        return runtime().block_on(async move {
            let listener = match tokio::net::TcpListener::bind(args.listen).await {
                Ok(listener) => listener,
                Err(error) => {
                    eprintln!("error: cannot listen on {}: {error}", args.listen);
                    return ExitCode::FAILURE;
                }
            };
            println!(
                "demo app listening on http://{}",
                listener.local_addr().unwrap_or(args.listen)
            );
            tokio::select! {
                served = crate::demo::serve(listener) => if let Err(error) = served {
                    eprintln!("error: demo app failed: {error}");
                    return ExitCode::FAILURE;
                },
                _ = tokio::signal::ctrl_c() => {}
            }
            ExitCode::SUCCESS
        });
    }
    let loaded = match &args.config {
        Some(path) => config::load(path),
        None => config::parse(
            crate::DEMO_CONFIG,
            "examples/demo.toml (built in)",
            Path::new("."),
            &|var| std::env::var(var).ok(),
        ),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            report(&errors);
            return ExitCode::FAILURE;
        }
    };
    let Some(log) = init_logs(&config) else {
        return ExitCode::FAILURE;
    };
    runtime().block_on(async move {
        let app = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "error: cannot start the demo app on {}: {error}",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(async move {
            if let Err(error) = crate::demo::serve(app).await {
                tracing::error!(%error, "demo app failed");
            }
        });
        let running = match server::start(config).await {
            Ok(running) => running,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_demo_banner(&running, args.listen);
        run_until_signal(running, args.config.as_deref(), args.watch, &log).await
    })
}

fn print_demo_banner(running: &Running, app: SocketAddr) {
    let proxy = running
        .http_addrs
        .first()
        .map_or_else(|| "?".to_owned(), ToString::to_string);
    let admin = running.admin_addr;
    eprintln!(
        "\nrampart demo\n  demo app   http://{app}\n  rampart    http://{proxy}\n  admin      http://{admin}\n\nTry:\n  \
curl -i http://{proxy}/api/items\n  \
curl -i http://{proxy}/api/items/1\n  \
curl -i -X POST http://{proxy}/api/items -H 'content-type: application/json' -d '{{\"name\":\"lamp\"}}'\n  \
curl -N http://{proxy}/events\n  \
curl -N http://{proxy}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"demo\",\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":\"hello there\"}}]}}'\n  \
curl -i 'http://{proxy}/slow?ms=200'\n  \
curl -i http://{proxy}/app/stats\n  \
curl -s http://{admin}/health\n  \
curl -s http://{admin}/metrics | grep rampart_http\n\nCtrl-C stops both.\n"
    );
}

/// `login 5/15m ip` for each of the route's rate-limit policies, or `-`.
fn limits_summary(route: &crate::config::model::RouteConfig) -> String {
    if route.limits.is_empty() {
        return "-".into();
    }
    route
        .limits
        .iter()
        .map(|p| {
            let window =
                humantime::format_duration(std::time::Duration::from_millis(p.limit.window_ms));
            let parts: Vec<String> = p
                .key
                .iter()
                .map(|k| match k {
                    crate::ratelimit::policy::KeyPart::Ip => "ip".to_owned(),
                    crate::ratelimit::policy::KeyPart::User => "user".to_owned(),
                    crate::ratelimit::policy::KeyPart::ApiKey => "api_key".to_owned(),
                    crate::ratelimit::policy::KeyPart::Route => "route".to_owned(),
                    crate::ratelimit::policy::KeyPart::Method => "method".to_owned(),
                    crate::ratelimit::policy::KeyPart::Header(h) => format!("header:{h}"),
                })
                .collect();
            format!(
                "{} {}/{} by {}",
                p.name,
                p.limit.limit,
                window,
                parts.join("+")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::humansize;

    #[test]
    fn sizes_are_shown_in_their_largest_whole_unit() {
        assert_eq!(humansize(5 * 1024 * 1024), "5 MB");
        assert_eq!(humansize(512 * 1024), "512 KB");
        assert_eq!(humansize(2 << 30), "2 GB");
        assert_eq!(humansize(1536 * 1024), "1536 KB");
        assert_eq!(humansize(100), "100 B");
        assert_eq!(humansize(0), "0 B");
    }
}

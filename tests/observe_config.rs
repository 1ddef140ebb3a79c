//! Bad `[log]` observability keys are refused with file, line, key and what was expected.

mod support;

use support::*;

#[test]
fn bad_log_settings_are_refused_with_their_place() {
    let problems = config_problems(
        r#"
[log]
levels = { "rampart::access" = "loud", "bad module!" = "info" }
access_log_sample = 1.5

[log.file]
directory = "logs"
max_size = "10"
max_files = 0
"#,
    )
    .to_string();
    for expected in [
        "test.toml:3:12: log.levels.rampart::access: expected one of trace, debug, info, warn, error, off, got \"loud\"",
        "log.levels.bad module!: expected a module path such as \"rampart::access\"",
        "test.toml:4:1: log.access_log_sample: expected a fraction from 0 to 1",
        "test.toml:8:1: log.file.max_size: expected at least 1KiB, got 10",
        "test.toml:9:1: log.file.max_files: expected 1 to 1000 files, got 0",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

#[test]
fn per_module_levels_join_the_filter() {
    let config = config(
        "[log]\nlevel = \"info\"\nlevels = { \"rampart::access\" = \"WARN\", \"hyper\" = \"error\" }\n[log.file]\ndirectory = \"/tmp/rampart-logs\"\n",
        closed_port(),
    );
    assert_eq!(config.log.level, "info,hyper=error,rampart::access=warn");
    let file = config.log.file.unwrap();
    assert_eq!((file.max_size, file.max_files), (5 * 1024 * 1024, 5));
}

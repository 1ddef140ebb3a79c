//! Process statistics read from `/proc/self` when asked (on each `/metrics` scrape, each
//! `/health/metrics` call and each alert evaluation): CPU seconds, resident memory and open file
//! descriptors. Nothing runs per request. Rendered as Prometheus text here because CPU seconds are
//! a fractional counter, which the `metrics` crate's integer counters cannot carry.

use std::fmt::Write as _;

pub const PROCESS_CPU_SECONDS_TOTAL: &str = "rampart_process_cpu_seconds_total";
pub const PROCESS_RESIDENT_MEMORY_BYTES: &str = "rampart_process_resident_memory_bytes";
pub const PROCESS_OPEN_FDS: &str = "rampart_process_open_fds";
pub const PROCESS_START_TIME_SECONDS: &str = "rampart_process_start_time_seconds";

/// Every name this module exports.
pub const NAMES: &[&str] = &[
    PROCESS_CPU_SECONDS_TOTAL,
    PROCESS_RESIDENT_MEMORY_BYTES,
    PROCESS_OPEN_FDS,
    PROCESS_START_TIME_SECONDS,
];

/// One reading; a field is `None` where `/proc` is unavailable (not Linux).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ProcessSample {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// Seconds since the Unix epoch at which the process started.
    pub start_time_seconds: Option<f64>,
}

/// Reads the current values.
pub fn sample() -> ProcessSample {
    let stat = std::fs::read_to_string("/proc/self/stat").ok();
    let fields = stat.as_deref().and_then(stat_fields);
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu_seconds = fields.map(|f| (f.utime + f.stime) as f64 / ticks);
    let start_time_seconds = fields.and_then(|f| Some(boot_time()? + f.starttime as f64 / ticks));
    let resident_memory_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| vm_rss_bytes(&status));
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    ProcessSample {
        cpu_seconds,
        resident_memory_bytes,
        open_fds,
        start_time_seconds,
    }
}

/// The sample in Prometheus text format, to append to the recorder's rendering.
pub fn render(sample: &ProcessSample) -> String {
    let mut out = String::with_capacity(512);
    let mut metric = |name: &str, kind: &str, help: &str, value: Option<String>| {
        if let Some(value) = value {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            );
        }
    };
    metric(
        PROCESS_CPU_SECONDS_TOTAL,
        "counter",
        "User and system CPU time spent by the process, in seconds.",
        sample.cpu_seconds.map(|v| v.to_string()),
    );
    metric(
        PROCESS_RESIDENT_MEMORY_BYTES,
        "gauge",
        "Resident memory of the process, in bytes.",
        sample.resident_memory_bytes.map(|v| v.to_string()),
    );
    metric(
        PROCESS_OPEN_FDS,
        "gauge",
        "Open file descriptors of the process.",
        sample.open_fds.map(|v| v.to_string()),
    );
    metric(
        PROCESS_START_TIME_SECONDS,
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        sample.start_time_seconds.map(|v| v.to_string()),
    );
    out
}

#[derive(Debug, Clone, Copy)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Fields 14, 15 and 22 of `/proc/self/stat` (after the parenthesised command name, which may
/// hold spaces).
fn stat_fields(stat: &str) -> Option<StatFields> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
    })
}

fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194304 10 0 0 0 250 50 0 0 20 0 4 0 1234 1000 100 0";
        let fields = stat_fields(stat).unwrap();
        assert_eq!(
            (fields.utime, fields.stime, fields.starttime),
            (250, 50, 1234)
        );
        assert_eq!(
            vm_rss_bytes("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
    }

    #[test]
    fn reads_this_process() {
        let sample = sample();
        assert!(sample.resident_memory_bytes.unwrap() > 1024 * 1024);
        assert!(sample.open_fds.unwrap() >= 3);
        assert!(sample.cpu_seconds.unwrap() >= 0.0);
        let text = render(&sample);
        assert!(text.contains("# TYPE rampart_process_cpu_seconds_total counter"));
        assert!(text.contains("rampart_process_open_fds "));
    }
}

//! Logs: one JSON object per line on stderr (`level`, `msg`, `logger`), which shell-operator
//! merges into its own log records. Level from `LOG_LEVEL` (shell-operator's `debug`, `info`,
//! `error`) or `RUST_LOG`; default `info`.

use std::io::Write;

pub fn init() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("LOG_LEVEL").ok().filter(|s| !s.is_empty()))
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_else(|| "info".to_string());
    let filter = match level.as_str() {
        "error" | "warn" | "info" | "debug" | "trace" | "off" => level,
        "warning" => "warn".to_string(),
        "fatal" => "error".to_string(),
        _ => "info".to_string(),
    };
    env_logger::Builder::new()
        .parse_filters(&filter)
        .target(env_logger::Target::Stderr)
        .format(|buf, record| {
            let line = serde_json::json!({
                "level": record.level().as_str().to_ascii_lowercase(),
                "msg": record.args().to_string(),
                "logger": record.target(),
            });
            writeln!(buf, "{line}")
        })
        .init();
}

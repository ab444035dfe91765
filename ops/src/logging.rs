//! Logging set-up shared by the agent and the collector: text (human) or JSON (one object per
//! line, for log pipelines), colour only when stderr is a terminal (journald and `kubectl logs`
//! get plain text), and a `LINEAGE_LOG` filter that is refused when it does not parse, rather
//! than silently replaced by the default.

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

/// The environment variable holding the filter (`info`, `debug`, `lineage_agent=debug,warn`).
pub const FILTER_VAR: &str = "LINEAGE_LOG";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = LogError;
    fn from_str(s: &str) -> Result<Self, LogError> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(LogError::Format(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("log format {0:?}: use \"text\" or \"json\"")]
    Format(String),
    #[error(
        "{FILTER_VAR}={value:?}: {reason}; use a level (error, warn, info, debug, trace, off), \
         target=level, or a comma-separated list of those (e.g. \"info,lineage_agent=debug\")"
    )]
    Filter { value: String, reason: String },
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

fn is_level(s: &str) -> bool {
    LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s))
}

/// Parses a filter strictly: every directive must name a level. `EnvFilter` alone would take
/// a misspelt level (`debugg`) as a target name and quietly log almost nothing.
pub fn parse_filter(value: &str) -> Result<EnvFilter, LogError> {
    let bad = |reason: String| LogError::Filter {
        value: value.to_owned(),
        reason,
    };
    for directive in value.split(',').map(str::trim) {
        if directive.is_empty() {
            continue;
        }
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !is_level(level) {
            return Err(bad(format!("{level:?} is not a log level")));
        }
    }
    EnvFilter::try_new(value).map_err(|e| bad(e.to_string()))
}

/// The filter from `LINEAGE_LOG`, `info` when it is unset or empty.
pub fn filter_from_env() -> Result<EnvFilter, LogError> {
    match std::env::var(FILTER_VAR) {
        Ok(v) if !v.trim().is_empty() => parse_filter(&v),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new("info")),
        Err(std::env::VarError::NotUnicode(v)) => Err(LogError::Filter {
            value: v.to_string_lossy().into_owned(),
            reason: "not valid UTF-8".into(),
        }),
    }
}

/// Installs the global subscriber writing to stderr.
pub fn init(format: LogFormat) -> Result<(), LogError> {
    let filter = filter_from_env()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_ansi(false)
            .init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_strict() {
        for ok in [
            "info",
            "DEBUG",
            "warn,lineage_agent=debug",
            "lineage_agent::runtime=trace",
            "off",
        ] {
            parse_filter(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "verbose",
            "debugg",
            "info,lineage_agent=loud",
            "lineage_agent",
        ] {
            let e = parse_filter(bad).unwrap_err().to_string();
            assert!(
                e.starts_with("LINEAGE_LOG=") && e.contains("not a log level"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert!("xml".parse::<LogFormat>().is_err());
    }
}

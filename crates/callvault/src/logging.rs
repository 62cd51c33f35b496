//! Log output: text for people, JSON for collectors.
//!
//! Logs go to stderr so that stdout stays free for command output that
//! scripts read. `RUST_LOG`, when set, overrides `[log] level`.

use std::io::IsTerminal as _;

use anyhow::{anyhow, Context as _};
use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// Installs the global subscriber for the process.
pub(crate) fn init(log: &Log) -> anyhow::Result<()> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(log)?)
        .with_writer(std::io::stderr);

    let installed = match log.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|error| anyhow!(error).context("cannot install the logger"))
}

fn filter(log: &Log) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::builder()
            .parse(&directives)
            .context("RUST_LOG: not a valid filter"),
        _ => EnvFilter::builder()
            .parse(&log.level)
            .context("log.level: not a valid filter"),
    }
}

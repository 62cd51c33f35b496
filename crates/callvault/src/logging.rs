//! Log output: text for people, JSON for collectors.
//!
//! Logs go to stderr so that stdout stays free for command output that
//! scripts read. `RUST_LOG`, when set, overrides `[log] level`. The level
//! can change while the daemon runs: SIGHUP re-reads `[log] level` and
//! applies it through a reloadable filter, without a restart.

use std::io::IsTerminal as _;
use std::sync::OnceLock;

use anyhow::{anyhow, Context as _};
use tracing::info;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{reload, EnvFilter, Layer as _, Registry};

use crate::config::{Log, LogFormat, Source};

/// The filter of the process's one subscriber, for changing it at run time.
static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber for the process.
pub(crate) fn init(log: &Log) -> anyhow::Result<()> {
    let (filter, handle) = reload::Layer::new(filter(log)?);
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match log.format {
        LogFormat::Text => output.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Json => output.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .map_err(|error| anyhow!(error).context("cannot install the logger"))?;
    // Only the first subscriber is ever installed, so only one handle is kept.
    let _ = FILTER.set(handle);
    Ok(())
}

/// Applies `[log] level` from the config file again (SIGHUP).
///
/// A config that no longer loads, or a `RUST_LOG` in the environment, leaves
/// the level as it was, and the log says why.
pub(crate) fn reload(source: &Source) {
    let Some(handle) = FILTER.get() else {
        return;
    };
    if env_directives().is_some() {
        info!("log level not reloaded: RUST_LOG is set and takes precedence");
        return;
    }
    let level = source.load().map(|config| config.log.level);
    let applied = level.and_then(|level| {
        let filter = EnvFilter::builder().parse(&level)?;
        handle.reload(filter)?;
        Ok(level)
    });
    match applied {
        Ok(level) => info!(level, "log level reloaded"),
        Err(error) => tracing::warn!(
            error = format!("{error:#}"),
            "the log level was not reloaded; the level in force stays"
        ),
    }
}

fn filter(log: &Log) -> anyhow::Result<EnvFilter> {
    match env_directives() {
        Some(directives) => EnvFilter::builder()
            .parse(&directives)
            .context("RUST_LOG: not a valid filter"),
        None => EnvFilter::builder()
            .parse(&log.level)
            .context("log.level: not a valid filter"),
    }
}

/// `RUST_LOG`, unless unset or blank.
fn env_directives() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|directives| !directives.trim().is_empty())
}

//! Background work of the daemon: retention and watching the disk.
//!
//! Retention runs at start and then every day; free space is sampled every
//! half minute. Both do their file work on tokio's blocking threads, so that
//! neither ever takes a thread the relay is waiting for, and both only count
//! into [`Housekeeping`], which the metrics endpoint reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use callvault_store::audit::AuditAction;
use callvault_store::file::unix_ms_now;
use callvault_store::retention::PurgeMode;
use callvault_store::{RecordingId, Store};
use tracing::{error, info, warn};

use crate::tasks::Tasks;

use crate::config::Config;
use crate::operator::Operator;

/// How often retention deletes what has expired.
const RETENTION_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the data directory's free space is sampled.
const DISK_INTERVAL: Duration = Duration::from_secs(30);

const BYTES_PER_MB: u64 = 1024 * 1024;

/// What retention and the disk watch have seen, for metrics.
#[derive(Debug, Default)]
pub(crate) struct Housekeeping {
    pub(crate) retention_deleted: AtomicU64,
    pub(crate) retention_failed: AtomicU64,
    /// When retention last finished, in Unix milliseconds; 0 before.
    pub(crate) retention_last_run_ms: AtomicU64,
    /// The last sample of the data directory's available space.
    pub(crate) free_bytes: AtomicU64,
    /// `[storage] min_free_mb` in bytes; 0 when the warning is off.
    pub(crate) min_free_bytes: u64,
}

/// Starts retention and the disk watch.
pub(crate) fn start(config: &Config, store: Arc<Store>) -> (Arc<Housekeeping>, Tasks) {
    let state = Arc::new(Housekeeping {
        min_free_bytes: config.storage.min_free_mb.saturating_mul(BYTES_PER_MB),
        ..Housekeeping::default()
    });
    let retention = Retention {
        config: config.clone(),
        store,
        state: Arc::clone(&state),
    };
    let disk = watch_disk(config.storage.data_dir.clone(), Arc::clone(&state));
    let tasks = Tasks::from([tokio::spawn(retention.run()), tokio::spawn(disk)]);
    (state, tasks)
}

/// What a retention run needs.
struct Retention {
    config: Config,
    store: Arc<Store>,
    state: Arc<Housekeeping>,
}

impl Retention {
    async fn run(self) {
        let this = Arc::new(self);
        let mut ticker = tokio::time::interval(RETENTION_INTERVAL);
        loop {
            ticker.tick().await;
            let run = Arc::clone(&this);
            if let Err(error) = tokio::task::spawn_blocking(move || run.purge()).await {
                error!(%error, "the retention run ended abnormally");
            }
        }
    }

    /// Deletes what has expired and audits each deletion, as `callvault purge` does.
    fn purge(&self) {
        let months = self.config.storage.retention_months;
        let report = match self.store.purge(unix_ms_now(), months, PurgeMode::Delete) {
            Ok(report) => report,
            Err(error) => {
                warn!(%error, "retention could not run; expired recordings are kept until it can");
                return;
            }
        };
        self.audit_deletions(&report.deleted, months);
        let count = |items: usize| u64::try_from(items).unwrap_or(u64::MAX);
        let state = &self.state;
        state
            .retention_deleted
            .fetch_add(count(report.deleted.len()), Ordering::Relaxed);
        state
            .retention_failed
            .fetch_add(count(report.failed.len()), Ordering::Relaxed);
        let now = u64::try_from(unix_ms_now()).unwrap_or(0);
        state.retention_last_run_ms.store(now, Ordering::Relaxed);
        // Last, once the metrics show the run.
        info!(
            deleted = report.deleted.len(),
            failed = report.failed.len(),
            months,
            "retention run"
        );
    }

    fn audit_deletions(&self, deleted: &[RecordingId], months: u32) {
        let reason = format!("past retention ({months} months)");
        for id in deleted {
            let (operator, target) = (Operator::daemon(), id.to_string());
            let audited = crate::keys::audit(
                &self.config,
                &operator,
                AuditAction::Purge,
                &target,
                &reason,
            );
            if let Err(error) = audited {
                error!(recording = %id, error = format!("{error:#}"), "a deletion was not audited");
            }
        }
    }
}

/// Samples free space for ever, warning once when it runs low.
async fn watch_disk(data_dir: PathBuf, state: Arc<Housekeeping>) {
    let mut alert = DiskAlert::default();
    let mut ticker = tokio::time::interval(DISK_INTERVAL);
    loop {
        ticker.tick().await;
        let dir = data_dir.clone();
        let sample = tokio::task::spawn_blocking(move || free_bytes(&dir)).await;
        let free = match sample {
            Ok(Ok(free)) => free,
            Ok(Err(error)) => {
                alert.unreadable(&data_dir, &error);
                continue;
            }
            Err(_) => continue,
        };
        state.free_bytes.store(free, Ordering::Relaxed);
        alert.observe(free, state.min_free_bytes);
    }
}

/// Bytes an unprivileged process may still write on `dir`'s file system.
fn free_bytes(dir: &Path) -> rustix::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Whether the operator has been told that space is low; logs only changes.
#[derive(Debug, Default)]
struct DiskAlert {
    low: bool,
    unreadable: bool,
}

/// What a sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskChange {
    WentLow,
    Recovered,
}

impl DiskAlert {
    /// Logs a warning when space falls below `threshold` and a note when it is
    /// back a tenth above it, so a disk hovering at the line warns once.
    fn observe(&mut self, free: u64, threshold: u64) -> Option<DiskChange> {
        self.unreadable = false;
        let change = self.change(free, threshold)?;
        let (free_mb, min_free_mb) = (free / BYTES_PER_MB, threshold / BYTES_PER_MB);
        match change {
            DiskChange::WentLow => warn!(
                free_mb,
                min_free_mb, "disk space for recordings is low; free space or add disk"
            ),
            DiskChange::Recovered => info!(free_mb, min_free_mb, "disk space recovered"),
        }
        Some(change)
    }

    fn change(&mut self, free: u64, threshold: u64) -> Option<DiskChange> {
        let recovery = threshold.saturating_add(threshold / 10);
        if !self.low && free < threshold {
            self.low = true;
            return Some(DiskChange::WentLow);
        }
        if self.low && free >= recovery {
            self.low = false;
            return Some(DiskChange::Recovered);
        }
        None
    }

    fn unreadable(&mut self, dir: &Path, error: &rustix::io::Errno) {
        if !self.unreadable {
            self.unreadable = true;
            warn!(dir = %dir.display(), %error, "free space of the data directory cannot be read");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = BYTES_PER_MB;

    #[test]
    fn low_space_is_reported_once_and_recovery_once() {
        let mut alert = DiskAlert::default();
        let samples = [2000, 900, 800, 1050, 950, 1200, 1300].map(|mb| mb * MB);
        let changes: Vec<_> = samples
            .iter()
            .map(|free| alert.change(*free, 1024 * MB))
            .collect();
        let expected = [
            None,
            Some(DiskChange::WentLow),
            None,
            None,
            None,
            Some(DiskChange::Recovered),
            None,
        ];
        assert_eq!(changes, expected);
    }

    #[test]
    fn a_zero_threshold_never_warns() {
        let mut alert = DiskAlert::default();
        assert_eq!(alert.change(0, 0), None);
    }

    #[test]
    fn free_space_of_a_real_directory_is_read() {
        let free = free_bytes(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(free > 0);
    }
}

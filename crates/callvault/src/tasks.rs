//! The daemon's background tasks, stopped together when it stops.

use tokio::task::JoinHandle;

/// Tasks aborted when this is dropped, so that none outlives the daemon's run.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    pub(crate) fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }

    pub(crate) fn extend(&mut self, other: Tasks) {
        let mut other = other;
        self.0.append(&mut other.0);
    }
}

impl<const N: usize> From<[JoinHandle<()>; N]> for Tasks {
    fn from(tasks: [JoinHandle<()>; N]) -> Self {
        Self(tasks.into())
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

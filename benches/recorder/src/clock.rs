//! The CPU time of the calling thread, read from `/proc`.
//!
//! `/proc/thread-self/schedstat` gives the thread's time on a CPU in nanoseconds,
//! user and system together. The kernel brings it up to date at each scheduler
//! tick and context switch, so a reading may lag by up to one tick (1-10 ms); a
//! run is made long enough (hundreds of milliseconds) for that not to matter. Std
//! has no thread CPU clock, and the workspace forbids the `unsafe` a libc call needs.

use std::fs;
use std::time::{Duration, Instant};

use crate::Failure;

const SCHEDSTAT: &str = "/proc/thread-self/schedstat";

/// This thread's CPU time so far.
pub(crate) fn thread_cpu() -> Result<Duration, Failure> {
    let text = fs::read_to_string(SCHEDSTAT)?;
    let nanos = text
        .split_whitespace()
        .next()
        .ok_or_else(|| format!("{SCHEDSTAT} is empty"))?
        .parse()?;
    Ok(Duration::from_nanos(nanos))
}

/// CPU and wall time spent between two readings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spent {
    pub(crate) cpu: Duration,
    pub(crate) wall: Duration,
}

/// A running measurement of CPU and wall time.
#[derive(Debug)]
pub(crate) struct Stopwatch {
    cpu: Duration,
    wall: Instant,
}

impl Stopwatch {
    pub(crate) fn start() -> Result<Self, Failure> {
        Ok(Self {
            cpu: thread_cpu()?,
            wall: Instant::now(),
        })
    }

    pub(crate) fn spent(&self) -> Result<Spent, Failure> {
        let wall = self.wall.elapsed();
        let cpu = thread_cpu()?.saturating_sub(self.cpu);
        Ok(Spent { cpu, wall })
    }
}

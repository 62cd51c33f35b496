//! Timed runs of each case, taken in turns so that a busy spell of the machine
//! falls on every case alike rather than on one.

use std::fs;
use std::time::Duration;

use callvault_recorder::jitter::JitterStats;
use callvault_recorder::pipeline::PipelineStats;
use serde::Serialize;

use crate::call::{Recorded, Vault};
use crate::clock::{Spent, Stopwatch};
use crate::Failure;

/// One thing to measure: a whole recorded call, or one stage of it.
pub(crate) struct Case<'a> {
    pub(crate) label: Label,
    pub(crate) job: Box<dyn FnMut() -> Result<Recorded, Failure> + 'a>,
    /// Packets the pipeline should count, when the job runs it.
    pub(crate) expected_packets: Option<u64>,
    pub(crate) expected_audio: Duration,
    pub(crate) runs: Vec<Run>,
    pub(crate) first: Option<FirstCall>,
}

/// What a case is, as the table and the JSON name it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Label {
    pub(crate) codec: &'static str,
    pub(crate) output: &'static str,
    pub(crate) channels: &'static str,
    /// Both parties talking, or taking turns.
    pub(crate) speech: &'static str,
    /// `all stages`, or the stage measured alone.
    pub(crate) stage: String,
}

/// One timed run: whole calls until the run's CPU budget was spent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) calls: u32,
    pub(crate) audio: Duration,
    pub(crate) spent: Spent,
}

impl Run {
    /// CPU microseconds per second of call audio.
    pub(crate) fn cpu_per_audio_second(&self) -> f64 {
        per_audio_second(self.spent.cpu, self.audio)
    }

    pub(crate) fn wall_per_audio_second(&self) -> f64 {
        per_audio_second(self.spent.wall, self.audio)
    }
}

fn per_audio_second(spent: Duration, audio: Duration) -> f64 {
    spent.as_secs_f64() * 1e6 / audio.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// What the untimed first call of a case gave, and what was wrong with it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FirstCall {
    pub(crate) sample_rate: Option<u32>,
    pub(crate) encoded_bytes: u64,
    /// Size of the encrypted file, when one was written.
    pub(crate) file_bytes: Option<u64>,
    /// Anything that differed from a clean call: none is expected.
    pub(crate) problems: Vec<String>,
}

impl Case<'_> {
    /// Runs the case once untimed, and checks what it gave.
    pub(crate) fn warm_up(&mut self, vault: &Vault) -> Result<(), Failure> {
        let recorded = (self.job)()?;
        let mut problems = Vec::new();
        if recorded.audio != self.expected_audio {
            let (got, expected) = (recorded.audio, self.expected_audio);
            problems.push(format!("encoded {got:?} of audio, expected {expected:?}"));
        }
        if let (Some(stats), Some(packets)) = (recorded.stats, self.expected_packets) {
            if stats != clean_stats(packets) {
                problems.push(format!("pipeline counters not clean: {stats:?}"));
            }
        }
        let mut file_bytes = None;
        if let Some(path) = &recorded.file {
            if let Err(problem) = vault.check(path, recorded.encoded_bytes) {
                problems.push(problem);
            }
            file_bytes = Some(fs::metadata(path)?.len());
            fs::remove_file(path)?;
        }
        self.first = Some(FirstCall {
            sample_rate: recorded.sample_rate,
            encoded_bytes: recorded.encoded_bytes,
            file_bytes,
            problems,
        });
        Ok(())
    }

    /// Records whole calls until `budget` of CPU time is spent, then removes the files.
    pub(crate) fn run(&mut self, budget: Duration) -> Result<(), Failure> {
        let mut files = Vec::new();
        let mut run = Run {
            calls: 0,
            audio: Duration::ZERO,
            spent: Spent {
                cpu: Duration::ZERO,
                wall: Duration::ZERO,
            },
        };
        let stopwatch = Stopwatch::start()?;
        while run.spent.cpu < budget {
            let recorded = (self.job)()?;
            run.calls += 1;
            run.audio += recorded.audio;
            files.extend(recorded.file);
            run.spent = stopwatch.spent()?;
        }
        for file in files {
            fs::remove_file(file)?;
        }
        self.runs.push(run);
        Ok(())
    }

    pub(crate) fn median_cpu(&self) -> f64 {
        median(self.runs.iter().map(Run::cpu_per_audio_second).collect())
    }

    pub(crate) fn median_wall(&self) -> f64 {
        median(self.runs.iter().map(Run::wall_per_audio_second).collect())
    }

    pub(crate) fn cpu_range(&self) -> (f64, f64) {
        let values = self.runs.iter().map(Run::cpu_per_audio_second);
        let low = values.clone().fold(f64::INFINITY, f64::min);
        (low, values.fold(0.0, f64::max))
    }
}

/// The counters of a call in which nothing was lost, late or out of order.
fn clean_stats(packets: u64) -> PipelineStats {
    PipelineStats {
        packets,
        jitter: JitterStats {
            received: packets,
            ..JitterStats::default()
        },
        ..PipelineStats::default()
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

//! The results as a table on standard output, and as JSON.

use std::fs;

use callvault_recorder::encode::OpusSettings;
use serde::Serialize;

use crate::measure::{Case, FirstCall, Label};
use crate::Failure;

/// What the machine was doing around the measurement.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages.
    pub(crate) load_average: String,
}

impl Machine {
    pub(crate) fn now() -> Result<Self, Failure> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo")?;
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split(':').nth(1))
            .map_or_else(|| "unknown".to_owned(), |name| name.trim().to_owned());
        let load = fs::read_to_string("/proc/loadavg")?;
        let load_average = load
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            load_average,
        })
    }
}

/// Everything a run of the benchmark found.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) call_seconds: u64,
    pub(crate) clock: &'static str,
    pub(crate) machine_before: Machine,
    pub(crate) machine_after: Machine,
    pub(crate) whole_calls: Vec<CaseResult>,
    /// PCMU to stereo Ogg Opus, stage by stage.
    pub(crate) stages: Vec<CaseResult>,
    /// libopus alone on the same speech, by complexity.
    pub(crate) opus_complexity: Vec<CaseResult>,
}

/// The measured cases, by table.
#[derive(Clone, Copy)]
pub(crate) struct Groups<'r, 'a> {
    pub(crate) whole: &'r [Case<'a>],
    pub(crate) stages: &'r [Case<'a>],
    pub(crate) complexities: &'r [Case<'a>],
}

/// One case's figures.
#[derive(Debug, Serialize)]
pub(crate) struct CaseResult {
    #[serde(flatten)]
    pub(crate) label: Label,
    /// Median over the runs of CPU microseconds per second of call audio.
    pub(crate) cpu_us_per_audio_second: f64,
    pub(crate) cpu_us_per_audio_second_min: f64,
    pub(crate) cpu_us_per_audio_second_max: f64,
    /// Median of the same in wall time: above the CPU figure when the thread waited.
    pub(crate) wall_us_per_audio_second: f64,
    /// Calls one core records in real time: 1e6 / the CPU figure.
    pub(crate) calls_per_core: f64,
    pub(crate) runs: Vec<RunResult>,
    pub(crate) first_call: Option<FirstCall>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RunResult {
    pub(crate) calls: u32,
    pub(crate) audio_seconds: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) wall_seconds: f64,
}

impl Report {
    pub(crate) fn new(
        call_seconds: u64,
        (machine_before, machine_after): (Machine, Machine),
        groups: Groups<'_, '_>,
    ) -> Self {
        Self {
            call_seconds,
            clock: "thread CPU time from /proc/thread-self/schedstat",
            machine_before,
            machine_after,
            whole_calls: groups.whole.iter().map(CaseResult::new).collect(),
            stages: groups.stages.iter().map(CaseResult::new).collect(),
            opus_complexity: groups.complexities.iter().map(CaseResult::new).collect(),
        }
    }

    pub(crate) fn print(&self) {
        let machine = &self.machine_before;
        println!(
            "{} s calls, {} runs per case; {} ({} cores); load average before {}, after {}",
            self.call_seconds,
            self.whole_calls.first().map_or(0, |case| case.runs.len()),
            machine.cpu,
            machine.cores,
            machine.load_average,
            self.machine_after.load_average
        );
        println!(
            "CPU time: {}; figures are medians over the runs\n",
            self.clock
        );
        print_whole(&self.whole_calls, self.call_seconds);
        println!();
        println!("PCMU to Ogg Opus stereo, stage by stage:\n");
        print_stages(&self.stages, |label| label.stage.clone());
        let settings = OpusSettings::RECORDING;
        println!(
            "\nlibopus alone at {} kbit/s per channel, no Ogg (recordings use complexity {}), \
             same speech:\n",
            settings.bits_per_second_per_channel / 1000,
            settings.complexity
        );
        print_stages(&self.opus_complexity, |label| {
            let Label {
                output,
                channels,
                speech,
                stage,
                ..
            } = label;
            format!("{output} {channels}, {speech}, {stage}")
        });
        let all = self
            .whole_calls
            .iter()
            .chain(&self.stages)
            .chain(&self.opus_complexity);
        print_problems(all);
    }
}

impl CaseResult {
    fn new(case: &Case<'_>) -> Self {
        let cpu = case.median_cpu();
        let (low, high) = case.cpu_range();
        Self {
            label: case.label.clone(),
            cpu_us_per_audio_second: cpu,
            cpu_us_per_audio_second_min: low,
            cpu_us_per_audio_second_max: high,
            wall_us_per_audio_second: case.median_wall(),
            calls_per_core: 1e6 / cpu,
            runs: case.runs.iter().map(RunResult::new).collect(),
            first_call: case.first.clone(),
        }
    }
}

impl RunResult {
    fn new(run: &crate::measure::Run) -> Self {
        Self {
            calls: run.calls,
            audio_seconds: run.audio.as_secs_f64(),
            cpu_seconds: run.spent.cpu.as_secs_f64(),
            wall_seconds: run.spent.wall.as_secs_f64(),
        }
    }
}

fn print_whole(cases: &[CaseResult], call_seconds: u64) {
    println!("| wire codec | output | channels | rate | speech | CPU µs per audio s | min-max | wall µs per audio s | calls per core | file kB per call-minute |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for case in cases {
        let first = case.first_call.as_ref();
        let rate = first.and_then(|first| first.sample_rate);
        let file = first.and_then(|first| first.file_bytes);
        let per_minute = file.map(|bytes| bytes as f64 / 1e3 * 60.0 / call_seconds as f64);
        println!(
            "| {} | {} | {} | {} | {} | {:.0} | {:.0}-{:.0} | {:.0} | {:.0} | {} |",
            case.label.codec,
            case.label.output,
            case.label.channels,
            rate.map_or_else(|| "?".to_owned(), |rate| format!("{} kHz", rate / 1000)),
            case.label.speech,
            case.cpu_us_per_audio_second,
            case.cpu_us_per_audio_second_min,
            case.cpu_us_per_audio_second_max,
            case.wall_us_per_audio_second,
            case.calls_per_core,
            per_minute.map_or_else(|| "-".to_owned(), |kb| format!("{kb:.0}")),
        );
    }
}

/// A table of stages, each row named by `name`.
fn print_stages(stages: &[CaseResult], name: fn(&Label) -> String) {
    println!("| stage | CPU µs per audio s | min-max | calls per core |");
    println!("| --- | --- | --- | --- |");
    for stage in stages {
        println!(
            "| {} | {:.0} | {:.0}-{:.0} | {:.0} |",
            name(&stage.label),
            stage.cpu_us_per_audio_second,
            stage.cpu_us_per_audio_second_min,
            stage.cpu_us_per_audio_second_max,
            stage.calls_per_core
        );
    }
}

fn print_problems<'a>(cases: impl Iterator<Item = &'a CaseResult>) {
    let mut clean = true;
    for case in cases {
        let Some(first) = &case.first_call else {
            continue;
        };
        for problem in &first.problems {
            clean = false;
            let Label {
                codec,
                output,
                channels,
                speech,
                stage,
            } = &case.label;
            println!("problem: {codec} to {output} {channels}, {speech} ({stage}): {problem}");
        }
    }
    if clean {
        println!(
            "\nevery first call checked clean: full length, no loss or late audio, file decrypts"
        );
    }
}

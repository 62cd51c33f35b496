//! Benchmark of the recording pipeline: CPU per second of a recorded call.
//!
//! Replays simulated calls of real speech through the whole recording path (RTP
//! packets of both directions, jitter buffers, decoders, mixer, encoder, encrypted
//! file writer) as fast as one thread can, for each wire codec and output format,
//! and reports the CPU time each second of call audio costs. See `benches/README.md`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on its standard streams"
)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use callvault_recorder::encode::OutputFormat;
use callvault_recorder::mix::Channels;

use crate::call::{encode_alone, encrypt_alone, record, stereo_pcm, Recorded, Shape, Vault};
use crate::complexity::Signal;
use crate::measure::{Case, Label};
use crate::wire::{CallInput, Talk, WireCodec};

mod call;
mod clock;
mod complexity;
mod measure;
mod report;
mod round_trip;
mod wire;

type Failure = Box<dyn Error>;

/// The fewest timed runs per case: the median of fewer says little.
const MIN_RUNS: usize = 3;

#[derive(Debug)]
struct Options {
    runs: usize,
    seconds: u64,
    /// CPU time each case spends in each run, at the least.
    run_budget: Duration,
    speech: PathBuf,
    dir: PathBuf,
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    let result = if args.peek().map(String::as_str) == Some("round-trip") {
        round_trip::run(args.skip(1))
    } else {
        parse_options(args).and_then(|options| run(&options))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("callvault-bench-recorder: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, Failure> {
    let mut options = Options {
        runs: 5,
        seconds: 60,
        run_budget: Duration::from_millis(500),
        speech: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sipp/speech.ulaw"),
        dir: default_parent().join(format!("callvault-bench-recorder-{}", std::process::id())),
        json: None,
    };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--runs" => options.runs = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            "--run-ms" => options.run_budget = Duration::from_millis(value.parse()?),
            "--speech" => options.speech = PathBuf::from(value),
            "--dir" => options.dir = PathBuf::from(value),
            "--json" => options.json = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if options.runs < MIN_RUNS {
        return Err(format!("--runs must be at least {MIN_RUNS}").into());
    }
    if options.seconds == 0 {
        return Err("--seconds must be above 0".into());
    }
    Ok(options)
}

/// Memory-backed `/dev/shm` where there is one, so that no disk is measured.
fn default_parent() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn run(options: &Options) -> Result<(), Failure> {
    if options.dir.exists() {
        return Err(format!("{} exists; give an empty --dir", options.dir.display()).into());
    }
    let speech = fs::read(&options.speech)
        .map_err(|error| format!("reading {}: {error}", options.speech.display()))?;
    fs::create_dir_all(&options.dir)?;
    let result = measure_all(options, &speech);
    fs::remove_dir_all(&options.dir)?;
    result
}

fn measure_all(options: &Options, speech: &[u8]) -> Result<(), Failure> {
    let before = report::Machine::now()?;
    let start = Instant::now();
    let kinds = WireCodec::ALL.map(|codec| (codec, Talk::Both));
    let inputs = kinds
        .into_iter()
        .chain([(WireCodec::Pcmu, Talk::Turns)])
        .map(|kind| CallInput::new(kind, speech, options.seconds, start))
        .collect::<Result<Vec<_>, _>>()?;
    let vault = Vault::new(options.dir.clone())?;
    let pcmu = &inputs[0];
    let pcm = stereo_pcm(pcmu);
    let (_, chunks) = encode_alone(&pcm, NARROWBAND_RATE, OGG_STEREO)?;
    let signals = Signal::shapes(&pcm);

    let mut whole = whole_calls(&inputs, &vault);
    let mut stages = stages(pcmu, &pcm, &chunks, &vault);
    let mut complexities = complexities(pcmu, &signals);
    for case in whole.iter_mut().chain(&mut stages).chain(&mut complexities) {
        case.warm_up(&vault)?;
    }
    for run in 1..=options.runs {
        eprintln!("run {run} of {}", options.runs);
        for case in whole.iter_mut().chain(&mut stages).chain(&mut complexities) {
            case.run(options.run_budget)?;
        }
    }
    let after = report::Machine::now()?;
    let groups = report::Groups {
        whole: &whole,
        stages: &stages,
        complexities: &complexities,
    };
    let report = report::Report::new(options.seconds, (before, after), groups);
    report.print();
    if let Some(path) = &options.json {
        fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// The rate of a recording of G.711 calls.
const NARROWBAND_RATE: u32 = 8000;

const OGG_STEREO: Shape = Shape {
    format: OutputFormat::OggOpus,
    channels: Channels::Stereo,
};

/// Every wire codec to both output formats in stereo, and PCMU to mono Ogg Opus;
/// then PCMU to Ogg Opus again with the parties taking turns.
fn whole_calls<'a>(inputs: &'a [CallInput], vault: &'a Vault) -> Vec<Case<'a>> {
    let mut cases = Vec::new();
    let (talking, turns) = inputs.split_at(WireCodec::ALL.len());
    for input in talking {
        for format in [OutputFormat::Wav, OutputFormat::OggOpus] {
            let shape = Shape {
                format,
                channels: Channels::Stereo,
            };
            cases.push(whole_call(input, shape, vault));
        }
    }
    let mono = Shape {
        format: OutputFormat::OggOpus,
        channels: Channels::Mono,
    };
    cases.push(whole_call(&talking[0], mono, vault));
    for input in turns {
        cases.push(whole_call(input, OGG_STEREO, vault));
        cases.push(whole_call(input, mono, vault));
    }
    cases
}

fn whole_call<'a>(input: &'a CallInput, shape: Shape, vault: &'a Vault) -> Case<'a> {
    let label = label(input, shape, "all stages");
    let job = move || record(input, shape, Some(vault));
    pipeline_case(label, input, Box::new(job))
}

/// PCMU to stereo Ogg Opus taken apart: the pipeline without encoding or
/// encryption, the encoder alone, the writer alone, and all but the writer.
fn stages<'a>(
    input: &'a CallInput,
    pcm: &'a [i16],
    chunks: &'a call::Chunks,
    vault: &'a Vault,
) -> Vec<Case<'a>> {
    let wav = Shape {
        format: OutputFormat::Wav,
        channels: Channels::Stereo,
    };
    let mixing = label(input, wav, "jitter + decode + mix, no encryption");
    let unencrypted = label(input, OGG_STEREO, "all but encryption");
    let encoding = label(input, OGG_STEREO, "Ogg Opus encoding alone");
    let encrypting = label(input, OGG_STEREO, "encryption and writing alone");
    let encode_job = move || {
        let (audio, chunks) = encode_alone(pcm, NARROWBAND_RATE, OGG_STEREO)?;
        Ok(Recorded {
            audio,
            encoded_bytes: chunks.iter().map(|(bytes, _)| bytes.len() as u64).sum(),
            file: None,
            stats: None,
            sample_rate: Some(NARROWBAND_RATE),
        })
    };
    vec![
        pipeline_case(mixing, input, Box::new(move || record(input, wav, None))),
        pipeline_case(
            unencrypted,
            input,
            Box::new(move || record(input, OGG_STEREO, None)),
        ),
        other_case(encoding, input, Box::new(encode_job)),
        other_case(
            encrypting,
            input,
            Box::new(move || encrypt_alone(chunks, OutputFormat::OggOpus, vault)),
        ),
    ]
}

/// libopus alone at each complexity, for each shape of recording.
fn complexities<'a>(input: &CallInput, signals: &'a [Signal]) -> Vec<Case<'a>> {
    let mut cases = Vec::new();
    for signal in signals {
        for complexity in complexity::LEVELS {
            let label = Label {
                codec: input.codec.name(),
                output: signal.output_label(),
                channels: channels_label(signal.channels),
                speech: signal.talk.name(),
                stage: format!("complexity {complexity}"),
            };
            cases.push(other_case(
                label,
                input,
                Box::new(move || signal.encode(complexity)),
            ));
        }
    }
    cases
}

type Job<'a> = Box<dyn FnMut() -> Result<Recorded, Failure> + 'a>;

/// A case that runs the pipeline, whose counters are checked.
fn pipeline_case<'a>(label: Label, input: &CallInput, job: Job<'a>) -> Case<'a> {
    let mut case = other_case(label, input, job);
    case.expected_packets = Some(2 * input.frames.len() as u64);
    case
}

fn other_case<'a>(label: Label, input: &CallInput, job: Job<'a>) -> Case<'a> {
    Case {
        label,
        job,
        expected_packets: None,
        expected_audio: input.duration(),
        runs: Vec::new(),
        first: None,
    }
}

fn label(input: &CallInput, shape: Shape, stage: &'static str) -> Label {
    Label {
        codec: input.codec.name(),
        speech: input.talk.name(),
        output: match shape.format {
            OutputFormat::OggOpus => "Ogg Opus",
            OutputFormat::Wav => "WAV",
        },
        channels: channels_label(shape.channels),
        stage: stage.to_owned(),
    }
}

fn channels_label(channels: Channels) -> &'static str {
    match channels {
        Channels::Stereo => "stereo",
        Channels::Mono => "mono",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::FirstCall;
    use callvault_recorder::codec::g711::ulaw_to_linear;

    fn speech() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sipp/speech.ulaw");
        fs::read(path).unwrap()
    }

    #[test]
    fn every_codec_and_talk_records_a_clean_call() {
        let dir = std::env::temp_dir().join(format!(
            "callvault-bench-recorder-test-{}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).unwrap();
        let vault = Vault::new(dir.clone()).unwrap();
        let speech = speech();
        for codec in WireCodec::ALL {
            for talk in [Talk::Both, Talk::Turns] {
                let input = CallInput::new((codec, talk), &speech, 2, Instant::now()).unwrap();
                let mut case = whole_call(&input, OGG_STEREO, &vault);
                case.warm_up(&vault).unwrap();
                let FirstCall {
                    problems,
                    file_bytes,
                    ..
                } = case.first.unwrap();
                assert_eq!(problems, Vec::<String>::new(), "{codec:?} {talk:?}");
                assert!(file_bytes.unwrap() > 0);
            }
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn taking_turns_leaves_the_listener_only_hiss() {
        let speech = speech();
        let input =
            CallInput::new((WireCodec::Pcmu, Talk::Turns), &speech, 6, Instant::now()).unwrap();
        let loudest = |frames: &[[callvault_media::TapPacket; 2]], side: usize| {
            let payloads = frames.iter().map(|pair| &pair[side].data[12..]);
            payloads
                .flat_map(|payload| payload.iter().map(|&code| ulaw_to_linear(code).abs()))
                .max()
                .unwrap()
        };
        let (first, second) = input.frames.split_at(150);
        assert!(loudest(first, 1) <= 8 && loudest(second, 0) <= 8);
        assert!(loudest(first, 0) > 1000 && loudest(second, 1) > 1000);
    }
}

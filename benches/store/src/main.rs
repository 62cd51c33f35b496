//! Benchmark of the store: index lookups among many calls, and encryption.
//!
//! Builds an index of synthetic calls in a temporary directory, then measures how long
//! the queries a subject access request needs take, what the index costs on disk and
//! in memory, and how fast AES-256-GCM seals recording data. See `benches/README.md`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark reports on its standard streams"
)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use callvault_store::index::Index;
use callvault_store::number::{normalise, DEFAULT_COUNTRY, E164};
use callvault_store::{CallDirection, RecordingId, RecordingMetadata, RecordingStatus};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

const DAY_MS: i64 = 86_400_000;
/// 2026-12-03 00:00 UTC: the synthetic calls span the 36 months before it.
const NOW_MS: i64 = 1_796_256_000_000;
const SPAN_MS: i64 = 1_096 * DAY_MS;
const PRACTICE_NUMBERS: [&str; 3] = ["01632 960000", "01632 960001", "01632 960002"];
const EXTENSIONS: u32 = 50;

type Failure = Box<dyn Error>;

#[derive(Debug)]
struct Options {
    calls: u64,
    numbers: u64,
    lookups: usize,
    inserts: usize,
    encrypt_seconds: u64,
    dir: PathBuf,
    /// Query an index already built in `dir`: the second phase, in its own process.
    existing: bool,
}

fn main() -> ExitCode {
    match parse_options().and_then(|options| run(&options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("callvault-bench-store: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse_options() -> Result<Options, Failure> {
    let mut options = Options {
        calls: 1_000_000,
        numbers: 100_000,
        lookups: 1_000,
        inserts: 1_000,
        encrypt_seconds: 3,
        dir: std::env::temp_dir().join(format!("callvault-bench-store-{}", std::process::id())),
        existing: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--existing" {
            options.existing = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--calls" => options.calls = value.parse()?,
            "--numbers" => options.numbers = value.parse()?,
            "--lookups" => options.lookups = value.parse()?,
            "--inserts" => options.inserts = value.parse()?,
            "--encrypt-seconds" => options.encrypt_seconds = value.parse()?,
            "--dir" => options.dir = PathBuf::from(value),
            _ => return Err(format!("unknown option {flag}").into()),
        }
    }
    if options.calls == 0 || options.numbers == 0 {
        return Err("--calls and --numbers must be above 0".into());
    }
    Ok(options)
}

fn run(options: &Options) -> Result<(), Failure> {
    if options.existing {
        return query_existing(options);
    }
    if options.dir.exists() {
        return Err(format!("{} exists; give an empty --dir", options.dir.display()).into());
    }
    let result = build_then_query(options);
    fs::remove_dir_all(&options.dir)?;
    result?;
    measure_encryption(Duration::from_secs(options.encrypt_seconds))
}

/// Builds the index here, then queries it from a new process.
///
/// The rebuild's large page cache stays in this process's heap after it is freed, so
/// the memory a daemon holding the index needs is measured in a process that only
/// opens and queries it.
fn build_then_query(options: &Options) -> Result<(), Failure> {
    build(options)?;
    let status = Command::new(std::env::current_exe()?)
        .args(std::env::args().skip(1))
        .args(["--existing", "--dir"])
        .arg(&options.dir)
        .status()?;
    if !status.success() {
        return Err(format!("the query phase failed: {status}").into());
    }
    Ok(())
}

fn query_existing(options: &Options) -> Result<(), Failure> {
    let index_dir = options.dir.join("index");
    let started = Instant::now();
    let index = Index::open(&index_dir)?;
    println!("open: {:.1} ms", millis(started.elapsed()));
    report_memory("after open")?;
    measure_lookups(&index, options)?;
    measure_inserts(&index, options)?;
    report_memory("after queries and inserts")
}

fn build(options: &Options) -> Result<(), Failure> {
    println!(
        "calls: {}, distinct external numbers: {}, extensions: {EXTENSIONS}, over 36 months",
        options.calls, options.numbers
    );
    let index_dir = options.dir.join("index");
    let started = Instant::now();
    let index = Index::rebuild(
        &index_dir,
        Synthetic::new(options).take(options.calls as usize),
    )?;
    let build = started.elapsed();
    println!(
        "build (reindex): {:.1} s, {:.0} calls/s",
        build.as_secs_f64(),
        options.calls as f64 / build.as_secs_f64()
    );
    report_size(&index, &index_dir, options.calls)?;
    report_memory("rebuild process")
}

fn report_size(index: &Index, dir: &Path, calls: u64) -> Result<(), Failure> {
    let sled = index.size_on_disk()?;
    let files = directory_bytes(dir)?;
    println!(
        "index on disk: {:.1} MB (sled's count), {:.1} MB (files); {:.0} / {:.0} bytes per call",
        sled as f64 / 1e6,
        files as f64 / 1e6,
        sled as f64 / calls as f64,
        files as f64 / calls as f64
    );
    Ok(())
}

fn directory_bytes(dir: &Path) -> Result<u64, Failure> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            directory_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn measure_lookups(index: &Index, options: &Options) -> Result<(), Failure> {
    let mut rng = StdRng::seed_from_u64(7);
    let pool = NumberPool::new(options.numbers);
    let first = pool.e164(rng.gen_range(0..options.numbers))?;
    let started = Instant::now();
    let found = index.by_number(&first, None, None)?.len();
    let elapsed = millis(started.elapsed());
    println!("first by_number after open: {elapsed:.3} ms, {found} calls found");
    let mut whole = Timings::default();
    let mut quarter = Timings::default();
    for _ in 0..options.lookups {
        let number = pool.e164(rng.gen_range(0..options.numbers))?;
        whole.time(|| {
            index
                .by_number(&number, None, None)
                .map(|found| found.len())
        })?;
        let from = NOW_MS - rng.gen_range(90..SPAN_MS / DAY_MS) * DAY_MS;
        let to = Some(from + 91 * DAY_MS);
        quarter.time(|| {
            index
                .by_number(&number, Some(from), to)
                .map(|found| found.len())
        })?;
    }
    whole.report("by_number, all dates");
    quarter.report("by_number, a 3-month range");

    let mut extension = Timings::default();
    let mut day = Timings::default();
    for _ in 0..options.lookups.min(200) {
        let from = NOW_MS - rng.gen_range(1..SPAN_MS / DAY_MS) * DAY_MS;
        let ext = format!("{}", 200 + rng.gen_range(0..EXTENSIONS));
        extension.time(|| {
            index
                .by_extension(&ext, Some(from), Some(from + DAY_MS))
                .map(|f| f.len())
        })?;
        day.time(|| {
            index
                .by_time(Some(from), Some(from + DAY_MS))
                .map(|found| found.len())
        })?;
    }
    extension.report("by_extension, one day");
    day.report("by_time, one day");
    Ok(())
}

fn measure_inserts(index: &Index, options: &Options) -> Result<(), Failure> {
    let mut timings = Timings::default();
    let mut synthetic = Synthetic::new(options);
    synthetic.rng = StdRng::seed_from_u64(99);
    for meta in synthetic.take(options.inserts) {
        let (meta, file_name) = meta;
        timings.time(|| index.insert(&meta, &file_name).map(|()| 1))?;
    }
    timings.report("insert (one transaction, flushed)");
    Ok(())
}

fn measure_encryption(duration: Duration) -> Result<(), Failure> {
    let mut key_bytes = [0u8; 32];
    StdRng::seed_from_u64(3).fill(&mut key_bytes);
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &key_bytes).map_err(|_| "AES-256 key rejected")?,
    );
    let mut buffer = vec![0x5a_u8; 1 << 20];
    let mut sealed = 0_u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&sealed.to_be_bytes());
        let _tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&sealed.to_be_bytes()),
                &mut buffer,
            )
            .map_err(|_| "sealing failed")?;
        sealed += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "AES-256-GCM seal (ring, 1 MiB buffers in place, one thread): {:.0} MB/s",
        (sealed * (1 << 20)) as f64 / seconds / 1e6
    );
    Ok(())
}

fn report_memory(when: &str) -> Result<(), Failure> {
    let status = fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map_or_else(|| "?".to_owned(), |value| value.trim().to_owned())
    };
    println!(
        "memory, {when}: VmRSS {}, VmHWM {}",
        field("VmRSS:"),
        field("VmHWM:")
    );
    Ok(())
}

/// Latencies of one kind of query, and the results it returned.
#[derive(Default)]
struct Timings {
    samples: Vec<Duration>,
    results: usize,
}

impl Timings {
    fn time<E: Error + 'static>(
        &mut self,
        query: impl FnOnce() -> Result<usize, E>,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let found = query()?;
        self.samples.push(started.elapsed());
        self.results += found;
        Ok(())
    }

    fn report(&mut self, what: &str) {
        if self.samples.is_empty() {
            return;
        }
        self.samples.sort();
        let at = |fraction: f64| {
            let last = self.samples.len() - 1;
            millis(self.samples[(last as f64 * fraction).round() as usize])
        };
        println!(
            "{what}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {:.1} calls found on average ({} queries)",
            at(0.5),
            at(0.99),
            at(1.0),
            self.results as f64 / self.samples.len() as f64,
            self.samples.len()
        );
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Distinct UK mobile numbers, the n-th computed without storing them.
struct NumberPool {
    size: u64,
}

impl NumberPool {
    fn new(size: u64) -> Self {
        Self { size }
    }

    /// The n-th number as staff would type it, `07xxx xxxxxx`.
    fn spoken(&self, n: u64) -> String {
        // Multiplying by a number coprime with 10^9 is a bijection on 9 digits, so
        // every n below the pool size gives a different number.
        let subscriber = (n % self.size) * 7_919_777 % 1_000_000_000;
        format!("07{subscriber:09}")
    }

    fn e164(&self, n: u64) -> Result<E164, Failure> {
        Ok(normalise(&self.spoken(n), DEFAULT_COUNTRY)?)
    }
}

/// An endless stream of synthetic calls.
struct Synthetic {
    rng: StdRng,
    pool: NumberPool,
}

impl Synthetic {
    fn new(options: &Options) -> Self {
        Self {
            rng: StdRng::seed_from_u64(1),
            pool: NumberPool::new(options.numbers),
        }
    }

    /// One external number, in one of the spellings a PBX or trunk sends.
    fn external(&mut self) -> String {
        let number = self.pool.spoken(self.rng.gen_range(0..self.pool.size));
        match self.rng.gen_range(0..3) {
            0 => number,
            1 => format!("+44{}", &number[1..]),
            _ => format!("sip:{number}@trunk.example"),
        }
    }
}

impl Iterator for Synthetic {
    type Item = (RecordingMetadata, String);

    fn next(&mut self) -> Option<Self::Item> {
        let id = RecordingId(format!("{:032x}", self.rng.gen::<u128>()));
        let start_ms = NOW_MS - self.rng.gen_range(0..SPAN_MS);
        let practice = PRACTICE_NUMBERS[self.rng.gen_range(0..PRACTICE_NUMBERS.len())].to_owned();
        let external = self.external();
        let inbound = self.rng.gen_bool(0.7);
        let (caller, callee) = if inbound {
            (external, practice)
        } else {
            (practice, external)
        };
        let meta = RecordingMetadata {
            id,
            start_ms,
            end_ms: Some(start_ms + self.rng.gen_range(30_000..900_000)),
            direction: if inbound {
                CallDirection::Inbound
            } else {
                CallDirection::Outbound
            },
            caller,
            callee,
            extension: Some(format!("{}", 200 + self.rng.gen_range(0..EXTENSIONS))),
            media_type: "audio/ogg".to_owned(),
            status: RecordingStatus::Complete,
            status_reason: None,
            lost_packets: 0,
            end_reason: None,
            events: Vec::new(),
        };
        let file_name = format!("{}.cvr", meta.id);
        Some((meta, file_name))
    }
}

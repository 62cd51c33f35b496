//! `callvault sar`: a subject access bundle, and `sar verify` to check one.
//!
//! A bundle is a directory a person can open without callvault:
//!
//! ```text
//! recordings/<date>_<time>_<id>.wav   each recording involving the number
//! index.txt                           date, time, length, direction, other party
//! custody.txt                         who made the bundle, when, why, audit entry
//! MANIFEST.sha256                     `sha256sum -c` lines for every file above
//! MANIFEST.sha256.sig                 Ed25519 signature of the manifest (64 bytes)
//! public-key.pem                      the key that signed it (SPKI, PEM)
//! ```
//!
//! The signing key is derived from the practice's current master key
//! (`callvault_store::keys::signing`), so `sar verify` with the practice's
//! configuration can say whether a bundle is the practice's own.

use std::fmt::Write as _;
use std::fs;
use std::path::{Component, Path};

use anyhow::{bail, Context as _};
use callvault_store::audit::{AuditAction, AuditEntry};
use callvault_store::index::IndexedCall;
use callvault_store::keys::signing::{verify_signature, PUBLIC_KEY_LEN};
use callvault_store::keys::Keyring;
use callvault_store::number::{normalise, DEFAULT_COUNTRY, E164};
use callvault_store::CallDirection;
use ring::digest::{digest, SHA256};

use super::calls::{duration_seconds, json_name};
use super::export::{decrypt, extension, write_private};
use super::{keyring, open, say, time, Acting};
use crate::admin::protocol::Query;
use crate::cli::{SarArgs, Why};
use crate::config::{Config, Source};

const MANIFEST: &str = "MANIFEST.sha256";
const SIGNATURE: &str = "MANIFEST.sha256.sig";
const PUBLIC_KEY: &str = "public-key.pem";
const RECORDINGS: &str = "recordings";

/// The DER of an Ed25519 SubjectPublicKeyInfo before its 32 key bytes (RFC 8410 §4).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// One recording written into the bundle.
struct Entry {
    call: IndexedCall,
    file: String,
}

/// `callvault sar --number N --out DIR --reason R`.
pub(super) fn make(config: &Config, args: SarArgs) -> anyhow::Result<()> {
    let (Some(number), Some(out), Some(reason)) = (args.number, args.out, args.reason) else {
        bail!("sar needs --number, --out and --reason");
    };
    let why = Why {
        operator: args.operator,
        reason,
    };
    let acting = Acting::from(&why)?;
    let number = normalise(&number, DEFAULT_COUNTRY)
        .map_err(|error| anyhow::anyhow!("that is not a phone number: {error}"))?;
    let (from_ms, to_ms) = time::range(args.from.as_deref(), args.to.as_deref())?;
    let (keyring, access) = open(config)?;
    let query = Query {
        number: Some(number.to_string()),
        from_ms,
        to_ms,
        ..Query::default()
    };
    let calls = access.query(query)?;
    create_bundle_dir(&out)?;
    let write = |name: &str, bytes: &[u8]| {
        write_private(&out.join(name), bytes)
            .with_context(|| format!("cannot write {}", out.join(name).display()))
    };
    let mut entries = Vec::new();
    for call in calls {
        let audio = decrypt(config, &keyring, &call, args.format)?;
        let file = format!(
            "{RECORDINGS}/{}.{}",
            file_stem(&call),
            extension(args.format)
        );
        write(&file, &audio)?;
        entries.push(Entry { call, file });
    }
    write("index.txt", index(&number, &entries).as_bytes())?;
    let audit = acting.audit(config, AuditAction::SubjectAccessExport, number.as_str())?;
    write("custody.txt", custody(&acting, &audit, &entries).as_bytes())?;
    sign(&out, &keyring, &write)?;
    say(&format!(
        "wrote {} recordings of {number} to {}, signed; audit entry {}",
        entries.len(),
        out.display(),
        audit.seq
    ));
    Ok(())
}

fn create_bundle_dir(out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if out.symlink_metadata().is_ok() {
        bail!(
            "{} already exists; a bundle goes into a new directory",
            out.display()
        );
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(out)
        .and_then(|()| {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(out.join(RECORDINGS))
        })
        .with_context(|| format!("cannot create {}", out.display()))
}

/// `2024-01-31_1012_<id>`: sorts by time, and names the recording.
fn file_stem(call: &IndexedCall) -> String {
    let when = time::date_time(call.meta.start_ms);
    let (day, clock) = when.split_once(' ').unwrap_or((&when, ""));
    let clock: String = clock.chars().filter(char::is_ascii_digit).take(6).collect();
    format!("{day}_{clock}_{}", call.meta.id)
}

/// The readable index: one recording a line.
fn index(number: &E164, entries: &[Entry]) -> String {
    let mut text = format!(
        "Call recordings involving {number}\nTimes are UTC. Length is minutes:seconds.\n\n"
    );
    if entries.is_empty() {
        text.push_str("No recordings involve this number in the period asked for.\n");
    }
    for entry in entries {
        let meta = &entry.call.meta;
        let other_party = match meta.direction {
            CallDirection::Inbound => &meta.caller,
            _ => &meta.callee,
        };
        let _ = writeln!(
            text,
            "{}  {:>7}  {:<8}  other party {}  extension {}  {}",
            time::date_time(meta.start_ms),
            time::duration(duration_seconds(&entry.call)),
            json_name(&meta.direction),
            other_party,
            meta.extension.as_deref().unwrap_or("-"),
            entry.file
        );
    }
    text
}

/// The chain of custody: who made the bundle, when, why, and its audit entry.
fn custody(acting: &Acting, audit: &AuditEntry, entries: &[Entry]) -> String {
    let mut text = String::from("Chain of custody\n\n");
    let _ = writeln!(text, "made by:        {}", acting.operator.name());
    let _ = writeln!(text, "reason:         {}", acting.reason);
    let _ = writeln!(text, "made at (UTC):  {}", time::date_time(audit.time_ms));
    let _ = writeln!(
        text,
        "audit entry:    {} ({})",
        audit.seq,
        audit.action.as_str()
    );
    let _ = writeln!(text, "entry hash:     {}", audit.hash);
    let _ = writeln!(text, "recordings:     {}", entries.len());
    for entry in entries {
        let _ = writeln!(text, "  {}  {}", entry.call.meta.id, entry.file);
    }
    let version = env!("CARGO_PKG_VERSION");
    let _ = writeln!(
        text,
        "\nMade by callvault {version}. Check with `callvault sar verify DIR`,"
    );
    let _ = writeln!(
        text,
        "or `sha256sum -c {MANIFEST}` and `openssl pkeyutl -verify -pubin"
    );
    let _ = writeln!(
        text,
        "-inkey {PUBLIC_KEY} -rawin -in {MANIFEST} -sigfile {SIGNATURE}`."
    );
    text
}

/// Writes the manifest of every file so far, its signature and the public key.
fn sign(
    out: &Path,
    keyring: &Keyring,
    write: &dyn Fn(&str, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut manifest = String::new();
    for name in bundle_files(out)? {
        let bytes = fs::read(out.join(&name)).with_context(|| format!("cannot read {name}"))?;
        let _ = writeln!(manifest, "{}  {name}", sha256_hex(&bytes));
    }
    let key = keyring.current().signing_key()?;
    write(MANIFEST, manifest.as_bytes())?;
    write(SIGNATURE, &key.sign(manifest.as_bytes()))?;
    write(PUBLIC_KEY, pem(&key.public_key()).as_bytes())
}

/// The bundle's files other than the manifest, its signature and the key, sorted.
fn bundle_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let list =
        |dir: &Path| fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()));
    for entry in list(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if [MANIFEST, SIGNATURE, PUBLIC_KEY, RECORDINGS].contains(&name.as_str()) {
            continue;
        }
        names.push(name);
    }
    if dir.join(RECORDINGS).is_dir() {
        for entry in list(&dir.join(RECORDINGS))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            names.push(format!("{RECORDINGS}/{name}"));
        }
    }
    names.sort();
    Ok(names)
}

/// `callvault sar verify DIR`: every sum, the signature, and whose key it is.
pub(super) fn verify(source: &Source, dir: &Path) -> anyhow::Result<()> {
    let read =
        |name: &str| fs::read(dir.join(name)).with_context(|| format!("{name}: cannot be read"));
    let manifest = read(MANIFEST)?;
    let public_key = parse_pem(&read(PUBLIC_KEY)?)?;
    if !verify_signature(&public_key, &manifest, &read(SIGNATURE)?) {
        bail!("{MANIFEST}: the signature does not match; the manifest was changed after signing");
    }
    let listed = check_sums(dir, &manifest)?;
    let present = bundle_files(dir)?;
    if let Some(extra) = present.iter().find(|name| !listed.contains(name)) {
        bail!("{extra}: not in the manifest; it was added after signing");
    }
    say(&format!(
        "{}: {} files match the signed manifest",
        dir.display(),
        listed.len()
    ));
    say(&whose_key(source, &public_key));
    Ok(())
}

/// Checks each manifest line's file; returns the names listed.
fn check_sums(dir: &Path, manifest: &[u8]) -> anyhow::Result<Vec<String>> {
    let text = std::str::from_utf8(manifest).context("MANIFEST.sha256: not text")?;
    let mut names = Vec::new();
    for line in text.lines() {
        let Some((sum, name)) = line.split_once("  ") else {
            bail!("{MANIFEST}: a line is not `SHA256  FILE`");
        };
        let safe = Path::new(name)
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
        if !safe {
            bail!("{MANIFEST}: {name} is outside the bundle");
        }
        let bytes = fs::read(dir.join(name)).with_context(|| format!("{name}: missing"))?;
        if sha256_hex(&bytes) != sum {
            bail!("{name}: its SHA-256 does not match the manifest; the file was changed");
        }
        names.push(name.to_owned());
    }
    Ok(names)
}

/// Whether `public_key` derives from one of this practice's master keys.
fn whose_key(source: &Source, public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let keyring = source.load().and_then(|config| keyring(&config));
    let Ok(keyring) = keyring else {
        return "the signing key was not compared with this practice's: its master keys \
                cannot be read here"
            .to_owned();
    };
    let own = keyring.ids().into_iter().find(|id| {
        let key = keyring.get(*id).map(|master| master.signing_key());
        matches!(key, Some(Ok(key)) if key.public_key() == *public_key)
    });
    match own {
        Some(id) => format!("signed by this practice's key (master key {id})"),
        None => "signed by a key that is NOT this practice's".to_owned(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// An Ed25519 public key as a PEM SubjectPublicKeyInfo, as OpenSSL reads it.
fn pem(public_key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_key);
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::encode(&der)
    )
}

fn parse_pem(text: &[u8]) -> anyhow::Result<[u8; PUBLIC_KEY_LEN]> {
    let bad = || anyhow::anyhow!("{PUBLIC_KEY}: not an Ed25519 public key");
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    let der = base64::decode(body.trim()).ok_or_else(bad)?;
    let key = der.strip_prefix(&SPKI_PREFIX[..]).ok_or_else(bad)?;
    key.try_into().map_err(|_| bad())
}

/// Base64 (RFC 4648 §4), enough for a PEM key.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut text = String::new();
        for chunk in bytes.chunks(3) {
            let group = chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b));
            let group = group << (8 * (3 - chunk.len()));
            for position in 0..4 {
                if position <= chunk.len() {
                    let six = (group >> (18 - 6 * position)) & 0x3f;
                    text.push(char::from(ALPHABET[six as usize]));
                } else {
                    text.push('=');
                }
            }
        }
        text
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut bits = 0u32;
        let mut held = 0;
        let mut bytes = Vec::new();
        for c in text.bytes() {
            let value = ALPHABET.iter().position(|a| *a == c)?;
            bits = bits << 6 | value as u32;
            held += 6;
            if held >= 8 {
                held -= 8;
                bytes.push((bits >> held) as u8);
                bits &= (1 << held) - 1;
            }
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        for len in 0..10 {
            let bytes: Vec<u8> = (0..len).map(|n: u8| n.wrapping_mul(37)).collect();
            assert_eq!(base64::decode(&base64::encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64::encode(b"Man"), "TWFu");
        assert_eq!(base64::encode(b"Ma"), "TWE=");
    }

    #[test]
    fn a_public_key_survives_its_pem() {
        let key = [9u8; PUBLIC_KEY_LEN];
        assert_eq!(parse_pem(pem(&key).as_bytes()).unwrap(), key);
        assert!(parse_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
    }
}

//! The TOML configuration: sections, defaults and validation.
//!
//! Key names are a promise to users: add keys freely, rename none. Every
//! struct rejects unknown keys, so a misspelt option is an error rather
//! than a silently ignored line. Errors name the key path and the reason.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use callvault_policy::{Action, DirectionRules, IdentitySource, Rules};
use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;

/// The configuration used when no file is given or found.
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

/// Where a packaged install keeps its configuration.
pub(crate) const DEFAULT_PATH: &str = "/etc/callvault/callvault.toml";

/// Where a configuration comes from, for loading and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    File(PathBuf),
    Embedded,
}

impl Source {
    /// The file given, else the system file if present, else the default.
    pub(crate) fn choose(given: Option<PathBuf>) -> Self {
        match given {
            Some(path) => Self::File(path),
            None if Path::new(DEFAULT_PATH).exists() => Self::File(DEFAULT_PATH.into()),
            None => Self::Embedded,
        }
    }

    /// Reads, parses and validates the configuration.
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        let text = match self {
            Self::File(path) => std::fs::read_to_string(path).with_context(|| self.to_string())?,
            Self::Embedded => EMBEDDED_DEFAULT.to_owned(),
        };
        parse(&text).with_context(|| self.to_string())
    }
}

impl fmt::Display for Source {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(formatter, "{}", path.display()),
            Self::Embedded => formatter.write_str("embedded default config"),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ConfigError {
    /// The text is not TOML.
    #[error("line {line}, column {column}: {reason}")]
    Syntax {
        line: usize,
        column: usize,
        reason: String,
    },
    /// A key is unknown, missing, mistyped or out of range.
    #[error("{key}: {reason}")]
    Key { key: String, reason: String },
}

/// Parses and validates a configuration file's text.
pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::new(text);
    let config: Config = serde_path_to_error::deserialize(deserializer)
        .map_err(|error| ConfigError::from_toml(text, error))?;
    config.validate()?;
    Ok(config)
}

impl ConfigError {
    fn key(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Key {
            key: one_line(&key.into()),
            reason: one_line(&reason.into()),
        }
    }

    fn from_toml(text: &str, error: serde_path_to_error::Error<toml::de::Error>) -> Self {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // toml's messages may span lines; a config error is reported on one.
        let reason = one_line(&inner.message().trim().replace('\n', "; "));

        if path != "." {
            return Self::key(path, reason);
        }
        let offset = inner.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(text, offset);
        Self::Syntax {
            line,
            column,
            reason,
        }
    }
}

/// `text` with line breaks and other control characters escaped (`\n`): a key
/// the operator quoted may hold any of them, and an error is printed on one line.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => line.extend(c.escape_default()),
            false => line.push(c),
        }
    }
    line
}

/// One-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a TOML table")]
pub(crate) struct Config {
    /// The practice side.
    pub(crate) pbx: Side,
    /// The provider side.
    pub(crate) trunk: Side,
    #[serde(default)]
    pub(crate) media: Media,
    #[serde(default)]
    pub(crate) sip: Sip,
    #[serde(default)]
    pub(crate) storage: Storage,
    #[serde(default)]
    pub(crate) policy: Policy,
    #[serde(default)]
    pub(crate) metrics: Metrics,
    #[serde(default)]
    pub(crate) console: Console,
    #[serde(default)]
    pub(crate) log: Log,
}

/// One SIP side: where callvault listens and who the peer is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table with listen and peer")]
pub(crate) struct Side {
    pub(crate) listen: SocketAddr,
    pub(crate) peer: HostPort,
    /// The address put in SIP and SDP; chosen at start-up when absent.
    #[serde(default)]
    pub(crate) advertise: Option<IpAddr>,
    #[serde(default)]
    pub(crate) transport: Transport,
}

/// A SIP transport as written in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Transport {
    #[default]
    Udp,
    Tcp,
}

/// A peer address: an IP address or host name, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct HostPort {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl TryFrom<String> for HostPort {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let expected = || format!("expected host:port, such as 192.168.1.10:5060, not `{text}`");
        let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
        let port: u16 = port.parse().map_err(|_| expected())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');

        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(expected());
        }
        if port == 0 {
            return Err("the port must not be 0".to_owned());
        }
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return Err(format!("`{host}` is not a peer's address"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "[{}]:{}", self.host, self.port)
        } else {
            write!(formatter, "{}:{}", self.host, self.port)
        }
    }
}

/// RTP relay settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Media {
    pub(crate) port_min: u16,
    pub(crate) port_max: u16,
    pub(crate) rtp_timeout_seconds: u64,
    pub(crate) tap_queue_packets: usize,
}

impl Default for Media {
    fn default() -> Self {
        Self {
            port_min: 30000,
            port_max: 31999,
            rtp_timeout_seconds: 60,
            tap_queue_packets: 512,
        }
    }
}

/// SIP timer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Sip {
    pub(crate) t1_ms: u64,
    /// How long calls in progress may go on after a stop signal.
    pub(crate) shutdown_grace_seconds: u64,
}

impl Default for Sip {
    fn default() -> Self {
        Self {
            t1_ms: 500,
            shutdown_grace_seconds: 30,
        }
    }
}

/// Where and how recordings are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Storage {
    pub(crate) data_dir: PathBuf,
    pub(crate) key_file: PathBuf,
    /// The name of a systemd credential holding the keys; when set, `key_file` is not
    /// read by the daemon (staff commands still use `key_file`).
    pub(crate) key_credential: Option<String>,
    pub(crate) format: AudioFormat,
    pub(crate) channels: Channels,
    /// Whether early media (a 183 with SDP before the answer) is recorded too; the
    /// recording then starts at the first early media instead of the answer.
    pub(crate) early_media: bool,
    pub(crate) retention_months: u32,
    /// Free space on the data directory below which the daemon warns; 0 turns
    /// the warning off.
    pub(crate) min_free_mb: u64,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            data_dir: "/var/lib/callvault".into(),
            key_file: "/etc/callvault/master.key".into(),
            key_credential: None,
            format: AudioFormat::Opus,
            channels: Channels::Stereo,
            early_media: false,
            retention_months: 36,
            min_free_mb: 1024,
        }
    }
}

/// The audio file format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AudioFormat {
    Opus,
    Wav,
}

/// Whether the two parties share one channel or have one each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Channels {
    Stereo,
    Mono,
}

/// Which calls are recorded; see docs/policy.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Policy {
    /// Extensions whose calls are personal and never recorded.
    pub(crate) personal_extensions: Vec<String>,
    /// Numbers of personal lines, in any UK or international spelling.
    pub(crate) personal_ddis: Vec<String>,
    /// The extension each practice number rings, for inbound calls.
    pub(crate) ddi_extensions: std::collections::BTreeMap<String, String>,
    /// The header the PBX sets to the calling extension on outbound calls.
    pub(crate) identity_header: Option<String>,
    /// Where the practice-side party is read, first answer wins.
    pub(crate) identity_order: Vec<IdentitySource>,
    pub(crate) directions: DirectionRules,
    /// What happens to a call no other rule decides.
    pub(crate) default: Action,
    /// The patient opt-out list; `<data_dir>/opt-out.json` when absent.
    pub(crate) opt_out_file: Option<PathBuf>,
    /// A WAV file played to the external party of each recorded call.
    pub(crate) announcement: Option<PathBuf>,
    /// When an inbound call hears the announcement.
    pub(crate) announcement_inbound: AnnounceInbound,
}

/// When the caller of an inbound call hears the recording announcement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AnnounceInbound {
    /// As early media while the PBX's phones ring.
    #[default]
    WithRinging,
    /// As early media, and the PBX is offered the call once it has played.
    BeforeOffer,
    /// Not at all: the PBX plays its own.
    Never,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            personal_extensions: Vec::new(),
            personal_ddis: Vec::new(),
            ddi_extensions: std::collections::BTreeMap::new(),
            identity_header: None,
            identity_order: IdentitySource::DEFAULT_ORDER.to_vec(),
            directions: DirectionRules::default(),
            default: Action::Record,
            opt_out_file: None,
            announcement: None,
            announcement_inbound: AnnounceInbound::WithRinging,
        }
    }
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Metrics {
    pub(crate) listen: SocketAddr,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The staff web console.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Console {
    pub(crate) listen: SocketAddr,
}

impl Default for Console {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
        }
    }
}

/// How the daemon logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub(crate) struct Log {
    pub(crate) format: LogFormat,
    /// A level or tracing filter directives, such as `info,callvault_b2bua=debug`.
    pub(crate) level: String,
    /// Whether phone numbers appear in logs unmasked.
    pub(crate) show_numbers: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            show_numbers: false,
        }
    }
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// A listening socket, for spotting two keys that claim the same one.
struct Listener<'a> {
    key: &'a str,
    address: SocketAddr,
    transport: Transport,
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.pbx.validate("pbx")?;
        self.trunk.validate("trunk")?;
        self.media.validate()?;
        self.sip.validate()?;
        self.storage.validate()?;
        self.policy.validate()?;
        self.log.validate()?;
        self.check_listeners()?;
        self.check_media_range()
    }

    fn listeners(&self) -> [Listener<'_>; 4] {
        [
            Listener {
                key: "pbx.listen",
                address: self.pbx.listen,
                transport: self.pbx.transport,
            },
            Listener {
                key: "trunk.listen",
                address: self.trunk.listen,
                transport: self.trunk.transport,
            },
            Listener {
                key: "metrics.listen",
                address: self.metrics.listen,
                transport: Transport::Tcp,
            },
            Listener {
                key: "console.listen",
                address: self.console.listen,
                transport: Transport::Tcp,
            },
        ]
    }

    fn check_listeners(&self) -> Result<(), ConfigError> {
        let listeners = self.listeners();
        for (index, listener) in listeners.iter().enumerate() {
            if listener.address.port() == 0 {
                return Err(ConfigError::key(listener.key, "the port must not be 0"));
            }
            let earlier = listeners[..index]
                .iter()
                .find(|other| clashes(listener, other));
            if let Some(other) = earlier {
                let reason = format!("{} is already taken by {}", listener.address, other.key);
                return Err(ConfigError::key(listener.key, reason));
            }
        }
        Ok(())
    }

    /// SIP over UDP must not sit inside the range handed out for RTP.
    fn check_media_range(&self) -> Result<(), ConfigError> {
        let range = self.media.port_min..=self.media.port_max;
        for side in [("pbx.listen", &self.pbx), ("trunk.listen", &self.trunk)] {
            let (key, side) = side;
            if side.transport == Transport::Udp && range.contains(&side.listen.port()) {
                let reason = format!(
                    "port {} lies inside the media port range {}-{}",
                    side.listen.port(),
                    range.start(),
                    range.end()
                );
                return Err(ConfigError::key(key, reason));
            }
        }
        Ok(())
    }
}

/// Whether two listeners would need the same socket.
fn clashes(one: &Listener<'_>, other: &Listener<'_>) -> bool {
    let (a, b) = (one.address, other.address);
    let overlapping_ip = a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified();
    one.transport == other.transport
        && a.port() == b.port()
        && a.is_ipv4() == b.is_ipv4()
        && overlapping_ip
}

impl Side {
    fn validate(&self, side: &str) -> Result<(), ConfigError> {
        let Some(advertise) = self.advertise else {
            return Ok(());
        };
        if advertise.is_unspecified() || advertise.is_multicast() {
            let reason = format!("{advertise} is not an address a peer can send to");
            return Err(ConfigError::key(format!("{side}.advertise"), reason));
        }
        if advertise.is_ipv4() != self.listen.is_ipv4() {
            let reason = "must be of the same IP version as listen";
            return Err(ConfigError::key(format!("{side}.advertise"), reason));
        }
        Ok(())
    }
}

impl Media {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.port_min < 1024 {
            let reason = "must be 1024 or more: lower ports are reserved for system services";
            return Err(ConfigError::key("media.port_min", reason));
        }
        if !self.port_min.is_multiple_of(2) {
            let reason = "must be even: RTP takes even ports and RTCP the odd port above";
            return Err(ConfigError::key("media.port_min", reason));
        }
        if self.port_max <= self.port_min {
            let reason = "must be above media.port_min (one call leg needs two ports)";
            return Err(ConfigError::key("media.port_max", reason));
        }
        within(
            "media.rtp_timeout_seconds",
            self.rtp_timeout_seconds,
            1,
            86_400,
        )?;
        within("media.tap_queue_packets", self.tap_queue_packets, 1, 65_536)
    }
}

impl Sip {
    fn validate(&self) -> Result<(), ConfigError> {
        within("sip.t1_ms", self.t1_ms, 10, 10_000)?;
        within(
            "sip.shutdown_grace_seconds",
            self.shutdown_grace_seconds,
            0,
            3_600,
        )
    }
}

impl Storage {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::key("storage.data_dir", "must not be empty"));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(ConfigError::key("storage.key_file", "must not be empty"));
        }
        within("storage.retention_months", self.retention_months, 1, 120)?;
        within("storage.min_free_mb", self.min_free_mb, 0, 1 << 30)
    }
}

impl Policy {
    fn validate(&self) -> Result<(), ConfigError> {
        for (index, extension) in self.personal_extensions.iter().enumerate() {
            check_extension(&format!("policy.personal_extensions[{index}]"), extension)?;
        }
        self.rules().map(|_| ())?;
        if let Some(header) = &self.identity_header {
            if header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(ConfigError::key(
                    "policy.identity_header",
                    "must be a header name such as \"X-Practice-Extension\"",
                ));
            }
        }
        if self.identity_order.is_empty() {
            return Err(ConfigError::key(
                "policy.identity_order",
                "must name at least one source",
            ));
        }
        Ok(())
    }

    /// The rules the daemon applies, numbers normalised to E.164.
    pub(crate) fn rules(&self) -> Result<Rules, ConfigError> {
        let mut personal_ddis = std::collections::BTreeSet::new();
        for (index, number) in self.personal_ddis.iter().enumerate() {
            personal_ddis.insert(full_number(
                &format!("policy.personal_ddis[{index}]"),
                number,
            )?);
        }
        let mut ddi_extensions = std::collections::BTreeMap::new();
        for (number, extension) in &self.ddi_extensions {
            let key = format!("policy.ddi_extensions.{number}");
            check_extension(&key, extension)?;
            ddi_extensions.insert(full_number(&key, number)?, extension.clone());
        }
        Ok(Rules {
            personal_extensions: self.personal_extensions.iter().cloned().collect(),
            personal_ddis,
            ddi_extensions,
            identity_header: self.identity_header.clone(),
            identity_order: self.identity_order.clone(),
            directions: self.directions,
            default: self.default,
        })
    }

    /// Where the opt-out list is.
    pub(crate) fn opt_out_path(&self, storage: &Storage) -> PathBuf {
        self.opt_out_file
            .clone()
            .unwrap_or_else(|| callvault_store::Layout::new(&storage.data_dir).opt_out())
    }
}

fn check_extension(key: &str, extension: &str) -> Result<(), ConfigError> {
    if extension.is_empty() || extension.contains(char::is_whitespace) {
        return Err(ConfigError::key(
            key,
            "must be an extension such as \"205\"",
        ));
    }
    Ok(())
}

/// A number of the config as E.164; the error does not repeat it.
fn full_number(key: &str, number: &str) -> Result<callvault_store::number::E164, ConfigError> {
    use callvault_store::number::{normalise, DEFAULT_COUNTRY};
    normalise(number, DEFAULT_COUNTRY).map_err(|error| {
        ConfigError::key(
            key,
            format!("must be a full phone number such as 01632 960123 ({error})"),
        )
    })
}

impl Log {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.level.trim().is_empty() {
            return Err(ConfigError::key("log.level", "must not be empty"));
        }
        // tracing's directive parser panics on some non-ASCII text (found by
        // fuzzing), and no target or level needs it.
        if !self.level.is_ascii() {
            return Err(ConfigError::key("log.level", "must be ASCII"));
        }
        // A bare word would pass as a target name and silently log nothing.
        for directive in self.level.split(',').map(str::trim) {
            // tracing compiles a field value into an automaton, which for some
            // values takes minutes and hundreds of megabytes (found by fuzzing).
            if directive.contains('{') {
                let reason = format!("`{directive}` filters on span fields, which is not accepted");
                return Err(ConfigError::key("log.level", reason));
            }
            if !directive.contains('=') && directive.parse::<LevelFilter>().is_err() {
                let reason = format!(
                    "`{directive}` is not a level (trace, debug, info, warn, error or off)"
                );
                return Err(ConfigError::key("log.level", reason));
            }
        }
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.level)
            .map(drop)
            .map_err(|error| ConfigError::key("log.level", error.to_string()))
    }
}

/// Checks that a number lies in an inclusive range.
fn within<T>(key: &str, value: T, min: T, max: T) -> Result<(), ConfigError>
where
    T: PartialOrd + fmt::Display,
{
    if value < min || value > max {
        let reason = format!("must be between {min} and {max}, not {value}");
        return Err(ConfigError::key(key, reason));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [pbx]
        listen = "127.0.0.1:5060"
        peer = "127.0.0.1:5070"
        [trunk]
        listen = "127.0.0.1:5062"
        peer = "127.0.0.1:5080"
    "#;

    fn key_error(text: &str) -> (String, String) {
        match parse(text) {
            Err(ConfigError::Key { key, reason }) => (key, reason),
            other => panic!("expected a key error, got {other:?}"),
        }
    }

    fn with(extra: &str) -> String {
        format!("{MINIMAL}\n{extra}")
    }

    /// Found by the `config` fuzz target: tracing's directive parser panicked
    /// slicing inside a multi-byte character.
    #[test]
    fn a_level_that_is_not_ascii_is_refused_instead_of_panicking() {
        let (key, reason) = key_error(&with("[log]\nlevel = \"CC\u{4ccc}[1=\u{cc42}].11=x\"\n"));
        assert_eq!(
            (key.as_str(), reason.as_str()),
            ("log.level", "must be ASCII")
        );
    }

    /// Found by the `config` fuzz target: a field value in a directive took tracing
    /// 47 seconds and 300 MB to compile.
    #[test]
    fn a_level_with_a_span_field_filter_is_refused_without_compiling_it() {
        let (key, reason) = key_error(&with(
            "[log]\nlevel = \"info,callvault[call{id=.{0,40}x{40}}]=debug\"\n",
        ));
        assert_eq!(key, "log.level");
        assert!(reason.contains("filters on span fields"), "{reason}");
        let config = parse(&with("[log]\nlevel = \"info,callvault[call]=debug\"\n"));
        assert!(
            config.is_ok(),
            "a span filter without fields is still accepted"
        );
    }

    /// Found by the `config` fuzz target: a quoted key holding a line break made
    /// the one-line `error: ...` span several lines.
    #[test]
    fn an_error_naming_a_key_with_a_line_break_stays_on_one_line() {
        let text = with("[policy.ddi_extensions]\n\"01632\\n960205\" = \"205\"\n");
        let error = parse(&text).unwrap_err().to_string();
        assert!(!error.contains('\n'), "{error:?}");
        assert!(
            error.starts_with("policy.ddi_extensions.01632\\n960205: "),
            "{error:?}"
        );
    }

    #[test]
    fn embedded_default_is_valid_and_on_loopback() {
        let config = parse(EMBEDDED_DEFAULT).unwrap();
        for listener in config.listeners() {
            assert!(
                listener.address.ip().is_loopback(),
                "{} is not loopback",
                listener.key
            );
        }
        assert_eq!(config.storage.data_dir, Path::new("./callvault-data"));
        assert_eq!(
            (config.media.port_min, config.media.port_max),
            (40000, 40999)
        );
    }

    #[test]
    fn omitted_sections_take_documented_defaults() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.pbx.transport, Transport::Udp);
        assert_eq!(config.media.rtp_timeout_seconds, 60);
        assert_eq!(config.media.tap_queue_packets, 512);
        assert_eq!(config.sip.t1_ms, 500);
        assert_eq!(config.sip.shutdown_grace_seconds, 30);
        assert_eq!(config.storage.format, AudioFormat::Opus);
        assert_eq!(config.storage.channels, Channels::Stereo);
        assert_eq!(config.storage.retention_months, 36);
        assert_eq!(config.storage.min_free_mb, 1024);
        assert_eq!(config.log.format, LogFormat::Text);
        assert!(!config.log.show_numbers);
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, reason) = key_error(&with("[media]\nport_minimum = 30000"));
        assert_eq!(key, "media.port_minimum");
        assert!(reason.contains("unknown field `port_minimum`"), "{reason}");
    }

    #[test]
    fn unknown_section_is_named() {
        let (_, reason) = key_error(&with("[recorder]\nformat = \"wav\""));
        assert!(reason.contains("unknown field `recorder`"), "{reason}");
    }

    #[test]
    fn missing_peer_is_named() {
        let (key, reason) = key_error("[pbx]\nlisten = \"127.0.0.1:5060\"\n[trunk]");
        assert_eq!(key, "pbx");
        assert!(reason.contains("missing field `peer`"), "{reason}");
    }

    #[test]
    fn wrong_enum_value_names_key_and_choices() {
        let (key, reason) = key_error(&with("[storage]\nformat = \"flac\""));
        assert_eq!(key, "storage.format");
        assert!(
            reason.contains("`opus`") && reason.contains("`wav`"),
            "{reason}"
        );
    }

    #[test]
    fn odd_port_min_must_be_even() {
        let error = parse(&with("[media]\nport_min = 30001")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("media.port_min: must be even"),
            "{error}"
        );
    }

    #[test]
    fn port_range_needs_two_ports() {
        let (key, _) = key_error(&with("[media]\nport_min = 30000\nport_max = 30000"));
        assert_eq!(key, "media.port_max");
    }

    #[test]
    fn out_of_range_port_is_refused_by_type() {
        let (key, reason) = key_error(&with("[media]\nport_max = 70000"));
        assert_eq!(key, "media.port_max");
        assert!(reason.contains("70000"), "{reason}");
    }

    #[test]
    fn retention_outside_one_to_120_months_is_refused() {
        for months in [0, 121] {
            let (key, reason) =
                key_error(&with(&format!("[storage]\nretention_months = {months}")));
            assert_eq!(key, "storage.retention_months");
            assert!(reason.contains("between 1 and 120"), "{reason}");
        }
    }

    #[test]
    fn peer_needs_a_port() {
        let text = MINIMAL.replace("\"127.0.0.1:5070\"", "\"pbx.example\"");
        let (key, reason) = key_error(&text);
        assert_eq!(key, "pbx.peer");
        assert!(reason.contains("host:port"), "{reason}");
    }

    #[test]
    fn peer_accepts_host_names_and_bracketed_ipv6() {
        let name = HostPort::try_from("sip.provider.example:5060".to_owned()).unwrap();
        assert_eq!(name.host, "sip.provider.example");
        let ipv6 = HostPort::try_from("[2001:db8::1]:5060".to_owned()).unwrap();
        assert_eq!(ipv6.host, "2001:db8::1");
        assert_eq!(ipv6.to_string(), "[2001:db8::1]:5060");
    }

    #[test]
    fn bad_socket_address_names_key() {
        let text = MINIMAL.replace("\"127.0.0.1:5062\"", "\"localhost\"");
        let (key, _) = key_error(&text);
        assert_eq!(key, "trunk.listen");
    }

    #[test]
    fn unspecified_advertise_is_refused() {
        let text = MINIMAL.replace("[trunk]", "[trunk]\nadvertise = \"0.0.0.0\"");
        let (key, _) = key_error(&text);
        assert_eq!(key, "trunk.advertise");
    }

    #[test]
    fn two_keys_on_one_socket_are_refused() {
        let text = MINIMAL.replace("127.0.0.1:5062", "0.0.0.0:5060");
        let (key, reason) = key_error(&text);
        assert_eq!(key, "trunk.listen");
        assert!(reason.contains("pbx.listen"), "{reason}");
    }

    #[test]
    fn udp_and_tcp_may_share_a_port_number() {
        let text = MINIMAL.replace("127.0.0.1:5062", "127.0.0.1:9464");
        let text = text.replace("[trunk]", "[trunk]\ntransport = \"udp\"");
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn sip_port_inside_media_range_is_refused() {
        let (key, reason) = key_error(&with("[media]\nport_min = 5000\nport_max = 5999"));
        assert_eq!(key, "pbx.listen");
        assert!(reason.contains("5000-5999"), "{reason}");
    }

    #[test]
    fn empty_personal_extension_is_named_by_index() {
        let (key, _) = key_error(&with("[policy]\npersonal_extensions = [\"205\", \"\"]"));
        assert_eq!(key, "policy.personal_extensions[1]");
    }

    #[test]
    fn bad_log_level_is_refused() {
        for level in ["loud", "info,callvault=noisy", ""] {
            let (key, _) = key_error(&with(&format!("[log]\nlevel = \"{level}\"")));
            assert_eq!(key, "log.level", "{level}");
        }
    }

    #[test]
    fn log_level_accepts_filter_directives() {
        let config = parse(&with("[log]\nlevel = \"warn,callvault_b2bua=debug\"")).unwrap();
        assert_eq!(config.log.level, "warn,callvault_b2bua=debug");
    }

    #[test]
    fn syntax_error_gives_line_and_column() {
        let error = parse("[pbx]\nlisten = \n").unwrap_err();
        assert!(
            matches!(error, ConfigError::Syntax { line: 2, .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains('\n'), "{error}");
    }

    #[test]
    fn errors_fit_on_one_line() {
        let samples = [
            with("[media]\nport_min = \"low\""),
            with("[storage]\nchannels = \"quad\""),
            "pbx = 3".to_owned(),
        ];
        for sample in samples {
            let error = parse(&sample).unwrap_err().to_string();
            assert!(!error.contains('\n'), "{error}");
        }
    }
}

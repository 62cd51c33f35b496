//! Configuration files for the daemon under test.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ports::{free_tcp_address, free_udp_address, free_udp_port_block, Protocol};
use super::temp::TempDir;

/// A callvault configuration on free loopback ports.
#[derive(Debug, Clone)]
pub(crate) struct TestConfig {
    pub(crate) pbx_listen: SocketAddr,
    pub(crate) pbx_peer: SocketAddr,
    pub(crate) pbx_transport: Protocol,
    pub(crate) trunk_listen: SocketAddr,
    pub(crate) trunk_peer: SocketAddr,
    pub(crate) trunk_transport: Protocol,
    pub(crate) media_port_min: u16,
    pub(crate) media_port_max: u16,
    /// `[media] rtp_timeout_seconds`, when a test needs it short.
    pub(crate) rtp_timeout_seconds: Option<u64>,
    pub(crate) metrics_listen: SocketAddr,
    pub(crate) console_listen: SocketAddr,
    pub(crate) data_dir: PathBuf,
    /// `[storage] format` (`opus` or `wav`), when a test sets it.
    pub(crate) format: Option<String>,
    /// `[storage] channels` (`stereo` or `mono`), when a test sets it.
    pub(crate) channels: Option<String>,
    /// `[storage] early_media`.
    pub(crate) early_media: bool,
    /// `text` or `json`.
    pub(crate) log_format: String,
    pub(crate) log_level: String,
    /// Whole sections not written above, such as `[sip]` or `[policy]`.
    pub(crate) extra: String,
}

impl TestConfig {
    /// Every address on a free loopback port; data under `dir`.
    pub(crate) fn on_free_ports(dir: &TempDir) -> Self {
        let media_port_min = free_udp_port_block(64);
        Self {
            pbx_listen: free_udp_address(),
            pbx_peer: free_udp_address(),
            pbx_transport: Protocol::Udp,
            trunk_listen: free_udp_address(),
            trunk_peer: free_udp_address(),
            trunk_transport: Protocol::Udp,
            media_port_min,
            media_port_max: media_port_min + 63,
            rtp_timeout_seconds: None,
            metrics_listen: free_tcp_address(),
            console_listen: free_tcp_address(),
            data_dir: dir.path().join("data"),
            format: None,
            channels: None,
            early_media: false,
            log_format: "text".to_owned(),
            log_level: "info".to_owned(),
            extra: String::new(),
        }
    }

    pub(crate) fn to_toml(&self) -> String {
        let transport = |protocol| match protocol {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        };
        let mut text = String::new();
        let sides = [
            ("pbx", self.pbx_listen, self.pbx_peer, self.pbx_transport),
            (
                "trunk",
                self.trunk_listen,
                self.trunk_peer,
                self.trunk_transport,
            ),
        ];
        for (name, listen, peer, protocol) in sides {
            let protocol = transport(protocol);
            writeln!(text, "[{name}]\nlisten = \"{listen}\"\npeer = \"{peer}\"").unwrap();
            writeln!(text, "transport = \"{protocol}\"\n").unwrap();
        }
        let (min, max) = (self.media_port_min, self.media_port_max);
        writeln!(text, "[media]\nport_min = {min}\nport_max = {max}").unwrap();
        if let Some(seconds) = self.rtp_timeout_seconds {
            writeln!(text, "rtp_timeout_seconds = {seconds}").unwrap();
        }
        text.push('\n');
        let (data, key) = (self.data_dir.display(), self.data_dir.join("master.key"));
        writeln!(
            text,
            "[storage]\ndata_dir = \"{data}\"\nkey_file = \"{}\"",
            key.display()
        )
        .unwrap();
        if let Some(format) = &self.format {
            writeln!(text, "format = \"{format}\"").unwrap();
        }
        if let Some(channels) = &self.channels {
            writeln!(text, "channels = \"{channels}\"").unwrap();
        }
        if self.early_media {
            writeln!(text, "early_media = true").unwrap();
        }
        text.push('\n');
        writeln!(text, "[metrics]\nlisten = \"{}\"\n", self.metrics_listen).unwrap();
        writeln!(text, "[console]\nlisten = \"{}\"\n", self.console_listen).unwrap();
        let (format, level) = (&self.log_format, &self.log_level);
        writeln!(text, "[log]\nformat = \"{format}\"\nlevel = \"{level}\"\n").unwrap();
        text.push_str(&self.extra);
        text
    }

    /// Writes the configuration into `dir` and returns the file's path.
    /// Writes the configuration into `dir`, creating its master key with
    /// `callvault keys init` the first time, and returns the file's path.
    pub(crate) fn write(&self, dir: &TempDir) -> PathBuf {
        let path = dir.write("callvault.toml", &self.to_toml());
        if !self.data_dir.join("master.key").exists() {
            let config = path.to_str().expect("a UTF-8 temp path");
            let args = ["keys", "init", "--config", config, "--operator", "test"];
            let output = super::callvault::callvault_command(&args);
            assert!(output.status.success(), "keys init failed: {output:?}");
        }
        path
    }
}

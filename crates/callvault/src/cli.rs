//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// callvault: records a practice's calls between its PBX and its SIP trunk.
#[derive(Debug, Parser)]
#[command(name = "callvault", version, about)]
pub(crate) struct Cli {
    /// Configuration file [default: /etc/callvault/callvault.toml if it exists, else the
    /// embedded default, which listens on loopback only]
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Runs the daemon until SIGTERM or SIGINT.
    Run,
    /// Checks a configuration file and prints `FILE: ok`, or the key at fault.
    CheckConfig {
        /// The file to check [default: the one --config would choose]
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Rebuilds the index from the recording files alone (the daemon must be stopped).
    Reindex {
        #[command(flatten)]
        operator: OperatorArgs,
        /// Why the index is rebuilt, for the audit log
        #[arg(long, default_value = "index rebuilt from the recording files")]
        reason: String,
    },
    /// Creates or rotates the master keys that protect every recording.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    /// Manages the patients who opted out: their calls are relayed, never recorded.
    OptOut {
        #[command(subcommand)]
        command: OptOutCommand,
        #[command(flatten)]
        operator: OperatorArgs,
    },
    #[command(flatten)]
    Staff(StaffCommand),
}

/// What senior staff do with recordings; each use is written to the audit log.
#[derive(Debug, Subcommand)]
pub(crate) enum StaffCommand {
    /// Lists, searches and shows recorded calls.
    Calls {
        #[command(subcommand)]
        command: CallsCommand,
    },
    /// Decrypts one recording to a WAV or Ogg Opus file; never overwrites one.
    Export {
        /// The recording's id, as `calls list` shows it
        id: String,
        /// The file's format: wav plays everywhere, opus is ten times smaller
        #[arg(long, value_enum, default_value_t = ExportFormat::Wav)]
        format: ExportFormat,
        /// The file to write; it must not exist
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        why: Why,
    },
    /// Makes a subject access bundle of every recording of one number, or checks one.
    Sar(SarArgs),
    /// Places a legal hold: the recording is kept past retention until released.
    Hold {
        /// The recording's id
        id: String,
        #[command(flatten)]
        why: Why,
    },
    /// Lifts a legal hold; the recording then expires as any other.
    Release {
        /// The recording's id
        id: String,
        #[command(flatten)]
        why: Why,
    },
    /// Deletes the recordings past retention, except held ones.
    Purge {
        /// Only list what would be deleted
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        why: Why,
    },
    /// Checks every recording file and the audit log's chain.
    Verify,
    /// Shows or checks the audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CallsCommand {
    /// Lists recorded calls, oldest first, filtered as asked.
    List {
        #[command(flatten)]
        filter: CallFilter,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        why: Why,
    },
    /// Finds the calls of a number or an extension (one of them is needed).
    Search {
        #[command(flatten)]
        filter: CallFilter,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        why: Why,
    },
    /// Shows everything the index knows of one call.
    Show {
        /// The recording's id
        id: String,
        #[command(flatten)]
        output: Output,
        #[command(flatten)]
        why: Why,
    },
}

/// Which calls a listing shows; each option given must match.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct CallFilter {
    /// A phone number in any spelling (07700 900123, +44 7700 900123)
    #[arg(long)]
    pub(crate) number: Option<String>,
    /// A practice extension
    #[arg(long)]
    pub(crate) extension: Option<String>,
    #[arg(long, value_enum)]
    pub(crate) direction: Option<DirectionArg>,
    #[arg(long, value_enum)]
    pub(crate) status: Option<StatusArg>,
    /// First day, as YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    pub(crate) from: Option<String>,
    /// Last day, as YYYY-MM-DD (UTC), included
    #[arg(long, value_name = "DATE")]
    pub(crate) to: Option<String>,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct Output {
    /// Print JSON for scripts instead of a table
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DirectionArg {
    Inbound,
    Outbound,
    Internal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StatusArg {
    Recording,
    Complete,
    Degraded,
    Partial,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    Wav,
    Opus,
}

/// `callvault sar`: make a bundle, or `sar verify DIR` to check one.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SarArgs {
    #[command(subcommand)]
    pub(crate) command: Option<SarCommand>,
    /// The person's phone number, in any spelling
    #[arg(long, required = true)]
    pub(crate) number: Option<String>,
    /// First day, as YYYY-MM-DD (UTC)
    #[arg(long, value_name = "DATE")]
    pub(crate) from: Option<String>,
    /// Last day, as YYYY-MM-DD (UTC), included
    #[arg(long, value_name = "DATE")]
    pub(crate) to: Option<String>,
    /// The bundle's directory; it must not exist
    #[arg(long, value_name = "DIR", required = true)]
    pub(crate) out: Option<PathBuf>,
    /// The recordings' format
    #[arg(long, value_enum, default_value_t = ExportFormat::Wav)]
    pub(crate) format: ExportFormat,
    /// Why the bundle is made (the request's reference), for the audit log
    #[arg(long, required = true)]
    pub(crate) reason: Option<String>,
    #[command(flatten)]
    pub(crate) operator: OperatorArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SarCommand {
    /// Checks a bundle's sums and signature, and whether this practice signed it.
    Verify {
        /// The bundle's directory
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Prints the audit log's entries, oldest first.
    Show {
        /// Only the last N entries
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        #[command(flatten)]
        output: Output,
    },
    /// Checks every link of the audit log's hash chain.
    Verify,
}

/// Who acts and why, for the audit log.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Why {
    #[command(flatten)]
    pub(crate) operator: OperatorArgs,
    /// Why, for the audit log (a complaint's reference, a request's date)
    #[arg(long)]
    pub(crate) reason: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OptOutCommand {
    /// Stops recording a patient's calls from now on (the daemon notices in seconds).
    Add {
        /// The patient's number, in any UK or international spelling
        number: String,
        /// Why, for the audit log (the patient asked in person, on what date)
        #[arg(long)]
        reason: String,
    },
    /// Records a patient's calls again.
    Remove {
        /// The patient's number, in any spelling
        number: String,
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Lists the numbers on the list, with the date each was added.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Creates the key file (mode 0600) with a first key; refuses to overwrite one.
    Init,
    /// Adds a new key for new recordings; old recordings keep opening with old keys.
    Rotate {
        /// Why the key is rotated, for the audit log
        #[arg(long)]
        reason: String,
    },
    /// Rewraps every recording under the current key, rewriting only file headers.
    Rewrap {
        /// Why, for the audit log
        #[arg(long)]
        reason: String,
    },
}

/// Who runs a staff command, for the audit log.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct OperatorArgs {
    /// Your name as the audit log should record it [default: your login]
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) operator: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sar_verify_needs_no_number_and_sar_needs_one() {
        let cli = Cli::try_parse_from(["callvault", "sar", "verify", "bundle"]).unwrap();
        let Command::Staff(StaffCommand::Sar(sar)) = cli.command else {
            panic!("not sar: {cli:?}");
        };
        assert!(matches!(sar.command, Some(SarCommand::Verify { .. })));
        let missing = Cli::try_parse_from(["callvault", "sar", "--out", "b", "--reason", "r"]);
        assert!(missing.is_err());
    }

    #[test]
    fn config_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["callvault", "run", "--config", "a.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("a.toml")));
        assert!(matches!(cli.command, Command::Run));
    }
}

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
#[derive(Debug, clap::Args)]
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
    fn config_is_accepted_after_the_subcommand() {
        let cli = Cli::try_parse_from(["callvault", "run", "--config", "a.toml"]).unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("a.toml")));
        assert!(matches!(cli.command, Command::Run));
    }
}

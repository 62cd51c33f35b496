//! callvault: a call-recording SIP B2BUA for medical practices.
//!
//! This file only parses the command line, sets up logging and hands over
//! to the command; the daemon itself lives in `run`.

mod admin;
mod cli;
mod config;
mod housekeeping;
mod keys;
mod logging;
mod metrics;
mod operator;
mod opt_out;
mod pid_file;
mod policy;
mod recording;
mod run;
mod staff;
mod systemd;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;

use crate::cli::{Cli, Command, KeysCommand, OptOutCommand};
use crate::config::Source;
use crate::operator::Operator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run => {
            let source = Source::choose(cli.config);
            let config = source.load()?;
            // A second daemon is refused by the data directory's pid lock (run.rs).
            logging::init(&config.log)?;
            run::run(config, &source)
        }
        Command::CheckConfig { file } => check_config(&Source::choose(file.or(cli.config))),
        Command::Reindex { operator, reason } => {
            let config = Source::choose(cli.config).load()?;
            admin::refuse_if_daemon_runs(&config, "reindex")?;
            let operator = Operator::choose(operator.operator)?;
            say(&keys::reindex(&config, &operator, &reason)?);
            Ok(())
        }
        Command::Keys { command, operator } => {
            let config = Source::choose(cli.config).load()?;
            let operator = Operator::choose(operator.operator)?;
            let done = match command {
                KeysCommand::Init => keys::init(&config, &operator)?,
                KeysCommand::Rotate { reason } => keys::rotate(&config, &operator, &reason)?,
                KeysCommand::Rewrap { reason } => keys::rewrap(&config, &operator, &reason)?,
            };
            say(&done);
            Ok(())
        }
        Command::OptOut { command, operator } => {
            let config = Source::choose(cli.config).load()?;
            let done = match command {
                OptOutCommand::Add { number, reason } => {
                    let operator = Operator::choose(operator.operator)?;
                    opt_out::add(&config, &operator, &number, &reason)?
                }
                OptOutCommand::Remove { number, reason } => {
                    let operator = Operator::choose(operator.operator)?;
                    opt_out::remove(&config, &operator, &number, &reason)?
                }
                OptOutCommand::List => opt_out::list(&config)?,
            };
            say(&done);
            Ok(())
        }
        Command::Staff(command) => staff::run(&Source::choose(cli.config), command),
    }
}

#[expect(
    clippy::print_stdout,
    reason = "a staff command's result is its output"
)]
fn say(line: &str) {
    println!("{line}");
}

#[expect(clippy::print_stdout, reason = "the verdict is the command's output")]
fn check_config(source: &Source) -> anyhow::Result<()> {
    let config = source.load()?;
    // The files the config names are checked as the daemon would read them.
    recording::check_announcement(&config).with_context(|| source.to_string())?;
    println!("{source}: ok");
    Ok(())
}

/// Prints a fatal error as one line: the context chain, no backtrace.
#[expect(clippy::print_stderr, reason = "the logger may not be running yet")]
fn report(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}

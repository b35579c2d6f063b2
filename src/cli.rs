//! The command line interface: argument parsing and dispatch to the library stages.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Trustworthy derivatives of tensor kernels.
#[derive(Debug, Parser)]
#[command(name = "fderiv", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the verification ladder and print a report table.
    Verify,
}

/// Runs the CLI on the process arguments; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify => {
            println!("nothing to verify yet");
            ExitCode::SUCCESS
        }
    }
}

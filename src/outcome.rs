//! What every command shares: the output [`Format`] and the [`Failure`] that carries a
//! message and an exit code. Stages return their own typed errors; the commands map
//! them to a `Failure` (1 a check failed, 2 bad input). No stage imports the CLI.

/// Output formats for data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// JSON (schema in docs/derivation.md).
    Json,
}

/// A command's failure: the message and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// What to print on stderr.
    pub message: String,
    /// 1 for a failed check, 2 for bad input.
    pub code: u8,
}

impl Failure {
    /// Bad input (exit 2).
    pub fn input(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: e.to_string(),
            code: 2,
        }
    }
    /// A failed check (exit 1).
    pub fn check(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: e.to_string(),
            code: 1,
        }
    }
}

//! Running the `fderiv` binary as a user does (shared by the CLI tests).

use std::process::{Command, Output};

/// Runs the binary with `args`.
pub fn fderiv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fderiv"))
        .args(args)
        .output()
        .expect("the fderiv binary runs")
}

/// Its standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

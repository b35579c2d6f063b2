//! The `fderiv` command line: see `fderiv --help`.

fn main() -> std::process::ExitCode {
    fderiv::cli::main()
}

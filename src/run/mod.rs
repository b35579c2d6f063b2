//! `fderiv run`: runs the f64 kernels of a spec op (forward, JVP or VJP) on NumPy
//! `.npy` files and writes the results as `.npy` files. See `docs/run.md`.
//!
//! The data path: [`inputs`] checks the `--input NAME=FILE` names and reads the files
//! ([`npy`]) and their shapes against each other; [`compute()`] produces the outputs;
//! [`finite`] refuses results that overflowed; [`output`] writes each file whole or not
//! at all. Only [`compute()`] knows how the numbers are made.
//!
//! NaN and ±inf in the inputs propagate as IEEE arithmetic says (a NaN in `A` makes the
//! rows of `C` it touches NaN). Non-finite outputs that no non-finite input explains
//! (an overflow inside the evaluation) are an error and nothing is written.

pub mod compute;
pub mod error;
pub mod finite;
pub mod inputs;
pub mod names;
pub mod npy;
pub mod output;

pub use compute::compute;
pub use error::RunError;
pub use inputs::InputSpec;

use crate::derive::{Mode, SpecOp};
use crate::outcome::Failure;
use crate::tensor::fmt_dims;
use std::fmt;
use std::path::{Path, PathBuf};

/// What to run: the forward map, its JVP, or its VJP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunMode {
    /// The op itself: matmul writes C, softmax_last writes S.
    Forward,
    /// The derivative applied to the inputs' tangents (dA, dB / dX): writes dC / dS.
    Jvp,
    /// The adjoint of the derivative applied to a cotangent G: writes gA, gB / gX.
    Vjp,
}

impl RunMode {
    /// The derivation mode, or `None` for the forward map.
    pub fn derivative(self) -> Option<Mode> {
        match self {
            RunMode::Forward => None,
            RunMode::Jvp => Some(Mode::Jvp),
            RunMode::Vjp => Some(Mode::Vjp),
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunMode::Forward => "forward",
            RunMode::Jvp => "jvp",
            RunMode::Vjp => "vjp",
        })
    }
}

/// Run a kernel on .npy files (C-order float64, rank 3). NaN and ±inf in the inputs
/// propagate into the outputs; an overflow the inputs do not explain is an error.
///
/// Inputs: matmul A (h×m×n), B (h×n×p), for jvp also dA, dB, for vjp also G (h×m×p);
/// softmax_last X (h×m×n), for jvp also dX, for vjp also G. Outputs in DIR: C.npy,
/// dC.npy, or gA.npy and gB.npy; S.npy, dS.npy, or gX.npy.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The spec op.
    #[arg(value_enum)]
    pub op: SpecOp,
    /// forward, jvp or vjp.
    #[arg(value_enum)]
    pub mode: RunMode,
    /// An input, NAME=FILE.npy (repeat per input).
    #[arg(long = "input", value_name = "NAME=FILE.npy", required = true)]
    pub inputs: Vec<InputSpec>,
    /// The folder to write the outputs to (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Overwrite existing output files.
    #[arg(long)]
    pub force: bool,
    /// The most entries an input may have (checked from its header, before its data
    /// is read); also bounds each output.
    #[arg(long, value_name = "N", default_value_t = npy::DEFAULT_MAX_ELEMENTS)]
    pub max_elements: u64,
}

impl RunArgs {
    /// Arguments for `op` in `mode` reading `(NAME, FILE)` inputs and writing into `out`,
    /// without `--force`.
    pub fn new(op: SpecOp, mode: RunMode, inputs: &[(&str, &Path)], out: &Path) -> RunArgs {
        RunArgs {
            op,
            mode,
            inputs: inputs
                .iter()
                .map(|(n, p)| InputSpec {
                    name: n.to_string(),
                    path: p.to_path_buf(),
                })
                .collect(),
            out: out.to_path_buf(),
            force: false,
            max_elements: npy::DEFAULT_MAX_ELEMENTS,
        }
    }
}

/// `fderiv run`: runs the command and prints one line per file written. Exit codes
/// through [`Failure`]: 2 for bad input, 1 when the computation failed.
pub fn run(args: &RunArgs) -> Result<(), Failure> {
    for (path, dims) in execute(args)? {
        println!("wrote {} ({})", path.display(), fmt_dims(&dims));
    }
    Ok(())
}

/// The command without printing: checks, reads, computes, guards, writes; returns the
/// files written with their shapes. Nothing is written unless every check passed.
pub fn execute(args: &RunArgs) -> Result<Vec<(PathBuf, crate::tensor::Dims)>, RunError> {
    let files = inputs::select(args.op, args.mode, &args.inputs)?;
    output::check_targets(&args.out, &names::outputs(args.op, args.mode), args.force)?;
    let tensors = inputs::load(args.op, &files, args.max_elements)?;
    let outputs = compute(args.op, args.mode, &tensors)?;
    finite::check_finite(args.op, args.mode, &tensors, &outputs)?;
    let written = output::write_all(&args.out, &outputs, args.force)?;
    Ok(written
        .into_iter()
        .zip(outputs.values().map(|t| t.dims()))
        .collect())
}

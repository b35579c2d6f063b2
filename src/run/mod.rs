//! `fderiv run`: runs the f64 plan of a manifest kernel (forward, JVP or VJP) on NumPy
//! `.npy` files and writes the results as `.npy` files. See `docs/run.md`.
//!
//! The data path: [`task`] builds the kernel from the manifest; [`inputs`] checks the `--input NAME=FILE` names and reads the files
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
pub mod npy;
pub mod output;
pub mod params;
pub mod task;

pub use compute::compute;
pub use error::RunError;
pub use inputs::InputSpec;
pub use params::ParamSpec;
pub use task::Task;

use crate::manifest::KernelMode;
use crate::outcome::Failure;
use crate::tensor::fmt_dims;
use std::path::{Path, PathBuf};

/// Run a manifest kernel (forward, jvp, vjp) on .npy files (C-order float64, rank 3,
/// or rank 2 where the kernel declares h = 1). NaN and ±inf in the inputs propagate
/// into the outputs; an overflow the inputs do not explain is an error.
///
/// Inputs: the kernel's inputs (matmul A, B; softmax_last X), for jvp their tangents
/// (dA, dB), for vjp the cotangent G; a backward pass that reads a saved subterm takes
/// it (softmax_last vjp: S, G) or the inputs it is made from (X, G). Outputs in DIR:
/// the forward output and saved subterms (C.npy), dC.npy, or gA.npy and gB.npy.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The kernel's name in the manifest.
    pub kernel: String,
    /// forward, jvp or vjp.
    #[arg(value_enum)]
    pub mode: KernelMode,
    /// An input, NAME=FILE.npy (repeat per input).
    #[arg(long = "input", value_name = "NAME=FILE.npy", required = true)]
    pub inputs: Vec<InputSpec>,
    /// A runtime scalar parameter of the term, NAME=VALUE (`c=0.125` for `@c`).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<ParamSpec>,
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
    /// The kernel manifest (default: the crate's own fderiv.toml).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
}

impl RunArgs {
    /// Arguments for `kernel` (of the crate's own manifest) in `mode` reading
    /// `(NAME, FILE)` inputs and writing into `out`, without `--force`.
    pub fn new(kernel: &str, mode: KernelMode, inputs: &[(&str, &Path)], out: &Path) -> RunArgs {
        RunArgs {
            kernel: kernel.to_string(),
            mode,
            inputs: inputs
                .iter()
                .map(|(n, p)| InputSpec {
                    name: n.to_string(),
                    path: p.to_path_buf(),
                })
                .collect(),
            params: Vec::new(),
            out: out.to_path_buf(),
            force: false,
            max_elements: npy::DEFAULT_MAX_ELEMENTS,
            manifest: None,
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
    let task = Task::load(args.manifest.as_deref(), &args.kernel, args.mode)?;
    execute_task(&task, args)
}

/// [`execute`] with the kernel already built (`args.kernel`, `args.mode` and
/// `args.manifest` are not read): one [`Task::load`] for many runs of the same kernel.
pub fn execute_task(
    task: &Task,
    args: &RunArgs,
) -> Result<Vec<(PathBuf, crate::tensor::Dims)>, RunError> {
    let (plan, files) = inputs::select(task, &args.inputs)?;
    output::check_targets(&args.out, &task.output_files(), args.force)?;
    let mut tensors = inputs::load(task, &task.plans[plan], &files, args.max_elements)?;
    params::bind(task, plan, &args.params, &mut tensors)?;
    let outputs = compute(task, plan, &tensors)?;
    finite::check_finite(task, plan, &tensors, &outputs)?;
    let written = output::write_all(&args.out, &outputs, args.force)?;
    Ok(written
        .into_iter()
        .zip(outputs.values().map(|t| t.dims()))
        .collect())
}

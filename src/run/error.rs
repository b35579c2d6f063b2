//! Everything `fderiv run` can refuse, with the exit code each maps to.

use crate::exec::ExecError;
use crate::manifest::ManifestError;
use crate::outcome::Failure;
use std::path::PathBuf;

/// Why `fderiv run` stopped. Every variant about a file names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An input file could not be opened or read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An input path exists but is not a regular file (a directory, a FIFO, a device).
    #[error("{} is not a regular file", path.display())]
    InputNotFile {
        /// The path.
        path: PathBuf,
    },
    /// An input path is a symbolic link that does not resolve (a loop, or a missing
    /// target).
    #[error("cannot read {}: it is a symbolic link that does not resolve (a loop or a missing target): {source}", path.display())]
    BrokenSymlink {
        /// The link.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The header announces more entries than the limit (checked before anything the
    /// header sizes is allocated).
    #[error("{} declares shape {} ({} entries), more than the limit of {limit} (raise it with --max-elements)", path.display(), fmt_shape(shape), shape.iter().product::<u64>())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The shape as written (its product fits in u64).
        shape: Vec<u64>,
        /// The limit.
        limit: u64,
    },
    /// The inputs' shapes make a result (an output or an intermediate) larger than the
    /// limit, though each input is within it.
    #[error("the inputs' shapes make {task} compute a result of shape {shape}, more entries than the limit of {limit} (raise it with --max-elements)")]
    ResultTooLarge {
        /// The op.
        task: String,
        /// The result's shape, `h×m×p`.
        shape: String,
        /// The limit.
        limit: u64,
    },
    /// The file is not a `.npy` file (bad magic, broken header).
    #[error("{} is not a valid .npy file: {reason}", path.display())]
    NotNpy {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The dtype is not float64.
    #[error("{} holds dtype {dtype}; fderiv run needs float64 ('<f8' or '>f8')", path.display())]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The dtype as written in the header.
        dtype: String,
    },
    /// The array is stored in Fortran (column-major) order.
    #[error("{} is stored in Fortran order; fderiv run needs C order (numpy.ascontiguousarray)", path.display())]
    FortranOrder {
        /// The file.
        path: PathBuf,
    },
    /// The array does not have rank 3.
    #[error("{} has rank {} (shape {}); fderiv run needs rank 3 (h×m×n), or rank 2 (m×n) where the kernel declares h = 1", path.display(), shape.len(), fmt_shape(shape))]
    Rank {
        /// The file.
        path: PathBuf,
        /// The shape as written.
        shape: Vec<u64>,
    },
    /// The shape's size does not fit in memory addresses.
    #[error("{} declares shape {}, too large to hold", path.display(), fmt_shape(shape))]
    Oversized {
        /// The file.
        path: PathBuf,
        /// The shape as written.
        shape: Vec<u64>,
    },
    /// The data part is shorter than the shape needs.
    #[error("{} is truncated: its shape needs {expected} bytes of data but the file has {found}", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Bytes follow the data.
    #[error("{} has {extra} bytes after the data its shape declares", path.display())]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// How many.
        extra: usize,
    },
    /// `--input NAME=...` with a name the op and mode do not take.
    #[error("unknown input {name} for {task} (it takes {expected})")]
    UnknownInput {
        /// The name given.
        name: String,
        /// `op mode`, e.g. `matmul jvp`.
        task: String,
        /// The names it takes.
        expected: String,
    },
    /// A name the op and mode need was not given.
    #[error("{task} needs input {name}: add --input {name}=FILE.npy")]
    MissingInput {
        /// The missing name.
        name: String,
        /// `op mode`.
        task: String,
    },
    /// A `--param` that is unknown, repeated, missing or not finite.
    #[error("parameter {name}: {why} (nothing was written)")]
    BadParam {
        /// The parameter.
        name: String,
        /// What is wrong.
        why: String,
    },
    /// The same name was given twice.
    #[error("input {name} is given twice ({} and {})", first.display(), second.display())]
    DuplicateInput {
        /// The name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// An input's shape disagrees with the shapes of the inputs given before it.
    #[error("{name} ({}) has shape {shape} but {fixed_by} {} {name} to be {needed}", path.display(), if fixed_by.contains(" and ") { "need" } else { "needs" })]
    Shape {
        /// The offending input.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Its shape, `h×m×n`.
        shape: String,
        /// The inputs that fix its shape, with theirs: `A (2×3×4)`.
        fixed_by: String,
        /// The shape it must have, `2×4×p` (letters are still free).
        needed: String,
    },
    /// An input's shape cannot be its declared shape whatever its free dims are (a
    /// product dim `4*d` given a size that 4 does not divide: the head count must
    /// divide the width).
    #[error("{name} ({}) has shape {shape}, which cannot be {why}", path.display())]
    Declared {
        /// The offending input.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Its shape, `h×m×n`.
        shape: String,
        /// Its declared shape (with the sizes bound so far), the first axis that cannot
        /// fit, and why: `its declared shape 1×m×4*d: axis 2: …`.
        why: String,
    },
    /// An output file exists and `--force` was not given.
    #[error("{} exists; pass --force to overwrite it (nothing was written)", path.display())]
    OutputExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Two outputs would be written to the same file.
    #[error("outputs {first} and {second} would both be written to {} (nothing was written)", path.display())]
    SamePath {
        /// The first output's name.
        first: String,
        /// The second output's name.
        second: String,
        /// The shared path.
        path: PathBuf,
    },
    /// An output path exists but is not a regular file.
    #[error("{} exists and is not a regular file (nothing was written)", path.display())]
    OutputNotFile {
        /// The path.
        path: PathBuf,
    },
    /// The output directory or an output file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The result has non-finite entries that do not come from non-finite inputs.
    #[error("{output}[{}, {}, {}] would be {value}, which no NaN or ±inf input explains: the f64 evaluation of {task} overflowed on these inputs (nothing was written)", index[0], index[1], index[2])]
    NonFinite {
        /// The output name.
        output: String,
        /// The first non-finite entry (head, row, column) the overflow produced.
        index: [usize; 3],
        /// Its value (±inf or NaN).
        value: f64,
        /// `op mode`.
        task: String,
    },
    /// The manifest is broken, names no such kernel or mode, or the kernel does not
    /// build.
    #[error(transparent)]
    Manifest(#[from] Box<ManifestError>),
    /// The embedded rules failed to load (an internal error).
    #[error("loading the rules failed: {0}")]
    Rules(String),
    /// Running the kernel failed (an internal error: inputs were checked).
    #[error("running the kernel failed: {0}")]
    Exec(#[from] ExecError),
    /// The kernel produced no value for an output (an internal error).
    #[error("the kernel produced no {0}")]
    Missing(String),
}

/// `3×4`, `6`, or `()` for a 0-d array.
fn fmt_shape(shape: &[u64]) -> String {
    if shape.is_empty() {
        return "()".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

impl RunError {
    /// The process exit code: 2 for bad input (files, names, shapes, output paths),
    /// 1 when the computation itself failed (overflow guard, internal errors).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::NonFinite { .. }
            | RunError::Rules(_)
            | RunError::Exec(_)
            | RunError::Missing(_) => 1,
            _ => 2,
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Failure {
        match e.exit_code() {
            1 => Failure::check(e),
            _ => Failure::input(e),
        }
    }
}

//! Emission: standalone Rust source for the forward, JVP and VJP kernels of both ops,
//! generated from their lowered plans.
//!
//! For each op and kernel the term is derived with the rule set (forward: the op's own
//! term), lowered with softmax subterms read from a saved input `S` (so the softmax
//! JVP/VJP take the forward output, as autograd saves it), and translated step by step:
//! a GEMM becomes a call of `runtime::bmm` with transpose flags, a transpose copy a call
//! of `runtime::transpose`, a fused row pass a `runtime::row_pass` whose body is the
//! row program written out as loops. Each file names the derived expression and the
//! hash of the rule set; regenerating yields the same bytes ([`check`]).

mod code;

use crate::derive::{derive_unchecked, refuse_unsound, DeriveError, Limits, Mode, SpecOp};
use crate::ir::Expr;
use crate::lower::{lower_with, LowerError, Plan};
use crate::rules::{rules_hash, RuleSet};
use crate::rungs::{saved_softmax, Kernel};
use std::path::{Path, PathBuf};

/// The runtime every generated kernel uses, emitted verbatim.
pub const RUNTIME: &str = include_str!("../kernels/generated/runtime.rs");

/// Where the committed kernels live, relative to the crate root.
pub const COMMITTED_DIR: &str = "src/kernels/generated";

/// Why emission failed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The rule set fails the soundness check.
    #[error(transparent)]
    Unsound(DeriveError),
    /// Deriving a kernel failed.
    #[error("deriving {kernel}: {source}")]
    Derive {
        /// The kernel.
        kernel: String,
        /// Why.
        source: DeriveError,
    },
    /// Lowering a kernel failed.
    #[error("lowering {kernel}: {source}")]
    Lower {
        /// The kernel.
        kernel: String,
        /// Why.
        source: LowerError,
    },
    /// A plan cannot be written as Rust (a name clash, a dim that is not a name).
    #[error("writing {kernel}: {why}")]
    Code {
        /// The kernel.
        kernel: String,
        /// Why.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Files differ from what the rules generate.
    #[error("{} generated file(s) are stale or missing: {}\n  regenerate with: cargo run -- emit --out {} --force", stale.len(), stale.join(", "), dir.display())]
    Stale {
        /// The folder checked.
        dir: PathBuf,
        /// The file names that differ or are missing.
        stale: Vec<String>,
    },
    /// Files exist with other contents and `--force` was not given.
    #[error("{} would be overwritten: {} (pass --force; nothing was written)", dir.display(), files.join(", "))]
    Exists {
        /// The folder.
        dir: PathBuf,
        /// The files that would change.
        files: Vec<String>,
    },
}

/// One kernel: an op and forward, JVP or VJP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelId {
    /// The op.
    pub op: SpecOp,
    /// Forward or a derivative.
    pub kernel: Kernel,
}

impl KernelId {
    /// All six kernels, in a fixed order.
    pub fn all() -> Vec<KernelId> {
        let kernels = [
            Kernel::Forward,
            Kernel::Derived(Mode::Jvp),
            Kernel::Derived(Mode::Vjp),
        ];
        [SpecOp::Matmul, SpecOp::SoftmaxLast]
            .into_iter()
            .flat_map(|op| {
                kernels
                    .into_iter()
                    .map(move |kernel| KernelId { op, kernel })
            })
            .collect()
    }

    /// `matmul_forward`, `softmax_last_vjp`, ...
    pub fn name(&self) -> String {
        let mode = match self.kernel {
            Kernel::Forward => "forward".to_string(),
            Kernel::Derived(m) => m.to_string(),
        };
        format!("{}_{mode}", self.op)
    }
}

/// A kernel's term and plan, as emission sees them.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// Which kernel.
    pub id: KernelId,
    /// The forward term or the derived derivative.
    pub term: Expr,
    /// Its plan (softmax subterms read from saved inputs).
    pub plan: Plan,
}

/// Derives and lowers one kernel with `rules`, which the caller has checked for
/// soundness ([`refuse_unsound`]; [`generate`] does).
pub fn lower_kernel(id: KernelId, rules: &RuleSet) -> Result<Lowered, EmitError> {
    let name = id.name();
    let derive_err = |source| EmitError::Derive {
        kernel: name.clone(),
        source,
    };
    let (term, shapes) = match id.kernel {
        Kernel::Forward => {
            let r = id.op.request(Mode::Jvp).map_err(derive_err)?;
            (r.forward, r.shapes)
        }
        Kernel::Derived(mode) => {
            let r = id.op.request(mode).map_err(derive_err)?;
            let d = derive_unchecked(&r, rules, &Limits::default()).map_err(derive_err)?;
            (d.result, d.request.shapes)
        }
    };
    let plan =
        lower_with(&term, &shapes, &saved_softmax(&term)).map_err(|source| EmitError::Lower {
            kernel: name.clone(),
            source,
        })?;
    Ok(Lowered { id, term, plan })
}

/// Every generated file (name, contents): `mod.rs`, `runtime.rs` and one file per
/// kernel.
pub fn generate(rules: &RuleSet) -> Result<Vec<(String, String)>, EmitError> {
    refuse_unsound(rules).map_err(EmitError::Unsound)?;
    let hash = rules_hash(&rules.rules);
    let mut files = Vec::new();
    let mut names = Vec::new();
    for id in KernelId::all() {
        let lowered = lower_kernel(id, rules)?;
        let text = code::kernel_file(&lowered, hash).map_err(|why| EmitError::Code {
            kernel: id.name(),
            why,
        })?;
        names.push(id.name());
        files.push((format!("{}.rs", id.name()), text));
    }
    files.push(("runtime.rs".to_string(), RUNTIME.to_string()));
    files.insert(0, ("mod.rs".to_string(), code::mod_file(&names, hash)));
    Ok(files)
}

/// The files of `files` whose contents in `dir` differ (or are missing).
pub fn differing(dir: &Path, files: &[(String, String)]) -> Vec<String> {
    files
        .iter()
        .filter(|(name, text)| {
            std::fs::read_to_string(dir.join(name)).ok().as_deref() != Some(text)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Checks that `dir` holds exactly what `rules` generate.
pub fn check(dir: &Path, rules: &RuleSet) -> Result<usize, EmitError> {
    let files = generate(rules)?;
    let stale = differing(dir, &files);
    if stale.is_empty() {
        Ok(files.len())
    } else {
        Err(EmitError::Stale {
            dir: dir.to_path_buf(),
            stale,
        })
    }
}

/// Writes the generated files into `dir` (created if missing). Files that exist with
/// other contents are replaced only with `force`; each file is written to a temporary
/// file and renamed into place. Returns the names of the files written.
pub fn write(dir: &Path, rules: &RuleSet, force: bool) -> Result<Vec<String>, EmitError> {
    let files = generate(rules)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EmitError::Io { path, source }
    };
    let changed = differing(dir, &files);
    let clobbered: Vec<String> = changed
        .iter()
        .filter(|n| dir.join(n).exists())
        .cloned()
        .collect();
    if !force && !clobbered.is_empty() {
        return Err(EmitError::Exists {
            dir: dir.to_path_buf(),
            files: clobbered,
        });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for (name, text) in files.iter().filter(|(n, _)| changed.contains(n)) {
        let target = dir.join(name);
        let part = dir.join(format!(".{name}.part"));
        std::fs::write(&part, text).map_err(io(&part))?;
        std::fs::rename(&part, &target).map_err(io(&target))?;
    }
    Ok(changed)
}

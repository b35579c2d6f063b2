//! The kernel manifest: named kernels as data, read by every command.
//!
//! A kernel is a forward term, the symbolic shape of each input (`h,m,n`), the modes to
//! build (forward, jvp, vjp), the inputs differentiated (`wrt`), the forward subterms
//! saved for the backward pass (as autograd saves the softmax output), the folder its
//! generated source goes to, and optionally its counterpart in the spec mirror. The
//! crate's own kernels are the entries of `fderiv.toml` (embedded at build time); a
//! user's manifest is read with `--manifest PATH`. See `docs/your-own-kernel.md`.
//!
//! [`KernelDef::build`] is the one place a kernel's term, derivation and plan are made:
//! `derive`, `verify`, `emit`, `run` and `bench` all go through it.

mod load;

pub use load::{parse_manifest, DEFAULT_OUT};

use crate::derive::{derive_unchecked, Derivation, DeriveError, Limits, Mode, Request};
use crate::ir::shape::ShapeEnv;
use crate::ir::Expr;
use crate::lower::{lower, lower_saving, lower_with, LowerError, Plan, Saved};
use crate::rules::file::Location;
use crate::rules::RuleSet;
use egg::Symbol;
use std::fmt;
use std::path::{Path, PathBuf};

/// The crate's own manifest, embedded at build time.
pub const EMBEDDED: &str = include_str!("../../fderiv.toml");

/// The name the embedded manifest goes by in messages.
pub const EMBEDDED_NAME: &str = "fderiv.toml";

/// The forward map or one of its derivatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum KernelMode {
    /// The forward map (writes its output and the saved subterms).
    Forward,
    /// The derivative applied to the inputs' tangents.
    Jvp,
    /// The adjoint of the derivative applied to a cotangent G.
    Vjp,
}

impl KernelMode {
    /// Forward, JVP, VJP.
    pub const ALL: [KernelMode; 3] = [KernelMode::Forward, KernelMode::Jvp, KernelMode::Vjp];

    /// The derivation mode, or `None` for the forward map.
    pub fn derivative(self) -> Option<Mode> {
        match self {
            KernelMode::Forward => None,
            KernelMode::Jvp => Some(Mode::Jvp),
            KernelMode::Vjp => Some(Mode::Vjp),
        }
    }

    /// `forward`, `jvp` or `vjp`.
    pub fn parse(text: &str) -> Option<KernelMode> {
        KernelMode::ALL.into_iter().find(|m| m.to_string() == text)
    }
}

impl fmt::Display for KernelMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KernelMode::Forward => "forward",
            KernelMode::Jvp => "jvp",
            KernelMode::Vjp => "vjp",
        })
    }
}

/// The ops the spec mirror has, as a kernel's counterpart (`spec = "matmul"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecOp {
    /// `Batched.matmul`: (h×m×n)·(h×n×p).
    Matmul,
    /// `Batched.softmaxLast`: softmax along the last axis of h×m×n.
    SoftmaxLast,
    /// The multi-head attention block with `heads` heads (`MultiHeadAttention.mhaDGraph`
    /// for [`HeadLayout::Lean`], its PyTorch-layout twin for [`HeadLayout::PyTorch`]).
    Mha {
        /// How `x·Wq` (and K, V) is split into heads.
        layout: HeadLayout,
        /// The number of heads, read from the kernel's term.
        heads: usize,
    },
}

/// How the attention block splits `n×(h·d)` into `h×n×d` heads (docs/mha-layout.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadLayout {
    /// `mhaDGraph`: one `reshape` (the same row-major coordinates).
    Lean,
    /// `torch.nn.MultiheadAttention`: `view(n, h, d).transpose(0, 1)`.
    PyTorch,
}

impl fmt::Display for SpecOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecOp::Matmul => "matmul",
            SpecOp::SoftmaxLast => "softmax_last",
            SpecOp::Mha {
                layout: HeadLayout::Lean,
                ..
            } => "mha_lean",
            SpecOp::Mha {
                layout: HeadLayout::PyTorch,
                ..
            } => "mha_pytorch",
        })
    }
}

impl SpecOp {
    /// The op named `text`; an attention block takes its head count from `term` (the
    /// first head split in it, else 1, which the term check then refuses).
    pub fn parse(text: &str, term: &crate::ir::Expr) -> Option<SpecOp> {
        let mha = |layout| SpecOp::Mha {
            layout,
            heads: first_head_count(term).unwrap_or(1),
        };
        Some(match text {
            "matmul" => SpecOp::Matmul,
            "softmax_last" => SpecOp::SoftmaxLast,
            "mha_lean" => mha(HeadLayout::Lean),
            "mha_pytorch" => mha(HeadLayout::PyTorch),
            _ => return None,
        })
    }

    /// The term the mirror's op computes and its inputs' shapes, in the Lean order
    /// (`ΓMHA = [x, Wq, Wk, Wv, Wo]` for the attention block).
    pub fn term(&self) -> (String, Vec<(&'static str, String)>) {
        let own = |v: &[(&'static str, &str)]| v.iter().map(|(n, s)| (*n, s.to_string())).collect();
        match *self {
            SpecOp::Matmul => ("(bmm A B)".into(), own(&[("A", "h,m,n"), ("B", "h,n,p")])),
            SpecOp::SoftmaxLast => ("(softmax X)".into(), own(&[("X", "h,m,n")])),
            SpecOp::Mha { layout, heads: k } => {
                let split = |w: &str| match layout {
                    HeadLayout::Lean => format!("(reshape {k} (bmm x {w}))"),
                    HeadLayout::PyTorch => format!("(split {k} (bmm x {w}))"),
                };
                let scores = format!("(softmax (* @c (bmm {} (T {}))))", split("Wq"), split("Wk"));
                let heads_out = format!("(bmm {scores} {})", split("Wv"));
                let merged = match layout {
                    HeadLayout::Lean => format!("(flat {k} (swap {heads_out}))"),
                    HeadLayout::PyTorch => format!("(merge {k} {heads_out})"),
                };
                let wide = format!("1,m,{k}*d");
                let inputs = vec![
                    ("x", "1,n,m".to_string()),
                    ("Wq", wide.clone()),
                    ("Wk", wide.clone()),
                    ("Wv", wide),
                    ("Wo", format!("1,{k}*d,m")),
                ];
                (format!("(bmm {merged} Wo)"), inputs)
            }
        }
    }
}

/// The head count of the first `split` or `reshape` in `term`.
fn first_head_count(term: &crate::ir::Expr) -> Option<usize> {
    let nodes = term.as_ref();
    nodes.iter().find_map(|n| match n {
        crate::ir::Op::Split([k, _]) | crate::ir::Op::Reshape([k, _]) => {
            match &nodes[usize::from(*k)] {
                crate::ir::Op::Num(c) => c.heads(),
                _ => None,
            }
        }
        _ => None,
    })
}

/// What is wrong with a manifest or with a request against it.
#[derive(Debug, thiserror::Error)]
pub enum ManifestErrorKind {
    /// The file could not be read.
    #[error("cannot read the manifest: {0}")]
    Io(String),
    /// Malformed TOML or an unknown field.
    #[error("{0}")]
    Toml(String),
    /// No `[[kernel]]` entries.
    #[error("the manifest declares no [[kernel]]")]
    Empty,
    /// A name with characters that cannot name a file or a Rust function.
    #[error("{what} {name:?}: use {want}")]
    BadName {
        /// Which name.
        what: &'static str,
        /// The name.
        name: String,
        /// What is allowed.
        want: &'static str,
    },
    /// Two kernels share a name.
    #[error("duplicate kernel name (first declared at {first})")]
    Duplicate {
        /// Where the first is.
        first: String,
    },
    /// The term does not parse or holds a derivative operator.
    #[error("bad term: {0}")]
    Term(String),
    /// Shapes disagree, or a declared shape does not parse.
    #[error("{0}")]
    Shape(String),
    /// The term uses an input the kernel does not declare.
    #[error("the term uses input {0}, which `inputs` does not declare")]
    UndeclaredInput(String),
    /// An input is declared that the term never uses.
    #[error("input {0} is declared but the term does not use it")]
    UnusedInput(String),
    /// A mode other than forward, jvp, vjp.
    #[error("unknown mode {0:?} (modes: forward, jvp, vjp)")]
    Mode(String),
    /// `modes = []`: the kernel would build nothing.
    #[error("modes = [] builds nothing: list at least one of forward, jvp, vjp")]
    NoModes,
    /// `wrt = []` with a derivative mode: nothing to differentiate.
    #[error(
        "wrt = [] differentiates nothing: list at least one input, or build only the forward mode"
    )]
    NoWrt,
    /// A `bench` entry that does not give exactly the kernel's named dims.
    #[error("bench sizes name {given}, but the kernel's dims are {dims}: give each exactly once")]
    BenchDims {
        /// The names given.
        given: String,
        /// The kernel's named dims.
        dims: String,
    },
    /// `wrt` names something that is not an input.
    #[error("wrt names {name}, which is not an input (inputs: {inputs})")]
    Wrt {
        /// The name.
        name: String,
        /// The inputs.
        inputs: String,
    },
    /// A saved term does not occur in the forward term.
    #[error("saved term {saved} is not a subterm of the forward term {term}")]
    NotASubterm {
        /// The saved term.
        saved: String,
        /// The forward term.
        term: String,
    },
    /// The whole forward term is saved under another name than the output's.
    #[error("{saved} saves the whole forward term: name it {output}, the kernel's output")]
    SavedOutput {
        /// The saved name.
        saved: String,
        /// The output name.
        output: String,
    },
    /// An unknown spec counterpart.
    #[error("unknown spec op {0:?} (the mirror has: matmul, softmax_last, mha_lean, mha_pytorch)")]
    Spec(String),
    /// The kernel is not the spec op it names.
    #[error("spec = {op:?} needs exactly the term {term} with the mirror's inputs and shapes")]
    SpecMismatch {
        /// The op.
        op: String,
        /// Its term.
        term: String,
    },
    /// No kernel of that name.
    #[error("no kernel named {name:?} (kernels: {known})")]
    UnknownKernel {
        /// The name asked for.
        name: String,
        /// The kernels there are.
        known: String,
    },
    /// The kernel does not build this mode.
    #[error("the kernel does not build {mode} (modes: {modes})")]
    ModeNotBuilt {
        /// The mode asked for.
        mode: String,
        /// The modes declared.
        modes: String,
    },
    /// Deriving the kernel failed.
    #[error(transparent)]
    Derive(#[from] DeriveError),
    /// Lowering the kernel failed.
    #[error("lowering: {0}")]
    Lower(#[from] LowerError),
}

/// A manifest error: where (the manifest's file:line:column), which kernel, what.
#[derive(Debug, thiserror::Error)]
pub struct ManifestError {
    /// Where in the manifest, when known.
    pub location: Option<Location>,
    /// The kernel concerned, when known.
    pub kernel: Option<String>,
    /// What is wrong.
    pub kind: Box<ManifestErrorKind>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(l) = &self.location {
            write!(f, "{l}: ")?;
        }
        if let Some(k) = &self.kernel {
            write!(f, "kernel {k}: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl ManifestError {
    /// Whether a derivation failed because the rule set is unsound (a failed check,
    /// not bad input).
    pub fn is_unsound(&self) -> bool {
        matches!(
            *self.kind,
            ManifestErrorKind::Derive(DeriveError::Unsound(_))
        )
    }
}

/// One kernel of a manifest, checked.
#[derive(Debug, Clone)]
pub struct KernelDef {
    /// Its name (lower-case identifier; names files and functions).
    pub name: String,
    /// Where its name is declared.
    pub at: Location,
    /// The forward term.
    pub term: Expr,
    /// The inputs, in declaration order.
    pub inputs: Vec<Symbol>,
    /// Their symbolic shapes.
    pub shapes: ShapeEnv,
    /// The name of the forward output (`C`, `S`; `out` by default).
    pub output: String,
    /// The modes to build.
    pub modes: Vec<KernelMode>,
    /// The inputs differentiated.
    pub wrt: Vec<Symbol>,
    /// Forward subterms saved for the backward passes, read from inputs there.
    pub save: Vec<Saved>,
    /// Where `emit` writes its source.
    pub out_dir: PathBuf,
    /// Its counterpart in the spec mirror.
    pub spec: Option<SpecOp>,
    /// The named dims of its inputs, in order of first appearance (the order of
    /// `bench --shapes` sizes).
    pub dims: Vec<String>,
    /// The sizes `fderiv bench` times it at by default, one per entry of `bench`,
    /// in the order of [`KernelDef::dims`].
    pub bench: Vec<Vec<usize>>,
}

/// A kernel in one mode, built: its term, the derivation behind it, and its plans.
#[derive(Debug)]
pub struct Built {
    /// The kernel's name.
    pub kernel: String,
    /// The mode.
    pub mode: KernelMode,
    /// The forward term, or the derived JVP/VJP.
    pub term: Expr,
    /// The shapes of its inputs (with `G` for a VJP).
    pub shapes: ShapeEnv,
    /// The derivation (JVP/VJP only).
    pub derivation: Option<Derivation>,
    /// The plan computing everything from the inputs (saved subterms recomputed).
    pub full_plan: Plan,
    /// The plan as the kernel runs it: the backward passes read the saved subterms
    /// from inputs; the forward pass writes them as outputs.
    pub plan: Plan,
}

impl KernelDef {
    /// An error about this kernel at its name.
    pub fn error(&self, kind: ManifestErrorKind) -> ManifestError {
        ManifestError {
            location: Some(self.at.clone()),
            kernel: Some(self.name.clone()),
            kind: Box::new(kind),
        }
    }

    /// `matmul_vjp`: the name of the kernel in one mode (file and function names).
    pub fn mode_name(&self, mode: KernelMode) -> String {
        format!("{}_{mode}", self.name)
    }

    /// The derivation request of this kernel in `mode`.
    pub fn request(&self, mode: Mode) -> Result<Request, ManifestError> {
        Request::from_expr(
            self.term.clone(),
            self.shapes.clone(),
            Some(self.wrt.clone()),
            mode,
        )
        .map(|r| r.keeping(self.save.iter().map(|s| s.term.clone()).collect()))
        .map_err(|e| self.error(e.into()))
    }

    /// Checks that the kernel builds `mode`.
    pub fn check_mode(&self, mode: KernelMode) -> Result<(), ManifestError> {
        if self.modes.contains(&mode) {
            Ok(())
        } else {
            let modes: Vec<String> = self.modes.iter().map(|m| m.to_string()).collect();
            Err(self.error(ManifestErrorKind::ModeNotBuilt {
                mode: mode.to_string(),
                modes: modes.join(", "),
            }))
        }
    }

    /// Builds the kernel in every mode it declares ([`KernelDef::build`]).
    pub fn build_all(&self, rules: &RuleSet, limits: &Limits) -> Result<Vec<Built>, ManifestError> {
        self.modes
            .iter()
            .map(|m| self.build(*m, rules, limits))
            .collect()
    }

    /// Builds the kernel in `mode` with `rules` (which the caller has checked for
    /// soundness: see [`crate::derive::refuse_unsound`]): derives it, then lowers it
    /// twice — with the saved subterms recomputed, and as the kernel runs.
    pub fn build(
        &self,
        mode: KernelMode,
        rules: &RuleSet,
        limits: &Limits,
    ) -> Result<Built, ManifestError> {
        self.check_mode(mode)?;
        let (term, shapes, derivation) = match mode.derivative() {
            None => (self.term.clone(), self.shapes.clone(), None),
            Some(m) => {
                let d = derive_unchecked(&self.request(m)?, rules, limits)
                    .map_err(|e| self.error(e.into()))?;
                (d.result.clone(), d.request.shapes.clone(), Some(d))
            }
        };
        let lowering = |e: LowerError| self.error(e.into());
        let full_plan = lower(&term, &shapes).map_err(lowering)?;
        let plan = match mode {
            KernelMode::Forward => {
                let extra: Vec<Saved> = self
                    .save
                    .iter()
                    .filter(|s| s.term != self.term)
                    .cloned()
                    .collect();
                lower_saving(&term, &shapes, &extra)
            }
            _ => lower_with(&term, &shapes, &self.save),
        }
        .map_err(lowering)?;
        Ok(Built {
            kernel: self.name.clone(),
            mode,
            term,
            shapes,
            derivation,
            full_plan,
            plan,
        })
    }
}

/// A set of kernels read from one manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Where it came from (a path, or the embedded `fderiv.toml`).
    pub source: String,
    /// Its kernels, in file order.
    pub kernels: Vec<KernelDef>,
}

impl Manifest {
    /// The crate's own manifest (`fderiv.toml`, embedded; `out` folders relative to
    /// the current directory, as when run from the crate root).
    pub fn embedded() -> Result<Manifest, ManifestError> {
        Ok(Manifest {
            source: format!("{EMBEDDED_NAME} (embedded)"),
            kernels: parse_manifest(EMBEDDED_NAME, EMBEDDED, Path::new(""))?,
        })
    }

    /// Reads the manifest at `path`; `out` folders are relative to its folder.
    pub fn from_path(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            location: None,
            kernel: None,
            kind: Box::new(ManifestErrorKind::Io(format!("{}: {e}", path.display()))),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(Manifest {
            source: path.display().to_string(),
            kernels: parse_manifest(&path.display().to_string(), &text, base)?,
        })
    }

    /// The manifest at `path`, or the embedded one.
    pub fn load(path: Option<&Path>) -> Result<Manifest, ManifestError> {
        match path {
            Some(p) => Manifest::from_path(p),
            None => Manifest::embedded(),
        }
    }

    /// The kernel called `name`.
    pub fn kernel(&self, name: &str) -> Result<&KernelDef, ManifestError> {
        self.kernels
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| ManifestError {
                location: None,
                kernel: None,
                kind: Box::new(ManifestErrorKind::UnknownKernel {
                    name: name.to_string(),
                    known: self.names().join(", "),
                }),
            })
    }

    /// The kernels called `names`, or all of them when `names` is empty.
    pub fn select(&self, names: &[String]) -> Result<Vec<&KernelDef>, ManifestError> {
        if names.is_empty() {
            return Ok(self.kernels.iter().collect());
        }
        names.iter().map(|n| self.kernel(n)).collect()
    }

    /// Every kernel's name.
    pub fn names(&self) -> Vec<String> {
        self.kernels.iter().map(|k| k.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests;

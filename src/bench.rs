//! `fderiv bench`: times every kernel of the manifest (each mode it builds) on the
//! sizes its `bench` entries give, or on `--shapes`, beside in-run references: the
//! batched GEMM of the same shape (the kernels' own `runtime::bmm` on `matrixmultiply`;
//! `benches/gemm_crates.rs` compares it with the other Rust GEMM crates, figures in
//! docs/performance.md) for kernels with GEMMs,
//! and a STREAM triad over as many values for the others.
//!
//! A kernel whose generated source is compiled into this crate (the crate's own
//! manifest) is timed in both forms of its generated entry in [`KERNELS`]: allocating
//! (`run`) and writing into reused outputs (`run_into`). Any other manifest kernel (a
//! user's, `--manifest PATH`) is timed as the f64 executor runs its plan (`exec`): the
//! same plan its generated source follows. Figures are medians of wall-clock times;
//! each row's reference is timed in batches alternating with the row's own
//! ([`paired_medians`]), so that its ratio compares the two on the same machine state.

use crate::exec::{exec_f64, Tensors};
use crate::kernels::runtime::{self, Tensor3, Workspace};
use crate::kernels::{Entry, KERNELS};
use crate::lower::{Plan, Role, Step};
use crate::manifest::{Built, KernelDef, KernelMode, Manifest, ManifestError};
use crate::outcome::{Failure, Format};
use crate::rules::RuleSet;
use crate::tensor::Tensor;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `fderiv bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Manifest kernels (`matmul`) or one mode of one (`matmul_jvp`); all by default.
    pub kernels: Vec<String>,
    /// The kernel manifest (default: the crate's own fderiv.toml).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Sizes replacing the manifest's `bench` entries, e.g. `2x3x4x5,2x3x4`: each
    /// kernel runs those with as many sizes as it has named dims, in the order its
    /// inputs first name them (`derive KERNEL --plan` lists the inputs).
    #[arg(long, value_delimiter = ',')]
    pub shapes: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Timed calls per row (fewer when a row passes 2 s, more while it has run under 0.3 s, up to 1000); the median is reported.
    #[arg(long, default_value_t = 15)]
    pub reps: usize,
}

/// One timed row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The kernel (`matmul`), or `reference`.
    pub op: String,
    /// `forward`, `jvp`, `vjp`, or the reference's kind (`gemm`, `triad`).
    pub mode: String,
    /// The kernel's named dims' sizes, in order.
    pub shape: Vec<usize>,
    /// `alloc` (generated, outputs allocated per call), `into` (generated, reused
    /// outputs) or `exec` (the f64 executor on the kernel's plan).
    pub form: String,
    /// The median of the timed calls, in seconds.
    pub median_s: f64,
    /// GFLOP/s (kernels with GEMMs) or GB/s (the others).
    pub rate: f64,
    /// `GFLOP/s` or `GB/s`.
    pub unit: String,
    /// `rate` over the reference's rate on the same shape, the reference timed in
    /// batches alternating with this row's ([`paired_medians`]).
    pub ratio: f64,
}

/// Why the arguments cannot be benchmarked.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The manifest, a kernel name or a build failed.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A shape that is not sizes joined by `x`.
    #[error("bad shape {0:?}: expected sizes joined by x, e.g. 8x64x64x64")]
    Shape(String),
    /// Shapes none of whose lengths fits a selected kernel.
    #[error("no selected kernel has {0} named dims")]
    NoKernel(usize),
    /// A selected kernel with neither `bench` sizes nor fitting `--shapes`.
    #[error("kernel {kernel} has no sizes to time: add bench = [{{ {example} }}] to its manifest entry, or pass --shapes")]
    NoSizes {
        /// The kernel.
        kernel: String,
        /// Its dims with placeholder sizes.
        example: String,
    },
    /// The compiled-in generated kernel does not have the manifest kernel's dims.
    #[error("the compiled kernel {0} does not match the manifest: run fderiv emit and rebuild")]
    Stale(String),
    /// A kernel refused its inputs (a shape too large, ...).
    #[error("{0}")]
    Kernel(#[from] runtime::KernelError),
    /// A plan buffer that is not h×m×n.
    #[error("plan buffer {0} has rank {1}; the executor's buffers are h×m×n")]
    Rank(String, usize),
    /// The embedded rules did not load.
    #[error(transparent)]
    Rules(#[from] crate::rules::RuleError),
    /// The executor refused its inputs.
    #[error("{0}")]
    Exec(#[from] crate::exec::ExecError),
}

/// How one kernel mode is run.
enum Runner {
    /// Its generated entry, compiled into this crate.
    Compiled(&'static Entry),
    /// The f64 executor on its plan.
    Planned(Box<Built>),
}

/// One kernel mode to time, with the sizes to time it at.
struct Target {
    def: KernelDef,
    mode: KernelMode,
    runner: Runner,
    sizes: Vec<Vec<usize>>,
}

/// The generated entry compiled into this crate for `def` in `mode`, if any.
pub fn compiled(def: &KernelDef, mode: KernelMode) -> Option<&'static Entry> {
    let name = def.mode_name(mode);
    (def.out_dir == Path::new(crate::emit::COMMITTED_DIR))
        .then(|| KERNELS.iter().find(|e| e.name == name))
        .flatten()
}

/// `sizes` (in `def.dims` order) in the order of `e.dims`.
pub fn entry_shape(def: &KernelDef, e: &Entry, sizes: &[usize]) -> Result<Vec<usize>, BenchError> {
    e.dims
        .iter()
        .map(|d| {
            def.dims
                .iter()
                .position(|n| n == d)
                .and_then(|i| sizes.get(i).copied())
                .ok_or_else(|| BenchError::Stale(e.name.to_string()))
        })
        .collect()
}

/// The selected kernel modes of `manifest` with their sizes (`given`, else each
/// kernel's `bench` entries), in manifest order.
fn targets(
    manifest: &Manifest,
    names: &[String],
    given: &[Vec<usize>],
) -> Result<Vec<Target>, BenchError> {
    let by_mode = |n: &str| {
        manifest.kernels.iter().find_map(|k| {
            k.modes
                .iter()
                .find(|m| k.mode_name(**m) == n)
                .map(|m| (k.name.clone(), *m))
        })
    };
    let mut wanted: Vec<(String, Option<KernelMode>)> = Vec::new();
    for n in names {
        match by_mode(n) {
            Some((k, m)) => wanted.push((k, Some(m))),
            None => wanted.push((manifest.kernel(n)?.name.clone(), None)),
        }
    }
    // Loaded only when a kernel is not compiled in (its plan is derived here).
    let mut rules: Option<RuleSet> = None;
    // `emit`'s limits (explanations on): a derivation stopped by a limit extracts another,
    // equivalent term with them off, and this must be the plan the generated source follows.
    let limits = crate::derive::Limits::default();
    let mut out = Vec::new();
    for def in &manifest.kernels {
        let sizes: Vec<Vec<usize>> = if given.is_empty() {
            def.bench.clone()
        } else {
            given
                .iter()
                .filter(|s| s.len() == def.dims.len())
                .cloned()
                .collect()
        };
        for &mode in &def.modes {
            let picked = names.is_empty()
                || wanted
                    .iter()
                    .any(|(k, m)| *k == def.name && m.is_none_or(|m| m == mode));
            if !picked || (sizes.is_empty() && !given.is_empty()) {
                continue;
            }
            if sizes.is_empty() {
                return Err(BenchError::NoSizes {
                    kernel: def.name.clone(),
                    example: def
                        .dims
                        .iter()
                        .map(|d| format!("{d} = 64"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            let runner = match compiled(def, mode) {
                Some(e) => Runner::Compiled(e),
                None => {
                    let rules = match &mut rules {
                        Some(r) => r,
                        slot @ None => slot.insert(RuleSet::embedded()?),
                    };
                    Runner::Planned(Box::new(def.build(mode, rules, &limits)?))
                }
            };
            out.push(Target {
                def: def.clone(),
                mode,
                runner,
                sizes: sizes.clone(),
            });
        }
    }
    if let Some(s) = given
        .iter()
        .find(|s| !out.iter().any(|t| t.def.dims.len() == s.len()))
    {
        return Err(BenchError::NoKernel(s.len()));
    }
    Ok(out)
}

/// Parses `8x64x64` shapes.
pub fn parse_shapes(shapes: &[String]) -> Result<Vec<Vec<usize>>, BenchError> {
    shapes
        .iter()
        .map(|s| {
            s.split('x')
                .map(|d| d.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| BenchError::Shape(s.clone()))
        })
        .collect()
}

/// A deterministic tensor of `dims` with values in [−1, 1).
fn filled(dims: [usize; 3], seed: usize) -> Result<Tensor3, BenchError> {
    let len = runtime::size("bench input", dims)?;
    let data = (0..len)
        .map(|i| ((i * 7919 + seed * 104_729) % 1000) as f64 / 500.0 - 1.0)
        .collect();
    Ok(Tensor3::new(dims, data)?)
}

/// The sizes of dims: named, literal, or products of those (`2*d`).
fn resolve<const N: usize>(d: &[&str; N], sizes: &BTreeMap<&str, usize>) -> [usize; N] {
    d.map(|x| {
        x.split('*')
            .map(|f| {
                sizes
                    .get(f)
                    .copied()
                    .or_else(|| f.parse().ok())
                    .unwrap_or(0)
            })
            .product()
    })
}

/// Deterministic inputs and zeroed outputs for kernel `e` on `shape` (its dims in
/// order): what `bench` and the criterion benches feed the kernels.
pub fn tensors(e: &Entry, shape: &[usize]) -> Result<(Vec<Tensor3>, Vec<Tensor3>), BenchError> {
    let sizes: BTreeMap<&str, usize> = e.dims.iter().copied().zip(shape.iter().copied()).collect();
    let ins = e
        .input_dims
        .iter()
        .enumerate()
        .map(|(i, d)| filled(resolve(d, &sizes), i))
        .collect::<Result<_, _>>()?;
    let outs = e
        .output_dims
        .iter()
        .map(|d| Tensor3::zeros("bench output", resolve(d, &sizes)))
        .collect::<Result<_, _>>()?;
    Ok((ins, outs))
}

/// The median wall-clock time of `f` after one warm-up call: `reps` calls, fewer (at
/// least 3) when they pass `MAX_ROW_TIME`, more (up to `MAX_CALLS`) while the row
/// has run less than `MIN_ROW_TIME`, so that sub-millisecond rows get a stable median.
pub fn median(
    reps: usize,
    mut f: impl FnMut() -> Result<(), BenchError>,
) -> Result<f64, BenchError> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    while more(reps, times.len(), start.elapsed()) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(middle(times))
}

/// The median times of `f` and of `reference`, measured in alternating batches (each
/// batch one untimed call, then timed calls until it has run `BATCH_TIME`) as long
/// as [`median`] would time `f` alone, counting only `f`'s time: both see the same
/// machine, so a drift of its speed between rows (this 2-core VM's varies by a
/// quarter within a minute) cancels in their ratio.
pub fn paired_medians(
    reps: usize,
    mut f: impl FnMut() -> Result<(), BenchError>,
    mut reference: impl FnMut() -> Result<(), BenchError>,
) -> Result<(f64, f64), BenchError> {
    let (mut tf, mut tr) = (Vec::new(), Vec::new());
    let mut busy = Duration::ZERO;
    while more(reps, tf.len(), busy) {
        busy += batch(&mut f, &mut tf)?;
        batch(&mut reference, &mut tr)?;
    }
    Ok((middle(tf), middle(tr)))
}

/// One batch of [`paired_medians`]: a warm-up call, then timed calls into `times`
/// until they have run [`BATCH_TIME`]; their total time.
fn batch(
    f: &mut impl FnMut() -> Result<(), BenchError>,
    times: &mut Vec<f64>,
) -> Result<Duration, BenchError> {
    f()?;
    let start = Instant::now();
    while start.elapsed() < BATCH_TIME {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(start.elapsed())
}

/// Whether a row with `n` timed calls that took `t` in all takes another.
fn more(reps: usize, n: usize, t: Duration) -> bool {
    (n < reps.max(1) && (n < 3 || t < MAX_ROW_TIME)) || (t < MIN_ROW_TIME && n < MAX_CALLS)
}

/// The median of non-empty `times`.
fn middle(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A row stops adding calls after this long (once it has 3).
const MAX_ROW_TIME: Duration = Duration::from_secs(2);
/// A row keeps adding calls beyond `reps` until it has run this long...
const MIN_ROW_TIME: Duration = Duration::from_millis(300);
/// ...or made this many.
const MAX_CALLS: usize = 1000;
/// A batch of [`paired_medians`] times calls until it has run this long (one call
/// at least).
const BATCH_TIME: Duration = Duration::from_millis(20);

/// One call of the batched GEMM reference (h, m, k, p), its operands made once.
fn gemm_call([h, m, k, p]: [usize; 4]) -> Result<ReferenceCall, BenchError> {
    let (a, b) = (filled([h, m, k], 1)?, filled([h, k, p], 2)?);
    let mut c = vec![0.0; runtime::size("gemm reference", [h, m, p])?];
    Ok(Box::new(move || {
        Ok(runtime::bmm(
            [h, m, k, p],
            &a.data,
            false,
            &b.data,
            false,
            &mut c,
            false,
        )?)
    }))
}

/// Values per parallel chunk of the triad reference.
const TRIAD_CHUNK: usize = 1 << 14;

/// One call of the STREAM triad `a = b + s·c` over `len` values, rows in parallel
/// (24 bytes per value), its arrays made once.
fn triad_call(len: usize) -> Result<ReferenceCall, BenchError> {
    let (b, c) = (
        filled([1, 1, len], 1)?.into_data(),
        filled([1, 1, len], 2)?.into_data(),
    );
    let mut a = vec![0.0; len];
    Ok(Box::new(move || {
        // Chunks in parallel as the row passes run them (the caller taking part).
        runtime::par_chunks(&mut a, TRIAD_CHUNK, |(i, a)| {
            let (b, c) = (&b[i * TRIAD_CHUNK..], &c[i * TRIAD_CHUNK..]);
            for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                *a = b + 3.0 * c;
            }
        });
        Ok(())
    }))
}

/// A reference's call, owning its operands.
type ReferenceCall = Box<dyn FnMut() -> Result<(), BenchError>>;

/// An in-run reference.
enum Reference {
    /// The batched GEMM (h, m, k, p).
    Gemm([usize; 4]),
    /// The triad over this many values.
    Triad(usize),
}

impl Reference {
    fn key(&self) -> (String, Vec<usize>) {
        match self {
            Reference::Gemm(d) => ("gemm".into(), d.to_vec()),
            Reference::Triad(n) => ("triad".into(), vec![*n]),
        }
    }
    /// GFLOP or GB per call.
    fn work(&self) -> f64 {
        match self {
            Reference::Gemm(d) => 2.0 * d.iter().product::<usize>() as f64 / 1e9,
            Reference::Triad(n) => 24.0 * *n as f64 / 1e9,
        }
    }
    fn unit(&self) -> &'static str {
        match self {
            Reference::Gemm(_) => "GFLOP/s",
            Reference::Triad(_) => "GB/s",
        }
    }
    fn call(&self) -> Result<ReferenceCall, BenchError> {
        match self {
            Reference::Gemm(d) => gemm_call(*d),
            Reference::Triad(n) => triad_call(*n),
        }
    }
}

/// The size of each of `def`'s named dims, given `sizes` in `def.dims` order.
fn named_sizes<'a>(def: &'a KernelDef, sizes: &[usize]) -> BTreeMap<&'a str, usize> {
    def.dims
        .iter()
        .map(|d| d.as_str())
        .zip(sizes.iter().copied())
        .collect()
}

/// Deterministic f64 inputs (and parameters) of `plan` at `sizes` of `def.dims`.
fn plan_inputs(def: &KernelDef, plan: &Plan, sizes: &[usize]) -> Result<Tensors<f64>, BenchError> {
    let named = named_sizes(def, sizes);
    plan.with_role(Role::Input)
        .chain(plan.with_role(Role::Param))
        .enumerate()
        .map(|(i, (_, b))| {
            let dims = b
                .shape
                .iter()
                .map(|d| d.size_with(&|n| named.get(n).copied()).unwrap_or(0));
            let dims: Vec<usize> = dims.collect();
            let dims: [usize; 3] = dims
                .try_into()
                .map_err(|d: Vec<usize>| BenchError::Rank(b.name.clone(), d.len()))?;
            let t = filled(dims, i)?;
            let t = Tensor::new(t.dims, t.into_data()).map_err(crate::exec::ExecError::from)?;
            Ok((b.name.clone(), t))
        })
        .collect()
}

/// The GEMMs [h, m, k, p] of `plan` at `sizes` of `def.dims`.
fn plan_gemms(def: &KernelDef, plan: &Plan, sizes: &[usize]) -> Vec<[usize; 4]> {
    let named = named_sizes(def, sizes);
    let size = |b: usize, axis: usize| {
        plan.buffers[b].shape[axis]
            .size_with(&|n| named.get(n).copied())
            .unwrap_or(0)
    };
    plan.steps
        .iter()
        .filter_map(|st| match st {
            Step::Gemm { a, out, .. } => {
                let k = size(a.buf, if a.transposed { 1 } else { 2 });
                Some([size(*out, 0), size(*out, 1), k, size(*out, 2)])
            }
            _ => None,
        })
        .collect()
}

/// What one timed kernel call does: GFLOP (the GEMMs) or GB moved (inputs and
/// outputs), and the reference it is compared to.
fn work(gemms: &[[usize; 4]], values: usize, out_len: usize) -> (f64, Reference) {
    match gemms.first() {
        Some(g) => {
            let flops: usize = gemms.iter().map(|g| 2 * g.iter().product::<usize>()).sum();
            (flops as f64 / 1e9, Reference::Gemm(*g))
        }
        None => (8.0 * values as f64 / 1e9, Reference::Triad(out_len)),
    }
}

/// Times one kernel mode at one size: each of its forms in alternating batches with
/// its in-run reference ([`paired_medians`]; the row's ratio is over that pairing's
/// reference rate), and the reference's row the first time its shape comes up
/// (`shown`).
fn bench_target(
    t: &Target,
    sizes: &[usize],
    reps: usize,
    shown: &mut BTreeSet<(String, Vec<usize>)>,
) -> Result<Vec<Row>, BenchError> {
    // Each form's time and its reference's time, measured together.
    let mut forms: Vec<(&str, f64, f64)> = Vec::new();
    let (work, reference) = match &t.runner {
        Runner::Compiled(e) => {
            let shape = entry_shape(&t.def, e, sizes)?;
            let named: BTreeMap<&str, usize> =
                e.dims.iter().copied().zip(shape.iter().copied()).collect();
            let (ins, mut outs) = tensors(e, &shape)?;
            let refs_in: Vec<&Tensor3> = ins.iter().collect();
            let gemms: Vec<[usize; 4]> = e.gemms.iter().map(|g| resolve(g, &named)).collect();
            let values: usize = ins.iter().chain(&outs).map(|t| t.data.len()).sum();
            let out_len = outs.iter().map(|t| t.data.len()).max().unwrap_or(0);
            let (work, reference) = work(&gemms, values, out_len);
            let mut reference_call = reference.call()?;
            let mut ws = Workspace::default();
            let (alloc, r) = paired_medians(
                reps,
                || (e.run)(&refs_in).map(drop).map_err(Into::into),
                &mut reference_call,
            )?;
            forms.push(("alloc", alloc, r));
            let (into, r) = paired_medians(
                reps,
                || Ok((e.run_into)(&refs_in, &mut outs, &mut ws)?),
                &mut reference_call,
            )?;
            forms.push(("into", into, r));
            (work, reference)
        }
        Runner::Planned(built) => {
            let inputs = plan_inputs(&t.def, &built.plan, sizes)?;
            let outs = exec_f64(&built.plan, &inputs)?;
            let gemms = plan_gemms(&t.def, &built.plan, sizes);
            let values: usize = inputs
                .values()
                .chain(outs.values())
                .map(|t| t.data().len())
                .sum();
            let out_len = outs.values().map(|t| t.data().len()).max().unwrap_or(0);
            let (work, reference) = work(&gemms, values, out_len);
            let (exec, r) = paired_medians(
                reps,
                || exec_f64(&built.plan, &inputs).map(drop).map_err(Into::into),
                reference.call()?,
            )?;
            forms.push(("exec", exec, r));
            (work, reference)
        }
    };
    let mut rows = Vec::new();
    let key = reference.key();
    if shown.insert(key.clone()) {
        let secs = forms[0].2;
        rows.push(Row {
            op: "reference".into(),
            mode: key.0.clone(),
            shape: key.1.clone(),
            form: "into".into(),
            median_s: secs,
            rate: reference.work() / secs,
            unit: reference.unit().into(),
            ratio: 1.0,
        });
    }
    for (form, secs, reference_secs) in forms {
        rows.push(Row {
            op: t.def.name.clone(),
            mode: t.mode.to_string(),
            shape: sizes.to_vec(),
            form: form.into(),
            median_s: secs,
            rate: work / secs,
            unit: reference.unit().into(),
            ratio: (work / secs) / (reference.work() / reference_secs),
        });
    }
    Ok(rows)
}

/// Runs the benchmark: every selected kernel mode at each of its sizes, in manifest
/// order. Prints a progress line on stderr once the run passes 2 s.
pub fn bench(args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let manifest = Manifest::load(args.manifest.as_deref())?;
    let given = parse_shapes(&args.shapes)?;
    let targets = targets(&manifest, &args.kernels, &given)?;
    let work: Vec<(&Target, &Vec<usize>)> = targets
        .iter()
        .flat_map(|t| t.sizes.iter().map(move |s| (t, s)))
        .collect();
    let start = Instant::now();
    let mut shown = BTreeSet::new();
    let mut rows = Vec::new();
    for (i, (t, sizes)) in work.iter().enumerate() {
        if start.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "bench: {}/{} {} {} {:?} ({:.0} s)",
                i + 1,
                work.len(),
                t.def.name,
                t.mode,
                sizes,
                start.elapsed().as_secs_f64()
            );
        }
        rows.extend(bench_target(t, sizes, args.reps, &mut shown)?);
    }
    Ok(rows)
}

/// The rows as a text table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<12} {:<8} {:<18} {:<6} {:>12} {:>10} {:<8} {:>6}\n",
        "op", "mode", "shape", "form", "median", "rate", "unit", "ratio"
    );
    for r in rows {
        let shape: Vec<String> = r.shape.iter().map(|d| d.to_string()).collect();
        s.push_str(&format!(
            "{:<12} {:<8} {:<18} {:<6} {:>9.3} ms {:>10.2} {:<8} {:>6.2}\n",
            r.op,
            r.mode,
            shape.join("x"),
            r.form,
            r.median_s * 1e3,
            r.rate,
            r.unit,
            r.ratio
        ));
    }
    s
}

/// `fderiv bench`: runs and prints (text or JSON).
pub fn run(args: &BenchArgs) -> Result<(), Failure> {
    let rows = bench(args).map_err(Failure::input)?;
    match args.format {
        Format::Text => print!("{}", table(&rows)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(Failure::input)?
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_dims_resolve_to_the_product_of_their_factors() {
        let sizes: BTreeMap<&str, usize> = [("d", 3), ("n", 5)].into();
        assert_eq!(resolve(&["n", "2*d", "1"], &sizes), [5, 6, 1]);
        assert_eq!(resolve(&["n*d", "x", "d*d"], &sizes), [15, 0, 9]);
    }

    #[test]
    fn paired_timing_alternates_batches_and_warms_each_up() {
        use std::cell::RefCell;
        let calls = RefCell::new(String::new());
        // Calls that take a while (sleeps, not timed by the test), so that a batch
        // holds a few of them and the row needs several batches.
        let call = |c: char, ms: u64| {
            std::thread::sleep(Duration::from_millis(ms));
            calls.borrow_mut().push(c);
            Ok(())
        };
        paired_medians(5, || call('f', 3), || call('r', 1)).unwrap();
        let calls = calls.into_inner();
        // Runs of f and r alternate, f first, several of each, each run a warm-up
        // and at least one timed call.
        assert!(calls.starts_with("ff"), "{calls}");
        let switches = calls.as_bytes().windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches >= 4, "{calls}");
        for (batch, other) in [('f', 'r'), ('r', 'f')] {
            for run in calls.split(other).filter(|s| !s.is_empty()) {
                assert!(run.len() >= 2 && run.chars().all(|c| c == batch), "{calls}");
            }
        }
    }
}

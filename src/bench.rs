//! `fderiv bench`: times every generated kernel (the forward, JVP and VJP of each op in
//! [`KERNELS`]) on default or given shapes, in both forms — allocating (`run`) and
//! writing into reused outputs (`run_into`) — beside in-run references: the batched
//! GEMM of the same shape (`matrixmultiply`, heads in parallel: the fastest Rust GEMM
//! measured on this machine, see docs/performance.md) for kernels with GEMMs, and a
//! STREAM triad over as many values for the others.
//!
//! The kernel list, each kernel's dims, its inputs' and outputs' dims and its GEMMs are
//! read from the generated [`KERNELS`] table (entries named `<op>_<mode>`), so a new
//! kernel is benchmarked without code here. Figures are medians of wall-clock times.

use crate::kernels::runtime::{self, Tensor3, Workspace};
use crate::kernels::{Entry, KERNELS};
use crate::outcome::{Failure, Format};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Default shapes of kernels with 4 dims (matmul's h, m, n, p).
pub const DEFAULT_4: &[&[usize]] = &[&[8, 64, 64, 64], &[16, 128, 128, 128], &[8, 512, 512, 512]];
/// Default shapes of kernels with 3 dims (softmax's h, m, n).
pub const DEFAULT_3: &[&[usize]] = &[&[16, 128, 128], &[8, 512, 512], &[32, 1024, 1024]];

/// Arguments of `fderiv bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Ops (`matmul`, `softmax_last`) or kernels (`matmul_jvp`) to time; all by default.
    pub kernels: Vec<String>,
    /// Shapes replacing the defaults, e.g. `2x3x4x5,2x3x4`: each kernel runs those with
    /// as many dims as it has (its dims in order, e.g. h×m×n×p for matmul).
    #[arg(long, value_delimiter = ',')]
    pub shapes: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Timed calls per row at most (fewer when a row passes 2 s); the median is reported.
    #[arg(long, default_value_t = 15)]
    pub reps: usize,
}

/// One timed row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The op (`matmul`), or `reference`.
    pub op: String,
    /// `forward`, `jvp`, `vjp`, or the reference's kind (`gemm`, `triad`).
    pub mode: String,
    /// The kernel's dims, in order.
    pub shape: Vec<usize>,
    /// `alloc` (outputs allocated per call) or `into` (reused outputs).
    pub form: String,
    /// The median of the timed calls, in seconds.
    pub median_s: f64,
    /// GFLOP/s (kernels with GEMMs) or GB/s (the others).
    pub rate: f64,
    /// `GFLOP/s` or `GB/s`.
    pub unit: String,
    /// `rate` over the reference's rate on the same shape.
    pub ratio: f64,
}

/// Why the arguments cannot be benchmarked.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A name that is neither an op nor a kernel.
    #[error("unknown kernel {name}; known: {known}")]
    Unknown {
        /// The name given.
        name: String,
        /// The ops and kernels there are.
        known: String,
    },
    /// A shape that is not dims joined by `x`.
    #[error("bad shape {0:?}: expected sizes joined by x, e.g. 8x64x64x64")]
    Shape(String),
    /// Shapes none of whose lengths fits a selected kernel.
    #[error("no selected kernel has {0} dims")]
    NoKernel(usize),
    /// A kernel refused its inputs (a shape too large, ...).
    #[error("{0}")]
    Kernel(#[from] runtime::KernelError),
}

/// The op of a kernel entry: its name without the `_forward`/`_jvp`/`_vjp` suffix.
fn split(name: &str) -> (&str, &str) {
    name.rsplit_once('_').unwrap_or((name, ""))
}

/// The selected kernels, in table order.
pub fn select(names: &[String]) -> Result<Vec<&'static Entry>, BenchError> {
    for n in names {
        if !KERNELS.iter().any(|e| e.name == n || split(e.name).0 == n) {
            let mut known: Vec<&str> = KERNELS.iter().map(|e| split(e.name).0).collect();
            known.dedup();
            known.extend(KERNELS.iter().map(|e| e.name));
            return Err(BenchError::Unknown {
                name: n.clone(),
                known: known.join(", "),
            });
        }
    }
    Ok(KERNELS
        .iter()
        .filter(|e| names.is_empty() || names.iter().any(|n| e.name == n || split(e.name).0 == n))
        .collect())
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

/// The size of each of `e`'s named dims in `shape`.
fn sizes<'a>(e: &'a Entry, shape: &[usize]) -> BTreeMap<&'a str, usize> {
    e.dims.iter().copied().zip(shape.iter().copied()).collect()
}

/// Deterministic inputs and zeroed outputs for kernel `e` on `shape` (its dims in
/// order): what `bench` and the criterion benches feed the kernels.
pub fn tensors(e: &Entry, shape: &[usize]) -> Result<(Vec<Tensor3>, Vec<Tensor3>), BenchError> {
    let sizes = sizes(e, shape);
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

/// The median wall-clock time of `f` over at most `reps` calls after one warm-up call.
fn median(reps: usize, mut f: impl FnMut() -> Result<(), BenchError>) -> Result<f64, BenchError> {
    f()?;
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < reps.max(1) && (times.len() < 3 || start.elapsed() < Duration::from_secs(2))
    {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The batched GEMM reference (h, m, k, p): GFLOP/s.
fn gemm_rate([h, m, k, p]: [usize; 4], reps: usize) -> Result<f64, BenchError> {
    let (a, b) = (filled([h, m, k], 1)?, filled([h, k, p], 2)?);
    let mut c = vec![0.0; runtime::size("gemm reference", [h, m, p])?];
    let t = median(reps, || {
        Ok(runtime::bmm(
            [h, m, k, p],
            &a.data,
            false,
            &b.data,
            false,
            &mut c,
            false,
        )?)
    })?;
    Ok(2.0 * (h * m * k * p) as f64 / t / 1e9)
}

/// The STREAM triad `a = b + s·c` over `len` values, rows in parallel: GB/s (24 bytes
/// per value).
fn triad_rate(len: usize, reps: usize) -> Result<f64, BenchError> {
    let (b, c) = (filled([1, 1, len], 1)?.data, filled([1, 1, len], 2)?.data);
    let mut a = vec![0.0; len];
    let t = median(reps, || {
        a.par_chunks_mut(1 << 14)
            .zip(b.par_chunks(1 << 14).zip(c.par_chunks(1 << 14)))
            .for_each(|(a, (b, c))| {
                for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                    *a = b + 3.0 * c;
                }
            });
        Ok(())
    })?;
    Ok(24.0 * len as f64 / t / 1e9)
}

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
    fn rate(&self, reps: usize) -> Result<f64, BenchError> {
        match self {
            Reference::Gemm(d) => gemm_rate(*d, reps),
            Reference::Triad(n) => triad_rate(*n, reps),
        }
    }
}

/// Times one kernel on one shape, both forms, and returns its rows with the reference
/// row (computed once per reference shape, cached in `refs`).
fn bench_kernel(
    e: &Entry,
    shape: &[usize],
    reps: usize,
    refs: &mut BTreeMap<(String, Vec<usize>), f64>,
) -> Result<Vec<Row>, BenchError> {
    let sizes = sizes(e, shape);
    let (ins, mut outs) = tensors(e, shape)?;
    let refs_in: Vec<&Tensor3> = ins.iter().collect();
    let mut ws = Workspace::default();
    let alloc = median(reps, || (e.run)(&refs_in).map(drop).map_err(Into::into))?;
    let into = median(reps, || Ok((e.run_into)(&refs_in, &mut outs, &mut ws)?))?;
    let (op, mode) = split(e.name);
    let (work, reference) = match e.gemms.first() {
        Some(g) => {
            let flops: usize = e
                .gemms
                .iter()
                .map(|g| 2 * resolve(g, &sizes).iter().product::<usize>())
                .sum();
            (flops as f64 / 1e9, Reference::Gemm(resolve(g, &sizes)))
        }
        None => {
            let values: usize = ins.iter().chain(&outs).map(|t| t.data.len()).sum();
            let len = outs.iter().map(|t| t.data.len()).max().unwrap_or(0);
            (8.0 * values as f64 / 1e9, Reference::Triad(len))
        }
    };
    let mut rows = Vec::new();
    let key = reference.key();
    if !refs.contains_key(&key) {
        let rate = reference.rate(reps)?;
        rows.push(Row {
            op: "reference".into(),
            mode: key.0.clone(),
            shape: key.1.clone(),
            form: "into".into(),
            median_s: reference.work() / rate,
            rate,
            unit: reference.unit().into(),
            ratio: 1.0,
        });
        refs.insert(key.clone(), rate);
    }
    let ref_rate = refs[&key];
    for (form, t) in [("alloc", alloc), ("into", into)] {
        rows.push(Row {
            op: op.into(),
            mode: mode.into(),
            shape: shape.to_vec(),
            form: form.into(),
            median_s: t,
            rate: work / t,
            unit: reference.unit().into(),
            ratio: work / t / ref_rate,
        });
    }
    Ok(rows)
}

/// Runs the benchmark: every selected kernel on every shape with as many dims as it
/// has, in table order. Prints a progress line on stderr once the run passes 2 s.
pub fn bench(args: &BenchArgs) -> Result<Vec<Row>, BenchError> {
    let kernels = select(&args.kernels)?;
    let given = parse_shapes(&args.shapes)?;
    if let Some(s) = given
        .iter()
        .find(|s| !kernels.iter().any(|e| e.dims.len() == s.len()))
    {
        return Err(BenchError::NoKernel(s.len()));
    }
    let shapes_of = |e: &Entry| -> Vec<Vec<usize>> {
        if !given.is_empty() {
            return given
                .iter()
                .filter(|s| s.len() == e.dims.len())
                .cloned()
                .collect();
        }
        let defaults = match e.dims.len() {
            4 => DEFAULT_4,
            3 => DEFAULT_3,
            _ => &[],
        };
        defaults.iter().map(|s| s.to_vec()).collect()
    };
    let work: Vec<(&Entry, Vec<usize>)> = kernels
        .iter()
        .flat_map(|e| shapes_of(e).into_iter().map(move |s| (*e, s)))
        .collect();
    let start = Instant::now();
    let mut refs = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, (e, shape)) in work.iter().enumerate() {
        if start.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "bench: {}/{} {} {:?} ({:.0} s)",
                i + 1,
                work.len(),
                e.name,
                shape,
                start.elapsed().as_secs_f64()
            );
        }
        rows.extend(bench_kernel(e, shape, args.reps, &mut refs)?);
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
}

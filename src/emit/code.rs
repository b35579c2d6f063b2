//! Plan → Rust source, one case per step kind and per row instruction.

use super::Lowered;
use crate::ir::layout::Layout;
use crate::ir::shape::{Dim, Shape};
use crate::lower::{BufId, Plan, Role, Step};
use std::fmt::Write as _;

/// A Rust identifier for a buffer name: `A` → `a`, `dA` → `d_a`, `gX` → `g_x`.
fn ident(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The source text of a dim: its name, its size, or a product `h*d` (a Rust
/// expression over the dims in scope).
fn dim(d: &Dim) -> String {
    match d {
        Dim::Product(_) => format!("({d})"),
        _ => d.to_string(),
    }
}

/// Writes the check (or the binding) of one input axis in the tensor form: an unbound
/// name is read from the axis; a product with one unbound name is solved for it
/// (`runtime::factor` checks divisibility); anything else is compared.
fn dim_check(s: &mut String, input: &str, id: &str, axis: usize, d: &Dim, bound: &mut Vec<String>) {
    let mut unknown: Vec<String> = named_factors(d)
        .into_iter()
        .filter(|n| !bound.contains(n))
        .collect();
    unknown.dedup();
    match (d, unknown.as_slice()) {
        (Dim::Named(x), [_]) => {
            let _ = writeln!(s, "    let {x} = {id}.dims[{axis}];");
            bound.push(x.clone());
        }
        (Dim::Product(fs), [x])
            if fs
                .iter()
                .filter(|f| matches!(f, Dim::Named(n) if n == x))
                .count()
                == 1 =>
        {
            let rest: Vec<String> = fs
                .iter()
                .filter(|f| !matches!(f, Dim::Named(n) if n == x))
                .map(dim)
                .collect();
            let _ = writeln!(
                s,
                "    let {x} = runtime::factor({input:?}, {id}.dims, {axis}, {:?}, {})?;",
                d.to_string(),
                rest.join(" * ")
            );
            bound.push(x.clone());
        }
        _ => {
            let _ = writeln!(
                s,
                "    runtime::same_dim({input:?}, {id}.dims, {axis}, {:?}, {d})?;",
                d.to_string(),
            );
        }
    }
}

/// The named dims a dim mentions (itself, or a product's named factors).
fn named_factors(d: &Dim) -> Vec<String> {
    d.clone()
        .factors()
        .into_iter()
        .filter_map(|f| match f {
            Dim::Named(n) => Some(n),
            _ => None,
        })
        .collect()
}

fn dims3(s: &Shape) -> String {
    format!("[{}, {}, {}]", dim(&s[0]), dim(&s[1]), dim(&s[2]))
}

fn shape_text(s: &Shape) -> String {
    format!("{}×{}×{}", s[0], s[1], s[2])
}

/// What the generator needs to know about a plan's names.
pub(super) struct Names<'a> {
    plan: &'a Plan,
    /// Named dims, in first-appearance order over the inputs.
    dims: Vec<String>,
    inputs: Vec<BufId>,
    /// Runtime parameters (`f64` arguments), by name.
    params: Vec<BufId>,
    outputs: Vec<BufId>,
    /// Each buffer's Rust identifier (`A` → `a`; `M` → `m_` beside a dim `m`).
    idents: Vec<String>,
}

impl<'a> Names<'a> {
    fn new(plan: &'a Plan) -> Result<Names<'a>, String> {
        // Inputs in a reader's order: values (and saved outputs), tangents, the cotangent.
        let mut inputs: Vec<BufId> = plan.with_role(Role::Input).map(|(i, _)| i).collect();
        inputs.sort_by_key(|b| {
            let name = &plan.buffers[*b].name;
            let kind = if name == crate::derive::COTANGENT {
                2
            } else if name.starts_with('d') && name.len() > 1 {
                1
            } else {
                0
            };
            (kind, *b)
        });
        let outputs: Vec<BufId> = plan.with_role(Role::Output).map(|(i, _)| i).collect();
        let mut dims: Vec<String> = Vec::new();
        for b in plan.buffers.iter() {
            for n in b.shape.iter().flat_map(named_factors) {
                if !dims.contains(&n) {
                    dims.push(n);
                }
            }
        }
        let mut idents: Vec<String> = plan.buffers.iter().map(|b| ident(&b.name)).collect();
        for id in idents.iter_mut() {
            while dims.contains(id) {
                id.push('_');
            }
        }
        if let Some(twin) = (0..idents.len()).find(|i| idents[..*i].contains(&idents[*i])) {
            return Err(format!(
                "buffer {} has the same Rust name as another buffer",
                plan.buffers[twin].name
            ));
        }
        let in_inputs = |n: &String| {
            inputs.iter().any(|i| {
                plan.buffers[*i]
                    .shape
                    .iter()
                    .any(|d| named_factors(d).contains(n))
            })
        };
        let unbound = dims.iter().find(|n| !in_inputs(n));
        if let Some(d) = unbound {
            return Err(format!("dim {d} is not fixed by any input"));
        }
        let params: Vec<BufId> = plan.with_role(Role::Param).map(|(i, _)| i).collect();
        Ok(Names {
            plan,
            dims,
            inputs,
            params,
            outputs,
            idents,
        })
    }

    pub(super) fn name(&self, b: BufId) -> &str {
        &self.plan.buffers[b].name
    }

    pub(super) fn id(&self, b: BufId) -> String {
        self.idents[b].clone()
    }

    /// The buffer as a `&[f64]` expression (temporaries are `&mut [f64]` from the
    /// workspace).
    pub(super) fn read(&self, b: BufId) -> String {
        match self.plan.buffers[b].role {
            Role::Temp => format!("&*{}", self.id(b)),
            _ => self.id(b),
        }
    }

    /// The buffer as a `&mut [f64]` expression.
    pub(super) fn write(&self, b: BufId) -> String {
        match self.plan.buffers[b].role {
            Role::Temp => format!("&mut *{}", self.id(b)),
            _ => self.id(b),
        }
    }

    /// Whether a step after step `n` (numbered from 1) reads buffer `b`.
    pub(super) fn read_after(&self, b: BufId, n: usize) -> bool {
        self.plan.steps.iter().skip(n).any(|step| step.reads(b))
    }

    /// Whether the plan has temporaries (then the slice form takes a workspace).
    fn has_temps(&self) -> bool {
        self.plan.with_role(Role::Temp).next().is_some()
    }

    pub(super) fn shape(&self, b: BufId) -> &Shape {
        &self.plan.buffers[b].shape
    }
}

/// The first lines of every generated file but the runtime.
fn header(hash: u64) -> String {
    format!(
        "{} from the rule set {hash:#018x}. Do not edit: regenerate with\n// `fderiv emit --force` (with the --manifest that declares the kernel).\n",
        super::MARKER
    )
}

/// The whole file for one kernel.
pub fn kernel_file(k: &Lowered, hash: u64) -> Result<String, String> {
    k.plan.check_writes()?;
    let names = Names::new(&k.plan)?;
    let kname = k.name();
    let mut s = String::new();
    let _ = writeln!(s, "{}", header(hash));
    let what = match k.mode.derivative() {
        None => "forward map".to_string(),
        Some(m) => format!("{} (derived with the rules)", m.to_string().to_uppercase()),
    };
    let _ = writeln!(s, "//! `{}` {what}.\n//!", k.kernel);
    let _ = writeln!(s, "//! Term: `{}`\n//!", k.term);
    let _ = writeln!(
        s,
        "//! Plan (row-major buffers; transposes are GEMM flags):\n//!\n//! ```text"
    );
    for line in k.plan.to_string().lines() {
        let _ = writeln!(s, "//! {line}");
    }
    let _ = writeln!(s, "//! ```\n");
    let _ = writeln!(
        s,
        "#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]\n"
    );
    let _ = writeln!(s, "use super::runtime::{{self, KernelError, Tensor3}};\n");
    raw_fn(&mut s, &kname, &names)?;
    tensor_fn(&mut s, &kname, &names);
    dyn_fn(&mut s, &kname, &names);
    Ok(s)
}

fn io_doc(names: &Names<'_>, ids: &[BufId]) -> String {
    ids.iter()
        .map(|b| format!("`{}` ({})", names.name(*b), shape_text(names.shape(*b))))
        .collect::<Vec<_>>()
        .join(", ")
}

fn raw_fn(s: &mut String, kname: &str, names: &Names<'_>) -> Result<(), String> {
    let _ = writeln!(
        s,
        "/// `{kname}` on row-major slices. Inputs: {}. Outputs: {}.\n///\n/// Allocates nothing: outputs are written in place, row registers come from each\n/// worker's reused scratch and temporaries (if any) from the workspace `ws`. Every length is checked against the dims (an error, never a panic). Error bound: each\n/// GEMM entry is a dot product with |fl − exact| ≤ γₖ·Σ|aᵢbᵢ|; row passes round once per\n/// operation (`fderiv verify` checks the composed bound). Steps with row passes run in\n/// a copy compiled for AVX2 and FMA when the CPU has them (`runtime::multiversion!`).",
        io_doc(names, &names.inputs),
        io_doc(names, &names.outputs)
    );
    let mut params = value_params(names);
    if names.has_temps() {
        params.push("ws: &mut runtime::Workspace".into());
    }
    let _ = writeln!(
        s,
        "pub fn {kname}_into({}) -> Result<(), KernelError> {{",
        params.join(", ")
    );
    for b in names.inputs.iter().chain(&names.outputs) {
        let _ = writeln!(
            s,
            "    runtime::check_len({:?}, {}.len(), {})?;",
            names.name(*b),
            names.id(*b),
            dims3(names.shape(*b))
        );
    }
    let temps: Vec<(String, String)> = names
        .plan
        .with_role(Role::Temp)
        .map(|(b, buf)| {
            let size = format!("runtime::size({:?}, {})?", buf.name, dims3(&buf.shape));
            (names.id(b), size)
        })
        .collect();
    if !temps.is_empty() {
        let (ids, sizes): (Vec<String>, Vec<String>) = temps.into_iter().unzip();
        let _ = writeln!(
            s,
            "    let [{}] = ws.buffers([{}]);",
            ids.join(", "),
            sizes.join(", ")
        );
    }
    let mut steps = String::new();
    for (i, step) in names.plan.steps.iter().enumerate() {
        step_code(&mut steps, i + 1, step, names)?;
    }
    let has_rows = names
        .plan
        .steps
        .iter()
        .any(|st| matches!(st, Step::RowPass { .. }));
    if has_rows {
        multiversion(s, &steps, names);
    } else {
        let _ = writeln!(s, "{steps}    Ok(())");
    }
    let _ = writeln!(s, "}}\n");
    Ok(())
}

/// The slice form's parameters but the workspace: dims, scalars, inputs, outputs.
fn value_params(names: &Names<'_>) -> Vec<String> {
    let mut params: Vec<String> = names.dims.iter().map(|d| format!("{d}: usize")).collect();
    params.extend(
        names
            .params
            .iter()
            .map(|b| format!("{}: f64", names.id(*b))),
    );
    params.extend(
        names
            .inputs
            .iter()
            .map(|b| format!("{}: &[f64]", names.id(*b))),
    );
    params.extend(
        names
            .outputs
            .iter()
            .map(|b| format!("{}: &mut [f64]", names.id(*b))),
    );
    params
}

/// The steps inside `runtime::multiversion!`, so that the row-pass bodies are compiled
/// for AVX2 and FMA (and portably): every dim, scalar, input, output and temporary
/// becomes a parameter of the two copies.
fn multiversion(s: &mut String, steps: &str, names: &Names<'_>) {
    let mut params = value_params(names);
    params.extend(
        names
            .plan
            .with_role(Role::Temp)
            .map(|(b, _)| format!("{}: &mut [f64]", names.id(b))),
    );
    let _ = writeln!(
        s,
        "    runtime::multiversion!(({}) -> Result<(), KernelError> {{",
        params.join(", ")
    );
    indented(s, steps);
    let _ = writeln!(s, "        Ok(())\n    }})");
}

/// `text` written one level (4 spaces) deeper: a block's lines inside a wrapper.
fn indented(s: &mut String, text: &str) {
    for line in text.lines() {
        let _ = writeln!(s, "    {line}");
    }
}

fn step_code(s: &mut String, n: usize, step: &Step, names: &Names<'_>) -> Result<(), String> {
    let out = names.write(step.out());
    match step {
        Step::Gemm {
            a,
            b,
            out: o,
            accumulate,
        } => {
            let sa = names.shape(a.buf);
            let k = if a.transposed { &sa[1] } else { &sa[2] };
            let so = names.shape(*o);
            let _ = writeln!(
                s,
                "    // {n}. {} {}= {}{} · {}{} per head",
                names.name(*o),
                if *accumulate { "+" } else { "" },
                names.name(a.buf),
                if a.transposed { "ᵀ" } else { "" },
                names.name(b.buf),
                if b.transposed { "ᵀ" } else { "" }
            );
            let _ = writeln!(
                s,
                "    runtime::bmm([{}, {}, {}, {}], {}, {}, {}, {}, {out}, {accumulate})?;",
                dim(&so[0]),
                dim(&so[1]),
                dim(k),
                dim(&so[2]),
                names.read(a.buf),
                a.transposed,
                names.read(b.buf),
                b.transposed
            );
        }
        Step::Transpose { x, out: o } => {
            let _ = writeln!(
                s,
                "    // {n}. {} = {}ᵀ (a copy)",
                names.name(*o),
                names.name(*x)
            );
            let _ = writeln!(
                s,
                "    runtime::transpose({}, {}, {out})?;",
                dims3(names.shape(*x)),
                names.read(*x)
            );
        }
        Step::Relayout {
            layout,
            heads,
            x,
            out: o,
        } => {
            let _ = writeln!(
                s,
                "    // {n}. {} = ({layout} {heads} {}) (a copy)",
                names.name(*o),
                names.name(*x)
            );
            let (f, dims) = match layout {
                Layout::Split => ("split_heads", names.shape(*o)),
                Layout::Merge => ("merge_heads", names.shape(*x)),
                Layout::Swap => ("swap", names.shape(*x)),
                _ => ("cast", names.shape(*x)),
            };
            let _ = writeln!(
                s,
                "    runtime::{f}({}, {}, {out})?;",
                dims3(dims),
                names.read(*x)
            );
        }
        Step::RowPass { out: o, program } => {
            let len = dim(&names.shape(*o)[2]);
            super::rows::row_pass(s, n, *o, program, names, &len);
        }
    }
    Ok(())
}

fn tensor_fn(s: &mut String, kname: &str, names: &Names<'_>) {
    let params: Vec<String> = names
        .inputs
        .iter()
        .map(|b| format!("{}: &Tensor3", names.id(*b)))
        .chain(
            names
                .params
                .iter()
                .map(|b| format!("{}: f64", names.id(*b))),
        )
        .collect();
    let outs: Vec<String> = names.outputs.iter().map(|b| names.id(*b)).collect();
    let ret = if outs.len() == 1 {
        "Tensor3".to_string()
    } else {
        format!("({})", vec!["Tensor3"; outs.len()].join(", "))
    };
    let _ = writeln!(
        s,
        "/// `{kname}` on tensors: the dims are read from the inputs and must agree (an error\n/// names the input and the dim); returns {}.",
        io_doc(names, &names.outputs)
    );
    let _ = writeln!(
        s,
        "pub fn {kname}({}) -> Result<{ret}, KernelError> {{",
        params.join(", ")
    );
    bind_dims(s, names);
    for b in &names.outputs {
        let _ = writeln!(
            s,
            "    let mut {} = Tensor3::output({:?}, {})?;",
            names.id(*b),
            names.name(*b),
            dims3(names.shape(*b))
        );
    }
    if names.has_temps() {
        // Temporaries come from this thread's reused workspace: repeated calls allocate
        // only their outputs.
        let _ = writeln!(
            s,
            "    runtime::with_workspace(|ws| {kname}_into({}))?;",
            into_args(names, "ws").join(", ")
        );
    } else {
        let _ = writeln!(
            s,
            "    {kname}_into({})?;",
            into_args(names, "&mut ws").join(", ")
        );
    }
    let result = if outs.len() == 1 {
        outs[0].clone()
    } else {
        format!("({})", outs.join(", "))
    };
    let _ = writeln!(s, "    Ok({result})\n}}\n");
}

/// The arguments of the slice form: dims, the parameters (`f64`s in scope under their
/// names), the inputs' and outputs' data and the workspace `ws` when the plan has
/// temporaries.
fn into_args(names: &Names<'_>, ws: &str) -> Vec<String> {
    let mut args: Vec<String> = names.dims.clone();
    args.extend(names.params.iter().map(|b| names.id(*b)));
    args.extend(
        names
            .inputs
            .iter()
            .map(|b| format!("&{}.data", names.id(*b))),
    );
    args.extend(
        names
            .outputs
            .iter()
            .map(|b| format!("&mut {}.data", names.id(*b))),
    );
    if names.has_temps() {
        args.push(ws.to_string());
    }
    args
}

/// Binds every named dim from the first input that has it and checks the other
/// inputs against it.
fn bind_dims(s: &mut String, names: &Names<'_>) {
    let mut bound: Vec<String> = Vec::new();
    // Plain dims first, then products (which may solve for their last unknown factor).
    for products in [false, true] {
        for b in &names.inputs {
            let id = names.id(*b);
            for (axis, d) in names.shape(*b).iter().enumerate() {
                if matches!(d, Dim::Product(_)) != products {
                    continue;
                }
                let input = names.name(*b);
                dim_check(s, input, &id, axis, d, &mut bound);
            }
        }
    }
}

/// Checks that the given output `b` has its dims (all bound by then).
fn check_output(s: &mut String, names: &Names<'_>, b: BufId) {
    for (axis, d) in names.shape(b).iter().enumerate() {
        let _ = writeln!(
            s,
            "    runtime::same_dim({:?}, {}.dims, {axis}, {:?}, {d})?;",
            names.name(b),
            names.id(b),
            d.to_string(),
        );
    }
}

fn dyn_fn(s: &mut String, kname: &str, names: &Names<'_>) {
    let quoted = |ids: &[BufId]| {
        ids.iter()
            .map(|b| format!("{:?}", names.name(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let upper = kname.to_uppercase();
    let all: Vec<BufId> = names.inputs.iter().chain(&names.params).copied().collect();
    let _ = writeln!(
        s,
        "/// The inputs of [`{kname}`], in order.\npub const {upper}_INPUTS: &[&str] = &[{}];\n",
        quoted(&all)
    );
    let _ = writeln!(
        s,
        "/// The outputs of [`{kname}`], in order.\npub const {upper}_OUTPUTS: &[&str] = &[{}];\n",
        quoted(&names.outputs)
    );
    let dims_of = |ids: &[BufId]| {
        ids.iter()
            .map(|b| {
                let d: Vec<String> = names
                    .shape(*b)
                    .iter()
                    .map(|d| format!("{:?}", d.to_string()))
                    .collect();
                format!("[{}]", d.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dims: Vec<String> = names.dims.iter().map(|d| format!("{d:?}")).collect();
    let gemms: Vec<String> = names
        .plan
        .steps
        .iter()
        .filter_map(|st| match st {
            Step::Gemm { a, out, .. } => {
                let (sa, so) = (names.shape(a.buf), names.shape(*out));
                let k = if a.transposed { &sa[1] } else { &sa[2] };
                let d: Vec<String> = [&so[0], &so[1], k, &so[2]]
                    .iter()
                    .map(|d| format!("{:?}", d.to_string()))
                    .collect();
                Some(format!("[{}]", d.join(", ")))
            }
            _ => None,
        })
        .collect();
    let _ = writeln!(
        s,
        "/// The named dims of [`{kname}`], in the slice form's order.\npub const {upper}_DIMS: &[&str] = &[{}];\n\n/// The dims of each input of [`{kname}`].\npub const {upper}_INPUT_DIMS: &[[&str; 3]] = &[{}];\n\n/// The dims of each output of [`{kname}`].\npub const {upper}_OUTPUT_DIMS: &[[&str; 3]] = &[{}];\n\n/// The dims [h, m, k, p] of each GEMM step of [`{kname}`].\npub const {upper}_GEMMS: &[[&str; 4]] = &[{}];\n",
        dims.join(", "),
        dims_of(&all),
        dims_of(&names.outputs),
        gemms.join(", ")
    );
    let ins: Vec<String> = all.iter().map(|b| names.id(*b)).collect();
    // A parameter arrives as a 1×1×1 tensor.
    let args: Vec<String> = names
        .inputs
        .iter()
        .map(|b| names.id(*b))
        .chain(
            names
                .params
                .iter()
                .map(|b| format!("runtime::scalar({:?}, {})?", names.name(*b), names.id(*b))),
        )
        .collect();
    let outs: Vec<String> = names.outputs.iter().map(|b| names.id(*b)).collect();
    let call = if outs.len() == 1 {
        format!("Ok(vec![{kname}({})?])", args.join(", "))
    } else {
        format!(
            "{{\n            let ({}) = {kname}({})?;\n            Ok(vec![{}])\n        }}",
            outs.join(", "),
            args.join(", "),
            outs.join(", ")
        )
    };
    let _ = writeln!(
        s,
        "/// [`{kname}`] with inputs and outputs as slices in the orders above.\npub fn {kname}_dyn(inputs: &[&Tensor3]) -> Result<Vec<Tensor3>, KernelError> {{\n    match inputs {{\n        [{}] => {call},\n        _ => Err(KernelError::Arity {{\n            kernel: {kname:?},\n            expected: {},\n            found: inputs.len(),\n        }}),\n    }}\n}}",
        ins.join(", "),
        ins.len()
    );
    dyn_into_fn(s, kname, names, &ins, &outs);
}

fn dyn_into_fn(s: &mut String, kname: &str, names: &Names<'_>, ins: &[String], outs: &[String]) {
    let _ = writeln!(
        s,
        "\n/// [`{kname}_into`] on tensors in the orders above, writing into `outputs` (their\n/// dims checked) with temporaries from `ws`: repeated calls allocate nothing.\npub fn {kname}_dyn_into(inputs: &[&Tensor3], outputs: &mut [Tensor3], ws: &mut runtime::Workspace) -> Result<(), KernelError> {{\n    let ([{}], [{}]) = (inputs, outputs) else {{\n        return Err(KernelError::Arity {{\n            kernel: {kname:?},\n            expected: {},\n            found: inputs.len(),\n        }});\n    }};",
        ins.join(", "),
        outs.join(", "),
        ins.len()
    );
    bind_dims(s, names);
    for b in &names.outputs {
        check_output(s, names, *b);
    }
    // A parameter arrives as a 1×1×1 tensor.
    for b in &names.params {
        let _ = writeln!(
            s,
            "    let {} = runtime::scalar({:?}, {})?;",
            names.id(*b),
            names.name(*b),
            names.id(*b)
        );
    }
    if !names.has_temps() {
        let _ = writeln!(s, "    let _ = ws;");
    }
    let _ = writeln!(
        s,
        "    {kname}_into({})\n}}",
        into_args(names, "ws").join(", ")
    );
}

/// `mod.rs`: the modules and the registry of kernels.
pub fn mod_file(kernels: &[String], hash: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}", header(hash));
    let _ = writeln!(
        s,
        "//! Generated f64 kernels, lowered from the derived expressions: {}.\n//! Each kernel has a slice form (`*_into`), a tensor form, and a uniform form\n//! (`*_dyn`) listed in [`KERNELS`].\n",
        kernels.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
    );
    let _ = writeln!(s, "pub mod runtime;");
    for k in kernels {
        let _ = writeln!(s, "pub mod {k};");
    }
    let _ = writeln!(s);
    for k in kernels {
        let _ = writeln!(s, "pub use {k}::{k};");
    }
    let _ = writeln!(
        s,
        "\n/// The hash of the rule set these kernels were generated from.\npub const RULES_HASH: u64 = {hash:#018x};\n"
    );
    let _ = writeln!(
        s,
        "/// A kernel's uniform entry: its name, input and output names, and the function.\npub struct Entry {{\n    /// `matmul_vjp`, ...\n    pub name: &'static str,\n    /// Input names, in order.\n    pub inputs: &'static [&'static str],\n    /// Output names, in order.\n    pub outputs: &'static [&'static str],\n    /// Named dims, in the order of the slice form's parameters.\n    pub dims: &'static [&'static str],\n    /// Each input's dims (names, or sizes written as numbers), in order.\n    pub input_dims: &'static [[&'static str; 3]],\n    /// Each output's dims, in order.\n    pub output_dims: &'static [[&'static str; 3]],\n    /// Each GEMM step's dims [h, m, k, p] (2·h·m·k·p flops).\n    pub gemms: &'static [[&'static str; 4]],\n    /// The kernel, allocating its outputs.\n    pub run: fn(&[&runtime::Tensor3]) -> Result<Vec<runtime::Tensor3>, runtime::KernelError>,\n    /// The kernel writing into given outputs, temporaries from a reused workspace.\n    pub run_into: RunInto,\n}}\n\n/// A kernel's uniform form writing into given outputs (`*_dyn_into`).\npub type RunInto = fn(&[&runtime::Tensor3], &mut [runtime::Tensor3], &mut runtime::Workspace) -> Result<(), runtime::KernelError>;\n"
    );
    let _ = writeln!(
        s,
        "/// Every generated kernel.\npub const KERNELS: &[Entry] = &["
    );
    for k in kernels {
        let upper = k.to_uppercase();
        let _ = writeln!(
            s,
            "    Entry {{\n        name: {k:?},\n        inputs: {k}::{upper}_INPUTS,\n        outputs: {k}::{upper}_OUTPUTS,\n        dims: {k}::{upper}_DIMS,\n        input_dims: {k}::{upper}_INPUT_DIMS,\n        output_dims: {k}::{upper}_OUTPUT_DIMS,\n        gemms: {k}::{upper}_GEMMS,\n        run: {k}::{k}_dyn,\n        run_into: {k}::{k}_dyn_into,\n    }},"
        );
    }
    let _ = writeln!(s, "];");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;
    use crate::ir::shape::parse_shape;
    use crate::lower::lower;
    use crate::manifest::KernelMode;
    use egg::Symbol;

    /// The forward file of a kernel named `matmul` with this term and plan.
    fn file(term: crate::ir::Expr, plan: Plan) -> Result<String, String> {
        let lowered = Lowered {
            kernel: "matmul".into(),
            mode: KernelMode::Forward,
            term,
            plan,
        };
        kernel_file(&lowered, 0)
    }

    /// The file for a plan with a temporary (a transpose copy read by a row pass).
    fn with_temp() -> String {
        let term = parse_term("(exp (T A))").unwrap();
        let shapes = [(Symbol::from("A"), parse_shape("h,m,n").unwrap())].into();
        let plan = lower(&term, &shapes).unwrap();
        file(term, plan).unwrap()
    }

    #[test]
    fn temporaries_come_from_the_workspace_and_results_are_written_in_place() {
        let text = with_temp();
        assert!(text.contains("ws: &mut runtime::Workspace) -> Result<(), KernelError>"));
        assert!(text.contains("let [t0] = ws.buffers([runtime::size(\"t0\", [h, n, m])?]);"));
        assert!(text.contains("runtime::transpose([h, m, n], a, &mut *t0)?;"));
        assert!(text.contains("let t0 = runtime::row(&*t0, row, m);"));
        assert!(
            text.contains("runtime::with_workspace(|ws| matmul_forward_into("),
            "{text}"
        );
        assert!(text.contains("let r0 = &mut out[..m];"));
        assert!(!text.contains("vec![0.0"));
    }

    #[test]
    fn an_accumulate_into_an_unwritten_buffer_is_not_emitted() {
        let term = parse_term("(+ (bmm A A) (bmm A (T A)))").unwrap();
        let shapes = [(Symbol::from("A"), parse_shape("h,m,m").unwrap())].into();
        let mut plan = lower(&term, &shapes).unwrap();
        plan.steps.remove(0);
        let err = file(term, plan).unwrap_err();
        assert!(err.contains("no earlier GEMM wrote"), "{err}");
    }

    #[test]
    fn parameters_product_dims_and_head_layouts_are_written() {
        let shapes = [
            (Symbol::from("X"), parse_shape("1,n,2*d").unwrap()),
            (Symbol::from("W"), parse_shape("1,2*d,2*d").unwrap()),
        ]
        .into();
        let term = parse_term("(merge 2 (exp (* @c (split 2 (bmm X W)))))").unwrap();
        let plan = lower(&term, &shapes).unwrap();
        let src = file(term, plan).unwrap();
        for want in [
            "pub fn matmul_forward_into(d: usize, n: usize, c: f64, w: &[f64], x: &[f64]",
            "let d = runtime::factor(\"W\", w.dims, 1, \"2*d\", 2)?;",
            "runtime::same_dim(\"X\", x.dims, 2, \"2*d\", 2*d)?;",
            "runtime::bmm([1, n, (2*d), (2*d)], x, false, w, false, &mut *t0, false)?;",
            "runtime::split_heads([2, n, d], &*t0, &mut *t1)?;",
            "runtime::merge_heads([2, n, d], &*t2, out)?;",
            "[w, x, c] => Ok(vec![matmul_forward(w, x, runtime::scalar(\"c\", c)?)?]),",
            "let c = runtime::scalar(\"c\", c)?;",
        ] {
            assert!(src.contains(want), "{want} not in\n{src}");
        }
    }
}

//! Plan → Rust source, one case per step kind and per row instruction.

use super::Lowered;
use crate::ir::layout::Layout;
use crate::ir::shape::{Dim, Shape};
use crate::lower::{Arg, Binary, BufId, Instr, Plan, Reg, Role, RowProgram, Step, Unary};
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
                "    runtime::same_dim({input:?}, {id}.dims, {axis}, {:?}, {})?;",
                d.to_string(),
                dim(d)
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
struct Names<'a> {
    plan: &'a Plan,
    /// Named dims, in first-appearance order over the inputs.
    dims: Vec<String>,
    inputs: Vec<BufId>,
    /// Runtime parameters (`f64` arguments), by name.
    params: Vec<BufId>,
    outputs: Vec<BufId>,
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
        let idents: Vec<String> = plan.buffers.iter().map(|b| ident(&b.name)).collect();
        if let Some(clash) = dims.iter().find(|d| idents.contains(d)) {
            return Err(format!("dim {clash} has the same name as a buffer"));
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
        })
    }

    fn name(&self, b: BufId) -> &str {
        &self.plan.buffers[b].name
    }

    fn id(&self, b: BufId) -> String {
        ident(self.name(b))
    }

    /// The buffer as a `&[f64]` expression (temporaries are owned vectors).
    fn read(&self, b: BufId) -> String {
        match self.plan.buffers[b].role {
            Role::Temp => format!("&{}", self.id(b)),
            _ => self.id(b),
        }
    }

    /// The buffer as a `&mut [f64]` expression.
    fn write(&self, b: BufId) -> String {
        match self.plan.buffers[b].role {
            Role::Temp => format!("&mut {}", self.id(b)),
            _ => self.id(b),
        }
    }

    fn shape(&self, b: BufId) -> &Shape {
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
        "/// `{kname}` on row-major slices. Inputs: {}. Outputs: {}.\n///\n/// Every length is checked against the dims (an error, never a panic). Error bound: each\n/// GEMM entry is a dot product with |fl − exact| ≤ γₖ·Σ|aᵢbᵢ|; row passes round once per\n/// operation (`fderiv verify` checks the composed bound).",
        io_doc(names, &names.inputs),
        io_doc(names, &names.outputs)
    );
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
    for (b, buf) in names.plan.buffers.iter().enumerate() {
        if buf.role == Role::Temp {
            let _ = writeln!(
                s,
                "    let mut {} = vec![0.0; runtime::size({:?}, {})?];",
                names.id(b),
                buf.name,
                dims3(&buf.shape)
            );
        }
    }
    for (i, step) in names.plan.steps.iter().enumerate() {
        step_code(s, i + 1, step, names)?;
    }
    let _ = writeln!(s, "    Ok(())\n}}\n");
    Ok(())
}

fn step_code(s: &mut String, n: usize, step: &Step, names: &Names<'_>) -> Result<(), String> {
    let out = names.write(step.out());
    match step {
        Step::Gemm { a, b, out: o } => {
            let sa = names.shape(a.buf);
            let k = if a.transposed { &sa[1] } else { &sa[2] };
            let so = names.shape(*o);
            let _ = writeln!(
                s,
                "    // {n}. {} = {}{} · {}{} per head",
                names.name(*o),
                names.name(a.buf),
                if a.transposed { "ᵀ" } else { "" },
                names.name(b.buf),
                if b.transposed { "ᵀ" } else { "" }
            );
            let _ = writeln!(
                s,
                "    runtime::bmm([{}, {}, {}, {}], {}, {}, {}, {}, {out})?;",
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
        Step::RowPass { out: o, program } => row_pass(s, n, *o, program, names),
    }
    Ok(())
}

fn row_pass(s: &mut String, n: usize, out: BufId, p: &RowProgram, names: &Names<'_>) {
    let len = dim(&names.shape(out)[2]);
    let _ = writeln!(
        s,
        "    // {n}. {} = a fused pass over each row",
        names.name(out)
    );
    let regs: Vec<String> = (0..p.row_regs).map(|i| format!("r{i}")).collect();
    let _ = writeln!(
        s,
        "    runtime::row_pass({}, {len}, || -> [Vec<f64>; {}] {{ std::array::from_fn(|_| vec![0.0; {len}]) }}, |row, out, regs| {{",
        names.write(out),
        p.row_regs
    );
    let _ = writeln!(s, "        let [{}] = regs;", regs.join(", "));
    let mut read: Vec<BufId> = p
        .args()
        .filter_map(|a| match a {
            Arg::Buf(b) => Some(*b),
            _ => None,
        })
        .collect();
    read.sort_unstable();
    read.dedup();
    for b in read {
        let _ = writeln!(
            s,
            "        let {} = runtime::row({}, row, {len});",
            names.id(b),
            names.read(b)
        );
    }
    for ins in &p.instrs {
        instr(s, ins, names, &len);
    }
    match &p.result {
        Arg::Reg(Reg::Row(i)) => {
            let _ = writeln!(s, "        out.copy_from_slice(r{i});");
        }
        other => {
            let _ = writeln!(s, "        out.fill({});", at(other, names, "0"));
        }
    }
    let _ = writeln!(s, "    }});");
}

/// An argument's value at column `j` (`j` unused for scalars and numbers).
fn at(a: &Arg, names: &Names<'_>, j: &str) -> String {
    match a {
        Arg::Buf(b) => format!("{}[{j}]", names.id(*b)),
        Arg::Reg(Reg::Row(i)) => format!("r{i}[{j}]"),
        Arg::Reg(Reg::Scalar(i)) => format!("s{i}"),
        Arg::Num(c) => number(&c.0),
        Arg::Param(b) => names.id(*b),
    }
}

fn is_row(a: &Arg) -> bool {
    matches!(a, Arg::Buf(_) | Arg::Reg(Reg::Row(_)))
}

/// An exact rational as an f64 expression (correctly rounded for |p|, q < 2⁵³).
fn number(q: &crate::scalar::Rational) -> String {
    if q.is_integer() {
        format!("{}.0_f64", q.numer())
    } else {
        format!("({}.0_f64 / {}.0_f64)", q.numer(), q.denom())
    }
}

fn unary(op: Unary, x: &str) -> String {
    match op {
        Unary::Neg => format!("-{x}"),
        Unary::Inv => format!("1.0 / {x}"),
        Unary::Exp => format!("{x}.exp()"),
    }
}

fn binary(op: Binary, a: &str, b: &str) -> String {
    let sym = match op {
        Binary::Add => "+",
        Binary::Sub => "-",
        Binary::Mul => "*",
        Binary::Div => "/",
    };
    format!("{a} {sym} {b}")
}

/// Writes `dst = value(j)`: a loop over the row for a row register, one assignment for
/// a scalar register.
fn assign(s: &mut String, dst: Reg, len: &str, value: impl Fn(&str) -> String) {
    match dst {
        Reg::Row(d) => {
            let _ = writeln!(
                s,
                "        for j in 0..{len} {{ r{d}[j] = {}; }}",
                value("j")
            );
        }
        Reg::Scalar(d) => {
            let _ = writeln!(s, "        let s{d} = {};", value("0"));
        }
    }
}

fn instr(s: &mut String, ins: &Instr, names: &Names<'_>, len: &str) {
    match ins {
        Instr::Unary { op, x, dst } => assign(s, *dst, len, |j| {
            unary(*op, &format!("({})", at(x, names, j)))
        }),
        Instr::Binary { op, a, b, dst } => assign(s, *dst, len, |j| {
            binary(
                *op,
                &format!("({})", at(a, names, j)),
                &format!("({})", at(b, names, j)),
            )
        }),
        Instr::RowSum { x, dst } if is_row(x) => {
            let _ = writeln!(
                s,
                "        let mut s{dst} = 0.0_f64;\n        for j in 0..{len} {{ s{dst} += {}; }}",
                at(x, names, "j")
            );
        }
        Instr::RowSum { x, dst } => {
            let _ = writeln!(
                s,
                "        let s{dst} = {} * {len} as f64;",
                at(x, names, "0")
            );
        }
        Instr::Softmax { x, dst } => {
            // The forward definition exp xᵢ / Σⱼ exp xⱼ, shifted by the row maximum so
            // that large logits do not overflow (a NaN entry makes the row NaN).
            let xj = at(x, names, "j");
            let _ = writeln!(
                s,
                "        let mut top = f64::NEG_INFINITY;\n        for j in 0..{len} {{ top = top.max({xj}); }}\n        let mut total = 0.0_f64;\n        for j in 0..{len} {{ r{dst}[j] = ({xj} - top).exp(); total += r{dst}[j]; }}\n        for j in 0..{len} {{ r{dst}[j] /= total; }}"
            );
        }
    }
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
    for b in &names.outputs {
        let _ = writeln!(
            s,
            "    let mut {} = Tensor3::zeros({:?}, {})?;",
            names.id(*b),
            names.name(*b),
            dims3(names.shape(*b))
        );
    }
    let mut args: Vec<String> = names.dims.clone();
    args.extend(names.params.iter().map(|b| names.id(*b)));
    args.extend(
        names
            .inputs
            .iter()
            .map(|b| format!("&{}.data", names.id(*b))),
    );
    args.extend(outs.iter().map(|o| format!("&mut {o}.data")));
    let _ = writeln!(s, "    {kname}_into({})?;", args.join(", "));
    let result = if outs.len() == 1 {
        outs[0].clone()
    } else {
        format!("({})", outs.join(", "))
    };
    let _ = writeln!(s, "    Ok({result})\n}}\n");
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
        "/// A kernel's uniform entry: its name, input and output names, and the function.\npub struct Entry {{\n    /// `matmul_vjp`, ...\n    pub name: &'static str,\n    /// Input names, in order.\n    pub inputs: &'static [&'static str],\n    /// Output names, in order.\n    pub outputs: &'static [&'static str],\n    /// The kernel.\n    pub run: fn(&[&runtime::Tensor3]) -> Result<Vec<runtime::Tensor3>, runtime::KernelError>,\n}}\n"
    );
    let _ = writeln!(
        s,
        "/// Every generated kernel.\npub const KERNELS: &[Entry] = &["
    );
    for k in kernels {
        let upper = k.to_uppercase();
        let _ = writeln!(
            s,
            "    Entry {{\n        name: {k:?},\n        inputs: {k}::{upper}_INPUTS,\n        outputs: {k}::{upper}_OUTPUTS,\n        run: {k}::{k}_dyn,\n    }},"
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
    use crate::manifest::KernelMode;
    use egg::Symbol;

    #[test]
    fn parameters_product_dims_and_head_layouts_are_written() {
        let shapes = [
            (Symbol::from("X"), parse_shape("1,n,2*d").unwrap()),
            (Symbol::from("W"), parse_shape("1,2*d,2*d").unwrap()),
        ]
        .into();
        let term = parse_term("(merge 2 (exp (* @c (split 2 (bmm X W)))))").unwrap();
        let plan = crate::lower::lower(&term, &shapes).unwrap();
        let lowered = Lowered {
            kernel: "matmul".into(),
            mode: KernelMode::Forward,
            term,
            plan,
        };
        let src = kernel_file(&lowered, 0).unwrap();
        for want in [
            "pub fn matmul_forward_into(d: usize, n: usize, c: f64, w: &[f64], x: &[f64]",
            "let d = runtime::factor(\"W\", w.dims, 1, \"2*d\", 2)?;",
            "runtime::same_dim(\"X\", x.dims, 2, \"2*d\", (2*d))?;",
            "runtime::bmm([1, n, (2*d), (2*d)], x, false, w, false, &mut t0)?;",
            "runtime::split_heads([2, n, d], &t0, &mut t1)?;",
            "runtime::merge_heads([2, n, d], &t2, out)?;",
            "[w, x, c] => Ok(vec![matmul_forward(w, x, runtime::scalar(\"c\", c)?)?]),",
        ] {
            assert!(src.contains(want), "{want} not in\n{src}");
        }
    }
}

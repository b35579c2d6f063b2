//! One attention head, O = softmax(Q·Kᵀ)·V, forward and backward built only from the
//! generated kernels (`fderiv::kernels`), checked against the exact path: the same
//! head's VJP derived by the rules from `(bmm (softmax (bmm Q (T K))) V)` and evaluated
//! over ℚ (exp taken at the f64 libm values, so the remaining difference is f64
//! rounding alone).
//!
//! Run: `cargo run --release --example attention_head`

use fderiv::derive::{derive, Limits, Mode, Request};
use fderiv::ir::eval::{eval, Binding, Env, Value};
use fderiv::ir::shape::{parse_shape, ShapeEnv};
use fderiv::kernels::runtime::{self, KernelError, Tensor3};
use fderiv::kernels::{matmul_forward, matmul_vjp, softmax_last_forward, softmax_last_vjp};
use fderiv::rules::RuleSet;
use fderiv::scalar::{f64_to_rational, ExpOracle, Rational};
use fderiv::tensor::Tensor;
use std::collections::BTreeMap;
use std::error::Error;

/// `xᵀ` over the last two axes, with the generated runtime.
fn transpose(x: &Tensor3) -> Result<Tensor3, KernelError> {
    let [h, m, n] = x.dims;
    let mut out = Tensor3::zeros("transpose", [h, n, m])?;
    runtime::transpose(x.dims, &x.data, &mut out.data)?;
    Ok(out)
}

/// Forward and backward of the head from the generated kernels.
fn head_with_kernels(
    q: &Tensor3,
    k: &Tensor3,
    v: &Tensor3,
    g: &Tensor3,
) -> Result<[Tensor3; 4], KernelError> {
    let kt = transpose(k)?;
    let scores = matmul_forward(q, &kt)?; // P = Q·Kᵀ
    let s = softmax_last_forward(&scores)?; // S = softmax(P), saved for the backward pass
    let o = matmul_forward(&s, v)?; // O = S·V
    let (g_s, g_v) = matmul_vjp(&s, v, g)?; // gS = G·Vᵀ, gV = Sᵀ·G
    let g_p = softmax_last_vjp(&s, &g_s)?; // gP = S ⊙ (gS − rowsum(S ⊙ gS))
    let (g_q, g_kt) = matmul_vjp(q, &kt, &g_p)?; // gQ = gP·K, gKᵀ = Qᵀ·gP
    Ok([o, g_q, transpose(&g_kt)?, g_v])
}

/// A small dyadic pseudo-random tensor (deterministic).
fn tensor(dims: [usize; 3], seed: u64) -> Tensor3 {
    let len: usize = dims.iter().product();
    let data = (0..len as u64)
        .map(|i| {
            let x = (i + 1)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(seed)
                >> 58;
            (x as f64 - 32.0) / 16.0
        })
        .collect();
    Tensor3 { dims, data }
}

fn exact(t: &Tensor3) -> Result<Tensor<Rational>, Box<dyn Error>> {
    let data = t
        .data
        .iter()
        .map(|x| f64_to_rational(*x))
        .collect::<Result<_, _>>()?;
    Ok(Tensor::new(t.dims, data)?)
}

/// The largest |a − b| / max(|b|, 1e-300) over all entries, with b exact.
fn worst_relative(a: &Tensor3, b: &Tensor<Rational>) -> f64 {
    use num_traits::ToPrimitive;
    a.data
        .iter()
        .zip(b.data())
        .map(|(x, y)| {
            let y = y.to_f64().unwrap_or(f64::NAN);
            (x - y).abs() / y.abs().max(1e-300)
        })
        .fold(0.0, f64::max)
}

fn main() -> Result<(), Box<dyn Error>> {
    let (h, m, d, n, e) = (2, 3, 4, 5, 3);
    let q = tensor([h, m, d], 1);
    let k = tensor([h, n, d], 2);
    let v = tensor([h, n, e], 3);
    let g = tensor([h, m, e], 4);
    let [o, g_q, g_k, g_v] = head_with_kernels(&q, &k, &v, &g)?;

    // The exact path: the rules derive the head's VJP; ℚ evaluates it and the forward.
    let term = "(bmm (softmax (bmm Q (T K))) V)";
    let shapes: ShapeEnv = [("Q", "h,m,d"), ("K", "h,n,d"), ("V", "h,n,e")]
        .iter()
        .map(|(s, t)| Ok((egg::Symbol::from(*s), parse_shape(t)?)))
        .collect::<Result<_, fderiv::ir::shape::ShapeError>>()?;
    let rules = RuleSet::embedded()?;
    let vjp = derive(
        &Request::new(term, shapes, None, Mode::Vjp)?,
        &rules,
        &Limits::default(),
    )?;
    println!("derived VJP of {term}:\n  {}", vjp.result);
    let mut inputs = BTreeMap::new();
    for (name, t) in [("Q", &q), ("K", &k), ("V", &v), ("G", &g)] {
        let value = exact(t)?;
        let tangent = Tensor::filled(t.dims, Rational::from_integer(0.into()))?;
        inputs.insert(egg::Symbol::from(name), Binding { value, tangent });
    }
    let env = Env {
        inputs,
        params: BTreeMap::new(),
        oracle: ExpOracle::Libm,
    };
    let forward = eval(&fderiv::ir::parse_term(term)?, &env)?;
    let grads = eval(&vjp.result, &env)?;
    let (Value::Tensor(o_exact), Value::Grad(g_exact)) = (forward, grads) else {
        return Err("unexpected value kinds from the exact path".into());
    };
    let mut worst: f64 = worst_relative(&o, &o_exact);
    println!("O   vs exact: max relative error {worst:.2e}");
    for (name, got) in [("Q", &g_q), ("K", &g_k), ("V", &g_v)] {
        let want = g_exact
            .get(&egg::Symbol::from(name))
            .ok_or("a missing gradient")?;
        let err = worst_relative(got, want);
        println!("g{name}  vs exact: max relative error {err:.2e}");
        worst = worst.max(err);
    }
    if worst > 1e-12 {
        return Err(
            format!("the generated kernels disagree with the exact path: {worst:.2e}").into(),
        );
    }
    println!(
        "attention head: generated kernels agree with the exact path (worst {worst:.2e} ≤ 1e-12)"
    );
    Ok(())
}

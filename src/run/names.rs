//! The file-level names of each op and mode: which inputs it takes and which outputs
//! it writes. A primal input `A` has tangent `dA` (JVP) and gradient `gA` (VJP); the
//! cotangent of the output is `G`.

use super::RunMode;
use crate::derive::{SpecOp, COTANGENT};

/// The primal inputs of `op`, in the order of its forward term (`A`, `B` / `X`).
pub fn primals(op: SpecOp) -> Vec<&'static str> {
    op.term().1.iter().map(|(name, _)| *name).collect()
}

/// The name of the forward output: `C` for matmul, `S` for softmax_last.
pub fn forward_output(op: SpecOp) -> &'static str {
    match op {
        SpecOp::Matmul => "C",
        SpecOp::SoftmaxLast => "S",
    }
}

/// The tangent of input `name`: `dA`.
pub fn tangent(name: &str) -> String {
    format!("d{name}")
}

/// The gradient of input `name`: `gA`.
pub fn gradient(name: &str) -> String {
    format!("g{name}")
}

/// Every input `op` in `mode` needs, in a stable order.
pub fn inputs(op: SpecOp, mode: RunMode) -> Vec<String> {
    let p = primals(op);
    let mut names: Vec<String> = p.iter().map(|s| s.to_string()).collect();
    match mode {
        RunMode::Forward => {}
        RunMode::Jvp => names.extend(p.iter().map(|s| tangent(s))),
        RunMode::Vjp => names.push(COTANGENT.to_string()),
    }
    names
}

/// Every output `op` in `mode` writes, without the `.npy` extension.
pub fn outputs(op: SpecOp, mode: RunMode) -> Vec<String> {
    match mode {
        RunMode::Forward => vec![forward_output(op).to_string()],
        RunMode::Jvp => vec![tangent(forward_output(op))],
        RunMode::Vjp => primals(op).iter().map(|s| gradient(s)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_command_spec() {
        assert_eq!(inputs(SpecOp::Matmul, RunMode::Jvp), ["A", "B", "dA", "dB"]);
        assert_eq!(inputs(SpecOp::Matmul, RunMode::Vjp), ["A", "B", "G"]);
        assert_eq!(inputs(SpecOp::SoftmaxLast, RunMode::Jvp), ["X", "dX"]);
        assert_eq!(outputs(SpecOp::Matmul, RunMode::Forward), ["C"]);
        assert_eq!(outputs(SpecOp::Matmul, RunMode::Vjp), ["gA", "gB"]);
        assert_eq!(outputs(SpecOp::SoftmaxLast, RunMode::Jvp), ["dS"]);
        assert_eq!(outputs(SpecOp::SoftmaxLast, RunMode::Vjp), ["gX"]);
    }
}

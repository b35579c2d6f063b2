//! A fused row pass → Rust source: the row program's instructions in as few loops
//! over the row as the data dependences allow.
//!
//! Consecutive entrywise instructions and row sums form one *group*, emitted as one
//! loop over the row: each row value is a local of the loop body, stored into its row
//! register only when a later group or the result reads it; the group's row sums are
//! accumulated in the same loop by `runtime::sums` (fixed lanes, so the loop
//! vectorizes). A group ends before an instruction that reads a sum of the group
//! (the sum is known only after the loop), before a scalar instruction and at a
//! softmax (which needs its whole operand first: `runtime::max`, the shift,
//! `runtime::exp_sum`, the division). Every operation of the plan is still one IEEE
//! operation in the plan's order per entry; only the order of each row sum's terms
//! differs from left to right, within the same bound (γₙ₋₁ Σ|xⱼ| for any order).

use super::code::Names;
use crate::lower::{Arg, Binary, BufId, Instr, Reg, RowProgram, Unary};
use std::fmt::Write as _;

/// Writes the `runtime::row_pass` call of step `n`, whose result is stored in `out`;
/// `len` is the row length's source text.
pub(super) fn row_pass(
    s: &mut String,
    n: usize,
    out: BufId,
    p: &RowProgram,
    names: &Names<'_>,
    len: &str,
) {
    let _ = writeln!(
        s,
        "    // {n}. {} = a fused pass over each row",
        names.name(out)
    );
    // A row-register result is computed in the output row itself: no copy.
    let into_out = match p.result {
        Arg::Reg(Reg::Row(i)) => Some(i),
        _ => None,
    };
    // The body first: it tells which row registers are stored (the others are
    // locals of the loops).
    let mut body = String::new();
    let mut stored: Vec<usize> = into_out.into_iter().collect();
    let mut start = 0;
    while start < p.instrs.len() {
        let pieces = group_at(&p.instrs, start);
        if pieces.is_empty() {
            single(&mut body, &p.instrs[start], names, len, &mut stored);
            start += 1;
        } else {
            let end = start + pieces.len();
            group(&mut body, p, &pieces, end, names, len, &mut stored);
            start = end;
        }
    }
    stored.sort_unstable();
    stored.dedup();
    let regs: Vec<String> = stored
        .iter()
        .filter(|i| Some(**i) != into_out)
        .map(|i| format!("r{i}"))
        .collect();
    let _ = writeln!(
        s,
        "    runtime::row_pass({}, {len}, |row, out, [{}]: [&mut [f64]; {}]| {{",
        names.write(out),
        regs.join(", "),
        regs.len()
    );
    // Every row slice is re-bound to exactly `len` values, so the loops index
    // without bounds checks.
    for r in &regs {
        let _ = writeln!(s, "        let {r} = &mut {r}[..{len}];");
    }
    match into_out {
        Some(i) => {
            let _ = writeln!(s, "        let r{i} = &mut out[..{len}];");
        }
        None => {
            let _ = writeln!(s, "        let out = &mut out[..{len}];");
        }
    }
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
    s.push_str(&body);
    match &p.result {
        Arg::Reg(Reg::Row(_)) => {}
        Arg::Buf(b) => {
            let _ = writeln!(s, "        out.copy_from_slice({});", names.id(*b));
        }
        other => {
            let _ = writeln!(s, "        out.fill({});", value(other, names, "0", &[]));
        }
    }
    let _ = writeln!(s, "    }});");
}

/// An instruction of a loop group.
enum Piece<'a> {
    /// `r{dst}[j] = op at j`.
    Entry { dst: usize, op: Op<'a> },
    /// `s{dst} = Σⱼ x[j]`.
    Sum { dst: usize, x: &'a Arg },
}

/// An entrywise operation and its operands.
enum Op<'a> {
    Unary(Unary, &'a Arg),
    Binary(Binary, &'a Arg, &'a Arg),
}

/// The instruction as a part of a loop over the row, if it is one: an entrywise
/// instruction writing a row register, or a sum of a row.
fn piece(ins: &Instr) -> Option<Piece<'_>> {
    match ins {
        Instr::Unary {
            op,
            x,
            dst: Reg::Row(d),
        } => Some(Piece::Entry {
            dst: *d,
            op: Op::Unary(*op, x),
        }),
        Instr::Binary {
            op,
            a,
            b,
            dst: Reg::Row(d),
        } => Some(Piece::Entry {
            dst: *d,
            op: Op::Binary(*op, a, b),
        }),
        Instr::RowSum { x, dst } if is_row(x) => Some(Piece::Sum { dst: *dst, x }),
        _ => None,
    }
}

fn reads(ins: &Instr) -> Vec<&Arg> {
    match ins {
        Instr::Unary { x, .. } | Instr::RowSum { x, .. } | Instr::Softmax { x, .. } => vec![x],
        Instr::Binary { a, b, .. } => vec![a, b],
    }
}

/// The loop group starting at `start` (empty when the instruction there is not part
/// of a loop): it ends before a non-loop instruction and before one reading a sum of
/// the group.
fn group_at(instrs: &[Instr], start: usize) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut sums: Vec<usize> = Vec::new();
    for ins in &instrs[start..] {
        let reads_sum = reads(ins)
            .into_iter()
            .any(|a| matches!(a, Arg::Reg(Reg::Scalar(d)) if sums.contains(d)));
        match piece(ins) {
            Some(p) if !reads_sum => {
                if let Piece::Sum { dst, .. } = p {
                    sums.push(dst);
                }
                pieces.push(p);
            }
            _ => break,
        }
    }
    pieces
}

/// Whether row register `r` is read from instruction `from` on (or is the result).
fn live_from(p: &RowProgram, from: usize, r: usize) -> bool {
    p.instrs[from..]
        .iter()
        .flat_map(reads)
        .chain(std::iter::once(&p.result))
        .any(|a| matches!(a, Arg::Reg(Reg::Row(d)) if *d == r))
}

/// One loop over the row for the group's pieces; `end` is the index of the first
/// instruction after the group.
/// Registers stored are added to `stored`.
fn group(
    s: &mut String,
    p: &RowProgram,
    pieces: &[Piece<'_>],
    end: usize,
    names: &Names<'_>,
    len: &str,
    stored: &mut Vec<usize>,
) {
    let mut locals: Vec<usize> = Vec::new();
    let mut sums: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    for piece in pieces {
        match piece {
            Piece::Entry { dst, op } => {
                let v = formula(op, |a| value(a, names, "j", &locals));
                let _ = write!(body, " let v{dst} = {v};");
                locals.push(*dst);
            }
            Piece::Sum { dst, x } => sums.push((*dst, value(x, names, "j", &locals))),
        }
    }
    locals.sort_unstable();
    locals.dedup();
    for d in locals.iter().filter(|d| live_from(p, end, **d)) {
        let _ = write!(body, " r{d}[j] = v{d};");
        stored.push(*d);
    }
    if sums.is_empty() {
        let _ = writeln!(s, "        for j in 0..{len} {{{body} }}");
    } else {
        let dsts: Vec<String> = sums.iter().map(|(d, _)| format!("s{d}")).collect();
        let terms: Vec<&str> = sums.iter().map(|(_, t)| t.as_str()).collect();
        let _ = writeln!(
            s,
            "        let [{}] = runtime::sums({len}, |j| {{{body} [{}] }});",
            dsts.join(", "),
            terms.join(", ")
        );
    }
}

/// An instruction outside any loop group: a scalar instruction, the sum of a scalar
/// (n times it) or a softmax. A row register written is added to `stored`.
fn single(s: &mut String, ins: &Instr, names: &Names<'_>, len: &str, stored: &mut Vec<usize>) {
    match ins {
        Instr::Unary { op, x, dst } => {
            let v = formula(&Op::Unary(*op, x), |a| value(a, names, "0", &[]));
            assign(s, *dst, len, &v, stored);
        }
        Instr::Binary { op, a, b, dst } => {
            let v = formula(&Op::Binary(*op, a, b), |a| value(a, names, "0", &[]));
            assign(s, *dst, len, &v, stored);
        }
        Instr::RowSum { x, dst } => {
            let _ = writeln!(
                s,
                "        let s{dst} = {} * {len} as f64;",
                value(x, names, "0", &[])
            );
        }
        Instr::Softmax { x, dst } => {
            // The forward definition exp xᵢ / Σⱼ exp xⱼ, shifted by the row maximum so
            // that large logits do not overflow (a NaN entry makes the row NaN); exp
            // and the sum by the runtime's vectorized `exp_sum`.
            let xj = value(x, names, "j", &[]);
            stored.push(*dst);
            let _ = writeln!(
                s,
                "        let top = runtime::max({len}, |j| {xj});\n        for j in 0..{len} {{ r{dst}[j] = {xj} - top; }}\n        let total = runtime::exp_sum(r{dst});\n        for j in 0..{len} {{ r{dst}[j] /= total; }}"
            );
        }
    }
}

/// `dst = v` for a value computed once per row (a scalar instruction; a row
/// destination, never made by the lowering for scalar operands, is filled).
fn assign(s: &mut String, dst: Reg, len: &str, v: &str, stored: &mut Vec<usize>) {
    match dst {
        Reg::Row(d) => {
            stored.push(d);
            let _ = writeln!(s, "        for j in 0..{len} {{ r{d}[j] = {v}; }}");
        }
        Reg::Scalar(d) => {
            let _ = writeln!(s, "        let s{d} = {v};");
        }
    }
}

/// An argument's value at column `j` (`j` unused for scalars and numbers); a row
/// register in `locals` is the loop body's local `v…`.
fn value(a: &Arg, names: &Names<'_>, j: &str, locals: &[usize]) -> String {
    match a {
        Arg::Buf(b) => format!("{}[{j}]", names.id(*b)),
        Arg::Reg(Reg::Row(i)) if locals.contains(i) => format!("v{i}"),
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

/// The source of an entrywise operation, each operand's text from `at`.
fn formula(op: &Op<'_>, at: impl Fn(&Arg) -> String) -> String {
    match op {
        Op::Unary(Unary::Neg, x) => format!("-({})", at(x)),
        Op::Unary(Unary::Inv, x) => format!("1.0 / ({})", at(x)),
        Op::Unary(Unary::Exp, x) => format!("({}).exp()", at(x)),
        Op::Binary(op, a, b) => {
            let sym = match op {
                Binary::Add => "+",
                Binary::Sub => "-",
                Binary::Mul => "*",
                Binary::Div => "/",
            };
            format!("({}) {sym} ({})", at(a), at(b))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::emit::{code::kernel_file, Lowered};
    use crate::ir::parse_term;
    use crate::ir::shape::parse_shape;
    use crate::lower::lower;
    use crate::manifest::KernelMode;
    use egg::Symbol;

    /// The row-pass text of the forward kernel of `term` over h×m×n inputs A, B.
    fn body(term: &str) -> String {
        let term = parse_term(term).unwrap();
        let shape = parse_shape("h,m,n").unwrap();
        let shapes = [
            (Symbol::from("A"), shape.clone()),
            (Symbol::from("B"), shape),
        ]
        .into();
        let plan = lower(&term, &shapes).unwrap();
        let lowered = Lowered {
            kernel: "k".into(),
            mode: KernelMode::Forward,
            term,
            plan,
        };
        let text = kernel_file(&lowered, 0).unwrap();
        let start = text.find("runtime::row_pass(").unwrap();
        text[start..text[start..].find("    });").unwrap() + start].to_string()
    }

    #[test]
    fn a_sum_read_in_the_same_row_ends_the_loop_and_live_values_are_stored() {
        let text = body("(* (- A (rowsum (* A B))) (rowsum (- A (rowsum (* A B)))))");
        let loops: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("for j in") || l.contains("runtime::sums("))
            .collect();
        // Σ A·B; then A − s0 (stored: read again after the second sum) and its sum;
        // then the product into the output.
        assert_eq!(loops.len(), 3, "{text}");
        assert!(loops[0].contains("let [s0] = runtime::sums(n"), "{text}");
        assert!(loops[1].contains("let [s1] = runtime::sums(n"), "{text}");
        assert!(
            loops[1].contains("(s0)") && loops[1].contains(" = v"),
            "{text}"
        );
        assert!(loops[2].contains("(s1)"), "{text}");
        // The product A·B is a local: no register holds it.
        assert!(text.contains("[&mut [f64]; 1]"), "{text}");
    }

    #[test]
    fn independent_sums_share_one_loop() {
        let text = body("(* (rowsum (* A B)) (rowsum (- A B)))");
        assert!(text.contains("let [s0, s1] = runtime::sums(n"), "{text}");
    }
}

//! A fused row pass → Rust source: the row program's instructions in as few loops
//! over the row as the data dependences allow.
//!
//! Consecutive entrywise instructions and row sums form one *group*, emitted as one
//! loop over the row: each row value is a local of the loop body, stored into its row
//! register only when a later group or the result reads it; the group's row sums are
//! accumulated in the same loop by `runtime::fused` (fixed lanes, chunks with one
//! bounds check each, so the loop vectorizes). A group ends before an instruction that reads a sum of the group
//! (the sum is known only after the loop), before a scalar instruction and at a
//! softmax (which needs its whole operand first: `runtime::max_min`, then the shift,
//! exp and sum in one pass of `runtime::exp_shift_sum`, then the division,
//! `runtime::divide_exps`: correctly rounded, by FMAs when the row allows; from another
//! row, the three in one call of `runtime::softmax_row` or `softmax_out_row`). Every
//! operation of the plan is still one IEEE operation in the plan's order per entry; only the order of each row sum's terms
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
    // Whether the pass streams its last stores, and whether from a softmax (which
    // has its own threshold).
    let (mut streams, mut softmax_streams) = (false, false);
    let mut start = 0;
    while start < p.instrs.len() {
        let pieces = group_at(&p.instrs, start);
        if pieces.is_empty() {
            // The last instruction, when it is a softmax into the output row, may
            // stream it, unless a later step reads the output (streaming an attention
            // block's probabilities out of the caches before its GEMM cost 3 %).
            let last = start + 1 == p.instrs.len() && !names.read_after(out, n);
            softmax_streams |= single(
                &mut body,
                &p.instrs[start],
                names,
                len,
                &mut stored,
                into_out,
                last,
            );
            start += 1;
        } else {
            let end = start + pieces.len();
            // The last loop, when it writes the output row only, may stream it.
            let last = (end == p.instrs.len()).then_some(into_out).flatten();
            streams |= group(&mut body, p, &pieces, end, names, len, &mut stored, last);
            start = end;
        }
    }
    stored.sort_unstable();
    stored.dedup();
    if streams || softmax_streams {
        let _ = writeln!(
            s,
            "    let stream = runtime::{}({}.len());",
            if softmax_streams {
                "stream_softmax"
            } else {
                "stream_stores"
            },
            names.id(out)
        );
    }
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
    if p.instrs.iter().any(|i| matches!(i, Instr::Softmax { .. })) {
        // The next row of each buffer read, prefetched while a softmax computes its exp.
        let next: Vec<String> = read
            .iter()
            .map(|b| format!("runtime::row_after({}, row, {len})", names.read(*b)))
            .collect();
        let _ = writeln!(
            s,
            "        let ahead: [&[f64]; {}] = [{}];",
            next.len(),
            next.join(", ")
        );
    }
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
            let _ = writeln!(s, "        out.fill({});", value(other, names, None, &[]));
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

/// Row registers an instruction reads.
fn row_regs(ins: &Instr) -> impl Iterator<Item = usize> + '_ {
    reads(ins).into_iter().filter_map(|a| match a {
        Arg::Reg(Reg::Row(d)) => Some(*d),
        _ => None,
    })
}

/// The loop group starting at `start` (empty when the instruction there is not part
/// of a loop): it ends before a non-loop instruction, before one reading a sum of the
/// group, and before one writing a register the group reads from memory (so no row
/// is both read and written by the loop).
fn group_at(instrs: &[Instr], start: usize) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut sums: Vec<usize> = Vec::new();
    let mut written: Vec<usize> = Vec::new();
    let mut loaded: Vec<usize> = Vec::new();
    for ins in &instrs[start..] {
        let reads_sum = reads(ins)
            .into_iter()
            .any(|a| matches!(a, Arg::Reg(Reg::Scalar(d)) if sums.contains(d)));
        loaded.extend(row_regs(ins).filter(|d| !written.contains(d)));
        match piece(ins) {
            Some(Piece::Entry { dst, .. }) if loaded.contains(&dst) => break,
            Some(p) if !reads_sum => {
                match p {
                    Piece::Sum { dst, .. } => sums.push(dst),
                    Piece::Entry { dst, .. } => written.push(dst),
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

/// One `runtime::fused` loop over the row for the group's pieces: the rows it reads
/// are its inputs (bound to the same names inside the body, as values), the
/// registers read after the group (`end` is the first instruction after it) its
/// outputs, the group's sums its sums. Registers stored are added to `stored`. When
/// its only output is `result` (the output row, written last), the loop is
/// `runtime::fused_streamed` (non-temporal stores for outputs beyond the caches) and
/// the result is true: the pass must then define `stream`.
#[allow(clippy::too_many_arguments)]
fn group(
    s: &mut String,
    p: &RowProgram,
    pieces: &[Piece<'_>],
    end: usize,
    names: &Names<'_>,
    len: &str,
    stored: &mut Vec<usize>,
    result: Option<usize>,
) -> bool {
    let mut locals: Vec<usize> = Vec::new();
    let mut ins: Vec<(String, String)> = Vec::new();
    let mut sums: Vec<(usize, String)> = Vec::new();
    let mut body = String::new();
    for piece in pieces {
        let mut at = |a: &Arg| {
            let v = value(a, names, None, &locals);
            match a {
                Arg::Buf(b) => ins.push((v.clone(), names.id(*b))),
                Arg::Reg(Reg::Row(_)) if !locals.contains(&v_index(a)) => {
                    ins.push((v.clone(), format!("&*{v}")))
                }
                _ => {}
            }
            v
        };
        match piece {
            Piece::Entry { dst, op } => {
                let v = formula(op, &mut at);
                let _ = write!(body, " let v{dst} = {v};");
                locals.push(*dst);
            }
            Piece::Sum { dst, x } => {
                let v = at(x);
                sums.push((*dst, v));
            }
        }
    }
    ins.sort();
    ins.dedup();
    locals.sort_unstable();
    locals.dedup();
    let outs: Vec<usize> = locals
        .into_iter()
        .filter(|d| live_from(p, end, *d))
        .collect();
    stored.extend(&outs);
    let list = |xs: Vec<String>| xs.join(", ");
    let streamed = result.is_some_and(|r| outs == [r]);
    let function = if streamed {
        "fused_streamed(stream, "
    } else {
        "fused("
    };
    let call = format!(
        "runtime::{function}{len}, [{}], [{}], |[{}]| {{{body} ([{}], [{}]) }});",
        list(ins.iter().map(|(_, arg)| arg.clone()).collect()),
        list(outs.iter().map(|d| format!("&mut *r{d}")).collect()),
        list(ins.iter().map(|(name, _)| name.clone()).collect()),
        list(outs.iter().map(|d| format!("v{d}")).collect()),
        list(sums.iter().map(|(_, t)| t.clone()).collect()),
    );
    if sums.is_empty() {
        let _ = writeln!(s, "        {call}");
    } else {
        let dsts: Vec<String> = sums.iter().map(|(d, _)| format!("s{d}")).collect();
        let _ = writeln!(s, "        let [{}] = {call}", list(dsts));
    }
    streamed
}

/// The register index of a row-register argument (0 for anything else).
fn v_index(a: &Arg) -> usize {
    match a {
        Arg::Reg(Reg::Row(i)) => *i,
        _ => 0,
    }
}

/// An instruction outside any loop group: an entrywise instruction writing a row it
/// reads (a plain loop), a scalar instruction, the sum of a scalar (n times it) or a
/// softmax. A row register written is added to `stored`. `out_row`: the register
/// computed in the pass's output row, if any; a softmax into it from another row
/// claims a later output row meanwhile (`runtime::softmax_out_row`). `last`:
/// this is the pass's last instruction and no later step reads the output; a softmax
/// into the output row from another row then takes `runtime::softmax_row_streamed`
/// when `stream`, and the result is true (the pass must define `stream` by
/// `runtime::stream_softmax`).
fn single(
    s: &mut String,
    ins: &Instr,
    names: &Names<'_>,
    len: &str,
    stored: &mut Vec<usize>,
    out_row: Option<usize>,
    last: bool,
) -> bool {
    let j = |dst: &Reg| match dst {
        Reg::Row(_) => Some("j"),
        Reg::Scalar(_) => None,
    };
    match ins {
        Instr::Unary { op, x, dst } => {
            let v = formula(&Op::Unary(*op, x), |a| value(a, names, j(dst), &[]));
            assign(s, *dst, len, &v, stored);
        }
        Instr::Binary { op, a, b, dst } => {
            let v = formula(&Op::Binary(*op, a, b), |a| value(a, names, j(dst), &[]));
            assign(s, *dst, len, &v, stored);
        }
        Instr::RowSum { x, dst } => {
            let _ = writeln!(
                s,
                "        let s{dst} = {} * {len} as f64;",
                value(x, names, None, &[])
            );
        }
        Instr::Softmax { x, dst } => {
            // The forward definition exp xᵢ / Σⱼ exp xⱼ, shifted by the row maximum so
            // that large logits do not overflow (a NaN entry makes the row NaN): the
            // row's extrema (`max_min`), the shift, exp and sum in one pass
            // (`exp_shift_sum`: no per-block range test when the row's spread allows),
            // then the division by the sum (`divide_exps`: by FMAs, bit for bit the
            // division, when the spread allows). From another row, the three run as
            // one call (`softmax_row`; into the output row, `softmax_out_row` claims a
            // later output row meanwhile), later rows of the inputs prefetched.
            stored.push(*dst);
            let into_out = out_row == Some(*dst);
            let src = match x {
                Arg::Buf(b) => Some(names.id(*b)),
                Arg::Reg(Reg::Row(i)) if i != dst => Some(format!("&*r{i}")),
                _ => None,
            };
            if let Some(x) = src {
                let function = if into_out {
                    "softmax_out_row"
                } else {
                    "softmax_row"
                };
                let call = format!("runtime::{function}({x}, r{dst}, &ahead);");
                if last && into_out {
                    // Beyond the caches, the exps into a scratch row and the quotients
                    // streamed to the output.
                    let _ = writeln!(
                        s,
                        "        if stream {{\n            runtime::softmax_row_streamed({x}, r{dst}, &ahead);\n        }} else {{\n            {call}\n        }}"
                    );
                    return true;
                }
                let _ = writeln!(s, "        {call}");
                return false;
            }
            // In place: the row itself, or a scalar operand (its own maximum and
            // minimum; NaN or ±∞ still give a NaN row) filling it first.
            match x {
                Arg::Reg(Reg::Row(_)) => {
                    let _ = writeln!(s, "        let (top, low) = runtime::max_min(&*r{dst});");
                }
                other => {
                    let v = value(other, names, None, &[]);
                    let _ = writeln!(
                        s,
                        "        let (top, low) = ({v}, {v});\n        for j in 0..{len} {{ r{dst}[j] = top; }}"
                    );
                }
            }
            let _ = writeln!(
                s,
                "        let total = runtime::exp_shift_sum_in_place(r{dst}, top, &ahead);\n        runtime::divide_exps(r{dst}, total, top - low);"
            );
        }
    }
    false
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

/// An argument's value: at column `j` (`Some("j")`), or bare (`None`: the value
/// itself inside a `runtime::fused` body, a row as its name); a row register in
/// `locals` is the loop body's local `v…`.
fn value(a: &Arg, names: &Names<'_>, j: Option<&str>, locals: &[usize]) -> String {
    let row = |name: String| match j {
        Some(j) => format!("{name}[{j}]"),
        None => name,
    };
    match a {
        Arg::Buf(b) => row(names.id(*b)),
        Arg::Reg(Reg::Row(i)) if locals.contains(i) => format!("v{i}"),
        Arg::Reg(Reg::Row(i)) => row(format!("r{i}")),
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
fn formula(op: &Op<'_>, mut at: impl FnMut(&Arg) -> String) -> String {
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

    /// The generated file of a forward kernel of `term`, A and B of the given shapes.
    fn file(term: &str, a: &str, b: &str) -> String {
        let term = parse_term(term).unwrap();
        let shapes = [
            (Symbol::from("A"), parse_shape(a).unwrap()),
            (Symbol::from("B"), parse_shape(b).unwrap()),
        ]
        .into();
        let plan = lower(&term, &shapes).unwrap();
        let lowered = Lowered {
            kernel: "k".into(),
            mode: KernelMode::Forward,
            term,
            plan,
        };
        kernel_file(&lowered, 0).unwrap()
    }

    /// The first row pass of a forward kernel of `term`, A and B both h×m×n.
    fn body(term: &str) -> String {
        let text = file(term, "h,m,n", "h,m,n");
        let start = text.find("runtime::row_pass(").unwrap();
        text[start..text[start..].find("    });").unwrap() + start].to_string()
    }

    #[test]
    fn a_softmax_into_the_output_streams_beyond_the_caches_unless_a_later_step_reads_it() {
        let text = file("(softmax (- A B))", "h,m,n", "h,m,n");
        assert!(
            text.contains("let stream = runtime::stream_softmax(out.len());"),
            "{text}"
        );
        assert!(
            text.contains("if stream {\n                runtime::softmax_row_streamed(&*r0, r1, &ahead);\n            } else {\n                runtime::softmax_out_row(&*r0, r1, &ahead);\n            }"),
            "{text}"
        );
        // Its probabilities read by a GEMM next: the plain form only.
        let text = file("(bmm (softmax (- A A)) B)", "h,m,m", "h,m,n");
        assert!(!text.contains("stream"), "{text}");
        assert!(
            text.contains("runtime::softmax_out_row(&*r0, r1, &ahead);"),
            "{text}"
        );
    }

    #[test]
    fn a_softmax_into_the_output_row_claims_a_later_row_and_one_into_a_register_does_not() {
        let claims = "runtime::softmax_out_row(&*r0, r1, &ahead);";
        for term in ["(softmax (- A B))", "(softmax (+ A B))"] {
            let text = body(term);
            assert!(text.contains(claims), "{text}");
            assert!(!text.contains("runtime::softmax_row("), "{text}");
        }
        // The softmax into a register, the product into the output row.
        let text = body("(* (softmax (- A B)) B)");
        assert!(
            text.contains("runtime::softmax_row(&*r0, r1, &ahead);"),
            "{text}"
        );
        assert!(!text.contains("softmax_out_row"), "{text}");
    }

    #[test]
    fn a_sum_read_in_the_same_row_ends_the_loop_and_live_values_are_stored() {
        let text = body("(* (- A (rowsum (* A B))) (rowsum (- A (rowsum (* A B)))))");
        let loops: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("runtime::fused"))
            .collect();
        // Σ A·B; then A − s0 (stored: read again after the second sum) and its sum;
        // then the product into the output, the last loop: its stores may stream.
        assert_eq!(loops.len(), 3, "{text}");
        assert!(
            loops[0].contains("let [s0] = runtime::fused(n, [a, b], [],"),
            "{text}"
        );
        assert!(
            loops[1].contains("let [s1] = runtime::fused(n, [a], [&mut *r1],")
                && loops[1].contains("(a) - (s0)"),
            "{text}"
        );
        assert!(
            loops[2].contains("runtime::fused_streamed(stream, n, [&*r1], [&mut *r2], |[r1]|")
                && loops[2].contains("(r1) * (s1)"),
            "{text}"
        );
        // The product A·B is a local: only A − s0 is held in a register.
        assert!(text.contains("[&mut [f64]; 1]"), "{text}");
    }

    #[test]
    fn a_softmax_of_a_row_constant_fills_the_row_and_takes_its_exp_in_place() {
        // Σ A is one value per row: it is its own maximum, every entry becomes
        // exp(s0 − s0) = 1 and the row 1/n (NaN for a NaN or infinite sum).
        let text = body("(softmax (rowsum A))");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let at = |l: &str| lines.iter().position(|x| *x == l);
        let fill = at("for j in 0..n { r0[j] = top; }");
        assert!(at("let (top, low) = (s0, s0);").is_some(), "{text}");
        assert!(fill.is_some(), "{text}");
        let exp = at("let total = runtime::exp_shift_sum_in_place(r0, top, &ahead);");
        assert!(exp > fill, "{text}");
        assert!(
            at("runtime::divide_exps(r0, total, top - low);") > exp,
            "{text}"
        );
    }

    #[test]
    fn independent_sums_share_one_loop() {
        let text = body("(* (rowsum (* A B)) (rowsum (- A B)))");
        assert!(
            text.contains("let [s0, s1] = runtime::fused(n, [a, b], [],"),
            "{text}"
        );
    }

    #[test]
    fn a_loop_never_writes_a_row_it_reads() {
        use super::{group_at, Instr};
        use crate::lower::{Arg, Binary, Reg};
        let mul = |a: usize, b: usize, dst: usize| Instr::Binary {
            op: Binary::Mul,
            a: Arg::Reg(Reg::Row(a)),
            b: Arg::Reg(Reg::Row(b)),
            dst: Reg::Row(dst),
        };
        // r1 = r0·r0 reads r0 from memory, so r0 = r1·r1 starts the next loop.
        assert_eq!(group_at(&[mul(0, 0, 1), mul(1, 1, 0)], 0).len(), 1);
        // r0 = r0·r0 alone is no loop group (a plain loop in place).
        assert!(group_at(&[mul(0, 0, 0)], 0).is_empty());
        // Reading a value the loop computed is fine.
        assert_eq!(
            group_at(&[mul(0, 0, 1), mul(1, 1, 2), mul(2, 1, 1)], 0).len(),
            3
        );
    }
}

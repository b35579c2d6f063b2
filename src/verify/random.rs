//! Random well-typed terms pushed through every rung: the kernels of the manifest
//! cannot exercise what their terms do not contain (double transposes, repeated
//! gradient slots, products of an input with itself, shared subterms), so `verify`
//! draws terms that do ([`crate::ir::random`]) and runs the same derived, plan and
//! f64 rungs on each, summing the counts per rung.

use super::{derived_rungs, kernel_rows, shared_balls, Derived, Row, Skipped, VerifyArgs};
use crate::derive::Limits;
use crate::ir::random::{degree, random_term, TermShape};
use crate::ir::shape::parse_shape;
use crate::ir::{Expr, Op};
use crate::lower::Saved;
use crate::manifest::{KernelDef, KernelMode};
use crate::outcome::Failure;
use crate::rules::file::Location;
use crate::rules::RuleSet;
use crate::rungs::RungConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::PathBuf;

/// The kernel a random term makes: every input differentiated, every strict softmax
/// subterm saved (as `S`, `S1`, ...).
pub fn random_kernel(index: usize, term: Expr) -> Result<KernelDef, Failure> {
    let used = crate::derive::inputs_of(&term);
    let shape = parse_shape("h,n,n").map_err(Failure::input)?;
    let root = term.as_ref().len().saturating_sub(1);
    let mut save: Vec<Saved> = Vec::new();
    for (i, node) in term.as_ref().iter().enumerate() {
        if i == root || !matches!(node, Op::Softmax(_)) {
            continue;
        }
        let sub = crate::derive::subterm(&term, egg::Id::from(i));
        if save.iter().all(|s| s.term != sub) {
            let name = match save.len() {
                0 => "S".to_string(),
                k => format!("S{k}"),
            };
            save.push(Saved { term: sub, name });
        }
    }
    Ok(KernelDef {
        name: format!("random{index}"),
        at: Location {
            file: "random terms".into(),
            line: index + 1,
            col: 1,
        },
        shapes: used.iter().map(|u| (*u, shape.clone())).collect(),
        inputs: used.clone(),
        wrt: used,
        term,
        output: "out".into(),
        modes: KernelMode::ALL.to_vec(),
        save,
        out_dir: PathBuf::new(),
        spec: None,
        dims: vec!["h".into(), "n".into()],
        bench: Vec::new(),
    })
}

/// Adds `more` into `total`, row by row (matched by rung and mode).
fn merge(total: &mut Vec<Row>, more: Vec<Row>) {
    for r in more {
        match total
            .iter_mut()
            .find(|t| t.rung == r.rung && t.mode == r.mode)
        {
            Some(t) => {
                t.count.absorb(r.count);
            }
            None => total.push(Row {
                op: "random terms".into(),
                ..r
            }),
        }
    }
}

/// One random term's outcome: its rows, or why it did not derive.
enum TermRows {
    Built(Vec<Row>),
    Failed(String),
}

/// Derives random term `i` (JVP and VJP w.r.t. every input) and runs the derived rungs
/// and every plan rung that applies, on random stream `i`.
fn term_rows(
    i: usize,
    term: crate::ir::Expr,
    args: &VerifyArgs,
    rules: &RuleSet,
    limits: &Limits,
    cfg: &RungConfig,
) -> Result<TermRows, Failure> {
    let def = random_kernel(i, term)?;
    let built = match def.build_all(rules, limits) {
        Ok(b) => b,
        Err(e) => return Ok(TermRows::Failed(format!("{}: {e}", def.term))),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x7e57);
    rng.set_stream(i as u64 + 1);
    let derived = Derived::of(&def.name, &built, None);
    let small = VerifyArgs {
        cases: cfg.cases,
        seed: args.seed,
        max_dim: args.max_dim,
        shapes: Vec::new(),
        format: args.format,
        manifest: None,
        kernels: Vec::new(),
        random_terms: 0,
    };
    let mut term_rows = derived_rungs(&derived, &small, &mut rng)?;
    let mut skipped: Vec<Skipped> = Vec::new();
    for b in &built {
        // f64 is exact on dyadic inputs only while the products stay short.
        let exact_ok = degree(&b.term).is_some_and(|d| d <= 6);
        let mut kernel = Vec::new();
        let balls = shared_balls(b, cfg)?;
        kernel_rows(&def, b, cfg, &balls, &mut kernel, &mut skipped)?;
        term_rows.extend(
            kernel
                .into_iter()
                .filter(|r| exact_ok || !r.rung.contains("bit for bit")),
        );
    }
    Ok(TermRows::Built(term_rows))
}

/// `args.random_terms` random terms of depth 4 (half with exp, softmax and
/// reciprocals), each derived (JVP and VJP w.r.t. every input) and pushed through
/// the derived rungs and every plan rung that applies; one row per rung and mode.
pub fn random_term_rows(
    args: &VerifyArgs,
    rules: &RuleSet,
    limits: &Limits,
) -> Result<Vec<Row>, Failure> {
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ 0x7e57);
    let cfg = RungConfig {
        cases: args.cases.div_ceil(8).max(2),
        seed: args.seed,
        max_dim: args.max_dim,
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut built_terms = Row::new("random term derives (no derivative operator left)", "", "-");
    let terms = (0..args.random_terms)
        .map(|i| {
            let shape = TermShape {
                depth: 4,
                smooth: i % 2 == 1,
            };
            random_term(&mut rng, shape).map_err(Failure::check)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Terms are independent: each is derived and checked on its own thread with its own
    // random stream; the rows are merged in term order.
    let checked: Vec<Result<TermRows, Failure>> = terms
        .into_par_iter()
        .enumerate()
        .map(|(i, term)| term_rows(i, term, args, rules, limits, &cfg))
        .collect();
    for result in checked {
        match result? {
            TermRows::Built(term_rows) => {
                built_terms.record(true, String::new);
                merge(&mut rows, term_rows);
            }
            TermRows::Failed(why) => built_terms.record(false, || why),
        }
    }
    built_terms.op = "random terms".into();
    rows.insert(0, built_terms);
    Ok(rows)
}

//! The verification ladder behind `fderiv verify`: every stage checked against the
//! others, exactly over ℚ, on random shapes (sizes 0 and 1 included) and points.
//!
//! Rungs: the spec mirror's facts (correct_inner, jvp_eq, hasFDerivAt made exact, ...);
//! the rules are sound; the derived JVP equals the dual-number derivative of the
//! forward term and the spec mirror's jvp; the derived VJP equals the adjoint of the
//! derivative and the spec mirror's vjp, and satisfies ⟨vjp δ, dx⟩ = ⟨δ, jvp dx⟩; the
//! lowered plans run over ℚ equal the expressions; the f64 executor equals the ℚ run
//! bit for bit on dyadic inputs and stays inside a rigorous error bound elsewhere; the
//! f64 softmax forward lies inside a rational enclosure of exp.

mod derived;
mod kernels;
mod random;

pub use derived::{derived_rungs, random_env, Derived, Sizes};
pub use kernels::{generated_rows, generated_run, kernel_rows, shared_balls, SharedBalls};

use crate::derive::{refuse_unsound, Limits};
use crate::emit::{self, Folder};
use crate::kernels::runtime;
use crate::manifest::{Built, KernelDef, Manifest};
use crate::outcome::{Failure, Format};
use crate::rules::soundness::{check_rules, CheckConfig};
use crate::rules::RuleSet;
use crate::rungs::{quotient, RungConfig, RungCount};
use crate::scalar::ExpOracle;
use crate::spec;
use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `fderiv verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Random cases per rung, op and mode.
    #[arg(long, default_value_t = 64)]
    pub cases: usize,
    /// Seed of the case generator.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Largest size drawn for each dim (sizes start at 0).
    #[arg(long, default_value_t = 3)]
    pub max_dim: usize,
    /// Fixed sizes `h,m,n,p` to check in addition to the random ones (repeatable;
    /// softmax_last uses h, m, n). Every fixed shape is run once per op and mode.
    #[arg(long = "shapes", value_name = "H,M,N,P", value_parser = parse_dims)]
    pub shapes: Vec<[usize; 4]>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The kernel manifest (default: the crate's own fderiv.toml).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Only these manifest kernels (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Random well-typed terms pushed through every rung (0 to skip).
    #[arg(long, default_value_t = 24)]
    pub random_terms: usize,
}

/// Parses `h,m,n,p` sizes.
pub fn parse_dims(text: &str) -> Result<[usize; 4], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let sizes: Vec<usize> = parts
        .iter()
        .map(|p| p.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{text:?}: {e}"))?;
    match sizes.as_slice() {
        [h, m, n, p] if sizes.iter().all(|d| *d <= 64) => Ok([*h, *m, *n, *p]),
        [_, _, _, _] => Err(format!("{text:?}: exact checks take sizes up to 64")),
        _ => Err(format!("{text:?}: expected four sizes h,m,n,p")),
    }
}

/// One row of the report: a rung checked for one op and mode.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The rung.
    pub rung: String,
    /// The op (or `rules`).
    pub op: String,
    /// `forward`, `jvp`, `vjp` or `-`.
    pub mode: String,
    /// Cases, passes, worst error/bound ratio, first failure.
    #[serde(flatten)]
    pub count: RungCount,
}

impl Row {
    /// A row with no cases yet.
    pub fn new(rung: &str, op: &str, mode: &str) -> Row {
        Row {
            rung: rung.into(),
            op: op.into(),
            mode: mode.into(),
            count: RungCount::default(),
        }
    }

    /// Records one case.
    pub fn record(&mut self, ok: bool, why: impl FnOnce() -> String) {
        self.count.record((!ok).then(why));
    }

    /// True when every case held (and there was at least one).
    pub fn holds(&self) -> bool {
        self.count.holds()
    }
}

/// A rung that does not apply to a kernel, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The rung.
    pub rung: String,
    /// The kernel.
    pub kernel: String,
    /// The mode.
    pub mode: String,
    /// Why it does not apply.
    pub why: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The seed used.
    pub seed: u64,
    /// Where the kernels came from.
    pub manifest: String,
    /// The rows.
    pub rows: Vec<Row>,
    /// The rungs that did not apply.
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// True when every row holds.
    pub fn all_hold(&self) -> bool {
        self.rows.iter().all(Row::holds)
    }

    /// The report as a text table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<46} {:<22} {:<7} {:>6} {:>6} {:>11}  status",
            "rung", "op", "mode", "cases", "passed", "worst/bound"
        );
        for r in &self.rows {
            let status = if r.holds() { "ok" } else { "FAILED" };
            let worst = r.count.worst.map_or("-".to_string(), |w| format!("{w:.3}"));
            let _ = writeln!(
                s,
                "{:<46} {:<22} {:<7} {:>6} {:>6} {:>11}  {status}",
                r.rung, r.op, r.mode, r.count.cases, r.count.passed, worst
            );
            if let Some(f) = &r.count.first_failure {
                let _ = writeln!(s, "    first failure: {f}");
            }
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "not applicable:");
            for k in &self.skipped {
                let _ = writeln!(s, "  {} {} — {}: {}", k.kernel, k.mode, k.rung, k.why);
            }
        }
        let verdict = if self.all_hold() {
            "every check holds"
        } else {
            "SOME CHECKS FAILED"
        };
        let _ = writeln!(s, "seed {}: {verdict}", self.seed);
        s
    }
}

fn spec_rows(args: &VerifyArgs) -> Result<Vec<Row>, Failure> {
    let report = spec::report::verify(args.seed, args.cases, &ExpOracle::hashed(args.seed))
        .map_err(Failure::input)?;
    Ok(report
        .facts
        .iter()
        .map(|f| {
            let op = if f.name.starts_with("matmul") {
                "matmul"
            } else if f.name.starts_with("softmaxLast") {
                "softmax_last"
            } else {
                "-"
            };
            let mut row = Row::new(&format!("spec: {}", f.name), op, "-");
            row.count.cases = f.passed + f.failed;
            row.count.passed = f.passed;
            if f.failed > 0 {
                let total = row.count.cases;
                row.count.first_failure = Some(format!("{} of {total} cases failed", f.failed));
            }
            row
        })
        .collect())
}

fn rules_row(rules: &RuleSet, args: &VerifyArgs) -> Row {
    let mut row = Row::new("every rule sound (exact, both sides)", "rules", "-");
    let config = CheckConfig {
        seed: args.seed,
        ..CheckConfig::default()
    };
    for r in check_rules(rules, &config) {
        row.record(r.passed(), || r.to_string());
    }
    row
}

/// The exact rung of the runtime's FMA quotient (the softmax forward's division in
/// the generated kernels): the nearest f64 to a/b on the cases closest to its proof's
/// limits and on `--cases` × 100 random ones.
fn quotient_row(args: &VerifyArgs) -> Row {
    let mut row = Row::new(
        "runtime FMA quotient = nearest f64 to a/b (exact)",
        "runtime",
        "-",
    );
    let divide = |a: f64, b: f64| runtime::fma_quotient(a, b, 1.0 / b);
    row.count = quotient::rung_fma_quotient(&divide, args.cases * 100, args.seed);
    row
}

/// One kernel's rows and the rungs that did not apply to it.
type Checked = (Vec<Row>, Vec<Skipped>);

/// Runs the ladder and returns the report.
pub fn ladder(args: &VerifyArgs) -> Result<Report, Failure> {
    let rules = RuleSet::embedded().map_err(Failure::input)?;
    let manifest = Manifest::load(args.manifest.as_deref()).map_err(Failure::input)?;
    let kernels = manifest.select(&args.kernels).map_err(Failure::input)?;
    let mut report = Report {
        seed: args.seed,
        manifest: manifest.source.clone(),
        rows: Vec::new(),
        skipped: Vec::new(),
    };
    progress("spec mirror facts");
    report.rows.extend(spec_rows(args)?);
    progress("rule soundness");
    report.rows.push(rules_row(&rules, args));
    progress("runtime division");
    report.rows.push(quotient_row(args));
    if !report.all_hold() {
        return Ok(report);
    }
    let cfg = RungConfig {
        cases: args.cases,
        seed: args.seed,
        max_dim: args.max_dim,
    };
    // The kernels are derived as `emit` derives them (explanations on): a derivation
    // that stops at a limit (the attention JVPs and VJPs) extracts a different,
    // equivalent term with explanations off, and the generated rungs must check each
    // generated kernel against the plan it was generated from.
    let limits = Limits::default();
    // Kernels are independent: each is checked on its own thread with its own random
    // stream, and the rows are reported in manifest order.
    let checked: Vec<Result<Checked, Failure>> = kernels
        .par_iter()
        .enumerate()
        .map(|(i, def)| {
            progress(&format!("deriving and checking {}", def.name));
            let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
            rng.set_stream(i as u64 + 1);
            let built = def.build_all(&rules, &limits).map_err(Failure::input)?;
            let derived = Derived::of(&def.name, &built, def.spec);
            // The derived rungs and each mode's plan rungs are independent too.
            let (derived_rows, modes) = rayon::join(
                || derived_rungs(&derived, args, &mut rng),
                || {
                    built
                        .par_iter()
                        .map(|b| mode_rows(def, b, &cfg))
                        .collect::<Vec<_>>()
                },
            );
            let mut rows = derived_rows?;
            let mut skipped = Vec::new();
            for mode in modes {
                let (more, skip) = mode?;
                rows.extend(more);
                skipped.extend(skip);
            }
            Ok((rows, skipped))
        })
        .collect();
    for result in checked {
        let (rows, skipped) = result?;
        report.rows.extend(rows);
        report.skipped.extend(skipped);
    }
    progress("generated source");
    // A folder's files (its mod.rs lists every kernel it holds) come from the whole
    // manifest; only the folders the selected kernels write to are checked.
    let folders = emit::generate(&manifest, &rules, None).map_err(Failure::input)?;
    let selected: Vec<&Folder> = folders
        .iter()
        .filter(|f| kernels.iter().any(|k| k.out_dir == f.dir))
        .collect();
    report.rows.extend(kernels::fresh_rows(&selected));
    if args.random_terms > 0 {
        progress("random terms");
        report.rows.extend(random::random_term_rows(
            args,
            &rules,
            &limits.unexplained(),
        )?);
    }
    Ok(report)
}

/// The plan rungs of one built mode of `def`, on its executor and its generated
/// kernel (rung (c)'s balls computed once for both).
fn mode_rows(def: &KernelDef, b: &Built, cfg: &RungConfig) -> Result<Checked, Failure> {
    let balls = shared_balls(b, cfg)?;
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    kernel_rows(def, b, cfg, &balls, &mut rows, &mut skipped)?;
    generated_rows(def, b, cfg, &balls, &mut rows, &mut skipped)?;
    Ok((rows, skipped))
}

fn progress(msg: &str) {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        eprintln!("… {msg}");
    }
}

/// `fderiv verify`: runs the ladder, prints the report, fails (exit 1) unless every
/// check holds.
pub fn run(args: &VerifyArgs) -> Result<(), Failure> {
    if args.cases == 0 {
        return Err(Failure::input("--cases must be at least 1"));
    }
    if args.max_dim > 64 {
        return Err(Failure::input(
            "--max-dim: exact checks take sizes up to 64",
        ));
    }
    refuse_unsound(&RuleSet::embedded().map_err(Failure::input)?).map_err(Failure::check)?;
    let report = ladder(args)?;
    match args.format {
        Format::Text => print!("{}", report.to_text()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(Failure::input)?
        ),
    }
    if report.all_hold() {
        Ok(())
    } else {
        Err(Failure::check("verification failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::Derivation;
    use crate::manifest::{KernelDef, KernelMode};

    fn args() -> VerifyArgs {
        VerifyArgs {
            cases: 12,
            seed: 7,
            max_dim: 3,
            shapes: vec![[2, 3, 1, 4], [1, 0, 2, 2]],
            format: Format::Text,
            manifest: None,
            kernels: Vec::new(),
            random_terms: 6,
        }
    }

    fn has(report: &Report, rung: &str, op: &str, mode: &str) -> bool {
        report
            .rows
            .iter()
            .any(|r| r.rung == rung && r.op == op && r.mode == mode && r.count.cases > 0)
    }

    #[test]
    fn the_ladder_holds_for_the_embedded_rules_and_names_what_ran() {
        let report = ladder(&args()).unwrap();
        assert!(report.all_hold(), "{}", report.to_text());
        for k in ["matmul", "softmax_last"] {
            for m in ["forward", "jvp", "vjp"] {
                assert!(
                    has(&report, "plan over ℚ = expression over ℚ", k, m),
                    "{k} {m}"
                );
            }
            assert!(has(
                &report,
                "derived VJP = spec vjp (Lean mirror)",
                k,
                "vjp"
            ));
            assert!(has(
                &report,
                "generated: f64 = ℚ plan, bit for bit (dyadic)",
                k,
                "vjp"
            ));
        }
        assert!(has(
            &report,
            "f64 softmax inside rational exp enclosure",
            "softmax_last",
            "forward"
        ));
        assert!(has(
            &report,
            "random term derives (no derivative operator left)",
            "random terms",
            "-"
        ));
        assert!(has(
            &report,
            "f64 plan within rigorous error bound",
            "random terms",
            "vjp"
        ));
        assert!(report.skipped.iter().any(|s| s.kernel == "softmax_last"
            && s.mode == "forward"
            && s.rung.contains("bit for bit")));
    }

    fn built(def: &KernelDef) -> (Derivation, Derivation) {
        let rules = RuleSet::embedded().unwrap();
        let d = |m| {
            def.build(m, &rules, &Limits::default())
                .unwrap()
                .derivation
                .unwrap()
        };
        (d(KernelMode::Jvp), d(KernelMode::Vjp))
    }

    #[test]
    fn a_corrupted_derivation_is_rejected_by_every_rung_that_sees_it() {
        let manifest = Manifest::embedded().unwrap();
        let corrupt = |t: &str| crate::ir::parse_term(t).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // Flip a transpose in the matmul VJP: gB = A·G instead of Aᵀ·G.
        let matmul = manifest.kernel("matmul").unwrap();
        let (jvp, mut vjp) = built(matmul);
        vjp.result = corrupt("(g+ (grad A (bmm G (T B))) (grad B (bmm A G)))");
        let k = Derived {
            name: "matmul",
            jvp: Some(&jvp),
            vjp: Some(&vjp),
            spec: matmul.spec,
        };
        // Non-square A makes the flipped term ill-shaped: an error, or a failed check.
        match derived_rungs(&k, &args(), &mut rng) {
            Ok(rows) => assert!(!rows[2].holds() && !rows[3].holds() && !rows[4].holds()),
            Err(e) => assert!(e.message.contains("bmm"), "{}", e.message),
        }
        // Drop the row-sum term of the softmax JVP.
        let softmax = manifest.kernel("softmax_last").unwrap();
        let (mut jvp, vjp) = built(softmax);
        jvp.result = corrupt("(* (softmax X) (tan X))");
        let k = Derived {
            name: "softmax_last",
            jvp: Some(&jvp),
            vjp: Some(&vjp),
            spec: softmax.spec,
        };
        let rows = derived_rungs(&k, &args(), &mut rng).unwrap();
        assert!(!rows[0].holds(), "dual rung must reject");
        assert!(!rows[1].holds(), "spec jvp rung must reject");
        assert!(!rows[4].holds(), "adjoint identity must reject");
        assert!(
            rows[2].holds() && rows[3].holds(),
            "the VJP itself was not corrupted"
        );
    }
}

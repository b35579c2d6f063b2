//! The command line interface: argument parsing and dispatch to the library stages.
//!
//! Exit codes: 0 success; 1 a check failed (unsound rule, failed verification);
//! 2 bad input (unparsable term, ill-shaped term, broken rule file, unusable
//! arguments) or a derivation that could not finish.

use crate::derive::{derive, Derivation, Limits, Mode, Request};
use crate::ir::shape::{parse_shape, ShapeEnv};
use crate::lower::Saved;
use crate::manifest::Manifest;
use crate::notation::{DerivationFormat, RulesFormat};
use crate::outcome::Failure;
use crate::rules::soundness::{check_rules, CheckConfig};
use crate::rules::RuleSet;
use crate::trace::trace;
use clap::{Args, Parser, Subcommand};
use egg::Symbol;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Trustworthy derivatives of tensor kernels.
#[derive(Debug, Parser)]
#[command(name = "fderiv", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the verification ladder and print a report table.
    Verify(crate::verify::VerifyArgs),
    /// Derive the JVP or VJP of a manifest kernel or of any term of the IR.
    Derive(DeriveArgs),
    /// Derive and print the derivation trace (same as `derive --trace`).
    Trace(DeriveArgs),
    /// Generate the kernels' Rust source (or check the committed source is fresh).
    Emit(EmitArgs),
    /// Run a kernel (forward, jvp, vjp) on .npy files; see docs/run.md.
    Run(crate::run::RunArgs),
    /// Time the generated kernels beside in-run references; see docs/performance.md.
    Bench(crate::bench::BenchArgs),
    /// List or check rule files.
    Rules {
        /// list or check.
        #[command(subcommand)]
        action: RulesAction,
    },
}

/// Arguments of `fderiv emit`.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Write (or check) every kernel in this folder instead of each kernel's `out`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The kernel manifest (default: the crate's own fderiv.toml).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// Check that the folder holds exactly what the rules generate; write nothing.
    #[arg(long)]
    pub check: bool,
    /// Replace files whose contents differ.
    #[arg(long)]
    pub force: bool,
    /// A folder of *.toml rule files replacing the embedded rewrites/.
    #[arg(long)]
    pub rules: Option<PathBuf>,
}

fn cmd_emit(args: &EmitArgs) -> Result<(), Failure> {
    let rules = load_rules(args.rules.as_ref())?;
    let manifest = Manifest::load(args.manifest.as_deref()).map_err(Failure::input)?;
    let fail = |e: crate::emit::EmitError| match e {
        crate::emit::EmitError::Stale { .. } | crate::emit::EmitError::Unsound(_) => {
            Failure::check(e)
        }
        other => Failure::input(other),
    };
    let out = args.out.as_deref();
    if args.check {
        let n = crate::emit::check(&manifest, &rules, out).map_err(fail)?;
        println!("{}: all {n} generated files are fresh", manifest.source);
    } else {
        let written = crate::emit::write(&manifest, &rules, out, args.force).map_err(fail)?;
        if written.is_empty() {
            println!("{}: already up to date", manifest.source);
        }
        for path in written {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// `fderiv rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// List the rules (name, group, lhs => rhs, Lean fact).
    List {
        /// A folder of *.toml rule files (default: the embedded rewrites/).
        dir: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RulesFormat::Text)]
        format: RulesFormat,
    },
    /// Check every rule for soundness, exactly; exit 1 if one fails.
    Check {
        /// A folder of *.toml rule files (default: the embedded rewrites/).
        dir: Option<PathBuf>,
        /// Random cases per rule.
        #[arg(long, default_value_t = 24)]
        cases: usize,
        /// Seed of the case generator.
        #[arg(long, default_value_t = 0x5eed)]
        seed: u64,
    },
}

/// Arguments of `derive` and `trace`.
#[derive(Debug, Args)]
pub struct DeriveArgs {
    /// The manifest kernel to differentiate (or use --expr).
    #[arg(required_unless_present = "expr", conflicts_with = "expr")]
    pub kernel: Option<String>,
    /// The kernel manifest (default: the crate's own fderiv.toml).
    #[arg(long, value_name = "PATH")]
    pub manifest: Option<PathBuf>,
    /// JVP or VJP.
    #[arg(long, value_enum, default_value_t = Mode::Jvp)]
    pub mode: Mode,
    /// Any term of the IR, e.g. '(bmm (softmax (bmm Q (T K))) V)'.
    #[arg(long)]
    pub expr: Option<String>,
    /// An input's shape, NAME=h,m,n (repeat per input; needed with --expr).
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
    /// The inputs to differentiate with respect to (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub wrt: Vec<String>,
    /// Output format (math, latex, dot: see docs/derivation.md).
    #[arg(long, value_enum, default_value_t = DerivationFormat::Text)]
    pub format: DerivationFormat,
    /// A folder of *.toml rule files replacing the embedded rewrites/.
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Also print the derivation trace.
    #[arg(long)]
    pub trace: bool,
    /// Also print the kernel plan the result lowers to (GEMMs, fused row passes).
    #[arg(long)]
    pub plan: bool,
    /// egg's iteration limit.
    #[arg(long, default_value_t = Limits::default().iterations)]
    pub iter_limit: usize,
    /// egg's e-node limit.
    #[arg(long, default_value_t = Limits::default().nodes)]
    pub node_limit: usize,
    /// egg's time limit in seconds.
    #[arg(long, default_value_t = Limits::default().time.as_secs_f64())]
    pub time_limit: f64,
}

/// Loads the rule set: the folder given, or the embedded files.
pub fn load_rules(dir: Option<&PathBuf>) -> Result<RuleSet, Failure> {
    match dir {
        Some(d) => RuleSet::from_dir(d),
        None => RuleSet::embedded(),
    }
    .map_err(Failure::input)
}

/// The request, and the subterms the kernel saves (none for `--expr`).
fn request(args: &DeriveArgs) -> Result<(Request, Vec<Saved>), Failure> {
    let wrt = if args.wrt.is_empty() {
        None
    } else {
        Some(args.wrt.iter().map(|w| Symbol::from(w.trim())).collect())
    };
    match (&args.kernel, &args.expr) {
        (Some(name), _) => {
            if wrt.is_some() || !args.shapes.is_empty() {
                return Err(Failure::input(
                    "--wrt and --shape go with --expr; a manifest kernel declares its inputs",
                ));
            }
            let manifest = Manifest::load(args.manifest.as_deref()).map_err(Failure::input)?;
            let def = manifest.kernel(name).map_err(Failure::input)?;
            Ok((
                def.request(args.mode).map_err(Failure::input)?,
                def.save.clone(),
            ))
        }
        (None, Some(expr)) => {
            let mut shapes = ShapeEnv::new();
            for s in &args.shapes {
                let (name, dims) = s
                    .split_once('=')
                    .ok_or_else(|| Failure::input(format!("--shape {s}: expected NAME=h,m,n")))?;
                let shape =
                    parse_shape(dims).map_err(|e| Failure::input(format!("--shape {s}: {e}")))?;
                shapes.insert(Symbol::from(name.trim()), shape);
            }
            let req = Request::new(expr, shapes, wrt, args.mode).map_err(Failure::input)?;
            Ok((req, Vec::new()))
        }
        (None, None) => Err(Failure::input("give a kernel name or --expr")),
    }
}

/// Runs a derivation as `derive`/`trace` do (with the explanation only when a trace
/// is printed); returns it with the rules and the kernel's saved subterms.
pub fn run_derivation(
    args: &DeriveArgs,
    with_trace: bool,
) -> Result<(Derivation, RuleSet, Vec<Saved>), Failure> {
    let rules = load_rules(args.rules.as_ref())?;
    let (req, saved) = request(args)?;
    let time = match Duration::try_from_secs_f64(args.time_limit) {
        Ok(t) if !t.is_zero() => t,
        _ => {
            return Err(Failure::input(
                "--time-limit must be a positive number of seconds (at most about 1.8e19)",
            ))
        }
    };
    let limits = Limits {
        iterations: args.iter_limit,
        nodes: args.node_limit,
        time,
        explain: with_trace,
    };
    let d = derive(&req, &rules, &limits).map_err(|e| match e {
        crate::derive::DeriveError::Unsound(_) => Failure::check(e),
        other => Failure::input(other),
    })?;
    Ok((d, rules, saved))
}

/// The derivation's statistics, as `derive` reports them.
fn stats_json(d: &Derivation) -> serde_json::Value {
    serde_json::json!({
        "stop": d.stop, "iterations": d.iterations, "enodes": d.egraph_nodes,
        "eclasses": d.egraph_classes, "egg_seconds": d.seconds,
        "total_seconds": d.total_seconds, "peak_rss_bytes": d.peak_rss, "phases": d.phases,
    })
}

fn cmd_derive(args: &DeriveArgs, with_trace: bool) -> Result<(), Failure> {
    let (d, rules, saved) = run_derivation(args, with_trace)?;
    let t = trace(&d, &rules);
    let plan = if args.plan {
        Some(
            crate::lower::lower_with(&d.result, &d.request.shapes, &saved)
                .map_err(Failure::input)?,
        )
    } else {
        None
    };
    match args.format {
        DerivationFormat::Json => {
            let mut v = if with_trace {
                serde_json::to_value(&t).map_err(Failure::input)?
            } else {
                serde_json::json!({
                    "mode": t.mode, "forward": t.forward, "start": t.start,
                    "result": t.result, "stop": t.stop,
                })
            };
            if let Some(p) = &plan {
                v["plan"] = serde_json::to_value(p).map_err(Failure::input)?;
            }
            v["stats"] = stats_json(&d);
            println!(
                "{}",
                serde_json::to_string_pretty(&v).map_err(Failure::input)?
            );
        }
        DerivationFormat::Text => {
            if with_trace {
                print!("{}", t.to_text());
            } else {
                println!("{}", t.result);
            }
            if let Some(p) = &plan {
                print!("{p}");
            }
        }
        notation => {
            let shown = crate::notation::show(notation, &t, plan.as_ref(), with_trace);
            print!("{}", shown.map_err(Failure::input)?);
        }
    }
    let rss = d.peak_rss.map_or("peak memory unknown".into(), |b| {
        format!("peak RSS {:.1} MB", b as f64 / 1e6)
    });
    eprintln!(
        "egg: {} after {} iterations, {} e-nodes, {} e-classes, {:.1} ms in egg, {:.1} ms in all, {rss} (rules: {})",
        d.stop,
        d.iterations,
        d.egraph_nodes,
        d.egraph_classes,
        d.seconds * 1e3,
        d.total_seconds * 1e3,
        rules.source
    );
    Ok(())
}

fn cmd_rules(action: &RulesAction) -> Result<(), Failure> {
    match action {
        RulesAction::List { dir, format } => {
            let set = load_rules(dir.as_ref())?;
            if *format == RulesFormat::Math {
                print!("{}", crate::notation::math::rules(&set));
                return Ok(());
            }
            for r in &set.rules {
                let arrow = if r.bidirectional { "<=>" } else { "=>" };
                let cond = if r.conditions.0.is_empty() {
                    String::new()
                } else {
                    let c: Vec<String> = r
                        .conditions
                        .0
                        .iter()
                        .map(|(k, v)| format!("{k:?} {v}"))
                        .collect();
                    format!("  if {}", c.join(", "))
                };
                println!(
                    "{:<16} [{}] {} {arrow} {}{cond}",
                    r.name, r.group, r.lhs, r.rhs
                );
                println!("{:<16} lean: {}   ({})", "", r.lean, r.at);
            }
            println!("{} rules from {}", set.rules.len(), set.source);
            Ok(())
        }
        RulesAction::Check { dir, cases, seed } => {
            let set = load_rules(dir.as_ref())?;
            let config = CheckConfig {
                cases: *cases,
                seed: *seed,
                ..CheckConfig::default()
            };
            let reports = check_rules(&set, &config);
            let failed = reports.iter().filter(|r| !r.passed()).count();
            for r in &reports {
                println!("{r}");
            }
            println!(
                "{} rules checked exactly over ℚ from {}: {} sound, {failed} refused",
                reports.len(),
                set.source,
                reports.len() - failed
            );
            if failed > 0 {
                Err(Failure::check(format!(
                    "{failed} unsound or unchecked rule(s)"
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// Runs the CLI on the process arguments; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Verify(args) => crate::verify::run(args),
        Command::Derive(args) => cmd_derive(args, args.trace),
        Command::Trace(args) => cmd_derive(args, true),
        Command::Rules { action } => cmd_rules(action),
        Command::Run(args) => crate::run::run(args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Emit(args) => cmd_emit(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

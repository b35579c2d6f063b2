//! Derivations people read: terms, traces and plans in the notation of papers
//! ([`math`], read back by [`parse()`]), as LaTeX ([`latex`]) and as Graphviz graphs
//! ([`dot`]). A presentation stage beside [`crate::trace`]: it reads terms, traces and
//! plans and never computes a derivative.

pub mod dot;
pub mod latex;
pub mod math;
pub mod parse;
pub mod term;

pub use parse::parse;

use crate::lower::Plan;
use crate::trace::Trace;

/// Why something cannot be rendered or read back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotationError {
    /// A term of a trace is not an IR term.
    #[error("cannot read the term {text}: {why}")]
    Term {
        /// The text.
        text: String,
        /// The parser's message.
        why: String,
    },
    /// The notation text does not parse.
    #[error("line {line}, column {column}: {why}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// 1-based column (characters).
        column: usize,
        /// What is wrong.
        why: String,
    },
    /// The format cannot show what was asked for.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Output formats of `derive` and `trace`: data (text, JSON) or a notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DerivationFormat {
    /// Human-readable text (s-expressions).
    Text,
    /// JSON (schema in docs/derivation.md).
    Json,
    /// Unicode notation with shared subterms named in `where` clauses.
    Math,
    /// A LaTeX document (amsmath `align*`, one line per step).
    Latex,
    /// Graphviz DOT: the plan (with --plan) or the result's DAG.
    Dot,
}

/// Output formats of `rules list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    /// s-expressions.
    Text,
    /// Unicode notation.
    Math,
}

/// What `derive`/`trace` print in a notation: the trace (`with_trace`) or the result,
/// then the plan if one was asked for (DOT draws the plan instead of the term).
/// Text and JSON are data, not notations: the commands print them themselves.
pub fn show(
    format: DerivationFormat,
    t: &Trace,
    plan: Option<&Plan>,
    with_trace: bool,
) -> Result<String, NotationError> {
    let result = || math::trace_term(&t.result);
    match format {
        DerivationFormat::Text | DerivationFormat::Json => Err(NotationError::Unsupported(
            "text and JSON are data formats, not notations",
        )),
        DerivationFormat::Math => {
            let mut s = if with_trace {
                math::trace(t)?
            } else {
                format!("{}\n", math::term(&result()?))
            };
            if let Some(p) = plan {
                s.push_str(&p.to_string());
            }
            Ok(s)
        }
        DerivationFormat::Latex if plan.is_some() => Err(NotationError::Unsupported(
            "a plan has no LaTeX form: use --plan with --format text or dot",
        )),
        DerivationFormat::Latex if with_trace => latex::trace_document(t),
        DerivationFormat::Latex => Ok(latex::term_document(&result()?)),
        DerivationFormat::Dot => match plan {
            Some(p) => Ok(dot::plan(p)),
            None if with_trace => Err(NotationError::Unsupported(
                "a trace has no DOT form: draw the result (derive --format dot) or its plan (--plan)",
            )),
            None => Ok(dot::term(&result()?)),
        },
    }
}

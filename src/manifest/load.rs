//! Reading a manifest: TOML with spans, then every static check a kernel needs before
//! any command uses it (names, term, shapes, modes, `wrt`, saved subterms, output
//! folder, spec counterpart). Every error names the kernel and `file:line:column`.

use super::{KernelDef, KernelMode, ManifestError, ManifestErrorKind, SpecOp};
use crate::derive::{inputs_of, COTANGENT};
use crate::ir::shape::{infer_term, parse_shape, Dim, ShapeEnv, Ty};
use crate::ir::{parse_term, Expr, Op};
use crate::lower::Saved;
use crate::rules::file::Location;
use egg::Symbol;
use egg::{Id, Language};
use indexmap::IndexMap;
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    kernel: Vec<KernelToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelToml {
    name: Spanned<String>,
    term: Spanned<String>,
    inputs: Spanned<IndexMap<String, Spanned<String>>>,
    output: Option<Spanned<String>>,
    modes: Option<Spanned<Vec<Spanned<String>>>>,
    wrt: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    save: Option<Spanned<IndexMap<String, Spanned<String>>>>,
    out: Option<Spanned<String>>,
    spec: Option<Spanned<String>>,
    bench: Option<Spanned<Vec<Spanned<BenchSizes>>>>,
}

/// One `bench` entry: a size for each named dim.
type BenchSizes = IndexMap<String, usize>;

/// Where generated source goes when a kernel does not say, relative to the manifest.
pub const DEFAULT_OUT: &str = "kernels";

/// Parses the manifest `text` read from `file`; relative `out` folders are resolved
/// against `base` (the manifest's folder).
pub fn parse_manifest(
    file: &str,
    text: &str,
    base: &Path,
) -> Result<Vec<KernelDef>, ManifestError> {
    let at = |span: Range<usize>| Location::at(file, text, span.start);
    let parsed: FileToml = toml::from_str(text).map_err(|e| ManifestError {
        location: Some(at(e.span().unwrap_or(0..0))),
        kernel: None,
        kind: Box::new(ManifestErrorKind::Toml(e.message().to_string())),
    })?;
    if parsed.kernel.is_empty() {
        return Err(ManifestError {
            location: Some(at(0..0)),
            kernel: None,
            kind: Box::new(ManifestErrorKind::Empty),
        });
    }
    let mut kernels: Vec<KernelDef> = Vec::new();
    for k in parsed.kernel {
        let def = check_kernel(k, &at, base)?;
        if let Some(first) = kernels.iter().find(|d| d.name == def.name) {
            return Err(def.error(ManifestErrorKind::Duplicate {
                first: first.at.to_string(),
            }));
        }
        kernels.push(def);
    }
    Ok(kernels)
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_kernel(
    k: KernelToml,
    at: &dyn Fn(Range<usize>) -> Location,
    base: &Path,
) -> Result<KernelDef, ManifestError> {
    let name = k.name.get_ref().clone();
    let err = |span: Range<usize>, kind: ManifestErrorKind| ManifestError {
        location: Some(at(span)),
        kernel: Some(name.clone()),
        kind: Box::new(kind),
    };
    if !is_ident(&name) || name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err(
            k.name.span(),
            ManifestErrorKind::BadName {
                what: "kernel name",
                name: name.clone(),
                want: "lower-case letters, digits and _, starting with a letter",
            },
        ));
    }
    let term = parse_term(k.term.get_ref())
        .map_err(|why| err(k.term.span(), ManifestErrorKind::Term(why)))?;
    if let Some(bad) = term.as_ref().iter().find(|n| n.is_derivative_operator()) {
        return Err(err(
            k.term.span(),
            ManifestErrorKind::Term(format!("the forward term must not contain {bad}")),
        ));
    }
    let mut inputs = Vec::new();
    let mut shapes = ShapeEnv::new();
    for (input, shape) in k.inputs.get_ref() {
        if !is_ident(input) || input == COTANGENT {
            return Err(err(
                shape.span(),
                ManifestErrorKind::BadName {
                    what: "input name",
                    name: input.clone(),
                    want: "letters, digits and _, starting with a letter, not G (the cotangent)",
                },
            ));
        }
        let parsed = parse_shape(shape.get_ref()).map_err(|e| {
            err(
                shape.span(),
                ManifestErrorKind::Shape(format!("input {input}: {e}")),
            )
        })?;
        inputs.push(Symbol::from(input.as_str()));
        shapes.insert(Symbol::from(input.as_str()), parsed);
    }
    let used = inputs_of(&term);
    if let Some(u) = used.iter().find(|u| !shapes.contains_key(*u)) {
        return Err(err(
            k.term.span(),
            ManifestErrorKind::UndeclaredInput(u.to_string()),
        ));
    }
    if let Some(u) = inputs.iter().find(|i| !used.contains(i)) {
        return Err(err(
            k.inputs.span(),
            ManifestErrorKind::UnusedInput(u.to_string()),
        ));
    }
    match infer_term(&term, &shapes) {
        Ok(Ty::Tensor(_)) => {}
        Ok(other) => {
            return Err(err(
                k.term.span(),
                ManifestErrorKind::Shape(format!("the forward term must be a tensor, not {other}")),
            ))
        }
        Err(e) => return Err(err(k.term.span(), ManifestErrorKind::Shape(e.to_string()))),
    }
    let output = match &k.output {
        Some(o) if !is_ident(o.get_ref()) || shapes.contains_key(&Symbol::from(o.get_ref())) => {
            return Err(err(
                o.span(),
                ManifestErrorKind::BadName {
                    what: "output name",
                    name: o.get_ref().clone(),
                    want: "an identifier that is not an input name",
                },
            ))
        }
        Some(o) => o.get_ref().clone(),
        None => "out".to_string(),
    };
    let modes = match &k.modes {
        None => KernelMode::ALL.to_vec(),
        Some(list) if list.get_ref().is_empty() => {
            return Err(err(list.span(), ManifestErrorKind::NoModes))
        }
        Some(list) => {
            let mut modes = Vec::new();
            for m in list.get_ref() {
                let mode = KernelMode::parse(m.get_ref())
                    .ok_or_else(|| err(m.span(), ManifestErrorKind::Mode(m.get_ref().clone())))?;
                if !modes.contains(&mode) {
                    modes.push(mode);
                }
            }
            modes
        }
    };
    let wrt = match &k.wrt {
        None => used.clone(),
        Some(list) => {
            let mut wrt = Vec::new();
            for w in list.get_ref() {
                let s = Symbol::from(w.get_ref().as_str());
                if !used.contains(&s) {
                    return Err(err(
                        w.span(),
                        ManifestErrorKind::Wrt {
                            name: w.get_ref().clone(),
                            inputs: join(&inputs),
                        },
                    ));
                }
                if !wrt.contains(&s) {
                    wrt.push(s);
                }
            }
            wrt
        }
    };
    if wrt.is_empty() && modes.iter().any(|m| m.derivative().is_some()) {
        let span = k.wrt.as_ref().map_or(k.name.span(), |w| w.span());
        return Err(err(span, ManifestErrorKind::NoWrt));
    }
    let dims = named_dims(&inputs, &shapes);
    let mut bench = Vec::new();
    for sizes in k.bench.iter().flat_map(|b| b.get_ref()) {
        let given: Vec<&String> = sizes.get_ref().keys().collect();
        if !given.iter().all(|g| dims.contains(g)) || given.len() != dims.len() {
            return Err(err(
                sizes.span(),
                ManifestErrorKind::BenchDims {
                    given: given
                        .iter()
                        .map(|g| g.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    dims: dims.join(", "),
                },
            ));
        }
        bench.push(dims.iter().map(|d| sizes.get_ref()[d]).collect());
    }
    let mut save = Vec::new();
    for (saved_name, text) in k
        .save
        .as_ref()
        .map(|s| s.get_ref().iter())
        .into_iter()
        .flatten()
    {
        let clash = !is_ident(saved_name)
            || saved_name == COTANGENT
            || shapes.contains_key(&Symbol::from(saved_name.as_str()))
            || save.iter().any(|s: &Saved| &s.name == saved_name);
        if clash {
            return Err(err(
                text.span(),
                ManifestErrorKind::BadName {
                    what: "saved name",
                    name: saved_name.clone(),
                    want: "an identifier that is not an input, G, or another saved name",
                },
            ));
        }
        let saved = parse_term(text.get_ref())
            .map_err(|why| err(text.span(), ManifestErrorKind::Term(why)))?;
        if !is_subterm(&term, &saved) {
            return Err(err(
                text.span(),
                ManifestErrorKind::NotASubterm {
                    saved: saved.to_string(),
                    term: term.to_string(),
                },
            ));
        }
        if saved == term && saved_name != &output {
            return Err(err(
                text.span(),
                ManifestErrorKind::SavedOutput {
                    saved: saved_name.clone(),
                    output: output.clone(),
                },
            ));
        }
        save.push(Saved {
            term: saved,
            name: saved_name.clone(),
        });
    }
    let spec = match &k.spec {
        None => None,
        Some(s) => {
            let op = SpecOp::parse(s.get_ref(), &term)
                .ok_or_else(|| err(s.span(), ManifestErrorKind::Spec(s.get_ref().clone())))?;
            let (spec_term, spec_inputs) = op.term();
            let same_inputs = spec_inputs
                .iter()
                .map(|(n, sh)| (Symbol::from(*n), parse_shape(sh).ok()))
                .eq(inputs.iter().map(|i| (*i, shapes.get(i).cloned())));
            if term.to_string() != spec_term || !same_inputs {
                return Err(err(
                    s.span(),
                    ManifestErrorKind::SpecMismatch {
                        op: op.to_string(),
                        term: spec_term.to_string(),
                    },
                ));
            }
            Some(op)
        }
    };
    let out_dir = k
        .out
        .as_ref()
        .map_or_else(|| DEFAULT_OUT.to_string(), |o| o.get_ref().clone());
    Ok(KernelDef {
        at: at(k.name.span()),
        name,
        term,
        inputs,
        shapes,
        output,
        modes,
        wrt,
        save,
        out_dir: base.join(out_dir),
        spec,
        dims,
        bench,
    })
}

/// The named dims of the inputs' shapes (factors of products included), in order of
/// first appearance.
fn named_dims(inputs: &[Symbol], shapes: &ShapeEnv) -> Vec<String> {
    let mut dims: Vec<String> = Vec::new();
    for d in inputs.iter().filter_map(|i| shapes.get(i)).flatten() {
        for f in d.clone().factors() {
            if let Dim::Named(n) = f {
                if !dims.contains(&n) {
                    dims.push(n);
                }
            }
        }
    }
    dims
}

fn join(names: &[Symbol]) -> String {
    names
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `part` occurs in `whole` as a subterm: both are hash-consed into one table
/// of nodes (children by canonical id), so the test is linear in their sizes.
fn is_subterm(whole: &Expr, part: &Expr) -> bool {
    let mut table: HashMap<Op, Id> = HashMap::new();
    let mut canon: Vec<Id> = Vec::with_capacity(whole.as_ref().len());
    for node in whole.as_ref() {
        let key = node.clone().map_children(|c| canon[usize::from(c)]);
        let next = Id::from(table.len());
        canon.push(*table.entry(key).or_insert(next));
    }
    let mut mapped: Vec<Id> = Vec::with_capacity(part.as_ref().len());
    for node in part.as_ref() {
        let key = node.clone().map_children(|c| mapped[usize::from(c)]);
        match table.get(&key) {
            Some(id) => mapped.push(*id),
            None => return false,
        }
    }
    !mapped.is_empty()
}

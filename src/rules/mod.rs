//! Rewrite rules as data: loading `rewrites/*.toml` (embedded at build time or read
//! from a folder at run time), checking them statically ([`mod@file`]) and for soundness
//! ([`soundness`]), and turning them into egg rewrites.

pub mod file;
pub mod soundness;

use crate::ir::analysis::TensorAnalysis;
use crate::ir::Op;
use egg::{ConditionalApplier, Pattern, Rewrite, Symbol};
use std::fmt;
use std::path::{Path, PathBuf};

pub use file::{parse_rules_file, Condition, RuleDef, RuleError, RuleErrorKind};

/// The rule files shipped with fderiv, embedded at build time: (file name, text).
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "differentiation.toml",
        include_str!("../../rewrites/differentiation.toml"),
    ),
    ("softmax.toml", include_str!("../../rewrites/softmax.toml")),
    ("adjoint.toml", include_str!("../../rewrites/adjoint.toml")),
    ("algebra.toml", include_str!("../../rewrites/algebra.toml")),
];

/// Where a rule set came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The files embedded in the binary.
    Embedded,
    /// A folder given with `--rules`.
    Folder(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Embedded => write!(f, "the embedded rewrites/"),
            Source::Folder(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A loaded, statically checked rule set.
#[derive(Debug, Clone)]
pub struct RuleSet {
    /// Where it came from.
    pub source: Source,
    /// The rules, in file order (files sorted by name).
    pub rules: Vec<RuleDef>,
}

/// A stable hash of a rule set's contents (FNV-1a over names, sides, conditions), so
/// that generated code can say which rules it came from.
pub fn rules_hash(rules: &[RuleDef]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for r in rules {
        let text = format!(
            "{}|{}|{}|{}|{:?}|{}\n",
            r.name, r.lhs, r.rhs, r.bidirectional, r.conditions, r.simplify_only
        );
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl RuleSet {
    /// The embedded rule files.
    pub fn embedded() -> Result<RuleSet, RuleError> {
        let files: Vec<(String, String)> = EMBEDDED
            .iter()
            .map(|(n, t)| (format!("rewrites/{n}"), t.to_string()))
            .collect();
        Self::from_files(Source::Embedded, &files)
    }

    /// Every `*.toml` file in `dir`, in name order.
    pub fn from_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        let io_err = |e: std::io::Error| RuleError::io(dir, e);
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut files = Vec::new();
        for p in paths {
            let text = read_bounded(&p, file::MAX_RULE_FILE_BYTES)?;
            files.push((p.display().to_string(), text));
        }
        Self::from_files(Source::Folder(dir.to_path_buf()), &files)
    }

    /// Parses and statically checks the given (file name, text) pairs: duplicate names
    /// across files are errors.
    pub fn from_files(source: Source, files: &[(String, String)]) -> Result<RuleSet, RuleError> {
        let mut rules: Vec<RuleDef> = Vec::new();
        for (name, text) in files {
            for rule in parse_rules_file(name, text)? {
                if let Some(first) = rules.iter().find(|r| r.name == rule.name) {
                    return Err(rule.error(RuleErrorKind::Duplicate {
                        first: first.location(),
                    }));
                }
                rules.push(rule);
            }
        }
        Ok(RuleSet { source, rules })
    }

    /// The rule with this name, if any (reverse directions end in `-rev`).
    pub fn find(&self, rewrite_name: &str) -> Option<&RuleDef> {
        let base = rewrite_name.strip_suffix(REV).unwrap_or(rewrite_name);
        self.rules.iter().find(|r| r.name == base)
    }

    /// The egg rewrites: one per rule, two for a bidirectional rule.
    pub fn rewrites(&self) -> Result<Vec<Rewrite<Op, TensorAnalysis>>, RuleError> {
        self.rewrites_where(|_| true)
    }

    /// The egg rewrites of the rules `keep` accepts.
    pub fn rewrites_where(
        &self,
        keep: impl Fn(&RuleDef) -> bool,
    ) -> Result<Vec<Rewrite<Op, TensorAnalysis>>, RuleError> {
        let mut out = Vec::new();
        for r in self.rules.iter().filter(|r| keep(r)) {
            out.push(make_rewrite(r, &r.name, &r.lhs_pattern, &r.rhs_pattern)?);
            if r.bidirectional {
                let name = format!("{}{REV}", r.name);
                out.push(make_rewrite(r, &name, &r.rhs_pattern, &r.lhs_pattern)?);
            }
        }
        Ok(out)
    }
}

/// The suffix naming the right-to-left direction of a bidirectional rule.
pub const REV: &str = "-rev";

fn make_rewrite(
    rule: &RuleDef,
    name: &str,
    lhs: &Pattern<Op>,
    rhs: &Pattern<Op>,
) -> Result<Rewrite<Op, TensorAnalysis>, RuleError> {
    let applier = ConditionalApplier {
        condition: rule.conditions.clone(),
        applier: rhs.clone(),
    };
    Rewrite::new(Symbol::from(name), lhs.clone(), applier)
        .map_err(|e| rule.error(RuleErrorKind::Egg(e)))
}

/// Reads a rule file of at most `limit` bytes without reading more than one byte past
/// it, so a huge file is refused without being loaded.
fn read_bounded(path: &Path, limit: usize) -> Result<String, RuleError> {
    use std::io::Read;
    let io_err = |e: std::io::Error| RuleError::io(path, e);
    let file = std::fs::File::open(path).map_err(io_err)?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap).read_to_end(&mut bytes).map_err(io_err)?;
    if bytes.len() > limit {
        return Err(RuleError::too_large(
            &path.display().to_string(),
            bytes.len(),
            limit,
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_beyond_the_byte_limit_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.toml");
        std::fs::write(&path, format!("# {}\n", "x".repeat(100))).unwrap();
        let err = read_bounded(&path, 50).unwrap_err();
        assert_eq!(
            *err.kind,
            RuleErrorKind::TooLarge {
                bytes: 51,
                limit: 50
            }
        );
        assert!(read_bounded(&path, 200).is_ok());
        let err = file::parse_rules_file_within("t.toml", "group = \"algebra\"\n", 10);
        assert!(err
            .unwrap_err()
            .to_string()
            .starts_with("t.toml:1:1: the file is 18 bytes"));
    }

    #[test]
    fn embedded_rules_load_and_build() {
        let set = RuleSet::embedded().unwrap();
        assert!(set.rules.len() > 20);
        assert!(set.rewrites().unwrap().len() >= set.rules.len());
        assert!(set.rules.iter().all(|r| !r.lean.is_empty()));
    }

    #[test]
    fn duplicate_names_across_files_are_errors() {
        let rule = "group = \"algebra\"\n[[rule]]\nname = \"x\"\nlhs = \"(neg (neg ?a))\"\nrhs = \"?a\"\nlean = \"neg_neg\"\n";
        let files = vec![
            ("a.toml".to_string(), rule.to_string()),
            ("b.toml".to_string(), rule.to_string()),
        ];
        let err = RuleSet::from_files(Source::Embedded, &files).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.toml:3:8: rule x: duplicate rule name (first defined at a.toml:3:8)"
        );
    }

    #[test]
    fn rules_hash_changes_with_any_rule() {
        let set = RuleSet::embedded().unwrap();
        let mut changed = set.rules.clone();
        changed[0].rhs = format!("(neg (neg {}))", changed[0].rhs);
        assert_ne!(rules_hash(&set.rules), rules_hash(&changed));
    }
}

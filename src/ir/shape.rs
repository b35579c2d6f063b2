//! Typing and shape inference for terms and rule patterns.
//!
//! Every term has a type: a scalar (numbers, broadcast), a rank-3 tensor h×m×n whose
//! dims are symbolic names (`h`, `m`), concrete sizes, or unknowns (in patterns), or a
//! gradient (what `vjp`, `adj`, `grad` and `g+` produce). Inference is unification
//! over dims; an ill-shaped term is an error naming both shapes.

use super::lang::Op;
use super::layout::Layout;
use egg::{ENodeOrVar, Id, Language, RecExpr, Symbol, Var};
use std::collections::BTreeMap;
use std::fmt;

/// One dimension as the user wrote it: a symbolic name, a concrete size, or a product
/// of names and sizes such as `h*d` (the model width of `h` heads of width `d`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A symbolic dimension such as `h`.
    Named(String),
    /// A concrete size.
    Size(usize),
    /// A product of at least two factors, each a name or a size, in written order.
    Product(Vec<Dim>),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Named(s) => write!(f, "{s}"),
            Dim::Size(n) => write!(f, "{n}"),
            Dim::Product(fs) => {
                let parts: Vec<String> = fs.iter().map(|d| d.to_string()).collect();
                write!(f, "{}", parts.join("*"))
            }
        }
    }
}

impl Dim {
    /// Parses `h`, `3` or a product `h*d`, `2*d`.
    pub fn parse(text: &str) -> Result<Dim, ShapeError> {
        let t = text.trim();
        if t.contains('*') {
            let factors = t
                .split('*')
                .map(Dim::parse_factor)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ShapeError::BadDim(t.to_string()))?;
            return Ok(Dim::product(factors));
        }
        Dim::parse_factor(t)
    }

    fn parse_factor(text: &str) -> Result<Dim, ShapeError> {
        let t = text.trim();
        if let Ok(n) = t.parse::<usize>() {
            return Ok(Dim::Size(n));
        }
        let ok = t.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            Ok(Dim::Named(t.to_string()))
        } else {
            Err(ShapeError::BadDim(t.to_string()))
        }
    }

    /// The product of `factors` (nested products flattened; one factor is itself).
    pub fn product(factors: Vec<Dim>) -> Dim {
        let mut flat: Vec<Dim> = factors.into_iter().flat_map(Dim::factors).collect();
        match flat.len() {
            1 => flat.remove(0),
            _ => Dim::Product(flat),
        }
    }

    /// The factors of this dim: itself, or a product's factors.
    pub fn factors(self) -> Vec<Dim> {
        match self {
            Dim::Product(fs) => fs,
            d => vec![d],
        }
    }

    /// The size of this dim given the sizes of named dims, `None` if a name is unknown
    /// or the product overflows.
    pub fn size_with(&self, size_of: &dyn Fn(&str) -> Option<usize>) -> Option<usize> {
        match self {
            Dim::Size(n) => Some(*n),
            Dim::Named(s) => size_of(s),
            Dim::Product(fs) => fs
                .iter()
                .try_fold(1usize, |acc, f| acc.checked_mul(f.size_with(size_of)?)),
        }
    }

    /// Binds the named dims of `self` so that it has size `v`, given the sizes bound
    /// so far: a name takes `v`; a product with exactly one unbound name (occurring
    /// once) takes `v` divided by the other factors. Returns `Some(true)` when `self`
    /// has size `v`, `Some(false)` when it cannot, `None` while it is undetermined.
    pub fn bind(&self, v: usize, sizes: &mut BTreeMap<String, usize>) -> Option<bool> {
        if let Some(s) = self.size_with(&|n| sizes.get(n).copied()) {
            return Some(s == v);
        }
        let factors = self.clone().factors();
        let unknown: Vec<&String> = factors
            .iter()
            .filter_map(|f| match f {
                Dim::Named(s) if !sizes.contains_key(s) => Some(s),
                _ => None,
            })
            .collect();
        let known = factors
            .iter()
            .filter(|f| !matches!(f, Dim::Named(s) if unknown.contains(&s)))
            .try_fold(1usize, |acc, f| {
                acc.checked_mul(f.size_with(&|n| sizes.get(n).copied())?)
            })?;
        match unknown.as_slice() {
            [one] if known > 0 && v.is_multiple_of(known) => {
                sizes.insert((*one).clone(), v / known);
                Some(true)
            }
            [_] if known > 0 => Some(false),
            _ => None,
        }
    }
}

/// A rank-3 shape h×m×n as the user declares it.
pub type Shape = [Dim; 3];

/// Parses a shape written `h,m,n`, `h×m×n` or `hxmxn`-free forms like `2,3,4`.
pub fn parse_shape(text: &str) -> Result<Shape, ShapeError> {
    let parts: Vec<&str> = text.split([',', '×']).collect();
    if parts.len() != 3 {
        return Err(ShapeError::Rank(text.to_string()));
    }
    Ok([
        Dim::parse(parts[0])?,
        Dim::parse(parts[1])?,
        Dim::parse(parts[2])?,
    ])
}

/// `h×m×n`.
pub fn fmt_shape(s: &Shape) -> String {
    format!("{}×{}×{}", s[0], s[1], s[2])
}

/// Concrete sizes for `shape`: a size stays, a named dim takes the size already chosen
/// for that name in `sizes`, or `draw(name)` the first time (then remembered), so that
/// every input sharing a dim name gets the same size; a product multiplies its factors'
/// sizes (draw small sizes: products grow fast).
pub fn concrete_dims(
    shape: &Shape,
    sizes: &mut BTreeMap<String, usize>,
    mut draw: impl FnMut(&str) -> usize,
) -> [usize; 3] {
    shape.clone().map(|d| {
        d.factors().into_iter().fold(1, |acc, f| {
            acc * match f {
                Dim::Named(s) => *sizes.entry(s).or_insert_with_key(|s| draw(s)),
                Dim::Size(n) => n,
                Dim::Product(_) => 1, // flattened by Dim::product: never nested
            }
        })
    })
}

/// The declared shapes of a term's inputs.
pub type ShapeEnv = BTreeMap<Symbol, Shape>;

/// The inferred type of a term or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// A number (broadcasts against any tensor).
    Scalar,
    /// A rank-3 tensor; unknown dims print as `?`.
    Tensor([Option<Dim>; 3]),
    /// A gradient: one tensor per input slot.
    Grad,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Scalar => write!(f, "scalar"),
            Ty::Grad => write!(f, "gradient"),
            Ty::Tensor(d) => {
                let s: Vec<String> = d
                    .iter()
                    .map(|x| x.as_ref().map_or("?".to_string(), |d| d.to_string()))
                    .collect();
                write!(f, "{}", s.join("×"))
            }
        }
    }
}

/// Why a term or pattern is ill-typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Two shapes that must agree do not.
    #[error("{op}: shapes {left} and {right} disagree")]
    Mismatch {
        /// The operator whose operands disagree.
        op: String,
        /// The left (or expected) type.
        left: String,
        /// The right (or found) type.
        right: String,
    },
    /// An operand has the wrong kind (gradient where a tensor is needed, ...).
    #[error("{op}: expected {expected}, found {found}")]
    Kind {
        /// The operator.
        op: String,
        /// What it needs.
        expected: String,
        /// What it got.
        found: String,
    },
    /// An input without a declared shape.
    #[error("input {0} has no declared shape (declare it, e.g. --shape {0}=h,m,n)")]
    UnknownInput(String),
    /// A shape that is not rank 3.
    #[error("shape {0:?} is not h,m,n (three dims)")]
    Rank(String),
    /// A dim that is neither a name nor a size.
    #[error("dim {0:?} is neither a name (h) nor a size (3)")]
    BadDim(String),
}

/// Unification state: dim variables with union-find and optional values.
#[derive(Debug, Default, Clone)]
pub struct Unifier {
    parent: Vec<usize>,
    value: Vec<Option<Val>>,
}

/// The value of a dim variable: a name, a size, or a product of other variables.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Val {
    Named(String),
    Size(usize),
    Product(Vec<usize>),
}

/// A factor of a normalised product: a rigid name or a still-unknown variable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Atom {
    Name(String),
    Var(usize),
}

/// A product normalised: the sizes multiplied out, the other factors sorted.
type Normal = (usize, Vec<Atom>);

type DimVars = [usize; 3];

#[derive(Debug, Clone, Copy, PartialEq)]
enum VarTy {
    Scalar,
    Tensor(DimVars),
    Grad,
}

impl Unifier {
    fn fresh(&mut self, value: Option<Dim>) -> usize {
        let value = value.map(|d| match d {
            Dim::Named(s) => Val::Named(s),
            Dim::Size(n) => Val::Size(n),
            Dim::Product(fs) => Val::Product(fs.into_iter().map(|f| self.fresh(Some(f))).collect()),
        });
        self.fresh_val(value)
    }
    fn fresh_val(&mut self, value: Option<Val>) -> usize {
        self.parent.push(self.parent.len());
        self.value.push(value);
        self.parent.len() - 1
    }
    fn fresh3(&mut self) -> DimVars {
        [self.fresh(None), self.fresh(None), self.fresh(None)]
    }
    /// A fresh variable equal to the product of `factors`.
    fn product(&mut self, factors: Vec<usize>) -> usize {
        self.fresh_val(Some(Val::Product(factors)))
    }
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    /// The value of a dim variable, if known (a product only when all its factors are).
    fn get(&mut self, x: usize) -> Option<Dim> {
        let r = self.find(x);
        match self.value[r].clone()? {
            Val::Named(s) => Some(Dim::Named(s)),
            Val::Size(n) => Some(Dim::Size(n)),
            Val::Product(fs) => {
                let factors = fs
                    .into_iter()
                    .map(|f| self.get(f))
                    .collect::<Option<Vec<_>>>()?;
                Some(Dim::product(factors))
            }
        }
    }
    /// The normal form of a variable (depth-bounded: a cyclic product is opaque).
    fn normal(&mut self, x: usize, depth: usize) -> Normal {
        let r = self.find(x);
        match self.value[r].clone() {
            Some(Val::Product(fs)) if depth < 64 => {
                let (mut c, mut atoms) = (1usize, Vec::new());
                for f in fs {
                    let (fc, fa) = self.normal(f, depth + 1);
                    c = c.saturating_mul(fc);
                    atoms.extend(fa);
                }
                atoms.sort();
                (c, atoms)
            }
            Some(Val::Named(s)) => (1, vec![Atom::Name(s)]),
            Some(Val::Size(n)) => (n, vec![]),
            _ => (1, vec![Atom::Var(r)]),
        }
    }
    fn link(&mut self, ra: usize, rb: usize) {
        self.parent[ra] = rb;
        let va = self.value[ra].take();
        if self.value[rb].is_none() {
            self.value[rb] = va;
        }
    }
    fn unify(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return true;
        }
        match (self.value[ra].clone(), self.value[rb].clone()) {
            (None, None) => {
                self.link(ra, rb);
                true
            }
            // The unknown joins the known class, unless that class is a product
            // containing it (x = k·x).
            (None, Some(_)) => self.bind_unknown(ra, rb),
            (Some(_), None) => self.bind_unknown(rb, ra),
            (Some(x), Some(y))
                if !matches!(x, Val::Product(_)) && !matches!(y, Val::Product(_)) =>
            {
                x == y && {
                    self.link(ra, rb);
                    true
                }
            }
            _ => self.unify_products(ra, rb),
        }
    }
    /// Makes the unknown root `x` equal to the known root `known` (occurs check).
    fn bind_unknown(&mut self, x: usize, known: usize) -> bool {
        let (_, atoms) = self.normal(known, 0);
        if atoms.contains(&Atom::Var(x)) {
            return false;
        }
        self.link(x, known);
        true
    }
    /// Unifies two dims one of which is a product: equal normal forms unify; otherwise
    /// a side left with a single unknown factor after cancelling is solved for it.
    fn unify_products(&mut self, ra: usize, rb: usize) -> bool {
        let (mut na, mut nb) = (self.normal(ra, 0), self.normal(rb, 0));
        if na != nb {
            cancel(&mut na.1, &mut nb.1);
            let solved = self.solve(&na, &nb) || self.solve(&nb, &na);
            if !solved {
                return false;
            }
            if self.normal(ra, 0) != self.normal(rb, 0) {
                return false;
            }
        }
        let (ra, rb) = (self.find(ra), self.find(rb));
        if ra != rb {
            self.link(ra, rb);
        }
        true
    }
    /// If `side` is `c·x` for one unknown `x` and `c` divides `other`'s size, sets
    /// `x := other / c`.
    fn solve(&mut self, side: &Normal, other: &Normal) -> bool {
        let (c, atoms) = side;
        let [Atom::Var(x)] = atoms.as_slice() else {
            return false;
        };
        if other.1.contains(&Atom::Var(*x)) || *c == 0 || !other.0.is_multiple_of(*c) {
            return false;
        }
        let k = other.0 / c;
        let r = self.find(*x);
        if let (1, [Atom::Var(v)]) = (k, other.1.as_slice()) {
            let v = self.find(*v);
            self.link(r, v);
            return true;
        }
        let mut factors: Vec<usize> = other
            .1
            .iter()
            .map(|a| match a {
                Atom::Name(s) => self.fresh_val(Some(Val::Named(s.clone()))),
                Atom::Var(v) => *v,
            })
            .collect();
        if k != 1 || factors.is_empty() {
            let size = self.fresh_val(Some(Val::Size(k)));
            factors.insert(0, size);
        }
        let value = match factors.as_slice() {
            [one] => {
                let one = self.find(*one);
                self.value[one].clone()
            }
            _ => Some(Val::Product(factors)),
        };
        self.value[r] = value;
        true
    }
    fn ty(&mut self, t: VarTy) -> Ty {
        match t {
            VarTy::Scalar => Ty::Scalar,
            VarTy::Grad => Ty::Grad,
            VarTy::Tensor(d) => Ty::Tensor([self.get(d[0]), self.get(d[1]), self.get(d[2])]),
        }
    }
}

/// Removes the atoms common to both multisets (both sorted).
fn cancel(a: &mut Vec<Atom>, b: &mut Vec<Atom>) {
    let mut i = 0;
    while i < a.len() {
        if let Some(j) = b.iter().position(|x| *x == a[i]) {
            a.remove(i);
            b.remove(j);
        } else {
            i += 1;
        }
    }
}

/// The result of inferring a pattern: the type of its root and of every variable.
#[derive(Debug, Clone)]
pub struct Inferred {
    /// The root's type.
    pub root: Ty,
    /// Each pattern variable's type.
    pub vars: BTreeMap<Var, Ty>,
    /// Pattern variables that stand for input names (under `tan` or as `grad`'s slot).
    pub name_vars: Vec<Var>,
    /// Dim-variable classes: for each variable of tensor type, its dim-class ids, so
    /// that callers can pick one concrete size per class.
    pub var_dims: BTreeMap<Var, [usize; 3]>,
    /// For each variable standing for a head count (`?k` in `(split ?k ?x)`), the
    /// dim class it sizes: it must be instantiated by that class's size.
    pub head_dims: BTreeMap<Var, usize>,
    /// Dim classes that are products, with their factors' classes: a caller choosing
    /// sizes gives such a class the product of its factors' sizes.
    pub products: BTreeMap<usize, Vec<usize>>,
    /// Dim classes with a fixed size (the 1 of a head split's input, a size written
    /// in a pattern).
    pub sizes: BTreeMap<usize, usize>,
}

/// Shape inference over patterns (and terms, as patterns without variables).
#[derive(Debug, Default)]
pub struct Inference {
    unifier: Unifier,
    vars: BTreeMap<Var, VarTy>,
    inputs: BTreeMap<Symbol, DimVars>,
    heads: BTreeMap<Var, usize>,
    env: ShapeEnv,
    strict_inputs: bool,
}

impl Inference {
    /// Inference for terms whose inputs must all be declared in `env`.
    pub fn with_env(env: &ShapeEnv) -> Self {
        Inference {
            env: env.clone(),
            strict_inputs: true,
            ..Default::default()
        }
    }

    /// Inference for rule patterns: inputs and variables get fresh shapes.
    pub fn for_patterns() -> Self {
        Inference::default()
    }

    /// The class id of a dim variable (equal ids: the same dim).
    pub fn dim_class(&mut self, d: usize) -> usize {
        self.unifier.find(d)
    }

    /// The known value of a dim class, if any.
    pub fn dim_value(&mut self, d: usize) -> Option<Dim> {
        self.unifier.get(d)
    }

    fn input_dims(&mut self, s: Symbol) -> Result<DimVars, ShapeError> {
        if let Some(d) = self.inputs.get(&s) {
            return Ok(*d);
        }
        let dims = match self.env.get(&s).cloned() {
            Some(shape) => shape.map(|d| self.unifier.fresh(Some(d))),
            None if self.strict_inputs => return Err(ShapeError::UnknownInput(s.to_string())),
            None => self.unifier.fresh3(),
        };
        self.inputs.insert(s, dims);
        Ok(dims)
    }

    fn show(&mut self, t: VarTy) -> String {
        self.unifier.ty(t).to_string()
    }

    fn same(&mut self, op: &str, a: VarTy, b: VarTy) -> Result<(), ShapeError> {
        let ok = match (a, b) {
            (VarTy::Tensor(x), VarTy::Tensor(y)) => {
                let mut trial = self.unifier.clone();
                let ok = (0..3).all(|i| trial.unify(x[i], y[i]));
                if ok {
                    self.unifier = trial;
                }
                ok
            }
            (x, y) => x == y,
        };
        if ok {
            Ok(())
        } else {
            Err(ShapeError::Mismatch {
                op: op.to_string(),
                left: self.show(a),
                right: self.show(b),
            })
        }
    }

    fn tensor(&mut self, op: &str, t: VarTy) -> Result<DimVars, ShapeError> {
        match t {
            VarTy::Tensor(d) => Ok(d),
            other => Err(ShapeError::Kind {
                op: op.to_string(),
                expected: "a tensor".into(),
                found: self.show(other),
            }),
        }
    }

    fn var_ty(&mut self, v: Var, kind: Kind) -> Result<VarTy, ShapeError> {
        if let Some(t) = self.vars.get(&v) {
            return Ok(*t);
        }
        let t = match kind {
            Kind::Grad => VarTy::Grad,
            Kind::Heads => VarTy::Scalar,
            Kind::Tensor | Kind::Name => VarTy::Tensor(self.unifier.fresh3()),
        };
        self.vars.insert(v, t);
        Ok(t)
    }

    /// Infers the type of a pattern (or of a term converted with [`as_pattern`]).
    pub fn infer(&mut self, pat: &RecExpr<ENodeOrVar<Op>>) -> Result<Ty, ShapeError> {
        let root = self.infer_raw(pat)?;
        Ok(self.unifier.ty(root))
    }

    /// Infers and reports variables too.
    pub fn infer_pattern(
        &mut self,
        pat: &RecExpr<ENodeOrVar<Op>>,
    ) -> Result<(Ty, Vec<Var>), ShapeError> {
        let kinds = var_kinds(pat);
        let root = self.infer_raw(pat)?;
        let names = kinds
            .into_iter()
            .filter(|(_, k)| *k == Kind::Name)
            .map(|(v, _)| v)
            .collect();
        Ok((self.unifier.ty(root), names))
    }

    /// The summary of everything inferred so far.
    pub fn summary(&mut self, root: Ty, name_vars: Vec<Var>) -> Inferred {
        let vars: Vec<(Var, VarTy)> = self.vars.iter().map(|(v, t)| (*v, *t)).collect();
        let mut out = Inferred {
            root,
            vars: BTreeMap::new(),
            name_vars,
            var_dims: BTreeMap::new(),
            head_dims: BTreeMap::new(),
            products: BTreeMap::new(),
            sizes: BTreeMap::new(),
        };
        let heads: Vec<(Var, usize)> = self.heads.iter().map(|(v, d)| (*v, *d)).collect();
        for (v, d) in heads {
            out.head_dims.insert(v, self.unifier.find(d));
        }
        for (v, t) in vars {
            let ty = self.unifier.ty(t);
            out.vars.insert(v, ty);
            if let VarTy::Tensor(d) = t {
                out.var_dims.insert(v, d.map(|x| self.unifier.find(x)));
            }
        }
        let mut todo: Vec<usize> = out.var_dims.values().flatten().copied().collect();
        while let Some(c) = todo.pop() {
            let c = self.unifier.find(c);
            if out.products.contains_key(&c) {
                continue;
            }
            match self.unifier.value[c].clone() {
                Some(Val::Product(fs)) => {
                    let fs: Vec<usize> = fs.into_iter().map(|f| self.unifier.find(f)).collect();
                    todo.extend(&fs);
                    out.products.insert(c, fs);
                }
                Some(Val::Size(n)) => {
                    out.sizes.insert(c, n);
                }
                _ => {}
            }
        }
        out
    }

    fn infer_raw(&mut self, pat: &RecExpr<ENodeOrVar<Op>>) -> Result<VarTy, ShapeError> {
        let kinds = var_kinds(pat);
        let nodes = pat.as_ref();
        let mut tys: Vec<VarTy> = Vec::with_capacity(nodes.len());
        for node in nodes {
            let t = match node {
                ENodeOrVar::Var(v) => {
                    let kind = kinds.get(v).copied().unwrap_or(Kind::Tensor);
                    self.var_ty(*v, kind)?
                }
                ENodeOrVar::ENode(op) => {
                    let c = |i: usize| tys[usize::from(op.children()[i])];
                    let name = op.to_string();
                    self.infer_op(op, &name, &c, nodes)?
                }
            };
            tys.push(t);
        }
        tys.last().copied().ok_or(ShapeError::Kind {
            op: "term".into(),
            expected: "a non-empty term".into(),
            found: "nothing".into(),
        })
    }

    fn infer_op(
        &mut self,
        op: &Op,
        name: &str,
        c: &dyn Fn(usize) -> VarTy,
        nodes: &[ENodeOrVar<Op>],
    ) -> Result<VarTy, ShapeError> {
        Ok(match op {
            Op::Split(_)
            | Op::Merge(_)
            | Op::Reshape(_)
            | Op::Unreshape(_)
            | Op::Flat(_)
            | Op::Unflat(_)
            | Op::Swap(_) => {
                let x = c(op.children().len() - 1);
                self.infer_layout(op, name, x, nodes)?
            }
            Op::Num(_) | Op::Param(_) => VarTy::Scalar,
            Op::Input(s) => VarTy::Tensor(self.input_dims(*s)?),
            Op::Add(_) | Op::Sub(_) | Op::Mul(_) | Op::Div(_) => match (c(0), c(1)) {
                (VarTy::Scalar, VarTy::Scalar) => VarTy::Scalar,
                (VarTy::Scalar, t) | (t, VarTy::Scalar) => VarTy::Tensor(self.tensor(name, t)?),
                (a, b) => {
                    self.tensor(name, a)?;
                    self.tensor(name, b)?;
                    self.same(name, a, b)?;
                    a
                }
            },
            Op::Neg(_) | Op::Inv(_) | Op::Exp(_) => match c(0) {
                VarTy::Scalar => VarTy::Scalar,
                t => VarTy::Tensor(self.tensor(name, t)?),
            },
            Op::RowSum(_) | Op::Softmax(_) | Op::Jvp(_) => VarTy::Tensor(self.tensor(name, c(0))?),
            Op::Tan([ch]) => {
                self.name_child(name, nodes, *ch)?;
                VarTy::Tensor(self.tensor(name, c(0))?)
            }
            Op::Transpose(_) => {
                let d = self.tensor(name, c(0))?;
                VarTy::Tensor([d[0], d[2], d[1]])
            }
            Op::Bmm(_) => {
                let a = self.tensor(name, c(0))?;
                let b = self.tensor(name, c(1))?;
                let mut trial = self.unifier.clone();
                if !(trial.unify(a[0], b[0]) && trial.unify(a[2], b[1])) {
                    return Err(ShapeError::Mismatch {
                        op: "bmm (h×m×n)·(h×n×p)".into(),
                        left: self.show(c(0)),
                        right: self.show(c(1)),
                    });
                }
                self.unifier = trial;
                VarTy::Tensor([a[0], a[1], b[2]])
            }
            Op::Vjp(_) | Op::Adj(_) => {
                self.tensor(name, c(0))?;
                self.tensor(name, c(1))?;
                self.same(name, c(0), c(1))?;
                VarTy::Grad
            }
            Op::Grad([slot, _]) => {
                self.name_child(name, nodes, *slot)?;
                self.tensor(name, c(1))?;
                self.same(name, c(0), c(1))?;
                VarTy::Grad
            }
            Op::GAdd(_) => {
                for i in 0..2 {
                    if c(i) != VarTy::Grad {
                        return Err(ShapeError::Kind {
                            op: name.into(),
                            expected: "a gradient".into(),
                            found: self.show(c(i)),
                        });
                    }
                }
                VarTy::Grad
            }
        })
    }

    /// The dim a head-count child stands for: a whole number ≥ 1 in a term, a fresh
    /// dim (one per variable) in a pattern.
    fn head_dim(
        &mut self,
        op: &str,
        nodes: &[ENodeOrVar<Op>],
        id: Id,
    ) -> Result<usize, ShapeError> {
        match &nodes[usize::from(id)] {
            ENodeOrVar::ENode(Op::Num(c)) if c.heads().is_some() => {
                Ok(self.unifier.fresh(c.heads().map(Dim::Size)))
            }
            ENodeOrVar::Var(v) => {
                if let Some(d) = self.heads.get(v) {
                    return Ok(*d);
                }
                let d = self.unifier.fresh(None);
                self.heads.insert(*v, d);
                Ok(d)
            }
            other => Err(ShapeError::Kind {
                op: op.into(),
                expected: "a head count (a whole number ≥ 1)".into(),
                found: other.to_string(),
            }),
        }
    }

    /// The shape rule of a layout operator (see [`super::layout`]).
    fn infer_layout(
        &mut self,
        op: &Op,
        name: &str,
        x: VarTy,
        nodes: &[ENodeOrVar<Op>],
    ) -> Result<VarTy, ShapeError> {
        let Some((layout, k, _)) = op.layout() else {
            return Err(ShapeError::Kind {
                op: name.into(),
                expected: "a layout operator".into(),
                found: name.into(),
            });
        };
        let xd = self.tensor(name, x)?;
        let kv = match k {
            Some(id) => self.head_dim(name, nodes, id)?,
            None => self.unifier.fresh(None),
        };
        let mut t = self.unifier.clone();
        let one = t.fresh(Some(Dim::Size(1)));
        let (ok, out, expected) = match layout {
            Layout::Split | Layout::Reshape | Layout::Unflat => {
                let d = t.fresh(None);
                let p = t.product(vec![kv, d]);
                let ok = t.unify(xd[0], one) && t.unify(xd[2], p);
                let out = if layout == Layout::Unflat {
                    [xd[1], kv, d]
                } else {
                    [kv, xd[1], d]
                };
                (ok, out, "1×n×(k·d)")
            }
            Layout::Merge | Layout::Unreshape => {
                let p = t.product(vec![kv, xd[2]]);
                (t.unify(xd[0], kv), [one, xd[1], p], "k×n×d")
            }
            Layout::Flat => {
                let p = t.product(vec![kv, xd[2]]);
                (t.unify(xd[1], kv), [one, xd[0], p], "n×k×d")
            }
            Layout::Swap => (true, [xd[1], xd[0], xd[2]], "a×b×c"),
        };
        if !ok {
            let k = t.get(kv).map_or("?".to_string(), |d| d.to_string());
            return Err(ShapeError::Kind {
                op: format!("{name} (k = {k})"),
                expected: expected.into(),
                found: self.show(x),
            });
        }
        self.unifier = t;
        Ok(VarTy::Tensor(out))
    }

    fn name_child(&self, op: &str, nodes: &[ENodeOrVar<Op>], id: Id) -> Result<(), ShapeError> {
        match &nodes[usize::from(id)] {
            ENodeOrVar::Var(_) | ENodeOrVar::ENode(Op::Input(_)) => Ok(()),
            other => Err(ShapeError::Kind {
                op: op.into(),
                expected: "an input name".into(),
                found: other.to_string(),
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tensor,
    Grad,
    Name,
    Heads,
}

/// What each pattern variable stands for, read from the operators around it.
fn var_kinds(pat: &RecExpr<ENodeOrVar<Op>>) -> BTreeMap<Var, Kind> {
    let nodes = pat.as_ref();
    let mut kinds = BTreeMap::new();
    let mut mark = |id: Id, k: Kind| {
        if let ENodeOrVar::Var(v) = nodes[usize::from(id)] {
            kinds.entry(v).or_insert(k);
        }
    };
    for node in nodes {
        if let ENodeOrVar::ENode(op) = node {
            match op {
                Op::Tan([a]) => mark(*a, Kind::Name),
                Op::Grad([a, _]) => mark(*a, Kind::Name),
                op if op.layout().is_some_and(|(_, k, _)| k.is_some()) => {
                    mark(op.children()[0], Kind::Heads)
                }
                Op::GAdd([a, b]) => {
                    mark(*a, Kind::Grad);
                    mark(*b, Kind::Grad);
                }
                _ => {}
            }
        }
    }
    kinds
}

/// A term as a pattern without variables (for inference).
pub fn as_pattern(expr: &RecExpr<Op>) -> RecExpr<ENodeOrVar<Op>> {
    expr.as_ref()
        .iter()
        .map(|n| ENodeOrVar::ENode(n.clone()))
        .collect::<Vec<_>>()
        .into()
}

/// The type of a term whose inputs are declared in `env`.
pub fn infer_term(expr: &RecExpr<Op>, env: &ShapeEnv) -> Result<Ty, ShapeError> {
    Inference::with_env(env).infer(&as_pattern(expr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::parse_term;

    fn env(pairs: &[(&str, &str)]) -> ShapeEnv {
        pairs
            .iter()
            .map(|(k, v)| (Symbol::from(*k), parse_shape(v).unwrap()))
            .collect()
    }

    #[test]
    fn batched_matmul_and_its_vjp_have_the_expected_shapes() {
        let e = env(&[("A", "h,m,n"), ("B", "h,n,p"), ("G", "h,m,p")]);
        let ty = infer_term(&parse_term("(bmm A B)").unwrap(), &e).unwrap();
        assert_eq!(ty.to_string(), "h×m×p");
        let gb = infer_term(&parse_term("(bmm (T A) G)").unwrap(), &e).unwrap();
        assert_eq!(gb.to_string(), "h×n×p");
        let vjp = parse_term("(vjp (bmm A B) G)").unwrap();
        assert_eq!(infer_term(&vjp, &e).unwrap(), Ty::Grad);
    }

    #[test]
    fn ill_shaped_terms_name_both_shapes() {
        let e = env(&[("A", "h,m,n"), ("B", "h,p,n")]);
        let err = infer_term(&parse_term("(bmm A B)").unwrap(), &e).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bmm (h×m×n)·(h×n×p): shapes h×m×n and h×p×n disagree"
        );
        let err = infer_term(&parse_term("(+ A B)").unwrap(), &e).unwrap_err();
        assert_eq!(err.to_string(), "+: shapes h×m×n and h×p×n disagree");
        let err = infer_term(&parse_term("(+ A Z)").unwrap(), &e).unwrap_err();
        assert!(matches!(err, ShapeError::UnknownInput(n) if n == "Z"));
        let err = infer_term(&parse_term("(tan (exp A))").unwrap(), &e).unwrap_err();
        assert!(matches!(err, ShapeError::Kind { .. }));
    }

    #[test]
    fn concrete_sizes_unify_with_each_other_only_when_equal() {
        let e = env(&[("A", "2,3,4"), ("B", "2,4,5"), ("C", "2,3,3")]);
        let ty = infer_term(&parse_term("(bmm A B)").unwrap(), &e).unwrap();
        assert_eq!(ty.to_string(), "2×3×5");
        assert!(infer_term(&parse_term("(bmm A C)").unwrap(), &e).is_err());
    }

    #[test]
    fn product_dims_parse_print_and_unify_up_to_order_and_sizes() {
        assert_eq!(Dim::parse("h*d").unwrap().to_string(), "h*d");
        assert_eq!(parse_shape("1,n,2*d").unwrap()[2].to_string(), "2*d");
        assert!(matches!(Dim::parse("h*"), Err(ShapeError::BadDim(_))));
        assert!(matches!(Dim::parse("h*-1"), Err(ShapeError::BadDim(_))));
        let e = env(&[("X", "1,n,h*d"), ("W", "1,d*h,h*d"), ("V", "1,h*d,6")]);
        let ty = infer_term(&parse_term("(bmm X W)").unwrap(), &e).unwrap();
        assert_eq!(ty.to_string(), "1×n×h*d");
        let e = env(&[("X", "1,n,2*3"), ("V", "1,6,m")]);
        let ty = infer_term(&parse_term("(bmm X V)").unwrap(), &e).unwrap();
        assert_eq!(ty.to_string(), "1×n×m");
    }

    #[test]
    fn a_product_dim_that_cannot_be_matched_names_both_shapes() {
        for (x, w) in [
            ("1,n,h*d", "1,m,p"),
            ("1,n,h*d", "1,6,p"),
            ("1,n,h*d", "1,h*e,p"),
        ] {
            let e = env(&[("X", x), ("W", w)]);
            let err = infer_term(&parse_term("(bmm X W)").unwrap(), &e).unwrap_err();
            let want = format!(
                "bmm (h×m×n)·(h×n×p): shapes {} and {} disagree",
                fmt_shape(&parse_shape(x).unwrap()),
                fmt_shape(&parse_shape(w).unwrap())
            );
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn an_unknown_factor_is_solved_when_the_rest_determines_it() {
        let mut u = Unifier::default();
        let (x, two, six) = (
            u.fresh(None),
            u.fresh(Some(Dim::Size(2))),
            u.fresh(Some(Dim::Size(6))),
        );
        let p = u.product(vec![two, x]);
        assert!(u.unify(p, six));
        assert_eq!(u.get(x), Some(Dim::Size(3)));
        let (y, seven) = (u.fresh(None), u.fresh(Some(Dim::Size(7))));
        let q = u.product(vec![two, y]);
        assert!(!u.unify(q, seven));
        let hd = u.fresh(Some(Dim::parse("h*d").unwrap()));
        let (h, z) = (u.fresh(Some(Dim::Named("h".into()))), u.fresh(None));
        let r = u.product(vec![h, z]);
        assert!(u.unify(r, hd));
        assert_eq!(u.get(z), Some(Dim::Named("d".into())));
    }

    #[test]
    fn concrete_dims_multiply_and_bind_solves_one_factor() {
        let shape = parse_shape("1,n,h*d").unwrap();
        let mut sizes = BTreeMap::new();
        let dims = concrete_dims(&shape, &mut sizes, |s| if s == "h" { 2 } else { 3 });
        assert_eq!(dims, [1, 3, 6]);
        let mut sizes = BTreeMap::from([("h".to_string(), 2)]);
        assert_eq!(shape[2].bind(8, &mut sizes), Some(true));
        assert_eq!(sizes["d"], 4);
        assert_eq!(shape[2].bind(9, &mut sizes), Some(false));
        let mut none = BTreeMap::new();
        assert_eq!(shape[2].bind(8, &mut none), None);
        let mut h = BTreeMap::from([("h".to_string(), 2)]);
        assert_eq!(shape[2].bind(7, &mut h), Some(false));
    }

    #[test]
    fn pattern_variables_get_consistent_shapes() {
        let lhs: RecExpr<ENodeOrVar<Op>> = "(adj (bmm ?e ?b) ?g)".parse().unwrap();
        let rhs: RecExpr<ENodeOrVar<Op>> = "(adj ?e (bmm ?g (T ?b)))".parse().unwrap();
        let mut inf = Inference::for_patterns();
        assert_eq!(inf.infer(&lhs).unwrap(), Ty::Grad);
        assert_eq!(inf.infer(&rhs).unwrap(), Ty::Grad);
        // ?e is a tensor: it cannot also be a gradient.
        let clash: RecExpr<ENodeOrVar<Op>> = "(g+ ?e ?b)".parse().unwrap();
        assert!(inf.infer(&clash).is_err());
    }
}

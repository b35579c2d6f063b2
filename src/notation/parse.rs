//! Reads the Unicode notation of [`super::math`] back to a term, `where` clauses
//! included, so every printed form can be checked against the term it came from.

use super::math::{is_name_continue, is_name_start, RESERVED};
use super::NotationError;
use crate::ir::{Const, Expr, Op};
use egg::{Id, Language, Symbol};
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Param(String),
    Quoted(String),
    Tangent(String),
    Number(Const),
    Where,
    Minus,
    Plus,
    Odot,
    Dot,
    Slash,
    T,
    Inv,
    Nabla,
    Eq,
    Semi,
    Comma,
    Open,
    Close,
}

/// A token with its line, column and whether a space came before it.
#[derive(Debug, Clone)]
struct Lexed {
    tok: Tok,
    line: usize,
    col: usize,
    /// The position just after it (to see whether `−` touches a number).
    end: usize,
    start: usize,
}

fn err(line: usize, col: usize, why: impl Into<String>) -> NotationError {
    NotationError::Parse {
        line,
        column: col,
        why: why.into(),
    }
}

fn lex(text: &str) -> Result<Vec<Lexed>, NotationError> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            (i, line, col) = (i + 1, line + 1, 1);
            continue;
        }
        if c.is_whitespace() {
            (i, col) = (i + 1, col + 1);
            continue;
        }
        let start = i;
        let quoted = |from: usize| -> Result<(String, usize), NotationError> {
            let close = chars[from..]
                .iter()
                .position(|&c| c == '»')
                .ok_or_else(|| err(line, col, "« without a closing »"))?;
            Ok((chars[from..from + close].iter().collect(), from + close + 1))
        };
        let (tok, next) = match c {
            '«' => {
                let (name, next) = quoted(i + 1)?;
                (Tok::Quoted(name), next)
            }
            '@' => {
                let mut j = i + 1;
                while j < chars.len() && is_name_continue(chars[j]) {
                    j += 1;
                }
                (Tok::Param(chars[i + 1..j].iter().collect()), j)
            }
            c if is_name_start(c) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_continue(chars[j]) {
                    j += 1;
                }
                let word: String = chars[i..j].iter().collect();
                if word == "d" && chars.get(j) == Some(&'«') {
                    let (name, next) = quoted(j + 1)?;
                    (Tok::Tangent(name), next)
                } else if word == "where" {
                    (Tok::Where, j)
                } else if let Some(rest) = word.strip_prefix('d').filter(|r| !r.is_empty()) {
                    (Tok::Tangent(rest.to_string()), j)
                } else {
                    (Tok::Name(word), j)
                }
            }
            c if c.is_ascii_digit() => {
                let digits = |mut j: usize| {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    j
                };
                let mut j = digits(i);
                if chars.get(j) == Some(&'.') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j = digits(j + 1);
                }
                if chars.get(j) == Some(&'/') && chars.get(j + 1).is_some_and(char::is_ascii_digit)
                {
                    j = digits(j + 1);
                }
                let text: String = chars[i..j].iter().collect();
                let n: Const = text.parse().map_err(|e: String| err(line, col, e))?;
                (Tok::Number(n), j)
            }
            '−' | '-' => (Tok::Minus, i + 1),
            '+' => (Tok::Plus, i + 1),
            '⊙' => (Tok::Odot, i + 1),
            '·' => (Tok::Dot, i + 1),
            '/' => (Tok::Slash, i + 1),
            'ᵀ' => (Tok::T, i + 1),
            '⁻' if chars.get(i + 1) == Some(&'¹') => (Tok::Inv, i + 2),
            '∇' => (Tok::Nabla, i + 1),
            '=' => (Tok::Eq, i + 1),
            ';' => (Tok::Semi, i + 1),
            ',' => (Tok::Comma, i + 1),
            '(' => (Tok::Open, i + 1),
            ')' => (Tok::Close, i + 1),
            other => return Err(err(line, col, format!("unexpected character {other:?}"))),
        };
        out.push(Lexed {
            tok,
            line,
            col,
            start,
            end: next,
        });
        col += next - i;
        i = next;
    }
    Ok(out)
}

/// A parsed term before `where` names are resolved.
#[derive(Debug, Clone)]
enum Syn {
    /// An operator (children placeholders) applied to its arguments.
    App(Op, Vec<Syn>),
    /// A number or a quoted input (never a `where` name).
    Leaf(Op),
    /// A plain name: a `where` name if one is defined, else an input.
    Name(String, usize, usize),
}

fn app(op: Op, args: Vec<Syn>) -> Syn {
    Syn::App(op, args)
}

/// The placeholder child of an operator before its arguments are resolved.
fn z() -> Id {
    Id::from(0usize)
}

struct Parser {
    toks: Vec<Lexed>,
    pos: usize,
    /// Line and column just past the text, for "unexpected end" errors.
    end: (usize, usize),
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|l| &l.tok)
    }

    fn here(&self) -> (usize, usize) {
        self.toks
            .get(self.pos)
            .map(|l| (l.line, l.col))
            .unwrap_or(self.end)
    }

    fn fail<T>(&self, why: impl Into<String>) -> Result<T, NotationError> {
        let (line, col) = self.here();
        Err(err(line, col, why))
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), NotationError> {
        if self.eat(t) {
            Ok(())
        } else {
            self.fail(format!("expected {what}"))
        }
    }

    fn seq(&mut self) -> Result<Syn, NotationError> {
        let mut l = self.grad()?;
        while self.eat(&Tok::Semi) {
            let r = self.grad()?;
            l = app(Op::GAdd([z(); 2]), vec![l, r]);
        }
        Ok(l)
    }

    fn grad(&mut self) -> Result<Syn, NotationError> {
        if !self.eat(&Tok::Nabla) {
            return self.sum();
        }
        let slot = self.atom()?;
        self.expect(&Tok::Eq, "= after ∇NAME")?;
        let w = self.sum()?;
        Ok(app(Op::Grad([z(); 2]), vec![slot, w]))
    }

    fn sum(&mut self) -> Result<Syn, NotationError> {
        let mut l = self.prod()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Plus) => Op::Add([z(); 2]),
                Some(Tok::Minus) => Op::Sub([z(); 2]),
                _ => return Ok(l),
            };
            self.pos += 1;
            let r = self.prod()?;
            l = app(op, vec![l, r]);
        }
    }

    fn prod(&mut self) -> Result<Syn, NotationError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Odot) => Op::Mul([z(); 2]),
                Some(Tok::Dot) => Op::Bmm([z(); 2]),
                Some(Tok::Slash) => Op::Div([z(); 2]),
                _ => return Ok(l),
            };
            self.pos += 1;
            let r = self.unary()?;
            l = app(op, vec![l, r]);
        }
    }

    fn unary(&mut self) -> Result<Syn, NotationError> {
        if !self.eat(&Tok::Minus) {
            return self.postfix();
        }
        // `−2` touching is the number −2; `−(2)` is the negation of 2.
        let minus_end = self.toks[self.pos - 1].end;
        if let Some(Lexed {
            tok: Tok::Number(n),
            start,
            ..
        }) = self.toks.get(self.pos)
        {
            if *start == minus_end {
                let lit = Syn::Leaf(Op::Num(Const(-n.0.clone())));
                self.pos += 1;
                return self.postfixes(lit);
            }
        }
        let x = self.unary()?;
        Ok(app(Op::Neg([z(); 1]), vec![x]))
    }

    fn postfix(&mut self) -> Result<Syn, NotationError> {
        let a = self.atom()?;
        self.postfixes(a)
    }

    fn postfixes(&mut self, mut a: Syn) -> Result<Syn, NotationError> {
        loop {
            let op = match self.peek() {
                Some(Tok::T) => Op::Transpose([z(); 1]),
                Some(Tok::Inv) => Op::Inv([z(); 1]),
                _ => return Ok(a),
            };
            self.pos += 1;
            a = app(op, vec![a]);
        }
    }

    fn atom(&mut self) -> Result<Syn, NotationError> {
        let (line, col) = self.here();
        let Some(tok) = self.peek().cloned() else {
            return self.fail("unexpected end of the term");
        };
        self.pos += 1;
        match tok {
            Tok::Number(n) => Ok(Syn::Leaf(Op::Num(n))),
            Tok::Quoted(name) => Ok(Syn::Leaf(Op::Input(Symbol::from(name)))),
            Tok::Param(name) => match format!("@{name}").parse::<crate::ir::ParamName>() {
                Ok(p) => Ok(Syn::Leaf(Op::Param(p))),
                Err(why) => Err(err(line, col, why)),
            },
            Tok::Tangent(name) => Ok(app(
                Op::Tan([z(); 1]),
                vec![Syn::Leaf(Op::Input(Symbol::from(name)))],
            )),
            Tok::Open => {
                let e = self.seq()?;
                self.expect(&Tok::Close, ")")?;
                Ok(e)
            }
            Tok::Name(word) if RESERVED.contains(&word.as_str()) => self.call(&word),
            Tok::Name(word) => Ok(Syn::Name(word, line, col)),
            other => Err(err(line, col, format!("expected a term, found {other:?}"))),
        }
    }

    fn call(&mut self, word: &str) -> Result<Syn, NotationError> {
        let (op, arity) = match word {
            "exp" => (Op::Exp([z(); 1]), 1),
            "rowsum" => (Op::RowSum([z(); 1]), 1),
            "softmax" => (Op::Softmax([z(); 1]), 1),
            "d" => (Op::Jvp([z(); 1]), 1),
            "tan" => (Op::Tan([z(); 1]), 1),
            "vjp" => (Op::Vjp([z(); 2]), 2),
            "adj" => (Op::Adj([z(); 2]), 2),
            "split" => (Op::Split([z(); 2]), 2),
            "merge" => (Op::Merge([z(); 2]), 2),
            "reshape" => (Op::Reshape([z(); 2]), 2),
            "unreshape" => (Op::Unreshape([z(); 2]), 2),
            "flat" => (Op::Flat([z(); 2]), 2),
            "unflat" => (Op::Unflat([z(); 2]), 2),
            "swap" => (Op::Swap([z(); 1]), 1),
            _ => return self.fail(format!("{word} is reserved: quote a name as «{word}»")),
        };
        self.expect(&Tok::Open, &format!("( after {word}"))?;
        let mut args = vec![self.seq()?];
        while self.eat(&Tok::Comma) {
            args.push(self.seq()?);
        }
        self.expect(&Tok::Close, ")")?;
        if args.len() != arity {
            return self.fail(format!(
                "{word} takes {arity} argument(s), got {}",
                args.len()
            ));
        }
        Ok(app(op, args))
    }
}

/// Parses the notation (a term, optionally followed by `where NAME = TERM, …`) to a
/// term of the IR. Errors name the line and column.
pub fn parse(text: &str) -> Result<Expr, NotationError> {
    let toks = lex(text)?;
    let lines: Vec<&str> = text.split('\n').collect();
    let end = (
        lines.len(),
        lines.last().map_or(0, |l| l.chars().count()) + 1,
    );
    let mut p = Parser { toks, pos: 0, end };
    let body = p.seq()?;
    let mut defs: HashMap<String, Syn> = HashMap::new();
    if p.eat(&Tok::Where) {
        loop {
            let name = match p.peek().cloned() {
                Some(Tok::Name(n)) if !RESERVED.contains(&n.as_str()) => n,
                _ => return p.fail("expected a name to define"),
            };
            p.pos += 1;
            p.expect(&Tok::Eq, "=")?;
            let def = p.seq()?;
            if defs.insert(name.clone(), def).is_some() {
                return p.fail(format!("{name} is defined twice"));
            }
            if !p.eat(&Tok::Comma) {
                break;
            }
        }
    }
    if p.peek().is_some() {
        return p.fail("unexpected text after the term");
    }
    let mut out = Expr::default();
    resolve(&body, &defs, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn resolve(
    syn: &Syn,
    defs: &HashMap<String, Syn>,
    open: &mut Vec<String>,
    out: &mut Expr,
) -> Result<Id, NotationError> {
    match syn {
        Syn::Leaf(op) => Ok(out.add(op.clone())),
        Syn::Name(name, line, col) => match defs.get(name) {
            None => Ok(out.add(Op::Input(Symbol::from(name.as_str())))),
            Some(_) if open.contains(name) => Err(err(
                *line,
                *col,
                format!("{name} is defined in terms of itself"),
            )),
            Some(def) => {
                open.push(name.clone());
                let id = resolve(def, defs, open, out)?;
                open.pop();
                Ok(id)
            }
        },
        Syn::App(op, args) => {
            let ids = args
                .iter()
                .map(|a| resolve(a, defs, open, out))
                .collect::<Result<Vec<Id>, _>>()?;
            let mut it = ids.into_iter();
            let node = op.clone().map_children(|z| it.next().unwrap_or(z));
            Ok(out.add(node))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sexp(text: &str) -> String {
        parse(text).unwrap().to_string()
    }

    #[test]
    fn where_clauses_substitute_in_any_order() {
        assert_eq!(
            sexp("∇X = s ⊙ (G − rowsum(s ⊙ G)) where s = softmax(X)"),
            "(grad X (* (softmax X) (- G (rowsum (* (softmax X) G)))))"
        );
        assert_eq!(
            sexp("u ⊙ u where u = r⁻¹, r = rowsum(e), e = exp(X)"),
            "(* (inv (rowsum (exp X))) (inv (rowsum (exp X))))"
        );
    }

    #[test]
    fn numbers_fractions_and_minus_signs() {
        assert_eq!(sexp("−1/2 ⊙ dA"), "(* -1/2 (tan A))");
        assert_eq!(sexp("1 / 2"), "(/ 1 2)");
        assert_eq!(sexp("−(2)"), "(neg 2)");
        assert_eq!(sexp("A − −2ᵀ"), "(- A (T -2))");
        assert_eq!(sexp("0.25 ⊙ X"), "(* 1/4 X)");
    }

    #[test]
    fn bad_notation_is_refused_with_its_position() {
        for (text, line, column) in [
            ("A ⊙", 1, 4),
            ("exp X", 1, 5),
            ("(A + B", 1, 7),
            ("s\n  where s = s", 2, 13),
            ("A where s = B, s = C", 1, 21),
            ("A ? B", 1, 3),
            ("vjp(A)", 1, 7),
            ("A B", 1, 3),
        ] {
            match parse(text) {
                Err(NotationError::Parse {
                    line: l, column: c, ..
                }) => assert_eq!((l, c), (line, column), "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }
}

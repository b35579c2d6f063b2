//! Exact rational arithmetic for the ball rung's hot loops, with the same results as
//! `num_rational`'s operators (every result is reduced, so equal values are equal
//! representations) but a faster gcd.
//!
//! `num_bigint`'s gcd is Stein's binary algorithm, which takes about one iteration per
//! bit of the larger operand when the other is small: reducing a dyadic k/2ʲ with a
//! 1000-bit k costs some 500 shift-and-subtract passes over k, although the gcd is a
//! power of two read off the trailing zeros. [`gcd`] strips the common power of two
//! first, returns at once when an odd part is 1, and takes a Euclidean remainder step
//! while the operands differ in size by more than a word; only then does it fall back
//! to Stein's algorithm. [`add`], [`sub`] and [`mul`] are Knuth's (TAOCP 4.5.1): the
//! gcds are taken of the smaller operands, and the result is reduced.

use crate::scalar::Rational;
use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{One, Zero};

/// gcd(a, b) of magnitudes, equal to `num_integer::Integer::gcd`.
pub fn gcd(a: &BigUint, b: &BigUint) -> BigUint {
    let (Some(ta), Some(tb)) = (a.trailing_zeros(), b.trailing_zeros()) else {
        // One of them is zero: gcd(0, b) = b.
        return if a.is_zero() { b.clone() } else { a.clone() };
    };
    let shift = ta.min(tb);
    let (mut x, mut y) = (a >> ta, b >> tb);
    // x, y odd; gcd(a, b) = 2^shift · gcd(x, y).
    loop {
        if x.is_one() || y.is_one() {
            return BigUint::one() << shift;
        }
        if x < y {
            std::mem::swap(&mut x, &mut y);
        }
        if x.bits() <= y.bits() + 64 {
            return x.gcd(&y) << shift;
        }
        // gcd(x, y) = gcd(x mod y, y), and y is odd, so the 2s of x mod y go too.
        x = &x % &y;
        match x.trailing_zeros() {
            None => return y << shift,
            Some(t) => x >>= t,
        }
    }
}

/// `n / g` for `g` dividing `n`: [`div_exact_u`] of the magnitude, sign kept.
fn div_exact(n: &BigInt, g: &BigUint) -> BigInt {
    BigInt::from_biguint(n.sign(), div_exact_u(n.magnitude(), g))
}

/// `n / g` for magnitudes, `g` dividing `n` (a shift when `g` is a power of two).
fn div_exact_u(n: &BigUint, g: &BigUint) -> BigUint {
    if g.is_one() {
        return n.clone();
    }
    match g.trailing_zeros() {
        Some(t) if g.bits() == t + 1 => n >> t,
        _ => n / g,
    }
}

/// `p/q` from a numerator and a positive denominator known to be coprime.
fn raw(p: BigInt, q: BigUint) -> Rational {
    Rational::new_raw(p, BigInt::from_biguint(Sign::Plus, q))
}

/// The denominator's magnitude (positive in a reduced `Rational`).
fn den(x: &Rational) -> &BigUint {
    x.denom().magnitude()
}

/// `x · y`, reduced.
pub fn mul(x: &Rational, y: &Rational) -> Rational {
    if x.is_zero() || y.is_zero() {
        return Rational::zero();
    }
    let g1 = gcd(x.numer().magnitude(), den(y));
    let g2 = gcd(y.numer().magnitude(), den(x));
    let p = div_exact(x.numer(), &g1) * div_exact(y.numer(), &g2);
    let q = div_exact_u(den(x), &g2) * div_exact_u(den(y), &g1);
    raw(p, q)
}

/// `x + y`, reduced.
pub fn add(x: &Rational, y: &Rational) -> Rational {
    if x.is_zero() {
        return y.clone();
    }
    if y.is_zero() {
        return x.clone();
    }
    let (u, v) = (den(x), den(y));
    let d1 = gcd(u, v);
    if d1.is_one() {
        let p = x.numer() * BigInt::from_biguint(Sign::Plus, v.clone())
            + y.numer() * BigInt::from_biguint(Sign::Plus, u.clone());
        return raw(p, u * v);
    }
    let (u1, v1) = (div_exact_u(u, &d1), div_exact_u(v, &d1));
    let t = x.numer() * BigInt::from_biguint(Sign::Plus, v1.clone())
        + y.numer() * BigInt::from_biguint(Sign::Plus, u1.clone());
    if t.is_zero() {
        return Rational::zero();
    }
    let d2 = gcd(t.magnitude(), &d1);
    raw(div_exact(&t, &d2), u1 * div_exact_u(v, &d2))
}

/// `x − y`, reduced.
pub fn sub(x: &Rational, y: &Rational) -> Rational {
    add(x, &-y.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(p: i64, s: u32, d: u64) -> Rational {
        // p / (2^s · d): dyadic and general denominators, big numerators.
        let big = BigInt::from(p) * (BigInt::one() << (s as usize * 3));
        Rational::new(
            big + BigInt::from(p),
            (BigInt::one() << s) * BigInt::from(d),
        )
    }

    proptest! {
        #[test]
        fn the_ops_equal_num_rationals(
            a in (-1000i64..1000, 0u32..200, 1u64..5000),
            b in (-1000i64..1000, 0u32..200, 1u64..5000),
        ) {
            let (x, y) = (q(a.0, a.1, a.2), q(b.0, b.1, b.2));
            prop_assert_eq!(add(&x, &y), x.clone() + y.clone());
            prop_assert_eq!(sub(&x, &y), x.clone() - y.clone());
            prop_assert_eq!(mul(&x, &y), x.clone() * y.clone());
            let (m, n) = (x.numer().magnitude(), y.denom().magnitude());
            prop_assert_eq!(gcd(m, n), m.gcd(n));
        }
    }

    #[test]
    fn the_results_are_reduced_as_num_rationals_are() {
        let x = Rational::new(BigInt::from(3), BigInt::from(4));
        let y = Rational::new(BigInt::from(5), BigInt::from(4));
        let s = add(&x, &y);
        assert_eq!((s.numer().clone(), s.denom().clone()), (2.into(), 1.into()));
        let z = sub(&x, &x);
        assert!(z.is_zero() && z.denom().is_one());
        let p = mul(&x, &Rational::new(BigInt::from(-8), BigInt::from(9)));
        assert_eq!(
            (p.numer().clone(), p.denom().clone()),
            ((-2).into(), 3.into())
        );
        assert_eq!(
            gcd(&BigUint::zero(), &BigUint::from(6u8)),
            BigUint::from(6u8)
        );
    }
}

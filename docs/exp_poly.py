"""Reproduces `runtime::EXP_POLY`, the exp's polynomial (docs/numerics.md, step 3).

e^r - 1 ~ r * P(r), P(r) = sum c_i r^i (i <= 7), on |r| <= 0.0867 (the reduction
x = k ln2/4 + r). c_0 = 1 and c_1 = 1/2 are kept exact; c_2..c_7 minimize
max |r P(r) - (e^r - 1)| over 4 001 points, solved as a linear program on the
corrections to Taylor's coefficients (scaled so the program sees numbers of order 1),
then rounded to f64. Prints the Rust constant and the sampled error; the exact bound
is the test `the_exp_polynomial_is_within_a_fortieth_of_an_ulp_of_expm1`.

    pip install numpy scipy mpmath && python3 docs/exp_poly.py
"""
import struct

import mpmath as mp
import numpy as np
from scipy.optimize import linprog

mp.mp.dps = 50
REACH = mp.mpf("0.0867")
TAYLOR = [1 / mp.factorial(i + 1) for i in range(8)]  # c_i, coefficient of r^(i+1)
SCALE = REACH**9 / mp.factorial(9)  # the size of Taylor's first dropped term
S = np.linspace(-1, 1, 4001)  # r = REACH * s


def tail(s):
    """(e^r - 1 - r * Taylor_7(r)) / SCALE at r = REACH * s."""
    r = REACH * mp.mpf(s)
    return float((mp.expm1(r) - sum(TAYLOR[i] * r ** (i + 1) for i in range(8))) / SCALE)


def fit():
    """c_0..c_7 with c_0, c_1 exact and c_2..c_7 the minimax corrections."""
    t = np.array([tail(s) for s in S])
    basis = np.column_stack([S ** (i + 1) for i in range(2, 8)])
    n = basis.shape[1]
    ones = np.ones((len(S), 1))
    a_ub = np.vstack([np.hstack([basis, -ones]), np.hstack([-basis, -ones])])
    b_ub = np.concatenate([t, -t])
    cost = np.zeros(n + 1)
    cost[-1] = 1
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(None, None)] * (n + 1), method="highs")
    assert res.success, res.message
    d = [0.0, 0.0] + list(res.x[:n])
    return [float(TAYLOR[i] + mp.mpf(d[i]) * SCALE / REACH ** (i + 1)) for i in range(8)]


def worst_ulps(c):
    """The largest |r P(r) - (e^r - 1)| / e^r in units of 2^-52 on 2 001 points."""
    worst = mp.mpf(0)
    for s in np.linspace(-1, 1, 2001):
        r = REACH * mp.mpf(s)
        p = mp.mpf(0)
        for ci in reversed(c):
            p = p * r + mp.mpf(ci)
        worst = max(worst, abs(r * p - mp.expm1(r)) / mp.exp(r))
    return float(worst / mp.mpf(2) ** -52)


def main():
    c = fit()
    print("pub const EXP_POLY: [f64; 8] = [")
    for v in reversed(c):
        b = struct.unpack("<Q", struct.pack("<d", v))[0]
        h = f"{b:016X}"
        print(f"    f64::from_bits(0x{h[0:4]}_{h[4:8]}_{h[8:12]}_{h[12:16]}), // {v!r}")
    print("];")
    print(f"sampled error: {worst_ulps(c):.4f} ulps (Taylor's: {worst_ulps([float(t) for t in TAYLOR]):.2f})")


if __name__ == "__main__":
    main()

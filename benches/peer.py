#!/usr/bin/env python3
"""Peer timings for docs/performance.md: NumPy and JAX (CPU, float64, jit) on the
shapes of `fderiv bench`, the same kernels (forward, JVP, VJP of matmul and the
last-axis softmax; the softmax JVP/VJP read the saved forward output S, as fderiv's
kernels do), and multi-head attention (`mha_h4`, `mha_h8`, PyTorch layout, the term of
fderiv.toml) at (n, d_model, h, d) = (128, 256, 4, 64) and (512, 512, 8, 64), c = 1/√d:

    forward     Y only
    fwd+vjp     the forward and the backward for a cotangent G (gx, gWq, gWk, gWv, gWo);
                JAX: y, pullback = jax.vjp(jax.jit(f), ...), then pullback(G)
    jit(vjp) JAX only: the same, the whole step in one jax.jit

NumPy's MHA is the hand-written forward and backward of tests/mha_reference.py; JAX's
forward function is the one there too. Optional, not run in CI.

    pip install numpy jax
    python3 benches/peer.py [--reps 15] [--json] [--ops mha_h4,mha_h8]

Prints one row per (library, op, mode, shape): the median wall time of one call,
output allocation included (as `fderiv bench`'s `alloc` form); the jit warm-up call is
not timed.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import mha_reference  # noqa: E402

MATMUL = [(8, 64, 64, 64), (16, 128, 128, 128), (8, 512, 512, 512)]
SOFTMAX = [(16, 128, 128), (8, 512, 512), (32, 1024, 1024)]
# (n, d_model, h, d) per MHA kernel.
MHA = {"mha_h4": (128, 256, 4, 64), "mha_h8": (512, 512, 8, 64)}


def data(shape, seed):
    n = int(np.prod(shape))
    return (((np.arange(n) * 7919 + seed * 104729) % 1000) / 500.0 - 1.0).reshape(shape)


def numpy_kernels():
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return {
        ("matmul", "forward"): lambda a, b: a @ b,
        ("matmul", "jvp"): lambda a, b, da, db: da @ b + a @ db,
        ("matmul", "vjp"): lambda a, b, g: (g @ b.swapaxes(-1, -2), a.swapaxes(-1, -2) @ g),
        ("softmax_last", "forward"): softmax,
        ("softmax_last", "jvp"): lambda s, dx: s * (dx - (s * dx).sum(axis=-1, keepdims=True)),
        ("softmax_last", "vjp"): lambda s, g: s * (g - (s * g).sum(axis=-1, keepdims=True)),
        **{k: v for op in MHA for k, v in numpy_mha(op).items()},
    }


def mha_dict(x, wq, wk, wv, wo, c, g=None):
    t = {"x": x, "Wq": wq, "Wk": wk, "Wv": wv, "Wo": wo, "c": c}
    if g is not None:
        t["G"] = g
    return t


def numpy_mha(op):
    h = MHA[op][2]
    return {
        (op, "forward"): lambda *a: mha_reference.numpy_forward(mha_dict(*a), h, "pytorch")["Y"],
        (op, "fwd+vjp"): lambda *a: mha_reference.numpy_vjp(mha_dict(*a), h, "pytorch"),
    }


def jax_mha(jax, op):
    h, c = MHA[op][2], 1.0 / np.sqrt(MHA[op][3])
    f = mha_reference.jax_forward_fn(jax, h, "pytorch", c)
    fj = jax.jit(f)

    def fwd_vjp(x, wq, wk, wv, wo, c, g):
        y, pullback, _ = jax.vjp(fj, x, wq, wk, wv, wo, has_aux=True)
        return y, pullback(g)

    def step(x, wq, wk, wv, wo, g):
        y, pullback, _ = jax.vjp(f, x, wq, wk, wv, wo, has_aux=True)
        return y, pullback(g)

    step_j = jax.jit(step)
    return {
        (op, "forward"): jax.jit(lambda x, wq, wk, wv, wo, c: f(x, wq, wk, wv, wo)[0]),
        (op, "fwd+vjp"): fwd_vjp,
        (op, "jit(vjp)"): lambda x, wq, wk, wv, wo, c, g: step_j(x, wq, wk, wv, wo, g),
    }


def jax_kernels():
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp

    ks = {
        ("matmul", "forward"): lambda a, b: a @ b,
        ("matmul", "jvp"): lambda a, b, da, db: da @ b + a @ db,
        ("matmul", "vjp"): lambda a, b, g: (g @ jnp.swapaxes(b, -1, -2), jnp.swapaxes(a, -1, -2) @ g),
        ("softmax_last", "forward"): lambda x: jax.nn.softmax(x, axis=-1),
        ("softmax_last", "jvp"): lambda s, dx: s * (dx - (s * dx).sum(axis=-1, keepdims=True)),
        ("softmax_last", "vjp"): lambda s, g: s * (g - (s * g).sum(axis=-1, keepdims=True)),
    }
    jitted = {k: jax.jit(f) for k, f in ks.items()}
    for op in MHA:
        jitted.update(jax_mha(jax, op))

    def run(f):
        return lambda *xs: jax.block_until_ready(f(*xs))

    return {k: run(f) for k, f in jitted.items()}, (lambda x: jnp.asarray(x))


def inputs(op, mode, shape):
    if op in MHA:
        n, m, h, d = shape
        xs = [data((n, m), 0)] + [data(s, i) / np.sqrt(s[0]) for i, s in
                                  enumerate([(m, h * d)] * 3 + [(h * d, m)], 1)]
        return xs + [1.0 / np.sqrt(d)] + ([] if mode == "forward" else [data((n, m), 5)])
    if op == "matmul":
        h, m, n, p = shape
        a, b = data((h, m, n), 0), data((h, n, p), 1)
        return {"forward": [a, b], "jvp": [a, b, data((h, m, n), 2), data((h, n, p), 3)],
                "vjp": [a, b, data((h, m, p), 2)]}[mode]
    x = data(shape, 0)
    if mode == "forward":
        return [x]
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return [e / e.sum(axis=-1, keepdims=True), data(shape, 1)]


def median(f, xs, reps):
    f(*xs)
    times = []
    start = time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - start < 2.0):
        t = time.perf_counter()
        f(*xs)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--ops", help="comma-separated ops to time (default: all)")
    args = ap.parse_args()
    ops = None if args.ops is None else set(args.ops.split(","))
    libs = [("numpy", numpy_kernels(), lambda x: x)]
    try:
        jk, conv = jax_kernels()
        libs.append(("jax-jit", jk, conv))
    except ImportError:
        print("jax not installed: NumPy only")
    rows = []
    for lib, ks, conv in libs:
        for (op, mode), f in ks.items():
            if ops is not None and op not in ops:
                continue
            for shape in [MHA[op]] if op in MHA else MATMUL if op == "matmul" else SOFTMAX:
                xs = [conv(x) if isinstance(x, np.ndarray) else x for x in inputs(op, mode, shape)]
                t = median(f, xs, args.reps)
                rows.append({"lib": lib, "op": op, "mode": mode, "shape": list(shape), "median_s": t})
                if not args.json:
                    print(f"{lib:8} {op:13} {mode:8} {'x'.join(map(str, shape)):18} {t * 1e3:10.3f} ms", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

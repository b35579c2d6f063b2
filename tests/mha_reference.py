#!/usr/bin/env python3
"""Independent references for fderiv's multi-head attention kernels (`mha_h4`, `mha_h8`,
`mha_lean_h4` in fderiv.toml): a NumPy forward and backward written by hand from the
math, and `jax.vjp` of the same forward (JAX, float64, CPU) when JAX is importable.

Forward, for x: n×m, Wq, Wk, Wv: m×(h·d), Wo: (h·d)×m, scalar c:

    Q = split(x·Wq), K = split(x·Wk), V = split(x·Wv)        (h×n×d)
    P = softmax_last(c · Q·Kᵀ)                                (h×n×n, per head)
    O = merge(P·V)                                            (n×(h·d))
    Y = O·Wo                                                  (n×m)

    PyTorch layout: split(A) = A.view(n, h, d).transpose(0, 1)
    Lean layout (mhaDGraph): split(A) = A.reshape(h, n, d) (row-major, no transpose)
    both:          merge(H) = H.transpose(0, 1).reshape(n, h·d)

Backward for a cotangent G of Y (the adjoint of a permutation of entries is its inverse):

    gWo = Oᵀ·G          gO = G·Woᵀ           gA = merge⁻¹(gO) (h×n×d)
    gP = gA·Vᵀ          gV = Pᵀ·gA
    gS = P ⊙ (gP − rowsum(P ⊙ gP))           (softmax)
    gQ = c·gS·K         gK = c·gSᵀ·Q
    gQb = split⁻¹(gQ), gKb = split⁻¹(gK), gVb = split⁻¹(gV)   (n×(h·d))
    gWq = xᵀ·gQb, gWk = xᵀ·gKb, gWv = xᵀ·gVb
    gx  = gQb·Wqᵀ + gKb·Wkᵀ + gVb·Wvᵀ

Usage:
    mha_reference.py gen DIR [--seed N]   write random cases and DIR/manifest.json
    mha_reference.py check DIR            compare DIR's outputs with NumPy (and JAX)
    mha_reference.py all DIR [--fderiv CMD] [--seed N]
        gen, run `CMD run KERNEL MODE --input ... --param c=... --out ...` per case, check

Each vjp case is run twice: from the saved tensors (P, Q, K, V, O given, as the
forward writes them) and from recomputation (only x and the weights given).
`check` compares every output to 1e-12 relative to NumPy and 1e-11 to JAX (per entry,
against max(|ref|, 1e-3·max|ref|), as tests/numpy_reference.py; see TOLERANCE), checks the layout rows (the
Lean kernel's Y differs from the PyTorch-layout reference exactly when n ≥ 2, since
h = 4 ≥ 2), prints summary lines and exits 1 if anything fails. Without JAX it says
so loudly and compares with NumPy only; `--require-jax` makes that a failure.
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_reference import RTOL, cli, compare, softmax  # noqa: E402

# kernel → (heads, layout)
KERNELS = {"mha_h4": (4, "pytorch"), "mha_h8": (8, "pytorch"), "mha_lean_h4": (4, "lean")}
# (n, m, d) per kernel: odd sizes from {1, 2, 3, 5, 7}, n = 0, and m = 0, d = 0 once.
SHAPES = {
    "mha_h4": [(1, 1, 1), (2, 3, 1), (3, 5, 2), (5, 7, 3), (7, 2, 5), (0, 3, 2), (3, 0, 2), (2, 3, 0)],
    "mha_h8": [(1, 2, 1), (3, 5, 1), (5, 3, 2), (7, 7, 1), (2, 1, 3), (0, 2, 1)],
    "mha_lean_h4": [(1, 3, 2), (1, 7, 1), (2, 2, 1), (3, 5, 1), (5, 7, 2), (7, 1, 3), (0, 5, 1)],
}
# Each case runs one of these: the forward, the vjp from saved tensors, the vjp recomputing them.
RUNS = ["forward", "vjp-saved", "vjp"]
SAVED = ["P", "Q", "K", "V", "O"]
WEIGHTS = ["Wq", "Wk", "Wv", "Wo"]
# Tolerance per reference. NumPy: RTOL (1e-12), as tests/numpy_reference.py. JAX: 1e-11,
# because JAX's own f64 backward (its softmax rule, XLA's evaluation order) rounds
# differently: on seed 0, gWk of mha_h8-vjp-saved-3x5x1 is 1.02e-12 from JAX per entry
# (normwise 1.9e-15) and 5e-16 from NumPy, and JAX is 1.02e-12 from NumPy there. Over
# seeds 0-3 and 7 fderiv is within 3.3e-13 of NumPy everywhere. A 1e-9 perturbation is
# caught by both.
TOLERANCE = {"numpy": RTOL, "jax": 1e-11}


def split(a, h, layout):
    n = a.shape[0]
    d = a.shape[1] // h
    if layout == "lean":
        return a.reshape(h, n, d)
    return a.reshape(n, h, d).transpose(1, 0, 2)


def unsplit(g, layout):
    """The adjoint of `split` (its inverse: split only moves entries)."""
    h, n, d = g.shape
    if layout == "lean":
        return g.reshape(n, h * d)
    return merge(g)


def merge(hs):
    h, n, d = hs.shape
    return hs.transpose(1, 0, 2).reshape(n, h * d)


def unmerge(g, h):
    """The adjoint of `merge` (its inverse)."""
    n = g.shape[0]
    return g.reshape(n, h, g.shape[1] // h).transpose(1, 0, 2)


def mT(a):
    return np.swapaxes(a, -1, -2)


def numpy_forward(t, h, layout):
    """Y and the saved tensors, each with the shape fderiv writes."""
    x, c = t["x"], t["c"]
    q, k, v = (split(x @ t[w], h, layout) for w in ("Wq", "Wk", "Wv"))
    p = softmax(c * (q @ mT(k)))
    o = merge(p @ v)
    return {"Y": (o @ t["Wo"])[None], "P": p, "Q": q, "K": k, "V": v, "O": o[None]}


def numpy_vjp(t, h, layout):
    x, c, g = t["x"], t["c"], t["G"]
    f = numpy_forward(t, h, layout)
    p, q, k, v, o = f["P"], f["Q"], f["K"], f["V"], f["O"][0]
    ga = unmerge(g @ t["Wo"].T, h)
    gp = ga @ mT(v)
    gv = mT(p) @ ga
    gs = p * (gp - np.sum(p * gp, axis=-1, keepdims=True))
    gq = c * (gs @ k)
    gk = c * (mT(gs) @ q)
    gqb, gkb, gvb = (unsplit(a, layout) for a in (gq, gk, gv))
    return {
        "gx": (gqb @ t["Wq"].T + gkb @ t["Wk"].T + gvb @ t["Wv"].T)[None],
        "gWq": (x.T @ gqb)[None],
        "gWk": (x.T @ gkb)[None],
        "gWv": (x.T @ gvb)[None],
        "gWo": (o.T @ g)[None],
    }


def jax_module(cache_dir=None):
    """JAX set up for float64 on CPU, or None when it is not importable. With `cache_dir`,
    compiled functions persist there (later `check` runs on the same cases reuse them)."""
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    if cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return jax


def jax_forward_fn(jax, h, layout, c):
    """The forward as a JAX function of (x, Wq, Wk, Wv, Wo) returning (Y, saved)."""
    jnp = jax.numpy

    def jsplit(a):
        n, hd = a.shape
        if layout == "lean":
            return jnp.reshape(a, (h, n, hd // h))
        return jnp.transpose(jnp.reshape(a, (n, h, hd // h)), (1, 0, 2))

    def jmerge(hs):
        _, n, d = hs.shape
        return jnp.reshape(jnp.transpose(hs, (1, 0, 2)), (n, h * d))

    def f(x, wq, wk, wv, wo):
        q, k, v = jsplit(x @ wq), jsplit(x @ wk), jsplit(x @ wv)
        p = jax.nn.softmax(c * (q @ jnp.swapaxes(k, -1, -2)), axis=-1)
        o = jmerge(p @ v)
        return o @ wo, {"P": p, "Q": q, "K": k, "V": v, "O": o}

    return f


JITTED = {}


def jax_reference(jax, mode, t, h, layout):
    """Y and the saved tensors (forward) or the five gradients (vjp): `jax.vjp` of the
    forward, jitted (one compilation per layout and shape)."""
    if (h, layout) not in JITTED:
        def both(c, x, wq, wk, wv, wo, g):
            y, pullback, saved = jax.vjp(jax_forward_fn(jax, h, layout, c), x, wq, wk, wv, wo,
                                         has_aux=True)
            return y, saved, pullback(g)

        JITTED[(h, layout)] = jax.jit(both)
    g = t.get("G", np.zeros_like(t["x"]))
    y, saved, grads = JITTED[(h, layout)](t["c"], t["x"], *[t[w] for w in WEIGHTS], g)
    if mode == "forward":
        out = {"Y": y[None]}
        out.update({k: (v[None] if k == "O" else v) for k, v in saved.items()})
    else:
        out = {name: gr[None] for name, gr in zip(["gx", "gWq", "gWk", "gWv", "gWo"], grads)}
    return {k: np.asarray(v) for k, v in out.items()}


def numpy_reference(mode, t, h, layout):
    return numpy_forward(t, h, layout) if mode == "forward" else numpy_vjp(t, h, layout)


def arrays(root, c):
    """A case's inputs as 2-D arrays plus c (fderiv's files are 1×a×b)."""
    t = {k: np.load(os.path.join(root, rel)) for k, rel in c["inputs"].items()}
    t = {k: (v[0] if k in ["x", "G"] + WEIGHTS and v.ndim == 3 else v) for k, v in t.items()}
    t["c"] = c["params"]["c"]
    return t


def witness_inputs(m=2, d=1, n=2):
    """docs/mha-layout.md's witness with h = 4: Wq = Wk = 0, x[0][0] = Wv[0][d] = Wo[0][0] = 1."""
    h = 4
    x = np.zeros((n, m))
    x[0, 0] = 1.0
    wv = np.zeros((m, h * d))
    wv[0, d] = 1.0
    wo = np.zeros((h * d, m))
    wo[0, 0] = 1.0
    return {"x": x, "Wq": np.zeros((m, h * d)), "Wk": np.zeros((m, h * d)), "Wv": wv, "Wo": wo}


def gen(root, seed):
    rng = np.random.default_rng(seed)
    cases = []

    def add(kernel, run, dims, t):
        name = f"{kernel}-{run}-" + "x".join(map(str, dims))
        os.makedirs(os.path.join(root, name), exist_ok=True)
        h, layout = KERNELS[kernel]
        arrs = {k: t[k] for k in ["x"] + WEIGHTS}
        if run != "forward":
            arrs["G"] = t["G"]
        if run == "vjp-saved":
            ref = numpy_forward(t, h, layout)
            arrs.update({k: ref[k] for k in SAVED})
        inputs = {}
        for k, arr in arrs.items():
            rel = os.path.join(name, f"{k}.npy")
            # x as rank 2 in some cases: fderiv reads an n×m file as 1×n×m.
            keep2 = k == "x" and isinstance(dims[0], int) and dims[0] % 2 == 1
            np.save(os.path.join(root, rel), np.ascontiguousarray(arr if keep2 or arr.ndim == 3 else arr[None]))
            inputs[k] = rel
        mode = "forward" if run == "forward" else "vjp"
        outputs = ["Y"] + SAVED if mode == "forward" else ["gx", "gWq", "gWk", "gWv", "gWo"]
        cases.append({"case": name, "kernel": kernel, "mode": mode, "run": run, "dims": list(dims),
                      "inputs": inputs, "params": {"c": t["c"]}, "out": os.path.join(name, "out"),
                      "outputs": outputs})

    for kernel, shapes in SHAPES.items():
        h, _ = KERNELS[kernel]
        for dims in shapes:
            n, m, d = dims
            t = {"x": rng.standard_normal((n, m)), "G": rng.standard_normal((n, m)),
                 "c": float(rng.uniform(0.5, 1.5) / np.sqrt(max(d, 1)))}
            for w in ("Wq", "Wk", "Wv"):
                t[w] = rng.standard_normal((m, h * d))
            t["Wo"] = rng.standard_normal((h * d, m))
            for run in RUNS:
                add(kernel, run, dims, t)
    # The layout witness (docs/mha-layout.md) on both 4-head kernels, forward.
    w = witness_inputs()
    w["c"] = 0.5
    for kernel in ("mha_h4", "mha_lean_h4"):
        add(kernel, "forward", ("witness", 2, 2, 1), w)
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    return cases


def compare_outputs(root, c, refs, label, tol):
    """Compares the case's output files with `refs`; returns (ok, worst error, outputs)."""
    ok, worst, count = True, 0.0, 0
    for name in c["outputs"]:
        path = os.path.join(root, c["out"], f"{name}.npy")
        if not os.path.exists(path):
            print(f"FAIL {c['case']}: {name}.npy was not written", file=sys.stderr)
            return False, worst, count
        count += 1
        err = compare(np.load(path), refs[name])
        if isinstance(err, str) or err > tol:
            print(f"FAIL {c['case']}: {name} vs {label}: {err}", file=sys.stderr)
            ok = False
        else:
            worst = max(worst, err)
    return ok, worst, count


def layout_row(root, c, t):
    """The Lean kernel's Y against the PyTorch-layout NumPy block: they must differ exactly
    when n ≥ 2 (h = 4), agree when n ≤ 1. Returns True when that holds."""
    got = np.load(os.path.join(root, c["out"], "Y.npy"))
    want = numpy_forward(t, 4, "pytorch")["Y"]
    err = compare(got, want)
    n = t["x"].shape[0]
    differs = isinstance(err, str) or err > RTOL
    expected = n >= 2
    verdict = "differs from" if differs else "equals"
    print(f"layout: mha_lean_h4 Y {verdict} the PyTorch-layout NumPy block at "
          f"(n, m, h, d) = ({n}, {t['x'].shape[1]}, 4, {t['Wq'].shape[1] // 4}) "
          f"(max rel {err if isinstance(err, str) else f'{err:.1e}'}; expected "
          f"{'differs' if expected else 'equals'})")
    if c["dims"][0] == "witness":
        lean = np.array([[[0.5, 0.0], [0.5, 0.0]]])
        exact = np.array_equal(got, lean) and np.array_equal(want, np.zeros_like(want))
        print(f"layout witness: mha_lean_h4 Y = {got.tolist()}, PyTorch-layout NumPy Y = "
              f"{want.tolist()} ({'as docs/mha-layout.md says' if exact else 'NOT as docs/mha-layout.md says'})")
        if not exact:
            return False
    return differs == expected


def check(root, require_jax):
    with open(os.path.join(root, "manifest.json")) as f:
        cases = json.load(f)
    jax = jax_module(os.path.join(root, "jax-cache"))
    if jax is None:
        print("=" * 72)
        print("JAX IS NOT IMPORTABLE: the jax.vjp comparison is SKIPPED; NumPy only")
        print("(pip install -r requirements-dev.txt installs it)")
        print("=" * 72)
        if require_jax:
            return False
    tally = {"numpy": [0, 0, 0.0, 0], "jax": [0, 0, 0.0, 0]}
    layout_ok, layout_rows = 0, 0
    for c in cases:
        h, layout = KERNELS[c["kernel"]]
        t = arrays(root, c)
        refs = {"numpy": numpy_reference(c["mode"], t, h, layout)}
        if jax is not None:
            refs["jax"] = jax_reference(jax, c["mode"], t, h, layout)
        for lib, ref in refs.items():
            ok, worst, count = compare_outputs(root, c, ref, lib, TOLERANCE[lib])
            s = tally[lib]
            s[0], s[1], s[2], s[3] = s[0] + ok, s[1] + (not ok), max(s[2], worst), s[3] + count
        if c["kernel"] == "mha_lean_h4" and c["mode"] == "forward":
            layout_rows += 1
            layout_ok += layout_row(root, c, t)
    failed = 0
    for lib in ["numpy"] + ([] if jax is None else ["jax"]):
        p, fl, worst, count = tally[lib]
        failed += fl
        print(f"mha {lib} reference: {p} cases agree, {fl} disagree "
              f"({count} outputs, max relative error {worst:.2e}, tolerance {TOLERANCE[lib]:.0e})")
    print(f"mha layout rows: {layout_ok} of {layout_rows} as expected")
    return failed == 0 and layout_ok == layout_rows


if __name__ == "__main__":
    sys.exit(cli(__doc__, gen, check, ["require_jax"]))

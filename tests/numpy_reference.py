#!/usr/bin/env python3
"""An independent NumPy reference for `fderiv run`, written from the math alone.

    C  = A @ B                      dC = dA @ B + A @ dB
    gA = G @ Bᵀ                     gB = Aᵀ @ G
    S  = softmax(X) (row max subtracted)
    dS = S * (dX - sum(S * dX, -1))   gX = S * (G - sum(S * G, -1))

Usage:
    numpy_reference.py gen DIR [--seed N]   write random cases and DIR/manifest.json
    numpy_reference.py check DIR            compare DIR's outputs with NumPy
    numpy_reference.py all DIR [--fderiv CMD]
        gen, run `CMD run OP MODE --input ... --out ...` per case, check
        (CMD defaults to $FDERIV, else `fderiv`; it may hold arguments, e.g.
        "cargo run --release --")

`check` prints one summary line and exits 1 if any output disagrees by more than
1e-12 relative (per entry, against max(|ref|, 1e-3·max|ref|)).
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

RTOL = 1e-12

# (h, m, n, p) for matmul, (h, m, n) for softmax_last: odd sizes and zero sizes.
MATMUL_SHAPES = [(3, 5, 7, 2), (1, 1, 1, 1), (2, 0, 3, 4), (2, 3, 0, 4), (0, 2, 3, 4), (4, 6, 5, 3)]
SOFTMAX_SHAPES = [(3, 5, 7), (1, 1, 1), (2, 0, 3), (2, 3, 0), (0, 2, 3), (4, 6, 9)]
MODES = ["forward", "jvp", "vjp"]


def softmax(x):
    if x.shape[-1] == 0:
        return x.copy()
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference(op, mode, t):
    """The outputs of `op` in `mode` on the inputs `t` (a dict of arrays)."""
    if op == "matmul":
        a, b = t["A"], t["B"]
        if mode == "forward":
            return {"C": a @ b}
        if mode == "jvp":
            return {"dC": t["dA"] @ b + a @ t["dB"]}
        g = t["G"]
        return {"gA": g @ np.swapaxes(b, -1, -2), "gB": np.swapaxes(a, -1, -2) @ g}
    s = softmax(t["X"])
    if mode == "forward":
        return {"S": s}
    if mode == "jvp":
        dx = t["dX"]
        return {"dS": s * (dx - np.sum(s * dx, axis=-1, keepdims=True))}
    g = t["G"]
    return {"gX": s * (g - np.sum(s * g, axis=-1, keepdims=True))}


def input_shapes(op, mode, dims):
    if op == "matmul":
        h, m, n, p = dims
        shapes = {"A": (h, m, n), "B": (h, n, p)}
        extra = {"jvp": {"dA": (h, m, n), "dB": (h, n, p)}, "vjp": {"G": (h, m, p)}}
    else:
        shapes = {"X": dims}
        extra = {"jvp": {"dX": dims}, "vjp": {"G": dims}}
    shapes.update(extra.get(mode, {}))
    return shapes


def gen(root, seed):
    rng = np.random.default_rng(seed)
    cases = []
    for op, all_dims in [("matmul", MATMUL_SHAPES), ("softmax_last", SOFTMAX_SHAPES)]:
        for dims in all_dims:
            for mode in MODES:
                name = f"{op}-{mode}-" + "x".join(map(str, dims))
                os.makedirs(os.path.join(root, name), exist_ok=True)
                inputs = {}
                for k, shape in input_shapes(op, mode, dims).items():
                    scale = 4.0 if k == "X" else 1.0
                    arr = scale * rng.standard_normal(shape)
                    rel = os.path.join(name, f"{k}.npy")
                    np.save(os.path.join(root, rel), arr)
                    inputs[k] = rel
                outputs = sorted(reference(op, mode, {k: np.zeros(s) for k, s in input_shapes(op, mode, dims).items()}))
                cases.append({"case": name, "op": op, "mode": mode, "inputs": inputs,
                              "out": os.path.join(name, "out"), "outputs": outputs})
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    return cases


def compare(got, want):
    """The largest relative error of `got` against `want`, or a string saying why not comparable."""
    if got.dtype != np.float64:
        return f"dtype {got.dtype}, expected float64"
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if want.size == 0:
        return 0.0
    if not np.all(np.isfinite(got)):
        return "non-finite entries"
    floor = max(1e-3 * float(np.max(np.abs(want))), 1e-300)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), floor)))


def check(root):
    with open(os.path.join(root, "manifest.json")) as f:
        cases = json.load(f)
    passed, failed, worst, outputs = 0, 0, 0.0, 0
    for c in cases:
        t = {k: np.load(os.path.join(root, rel)) for k, rel in c["inputs"].items()}
        ok = True
        for name, want in reference(c["op"], c["mode"], t).items():
            path = os.path.join(root, c["out"], f"{name}.npy")
            if not os.path.exists(path):
                print(f"FAIL {c['case']}: {name}.npy was not written", file=sys.stderr)
                ok = False
                continue
            outputs += 1
            err = compare(np.load(path), want)
            if isinstance(err, str) or err > RTOL:
                print(f"FAIL {c['case']}: {name}: {err}", file=sys.stderr)
                ok = False
            else:
                worst = max(worst, err)
        passed, failed = passed + ok, failed + (not ok)
    print(f"numpy reference: {passed} cases agree, {failed} disagree "
          f"({outputs} outputs, max relative error {worst:.2e}, tolerance {RTOL:.0e})")
    return failed == 0


def run_cases(fderiv, root, cases):
    """Runs `FDERIV run KERNEL MODE --out ... [--param k=v ...] --input ...` per case (FDERIV
    may hold arguments, e.g. "cargo run --release --"); reports failed runs on stderr."""
    cmd = shlex.split(fderiv)
    for c in cases:
        argv = cmd + ["run", c.get("kernel", c.get("op")), c["mode"], "--out", os.path.join(root, c["out"])]
        for k, v in c.get("params", {}).items():
            argv += ["--param", f"{k}={v!r}"]
        for k, rel in c["inputs"].items():
            argv += ["--input", f"{k}={os.path.join(root, rel)}"]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"FAIL {c['case']}: {' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}",
                  file=sys.stderr)


def cli(doc, gen, check, check_flags=()):
    """The `gen DIR`, `check DIR` and `all DIR` commands over `gen(root, seed)` and
    `check(root, **flags)` (`check_flags`: extra boolean options of check and all)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("dir")
    g.add_argument("--seed", type=int, default=0)
    for name in ("check", "all"):
        s = sub.add_parser(name)
        s.add_argument("dir")
        for flag in check_flags:
            s.add_argument(f"--{flag.replace('_', '-')}", action="store_true")
        if name == "all":
            s.add_argument("--fderiv", default=os.environ.get("FDERIV", "fderiv"))
            s.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "gen":
        cases = gen(args.dir, args.seed)
        print(f"wrote {len(cases)} cases to {args.dir}")
        return 0
    if args.cmd == "all":
        run_cases(args.fderiv, args.dir, gen(args.dir, args.seed))
    return 0 if check(args.dir, **{f: getattr(args, f) for f in check_flags}) else 1


if __name__ == "__main__":
    sys.exit(cli(__doc__, gen, check))

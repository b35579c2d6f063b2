#!/usr/bin/env bash
# Regenerates the pictures in docs/img/ from fderiv's own output (see docs/derivation.md):
#   softmax_vjp_trace.png    `fderiv trace softmax_last --mode vjp --format latex` → pdflatex → pdftoppm
#   attention_vjp_plan.png   the attention head's VJP plan, `--plan --format dot` → dot -Tpng
# Needs pdflatex (texlive-latex-base), pdftoppm (poppler-utils) and dot (graphviz).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
fderiv=target/release/fderiv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$fderiv" trace softmax_last --mode vjp --format latex > "$work/softmax_vjp.tex" 2>/dev/null
(cd "$work" && pdflatex -interaction=nonstopmode -halt-on-error softmax_vjp.tex > /dev/null)
pdftoppm -png -r 110 -singlefile "$work/softmax_vjp.pdf" docs/img/softmax_vjp_trace

"$fderiv" derive --expr '(bmm (softmax (bmm Q (T K))) V)' \
  --shape Q=h,m,d --shape K=h,n,d --shape V=h,n,e \
  --mode vjp --wrt Q,K,V --plan --format dot > "$work/attention.dot" 2>/dev/null
dot -Tpng -Gdpi=110 -o docs/img/attention_vjp_plan.png "$work/attention.dot"

echo "wrote docs/img/softmax_vjp_trace.png docs/img/attention_vjp_plan.png"

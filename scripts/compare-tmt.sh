#!/usr/bin/env bash
# Side-by-side check of test selection against tmt itself: generate a
# 500-test tree with ../shared/bench/gen_tree.py, let tmt 1.78 discover every
# plan, and compare with `atex-discover tests` (scripts/compare_tmt.py).
# Installs tmt into .venv-fmf and rsync (tmt copies the tree) when missing.
# Takes about a minute; not part of `make test`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${SHARED:-$root/../shared}
venv=$root/.venv-fmf
out=$root/bench-out
tree=$out/tree-500-seed3
context=(-c distro=fedora-41 -c arch=x86_64)

bash scripts/install-deps.sh --fmf-venv
if ! "$venv/bin/python" -c 'import tmt' 2>/dev/null; then
    echo "compare-tmt: pip install tmt==1.78.0" >&2
    "$venv/bin/pip" install -q tmt==1.78.0 </dev/null
fi
if ! command -v rsync >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync </dev/null
fi
if [ ! -f "$tree/.fmf/version" ]; then
    mkdir -p "$out"
    python3 "$shared/bench/gen_tree.py" --tests 500 --seed 3 --out "$tree" >/dev/null
fi
cargo build --release -q -p atex-discover

run=$(mktemp -d "${TMPDIR:-/tmp}/atex-tmt-run.XXXXXX")
trap 'rm -rf "$run"' EXIT
echo "compare-tmt: tmt discovering every plan of $tree (about 30 s)" >&2
(cd "$tree" && "$venv/bin/tmt" "${context[@]}" run -i "$run/run" --scratch discover >"$run/tmt.log" 2>&1) || {
    cat "$run/tmt.log" >&2
    exit 1
}
"$venv/bin/python" scripts/compare_tmt.py "$run/run" "$tree" "$root/target/release/atex-discover" "${context[@]}"

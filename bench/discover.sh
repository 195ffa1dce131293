#!/usr/bin/env bash
# Discovery benchmark (workload W1 of ../shared/bench): time
# `atex-discover tests` on a generated 10,000-test fmf tree, report the
# median wall time and the peak RSS against the targets, and exit non-zero
# when a target is missed. If python fmf 1.7 is available (.venv-fmf from
# `make bench-venv`, or FMF_PYTHON=/path/to/python), time the same work in
# python fmf in the same run and print the ratio.
#
# Environment: SHARED (default ../shared beside the project root), RUNS
# (atex-discover runs, default 7), FMF_RUNS (python runs, default 1: one
# takes about half a minute), TARGET_SECONDS (0.3), TARGET_RSS_MB (50).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${SHARED:-$root/../shared}
runs=${RUNS:-7}
fmf_runs=${FMF_RUNS:-1}
target_s=${TARGET_SECONDS:-0.3}
target_mb=${TARGET_RSS_MB:-50}
tests=10000
seed=1
out=$root/bench-out
tree=$out/tree-$tests-seed$seed

# The selection: a plan of the generated tree (plans/tier1 filters on
# `tag: tier1`), a context its adjust rules use, and a filter on the `tier`
# key every generated test has.
plan=/plans/tier1
context=(-c distro=fedora-41 -c arch=x86_64)
filter='tier: 1'

if [ ! -f "$shared/bench/gen_tree.py" ]; then
    echo "bench: error: $shared/bench/gen_tree.py not found (set SHARED=/path/to/shared)" >&2
    exit 2
fi
if [ ! -f "$tree/.fmf/version" ]; then
    rm -rf "$tree"
    mkdir -p "$out"
    echo "bench: generating $tests tests into $tree" >&2
    python3 "$shared/bench/gen_tree.py" --tests "$tests" --seed "$seed" --out "$tree" >/dev/null
fi

cargo build --release -q -p atex-discover
bin=$root/target/release/atex-discover
cmd=("$bin" tests --root "$tree" --plan "$plan" "${context[@]}" --filter "$filter")

if ! "${cmd[@]}" >"$out/records.jsonl" 2>"$out/stderr.txt"; then
    echo "bench: error: atex-discover failed:" >&2
    cat "$out/stderr.txt" >&2
    exit 1
fi
selected=$(wc -l <"$out/records.jsonl")
echo "selected: $selected tests of $tests ($plan, ${context[*]}, --filter '$filter')"

# measure CMD...: run once, append "SECONDS KILOBYTES" to $out/runs.txt.
# Wall time from the clock in ns; peak RSS from GNU time, or else from
# python's getrusage(RUSAGE_CHILDREN), which holds the largest child's.
measure() {
    local start end kb
    if [ -x /usr/bin/time ]; then
        start=$(date +%s%N)
        /usr/bin/time -f '%M' -o "$out/time.txt" "$@" >/dev/null 2>&1
        end=$(date +%s%N)
        kb=$(tail -n1 "$out/time.txt")
    else
        start=$(date +%s%N)
        kb=$(python3 -c '
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@")
        end=$(date +%s%N)
    fi
    echo "$(( (end - start) / 1000 )) $kb" >>"$out/runs.txt"
}

# summary: "MEDIAN_SECONDS MAX_MB" of $out/runs.txt
summary() {
    python3 -c '
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
us = [int(r[0]) for r in rows]
kb = [int(r[1]) for r in rows]
print("%.3f %.1f" % (statistics.median(us) / 1e6, max(kb) / 1024))' "$out/runs.txt"
}

: >"$out/runs.txt"
for _ in $(seq "$runs"); do measure "${cmd[@]}"; done
read -r atex_s atex_mb < <(summary)
echo "discover 10k: $atex_s s (target < $target_s s, median of $runs runs)"
echo "peak RSS: $atex_mb MB (target < $target_mb MB)"

fmf_python=${FMF_PYTHON:-}
if [ -z "$fmf_python" ] && [ -x "$root/.venv-fmf/bin/python" ]; then
    fmf_python=$root/.venv-fmf/bin/python
fi
if [ -n "$fmf_python" ] && "$fmf_python" -c 'import fmf' 2>/dev/null; then
    # The same work in python fmf: load the tree, adjust with the same context
    # (case-insensitive, as tmt does), prune to tests matching the plan's
    # filter and ours, drop disabled and manual tests.
    cat >"$out/fmf_discover.py" <<'PY'
import sys
import fmf
root, count_out = sys.argv[1], sys.argv[2]
tree = fmf.Tree(root)
tree.adjust(fmf.context.Context(distro=["fedora-41"], arch=["x86_64"]), case_sensitive=False)
plan = tree.find("/plans/tier1")
filters = [plan.get("discover", {}).get("filter", "tag: tier1"), "tier: 1"]
tests = [node for node in tree.prune(keys=["test"], filters=filters)
         if node.get("enabled", True) and not node.get("manual", False)]
with open(count_out, "w") as f:
    f.write(str(len(tests)))
PY
    : >"$out/runs.txt"
    for _ in $(seq "$fmf_runs"); do
        measure "$fmf_python" "$out/fmf_discover.py" "$tree" "$out/fmf_count.txt"
    done
    read -r fmf_s fmf_mb < <(summary)
    ratio=$(python3 -c "import sys; print('%.0f' % (float(sys.argv[1]) / max(float(sys.argv[2]), 1e-6)))" "$fmf_s" "$atex_s")
    echo "python fmf 1.7: $fmf_s s, peak RSS $fmf_mb MB, $(cat "$out/fmf_count.txt") tests (atex-discover is ${ratio}x faster)"
else
    echo "python fmf: not installed; run 'make bench-venv' to compare with it" >&2
fi

status=0
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$atex_s" "$target_s"; then :; else
    echo "bench: FAILED: discovery time $atex_s s is over the $target_s s target" >&2
    status=1
fi
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$atex_mb" "$target_mb"; then :; else
    echo "bench: FAILED: peak RSS $atex_mb MB is over the $target_mb MB target" >&2
    status=1
fi
exit "$status"

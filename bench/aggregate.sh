#!/usr/bin/env bash
# atex-aggregate benchmark: 1,000,000 Result records (20,000 tests of 50
# results on average, shaped like atex-exec's output: mostly passes,
# some fail/info/warn/skip/infra with notes, files [] mostly) piped into
# `atex-aggregate --output DIR` from a file. Figures:
#   - results/s over the whole run (start to exit, junit.xml and
#     index.html written), target >= 500,000;
#   - peak RSS (GNU time %M), target < 20 MB;
# plus, for information, the same with --compress gz and --format records.
# Prints each figure with its target and exits non-zero when one is missed
# or the store does not read back with every result.
#
# Environment: RESULTS (1000000), TESTS (20000), TARGET_RESULTS_PER_S
# (500000), TARGET_RSS_MB (20).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
results=${RESULTS:-1000000}
tests=${TESTS:-20000}
target_rps=${TARGET_RESULTS_PER_S:-500000}
target_mb=${TARGET_RSS_MB:-20}
out=$root/bench-out/aggregate

if [ ! -x /usr/bin/time ]; then
    echo "bench: error: GNU time (/usr/bin/time) is needed for the peak RSS" >&2
    exit 2
fi

cargo build --release -q -p atex-aggregate
bin=$root/target/release/atex-aggregate

rm -rf "$out"
mkdir -p "$out"
input=$out/input.jsonl
python3 - "$results" "$tests" >"$input" <<'PY'
import json, random, sys
n, tests = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(7)
statuses = ["pass"] * 90 + ["fail"] * 4 + ["info"] * 2 + ["warn", "skip", "infra", "error"]
notes = {"fail": "assertion failed: expected 0, got 1", "warn": "AVC denials found",
         "infra": "TestAbortedError(test duration timeout reached)", "error": "setup failed"}
out = sys.stdout
written = 0
t = 0
while written < n:
    t += 1
    test = "/tests/area%d/%d" % (t % 37, t)
    subs = min(n - written, rng.randint(1, 2 * n // tests - 1))
    started = "2026-11-22T01:%02d:%02dZ" % (t // 60 % 60, t % 60)
    base = {"platform": "fedora-41@x86_64", "machine": "podman/3f2a9c0e",
            "artifacts": "/abs/out/tests/area%d/%d" % (t % 37, t), "exit_code": None,
            "started": started, "attempt": 0}
    lines = []
    for i in range(subs):
        st = rng.choice(statuses)
        name = None if i == subs - 1 else "check/%d" % i
        r = {"test": test, "name": name, "status": st, "note": notes.get(st), "files": []}
        r.update(base)
        r["duration"] = round(rng.random() * 3, 3)
        if name is None:
            r["exit_code"] = 0 if st == "pass" else 1
        lines.append(json.dumps(r, separators=(",", ":")))
    written += subs
    out.write("\n".join(lines) + "\n")
PY
echo "input: $(wc -l <"$input") results, $(du -m "$input" | cut -f1) MB"

status=0
fail() {
    echo "bench: FAILED: $*" >&2
    status=1
}
below() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }

# run NAME ARGS...: ingest the input into $out/NAME; prints "SECONDS RPS MB".
run() {
    local name=$1 start end rc
    shift
    start=$(date +%s%N)
    set +e
    /usr/bin/time -f '%M' -o "$out/$name.rss" "$bin" --output "$out/$name" "$@" <"$input" 2>"$out/$name.err"
    rc=$?
    set -e
    end=$(date +%s%N)
    # The generated results include fail and infra: exit 3 is expected.
    if [ "$rc" != 3 ]; then
        fail "$name: atex-aggregate exited $rc (see $out/$name.err)"
    fi
    python3 -c '
import sys
n, start, end, kb = map(int, sys.argv[1:])
s = (end - start) / 1e9
print("%.2f %.0f %.1f" % (s, n / s, kb / 1024))' "$results" "$start" "$end" "$(tail -n1 "$out/$name.rss")"
}

read -r s rps mb < <(run plain)
echo "aggregate: $results results in $s s = $rps results/s (target >= $target_rps/s); peak RSS $mb MB (target < $target_mb MB)"
if below "$rps" "$target_rps"; then fail "$rps results/s is under the $target_rps target"; fi
if ! below "$mb" "$target_mb"; then fail "peak RSS $mb MB is over the $target_mb MB target"; fi
stored=$(wc -l <"$out/plain/results.jsonl")
[ "$stored" = "$results" ] || fail "the store holds $stored results, expected $results"
"$bin" summary "$out/plain" | tail -n2 || true

read -r s rps mb < <(run gz --compress gz)
echo "aggregate --compress gz: $s s = $rps results/s; peak RSS $mb MB (information)"
read -r s rps mb < <(run records --format records)
echo "aggregate --format records: $s s = $rps results/s; peak RSS $mb MB (information)"
du -sh "$out/plain/results.jsonl" "$out/gz/results.jsonl.gz" "$out/plain/index.html" "$out/plain/junit.xml" | sed 's/^/  size: /'

exit "$status"

#!/usr/bin/env bash
# Execution benchmark (workloads W2 and W4 of ../shared/bench) against one
# loopback sshd machine with a clean HOME, started with the shared
# ../shared/bench/sut.py and stopped by its pid on exit:
#   - W2: 200 trivial tests, `atex-discover tests | atex-exec`; tests/s
#     over the whole pipeline (target >= 40; Python ATEX manages ~4.5).
#   - W4: one test reporting 1,000,000 results through test control;
#     results/s from the first to the last result line on stdout (target
#     >= 500,000; ATEX ~18,000) and atex-exec's peak RSS (GNU time %M, the
#     largest of atex-exec and its children; target < 20 MB; ATEX 270 MB).
# Prints each figure with its target and exits non-zero when one is missed
# or the wrong number of results came out.
#
# How the output is consumed: result records are piped into
# bench/count_lines.py, which counts lines in 1 MiB reads (as fast as
# `wc -l`) and notes when the first and last arrived; they are never
# written to disk, so disk speed does not enter the figures. Test
# artifacts still go to a directory under bench-out/.
#
# Environment: SHARED (default ../shared beside the project root), PORT
# (sshd port, default the first free one from 22240), W2_TESTS (200),
# W4_RESULTS (1000000), TARGET_TESTS_PER_S (40), TARGET_RESULTS_PER_S
# (500000), TARGET_RSS_MB (20).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
shared=${SHARED:-$root/../shared}
w2_tests=${W2_TESTS:-200}
w4_results=${W4_RESULTS:-1000000}
target_tps=${TARGET_TESTS_PER_S:-40}
target_rps=${TARGET_RESULTS_PER_S:-500000}
target_mb=${TARGET_RSS_MB:-20}
out=$root/bench-out/exec
sut_state=/tmp/anchors-sut

for f in gen_workloads.py sut.py; do
    if [ ! -f "$shared/bench/$f" ]; then
        echo "bench: error: $shared/bench/$f not found (set SHARED=/path/to/shared)" >&2
        exit 2
    fi
done
if [ ! -x /usr/bin/time ]; then
    echo "bench: error: GNU time (/usr/bin/time) is needed for the peak RSS" >&2
    exit 2
fi

cargo build --release -q -p atex-discover -p atex-exec
discover=$root/target/release/atex-discover
exec_bin=$root/target/release/atex-exec

rm -rf "$out"
mkdir -p "$out"

# One sshd on a port nobody listens on: sut.py reuses a running instance of
# the same port, which we must not stop afterwards.
port_free() {
    python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1" && [ ! -e "$sut_state/sshd-$1.pid" ]
}
port=${PORT:-}
if [ -z "$port" ]; then
    for p in $(seq 22240 22299); do
        if port_free "$p"; then port=$p; break; fi
    done
fi
if [ -z "$port" ] || ! port_free "$port"; then
    echo "bench: error: no free sshd port (set PORT)" >&2
    exit 2
fi

sshd_pid=
stop_sut() {
    # Only the sshd this script started, by the pid from its own PidFile.
    if [ -n "$sshd_pid" ]; then
        kill "$sshd_pid" 2>/dev/null || true
        rm -f "$sut_state/sshd-$port.pid"
    fi
}
trap stop_sut EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 "$shared/bench/sut.py" start 1 --base-port "$port" >/dev/null
sshd_pid=$(cat "$sut_state/sshd-$port.pid")
machine=$(printf '{"id":"sut/%s","provisioner":"ssh","platform":"loopback","connection":{"kind":"ssh","host":"127.0.0.1","port":%s,"user":"root","identity_file":"%s/client_key"}}' \
    "$port" "$port" "$sut_state")
echo "machine: loopback sshd on 127.0.0.1:$port (pid $sshd_pid, clean HOME)"

python3 "$shared/bench/gen_workloads.py" w2 "$out/w2" --tests "$w2_tests"
python3 "$shared/bench/gen_workloads.py" w4 "$out/w4" --results "$w4_results"

status=0
fail() {
    echo "bench: FAILED: $*" >&2
    status=1
}
# below A B: exit 0 when A < B (floats)
below() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }

# run_exec NAME: discover NAME's tree and run it; leaves "COUNT FIRST_NS
# LAST_NS" in $out/NAME.count, atex-exec's peak RSS (KB) in $out/NAME.rss,
# the wall time (ns) in $out/NAME.wall and the exit codes in $out/NAME.rc.
run_exec() {
    local name=$1 start end
    start=$(date +%s%N)
    set +e
    "$discover" tests --root "$out/$name" 2>"$out/$name.discover.err" \
        | /usr/bin/time -f '%M' -o "$out/$name.rss" \
            "$exec_bin" --machine "$machine" --artifacts "$out/$name-artifacts" 2>"$out/$name.exec.err" \
        | python3 bench/count_lines.py --save "$out/$name.first" >"$out/$name.count"
    echo "${PIPESTATUS[*]}" >"$out/$name.rc"
    set -e
    end=$(date +%s%N)
    echo $((end - start)) >"$out/$name.wall"
}

# exit codes: discover must succeed; atex-exec 0 (all pass) or, for W4
# whose emitter fails every 97th sub-result on purpose, 1.
check_rc() {
    local name=$1 allowed=$2 d e c
    read -r d e c <"$out/$name.rc"
    if [ "$d" != 0 ] || [ "$c" != 0 ]; then
        fail "$name: atex-discover exited $d, counter $c (see $out/$name.discover.err)"
    fi
    case " $allowed " in
    *" $e "*) ;;
    *) fail "$name: atex-exec exited $e (see $out/$name.exec.err)"; tail -n5 "$out/$name.exec.err" >&2 ;;
    esac
}

# W2: every test reports one result; the figure is the whole pipeline.
run_exec w2
check_rc w2 0
read -r w2_count _ _ <"$out/w2.count"
w2_wall=$(cat "$out/w2.wall")
read -r w2_s w2_tps < <(python3 -c 'import sys; s = int(sys.argv[1]) / 1e9; print("%.2f %.1f" % (s, int(sys.argv[2]) / s))' "$w2_wall" "$w2_tests")
echo "exec w2: $w2_count tests in $w2_s s = $w2_tps tests/s (target >= $target_tps)"
[ "$w2_count" = "$w2_tests" ] || fail "w2: $w2_count results, expected $w2_tests"
if below "$w2_tps" "$target_tps"; then fail "w2: $w2_tps tests/s is under the $target_tps target"; fi

# W4: one test's sub-results (plus the test's own result record, when
# atex-exec writes one) from the first to the last line; the total wall
# time includes connecting, uploading and python starting up.
run_exec w4
check_rc w4 "0 1"
read -r w4_count w4_first w4_last <"$out/w4.count"
w4_wall=$(cat "$out/w4.wall")
w4_kb=$(tail -n1 "$out/w4.rss")
read -r w4_s w4_rps w4_total_s w4_mb < <(python3 -c '
import sys
n, first, last, wall, kb = map(int, sys.argv[1:])
s = max(last - first, 1) / 1e9
print("%.2f %.0f %.2f %.1f" % (s, n / s, wall / 1e9, kb / 1024))' "$w4_count" "$w4_first" "$w4_last" "$w4_wall" "$w4_kb")
echo "exec w4: $w4_count results in $w4_s s = $w4_rps results/s (target >= $target_rps; first to last result, $w4_total_s s in all)"
echo "exec w4 peak RSS: $w4_mb MB (target < $target_mb MB)"
# For scale: the same emitter over plain ssh into the same counter, no
# atex-exec; its rate is the ceiling this machine allows (information only).
ssh -i "$sut_state/client_key" -p "$port" -o BatchMode=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 \
    "cd '$out/w4/tests' && ATEX_TEST_CONTROL=1 python3 emit.py $w4_results" \
    | python3 bench/count_lines.py >"$out/w4-plain.count" || true
read -r plain_count plain_first plain_last <"$out/w4-plain.count"
if [ "$plain_count" -gt 0 ]; then
    echo "  (the emitter alone over plain ssh: $(python3 -c 'import sys; n, a, b = map(int, sys.argv[1:]); print("%.0f" % (n / (max(b - a, 1) / 1e9)))' "$plain_count" "$plain_first" "$plain_last") results/s, the ceiling here)"
fi
if [ "$w4_count" -lt "$w4_results" ] || [ "$w4_count" -gt $((w4_results + 1)) ]; then
    fail "w4: $w4_count results, expected $w4_results (+1 for the test's own)"
fi
if below "$w4_rps" "$target_rps"; then fail "w4: $w4_rps results/s is under the $target_rps target"; fi
if ! below "$w4_mb" "$target_mb"; then fail "w4: peak RSS $w4_mb MB is over the $target_mb MB target"; fi

exit "$status"

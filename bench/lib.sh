# Shared by the benchmarks that run tests on loopback sshd machines
# (bench/exec.sh, bench/orchestrate.sh); sourced, not run. Expects `root`
# (the project root), `shared` (../shared) and `out` (the bench's output
# directory) to be set.
#
# The machines are the shared ../shared/bench/sut.py sshd instances (clean
# HOME, root login with $sut_state/client_key), started on free ports and
# stopped by the pids of their own PidFiles when the script exits.

sut_state=/tmp/anchors-sut
hz=$(getconf CLK_TCK)
status=0

# fresh_out: make $out anew. Where /dev/shm is a tmpfs (and BENCH_ON_DISK
# is not 1), the directory is /dev/shm/atex-bench-UID/CHECKSUM/NAME (one
# per checkout) and $out links to it: the outputs (the generated trees, both tools' artifacts and
# results) then cost no ext4 work. These machines' ext4 has no journal, and
# ext4 without one passes over every inode freed in the last minute or so
# (reading its inode table block) each time it makes a file: a bench that
# removed the previous run's thousands of files, or ran right after one
# that did, measured that removal, both tools alike, by 15-25 % more CPU
# per run and more at each run (perf: find_inode_bit, recently_deleted).
# The machines' own work directories stay where the tools put them.
fresh_out() {
    rm -rf "$out"
    mkdir -p "$(dirname "$out")"
    if [ "${BENCH_ON_DISK:-0}" != 1 ] && [ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ]; then
        local shm
        # One directory per checkout (a checksum of its path) and bench.
        shm=/dev/shm/atex-bench-$(id -u)/$(printf %s "$root" | cksum | cut -d" " -f1)/$(basename "$out")
        rm -rf "$shm"
        mkdir -p "$shm"
        ln -s "$shm" "$out"
        echo "outputs: $shm (tmpfs; BENCH_ON_DISK=1 puts them in $out)"
    else
        mkdir -p "$out"
        echo "outputs: $out (on disk)"
    fi
}

# fail MESSAGE: report a missed target or a wrong count; the script exits 1.
fail() {
    echo "bench: FAILED: $*" >&2
    status=1
}

# need_shared FILE...: the shared bench tools the script uses.
need_shared() {
    local f
    for f in "$@"; do
        if [ ! -f "$shared/bench/$f" ]; then
            echo "bench: error: $shared/bench/$f not found (set SHARED=/path/to/shared)" >&2
            exit 2
        fi
    done
}

# need_atex VENV: Python ATEX 1.2 for the side-by-side figure.
need_atex() {
    if ! "$1/bin/python" -c 'import atex, importlib.metadata as m; assert m.version("atex") == "1.2"' 2>/dev/null; then
        echo "bench: error: Python ATEX 1.2 is not in $1; make it with 'make bench-venv'" >&2
        echo "  (or set ATEX_VENV, or ATEX_COMPARE=0 to skip the comparison)" >&2
        exit 2
    fi
}

# busy: the machine's busy jiffies so far (/proc/stat: all but idle and iowait).
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# ms_per N BUSY0 BUSY1: CPU milliseconds per item.
ms_per() { python3 -c 'import sys; n, a, b, hz = map(int, sys.argv[1:]); print("%.1f" % ((b - a) * 1000 / hz / n))' "$1" "$2" "$3" "$hz"; }
# below A B: exit 0 when A < B (floats)
below() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)' "$1" "$2"; }

# port_free PORT: nobody listens there and no sut.py instance claims it
# (sut.py reuses a running instance of the same port, which we must not
# stop afterwards).
port_free() {
    python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1" && [ ! -e "$sut_state/sshd-$1.pid" ]
}

# start_suts N: start N sshd machines on consecutive free ports from
# $PORT (default the first such run from 22240); sets `ports` and
# `sshd_pids`, and stops them on exit.
ports=()
sshd_pids=()
stop_suts() {
    local i
    for i in "${!sshd_pids[@]}"; do
        kill "${sshd_pids[$i]}" 2>/dev/null || true
        rm -f "$sut_state/sshd-${ports[$i]}.pid"
    done
}
start_suts() {
    local n=$1 base p i ok
    for base in ${PORT:-$(seq 22240 22299)}; do
        ok=true
        for ((i = 0; i < n; i++)); do
            if ! port_free $((base + i)); then ok=false; break; fi
        done
        if $ok; then break; fi
        base=
    done
    if [ -z "$base" ]; then
        echo "bench: error: no $n free sshd ports in a row (set PORT)" >&2
        exit 2
    fi
    trap stop_suts EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    python3 "$shared/bench/sut.py" start "$n" --base-port "$base" >/dev/null
    for ((i = 0; i < n; i++)); do
        p=$((base + i))
        ports+=("$p")
        sshd_pids+=("$(cat "$sut_state/sshd-$p.pid")")
    done
}

# run_atex VENV TREE DEST [WRAPPER...]: run TREE's tests through Python
# ATEX 1.2 (../shared/bench/atex_run.py) on the machines of `ports`, under
# the WRAPPER command when given (memwatch.py ... --), with the more
# atex_run.py options of ATEX_RUN_EXTRA (--per-test-log); its JSON line in
# DEST.json, its stderr in DEST.err, and `atex_busy0`/`atex_busy1` set;
# returns its exit code. atex_run.py takes the first ports sut.py knows,
# so it is pointed at these.
run_atex() {
    local venv=$1 tree=$2 dest=$3 rc
    shift 3
    atex_busy0=$(busy)
    set +e
    "$@" "$venv/bin/python" - "$shared/bench" "$tree" "$dest" "${ports[@]}" >"$dest.json" 2>"$dest.err" <<'PY'
import os, runpy, sys
bench, tree, dest, *ports = sys.argv[1:]
sys.path.insert(0, bench)
import sut
sut.ports = lambda: [int(p) for p in ports]
extra = os.environ.get("ATEX_RUN_EXTRA", "").split()
sys.argv = ["atex_run.py", "--tree", tree, "--suts", str(len(ports)), "--out", dest] + extra
runpy.run_path(bench + "/atex_run.py", run_name="__main__")
PY
    rc=$?
    set -e
    atex_busy1=$(busy)
    if [ "$rc" != 0 ]; then tail -n5 "$dest.err" >&2; fi
    return "$rc"
}

# json_field FILE KEY...: the KEYs of the JSON object in FILE, space
# separated.
json_field() {
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(*(r[k] for k in sys.argv[2:]))' "$@"
}

#!/usr/bin/env bash
# Run the fmf conformance corpus of ../shared against the release
# atex-discover, and decide pass/fail the way issue #2 states it:
#   - every case must pass, except
#   - a case tagged `quirk` may fail only if docs/deviations.md names it.
#
# The corpus as delivered in ../shared stores its symbolic links
# (trees/syn-symlinks, trees/crash-broken-symlink) as plain files holding the
# link target, so python fmf itself would no longer give the expected output
# on it. The corpus' own tree definitions (tools/synth_trees.py) say which
# paths are links; we copy the trees to a temporary directory, re-create those
# links there, and run the checker on the copy (`check.sh --trees`). Nothing
# is copied into the project and ../shared is not modified.
#
# Usage: scripts/conformance.sh [check.sh options...]   (SHARED=/path/to/shared)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$root/../shared}
corpus=$shared/conformance/fmf
bin=$root/target/release/atex-discover

if [ ! -x "$corpus/check.sh" ]; then
    echo "conformance: error: $corpus/check.sh not found (set SHARED=/path/to/shared)" >&2
    exit 2
fi
if [ ! -x "$bin" ]; then
    echo "conformance: error: $bin not built (run: cargo build --release -p atex-discover)" >&2
    exit 2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/atex-conformance.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -R "$corpus/trees" "$work/trees"
chmod -R u+w "$work/trees"

python3 - "$corpus/tools" "$work/trees" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
import synth_trees
trees = sys.argv[2]
restored = 0
for table in (synth_trees.TREES, synth_trees.ERRORS):
    for name, files in table.items():
        for rel, content in files.items():
            if not (isinstance(content, tuple) and content[0] == "symlink"):
                continue
            path = os.path.join(trees, name, rel)
            if os.path.islink(path):
                continue
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    if handle.read() != content[1]:
                        continue
                os.remove(path)
            os.symlink(content[1], path)
            restored += 1
print(f"conformance: re-created {restored} symbolic links the corpus copy stores as plain files",
      file=sys.stderr)
EOF

log=$work/check.log
set +e
"$corpus/check.sh" "$bin {argv}" --trees "$work/trees" "$@" >"$log" 2>&1
set -e
# check.py's own summary counts documented deviations as failures; the
# gate below prints the verdict instead, and a documented quirk's line as
# QUIRK, not FAIL.
total=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$log" | tail -n1)
# documented ID: the case is a quirk (cases.tsv) that docs/deviations.md names.
documented() {
    local tags
    tags=$(awk -F'\t' -v id="$1" '$1 == id { print $6 }' "$corpus/cases.tsv")
    [[ ",$tags," == *",quirk,"* ]] && grep -qF "\`$1\`" "$root/docs/deviations.md"
}
unexpected=0
documented=0
while IFS= read -r line; do
    case "$line" in
    PASS\ * | [0-9]*\ passed,\ [0-9]*\ failed*) ;;
    FAIL\ *:*)
        id=${line#FAIL }
        id=${id%%:*}
        if documented "$id"; then
            echo "QUIRK ${line#FAIL } (a documented deviation: docs/deviations.md)"
            documented=$((documented + 1))
        else
            echo "$line"
            echo "conformance: $id failed and is not a documented quirk" >&2
            unexpected=$((unexpected + 1))
        fi
        ;;
    *) echo "$line" ;;
    esac
done <"$log"
passed=${total%% *}
if [ -z "$passed" ]; then
    echo "conformance: error: check.sh printed no summary:" >&2
    cat "$log" >&2
    exit 1
fi
echo "conformance: the $documented documented quirk deviations count as skipped"
echo "conformance: $passed passed, $unexpected failed, $documented skipped"
if [ "$unexpected" -ne 0 ]; then
    exit 1
fi

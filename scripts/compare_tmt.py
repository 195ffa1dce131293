#!/usr/bin/env python3
"""Compare `atex-discover tests` with tmt's own discovery, plan by plan.

Usage: compare_tmt.py TMT_RUN_DIR TREE ATEX_DISCOVER [-c DIM=VAL]...

TMT_RUN_DIR is a `tmt run -i DIR discover` workdir made on TREE with the same
context. For every plan it discovered, the selected test names (and their
order), and each test's duration (seconds), test, path, tags, required
packages (as a set: tmt reorders them) and environment (test environment
with the plan's on top, as atex records it) must be equal. Runs with the
python that has tmt installed; exits 1 on any difference.
"""
import glob
import json
import subprocess
import sys

from ruamel.yaml import YAML
from tmt.utils import duration_to_seconds


def main():
    run, tree, binary, context = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    plans = tests = differences = 0
    for tests_yaml in sorted(glob.glob(f"{run}/plans/**/discover/tests.yaml", recursive=True)):
        plan = tests_yaml[len(run):].split("/discover/")[0]
        expected = YAML(typ="safe").load(open(tests_yaml, encoding="utf-8")) or []
        by_name = {t["name"]: t for t in expected}
        out = subprocess.run([binary, "tests", "--root", tree, "--plan", plan, *context],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            print(f"{plan}: atex-discover failed: {out.stderr.strip()}")
            differences += 1
            continue
        records = [json.loads(line) for line in out.stdout.splitlines()]
        plans += 1
        tests += len(records)
        names = [r["name"] for r in records]
        if names != [t["name"] for t in expected]:
            differences += 1
            print(f"{plan}: tmt selects {len(expected)} tests, atex {len(names)} (or another order)")
            continue
        for record in records:
            t = by_name[record["name"]]
            path = t["path"].split("/tests/", 1)[1] if "/tests/" in t["path"] else t["path"].lstrip("/")
            environment = {k: str(v) for k, v in t.get("environment", {}).items()}
            environment.update(record["plan"]["environment"])
            checks = {
                "duration": (duration_to_seconds(t["duration"]), record["duration"]),
                "test": (t["test"], record["test"]),
                "path": (path, record["path"]),
                "tag": (t["tag"], record["tag"]),
                "require": (sorted(map(str, t["require"])), sorted(map(str, record["require"]))),
                "environment": (environment, record["environment"]),
            }
            for key, (want, got) in checks.items():
                if want != got:
                    differences += 1
                    print(f"{plan} {record['name']}: {key}: tmt {want!r}, atex {got!r}")
    print(f"compare-tmt: {plans} plans, {tests} tests, {differences} differences")
    return 1 if differences or not plans else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The medians over a benchmark's alternating rounds.

Usage: medians.py DIR ROUNDS SUFFIX

Reads DIR/round-N.SUFFIX (our figures, a line of numbers; where ATEX is
compared: tests/s first, CPU ms per test second, any more after) and,
when every round has one, DIR/round-N.atex (Python ATEX's tests/s and
CPU ms per test), N from 1 to ROUNDS. Prints
one line: the median of each of our columns, then ATEX's two medians, the
median of the rounds' tests/s ratios (ours / ATEX) and of their CPU
ratios (ATEX / ours); 0 for the four ATEX figures without ATEX rounds.
"""
import os
import statistics
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    out, rounds, suffix = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    def rows(name):
        paths = [f"{out}/round-{n}.{name}" for n in range(1, rounds + 1)]
        return [list(map(float, open(p).read().split())) for p in paths if os.path.exists(p)]

    ours, atex = rows(suffix), rows("atex")
    med = statistics.median
    row = [med(column) for column in zip(*ours)]
    if atex and len(atex) == len(ours):
        row += [med([a[0] for a in atex]), med([a[1] for a in atex]),
                med([o[0] / a[0] for o, a in zip(ours, atex)]),
                med([a[1] / o[1] for o, a in zip(ours, atex)])]
    else:
        row += [0, 0, 0, 0]
    print(" ".join("%.2f" % x for x in row))


if __name__ == "__main__":
    main()

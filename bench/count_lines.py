#!/usr/bin/env python3
"""Count the lines on stdin and time when they arrive.

Reads stdin in 1 MiB chunks (as fast as `wc -l`, so the consumer does not
slow the producer) and prints one line: COUNT FIRST_NS LAST_NS, where the
times are time.time_ns() when the first and the last newline arrived
(0 0 when there was none). With --save FILE, also keeps the first line
(the records are checked for shape, not stored: 1M lines would cost disk
time).
"""
import sys
import time


def count_lines(read, write=None):
    """Reads chunks with `read` (1 MiB at most) to the end, handing each to
    `write` when given; returns (COUNT, FIRST_NS, LAST_NS, FIRST_LINE): the
    number of lines, when the first and the last newline arrived, and the
    first line (up to 64 KiB)."""
    first_line = b""
    count = 0
    first = last = 0
    while True:
        chunk = read(1 << 20)
        if not chunk:
            return count, first, last, first_line
        n = chunk.count(b"\n")
        if n:
            now = time.time_ns()
            if not count:
                first = now
            last = now
        if len(first_line) < 65536 and not first_line.endswith(b"\n"):
            first_line += chunk[: chunk.find(b"\n") + 1 if b"\n" in chunk else len(chunk)]
        count += n
        if write is not None:
            write(chunk)


def main():
    save = sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--save" else None
    read = sys.stdin.buffer.raw.read if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer.read
    count, first, last, first_line = count_lines(read)
    if save is not None:
        with open(save, "wb") as f:
            f.write(first_line)
    print(count, first, last)


if __name__ == "__main__":
    main()

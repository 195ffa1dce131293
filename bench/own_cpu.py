#!/usr/bin/env python3
"""Run a command and write the CPU seconds of that process alone.

Usage: own_cpu.py [--started START_FILE] [--lines LINES_FILE] FILE COMMAND [ARG...]

stdin, stdout and stderr are the command's. When it exits, FILE gets one
line, "CPU_S", its user + system time, all its threads, none of its
children: read from /proc/PID/stat while it is a zombie (waitid with
WNOWAIT), before it is reaped. Exits with the command's exit code.

--started: START_FILE gets time.time_ns() taken just before the command
is started (this wrapper's own start is not in it).
--lines: the command's stdout goes through this wrapper (copied to ours
as it comes, in 1 MiB reads), and LINES_FILE gets "COUNT FIRST_NS
LAST_NS", the number of lines and when the first and the last newline
arrived (bench/count_lines.py's count, without a second process started
beside the command while it is timed).
"""
import os
import subprocess
import sys
import time

from count_lines import count_lines


def write_all(data):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]


def main():
    args = sys.argv[1:]
    started = lines = None
    while len(args) > 1 and args[0] in ("--started", "--lines"):
        if args[0] == "--started":
            started = args[1]
        else:
            lines = args[1]
        args = args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    out, command = args[0], args[1:]
    if started:
        with open(started, "w") as f:
            f.write("%d\n" % time.time_ns())
    child = subprocess.Popen(command, stdout=subprocess.PIPE if lines else None)
    if lines:
        source = child.stdout.fileno()
        count, first, last, _ = count_lines(lambda n: os.read(source, n), write_all)
        with open(lines, "w") as f:
            f.write("%d %d %d\n" % (count, first, last))
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{child.pid}/stat") as f:
        # `pid (comm) state ...`: utime and stime are fields 14 and 15.
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    with open(out, "w") as f:
        f.write("%.3f\n" % (ticks / os.sysconf("SC_CLK_TCK")))
    code = child.wait()
    sys.exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()

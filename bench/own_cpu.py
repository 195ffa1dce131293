#!/usr/bin/env python3
"""Run a command and write the CPU seconds of that process alone.

Usage: own_cpu.py [--started START_FILE] FILE COMMAND [ARG...]

stdin, stdout and stderr are the command's. When it exits, FILE gets one
line, "CPU_S", its user + system time, all its threads, none of its
children: read from /proc/PID/stat while it is a zombie (waitid with
WNOWAIT), before it is reaped. Exits with the command's exit code. With
--started, START_FILE gets time.time_ns() taken just before the command
is started (this wrapper's own start is not in it).
"""
import os
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    started = None
    if args[:1] == ["--started"] and len(args) > 1:
        started, args = args[1], args[2:]
    if len(args) < 2:
        sys.exit(__doc__)
    out, command = args[0], args[1:]
    if started:
        with open(started, "w") as f:
            f.write("%d\n" % time.time_ns())
    child = subprocess.Popen(command)
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

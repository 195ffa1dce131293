#!/usr/bin/env python3
"""Run a command and write the CPU seconds of that process alone.

Usage: own_cpu.py FILE COMMAND [ARG...]

stdin, stdout and stderr are the command's. When it exits, FILE gets one
line, "CPU_S", its user + system time, all its threads, none of its
children: read from /proc/PID/stat while it is a zombie (waitid with
WNOWAIT), before it is reaped. Exits with the command's exit code.
"""
import os
import subprocess
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, command = sys.argv[1], sys.argv[2:]
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

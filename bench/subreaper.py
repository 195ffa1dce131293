#!/usr/bin/env python3
"""Run a command as a child subreaper: exec it after prctl(PR_SET_CHILD_SUBREAPER).

Usage: subreaper.py COMMAND [ARG...]

The command itself becomes the subreaper (the setting survives execve),
so processes it starts that daemonize (an ssh master started with -f)
are re-parented to it and stay in its process tree, where memwatch.py
counts them.
"""
import ctypes
import os
import sys

PR_SET_CHILD_SUBREAPER = 36

if len(sys.argv) < 2:
    sys.exit(__doc__)
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
    sys.exit("subreaper.py: prctl: " + os.strerror(ctypes.get_errno()))
os.execvp(sys.argv[1], sys.argv[1:])

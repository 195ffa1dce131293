# atex-exec remote test wrapper: runs one test on the machine with the
# test-control channel, in its own session, and reports its exit code.
#
# Usage: wrapper.py [--pty] [--no-exitcode] [--no-kill] ENV_FILE TEST_SCRIPT WORKDIR
#
# ENV_FILE holds NUL-separated KEY=VALUE entries applied on top of our own
# environment (so values never appear on a command line). The wrapper's stdout
# is the control channel: the test gets a duplicate of it as the fd named by
# ATEX_TEST_CONTROL, while its own stdout and stderr go to our stderr.
#
# Exit status: 0 after writing "exitcode RC" (with --no-exitcode: RC itself),
# 2 bad usage, unreadable ENV_FILE, chdir or fork failure, 3 control-fd write
# error, 4 waitpid error, 5 unknown wait status, 128+N on signal N.
#
# Python 3.6+ and the standard library only: it runs on whatever the machine has.

import errno
import os
import select
import signal
import sys

EXIT_SETUP = 2
EXIT_CONTROL_WRITE = 3
EXIT_WAITPID = 4
EXIT_UNKNOWN_STATUS = 5

# Seconds between SIGHUP and SIGKILL when we are told to stop.
KILL_GRACE = 1.0

PR_SET_PDEATHSIG = 1

TERMINATING_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)

# Signals the test gets at their defaults: Python ignores SIGPIPE and
# SIGXFSZ, and handles the others itself.
TEST_DEFAULT_SIGNALS = TERMINATING_SIGNALS + (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)


def say(message):
    # stderr is the test output file on the controller: the one place a
    # person will look when the wrapper itself fails.
    try:
        os.write(2, ("atex-exec wrapper: " + message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def fail(code, message):
    say(message)
    os._exit(code)


def parse_args(argv):
    flags = {"--pty": False, "--no-exitcode": False, "--no-kill": False}
    rest = []
    for arg in argv:
        if not rest and arg in flags:
            flags[arg] = True
        else:
            rest.append(arg)
    if len(rest) != 3:
        fail(EXIT_SETUP, "usage: wrapper.py [--pty] [--no-exitcode] [--no-kill] ENV_FILE TEST_SCRIPT WORKDIR")
    return flags, rest[0], rest[1], rest[2]


class SetupError(Exception):
    """The test cannot start; the message says why."""


def load_env_file(path):
    """The KEY=VALUE entries of ENV_FILE, as (bytes, bytes) pairs."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SetupError("cannot read environment file %s: %s" % (path, e.strerror))
    env = []
    for entry in data.split(b"\0"):
        if not entry:
            continue
        key, sep, value = entry.partition(b"=")
        if not sep or not key:
            raise SetupError("malformed entry in environment file %s: %r" % (path, entry[:80]))
        env.append((key, value))
    return env


def read_env_file(path):
    try:
        return load_env_file(path)
    except SetupError as e:
        fail(EXIT_SETUP, str(e))


_libc = []


def libc():
    # Loaded once: importing ctypes costs more than the rest of a start, and
    # the runner (runner.py) loads it before it forks its first wrapper.
    if not _libc:
        import ctypes
        _libc.append(ctypes.CDLL(None, use_errno=True))
    return _libc[0]


def die_with_parent():
    # When ssh/sshd (or the container runtime) goes away, the test must not
    # run on unattended: have the kernel send us SIGTERM.
    parent = os.getppid()
    if parent == 0:
        # Our parent is outside our PID namespace: under `podman exec` it is
        # runc, which exits on purpose right after starting us. Its death
        # says nothing about the controller, and a death signal tied to it
        # killed tests at random on a loaded machine.
        return
    try:
        libc().prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:
        return
    if os.getppid() != parent:
        # The parent died before prctl took effect.
        os.kill(os.getpid(), signal.SIGTERM)


def find_bash():
    # Looked up with our own PATH, before the test's environment may change it.
    for directory in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        candidate = os.path.join(directory or ".", "bash")
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return "/bin/bash"


class Wrapper(object):
    def __init__(self):
        self.test_pid = None
        self.stopping = False

    def killpg(self, sig):
        if self.test_pid is None:
            return
        try:
            os.killpg(self.test_pid, sig)
        except OSError:
            # ESRCH: the group is gone already.
            pass

    def on_signal(self, signum, frame):
        if self.stopping:
            return
        self.stopping = True
        if self.test_pid is not None:
            self.killpg(signal.SIGHUP)
            reaped = self.wait_leader(KILL_GRACE)
            # Whatever survived the hangup (and the rest of the group) goes now.
            self.killpg(signal.SIGKILL)
            if not reaped:
                self.wait_leader(None)
        os._exit(128 + signum)

    def wait_leader(self, timeout):
        """Reaps the test within timeout seconds (None: no limit)."""
        import time
        deadline = None if timeout is None else time.time() + timeout
        while True:
            try:
                pid, _ = os.waitpid(self.test_pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:
                return True
            except InterruptedError:
                continue
            if pid != 0:
                return True
            if time.time() >= deadline:
                return False
            time.sleep(0.02)


def start_test(wrapper, bash, script, pty):
    """Forks the test; returns the pty master fd in pty mode, else None."""
    master = slave = None
    if pty:
        try:
            master, slave = os.openpty()
        except OSError as e:
            fail(EXIT_SETUP, "cannot open a pty: %s" % e.strerror)
    # Block our stop signals across fork so the handler always knows the pid.
    blocked = set(TERMINATING_SIGNALS)
    signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except OSError as e:
        fail(EXIT_SETUP, "cannot fork: %s" % e.strerror)
    if pid == 0:
        try:
            run_child(bash, script, master, slave)
        except BaseException as e:
            say("cannot start the test: %s" % e)
        os._exit(127)
    wrapper.test_pid = pid
    signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
    if pty:
        os.close(slave)
    return master


def run_child(bash, script, master, slave):
    os.setsid()
    for sig in TEST_DEFAULT_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if slave is not None:
        import fcntl
        import struct
        import termios
        os.close(master)
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        for fd in (0, 1, 2):
            os.dup2(slave, fd)
        if slave > 2:
            os.close(slave)
        os.environ["TERM"] = "vt100"
    try:
        os.execv(bash, [bash, script])
    except OSError as e:
        say("cannot run %s: %s" % (bash, e.strerror))
        os._exit(126 if e.errno == errno.EACCES else 127)


def relay_pty(wrapper, master):
    """Copies the pty output to stderr until the test exits; returns its status."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    # A SIGCHLD handler is needed for the wakeup fd to be written at all.
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w)
    status = None
    try:
        while status is None:
            status = reap_nohang(wrapper.test_pid)
            if status is not None:
                break
            try:
                ready, _, _ = select.select([master, wake_r], [], [], 1.0)
            except InterruptedError:
                continue
            if wake_r in ready:
                try:
                    os.read(wake_r, 512)
                except OSError:
                    pass
            if master in ready and not copy_pty(master):
                # EIO: every slave fd is closed; the test is about to be reaped.
                status = reap_blocking(wrapper.test_pid)
        # Whatever the test wrote just before exiting is still buffered.
        while True:
            ready, _, _ = select.select([master], [], [], 0)
            if not ready or not copy_pty(master):
                break
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    return status


def copy_pty(master):
    try:
        data = os.read(master, 65536)
    except OSError as e:
        if e.errno == errno.EINTR:
            return True
        return False
    if not data:
        return False
    write_all(2, data, None)
    return True


def reap_nohang(pid):
    try:
        got, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError as e:
        fail(EXIT_WAITPID, "waitpid failed: %s" % e.strerror)
    return status if got != 0 else None


def reap_blocking(pid):
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except InterruptedError:
            continue
        except ChildProcessError as e:
            fail(EXIT_WAITPID, "waitpid failed: %s" % e.strerror)


def write_all(fd, data, error_exit):
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as e:
            if error_exit is None:
                return
            fail(error_exit, "cannot write to the control channel: %s" % e.strerror)
        view = view[written:]


def main(argv):
    flags, env_file, script, workdir = parse_args(argv)
    die_with_parent()
    wrapper = Wrapper()
    for sig in TERMINATING_SIGNALS:
        signal.signal(sig, wrapper.on_signal)

    env = read_env_file(env_file)
    bash = find_bash()
    # A relative TEST_SCRIPT names a file from where we were started.
    script = os.path.abspath(script)
    try:
        os.chdir(workdir)
    except OSError as e:
        fail(EXIT_SETUP, "cannot change directory to %s: %s" % (workdir, e.strerror))
    for key, value in env:
        os.environb[key] = value

    # The control channel is our stdout; the test writes everything else to
    # our stderr (the test output file on the controller).
    control_fd = os.dup(1)
    os.set_inheritable(control_fd, True)
    os.dup2(2, 1)
    os.environ["ATEX_TEST_CONTROL"] = str(control_fd)

    master = start_test(wrapper, bash, script, flags["--pty"])
    if master is not None:
        status = relay_pty(wrapper, master)
    else:
        status = reap_blocking(wrapper.test_pid)

    if os.WIFEXITED(status):
        rc = os.WEXITSTATUS(status)
    elif os.WIFSIGNALED(status):
        rc = 128 + os.WTERMSIG(status)
    else:
        fail(EXIT_UNKNOWN_STATUS, "unknown wait status %d" % status)

    if not flags["--no-kill"]:
        # Background processes the test left behind would hold the channel open.
        wrapper.killpg(signal.SIGKILL)
    if flags["--no-exitcode"]:
        os._exit(rc)
    write_all(control_fd, ("exitcode %d\n" % rc).encode("ascii"), EXIT_CONTROL_WRITE)
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

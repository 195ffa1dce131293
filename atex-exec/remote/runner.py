# atex-exec remote test runner: started once per connection, it stays on the
# machine and starts each test, so that a test costs a bash, not a new
# session and a new interpreter. Every test's control stream, output and exit
# status come back multiplexed over our stdout.
#
# A test without wrapper flags starts directly: the runner does what
# wrapper.py's main would (environment file, control fd, own session, work
# directory) and spawns bash with posix_spawn (vfork and exec, no copy of
# this interpreter), then plays the wrapper's part on its end (what is left
# of the process group is killed, "exitcode RC" follows whatever the test
# wrote to its control stream, a stop request hangs the group up and kills
# it after wrapper.KILL_GRACE), so the controller sees the frames a wrapper
# would have caused. A test with flags (--pty, --no-exitcode, --no-kill), or
# a Python without posix_spawn's setsid (before 3.8), gets wrapper.py's main
# in a forked child of this warm process, as before.
#
# Usage: python3 -S runner.py   (next to wrapper.py, which it imports)
#
# stdin carries requests, stdout frames, stderr our own diagnostics. Both
# directions use one layout: a 9-byte header (struct ">cII": kind, sequence
# number, payload length), then the payload.
#
# Requests (controller -> runner):
#   S seq  start a test: the payload is its wrapper's arguments (wrapper.py's
#          argv without the interpreter), each followed by NUL
#   P seq  set a test up: D NUL BASE NUL ENV NUL, then per file PATH NUL
#          MODE (octal) NUL LENGTH (decimal) NUL and LENGTH bytes: D made
#          anew, ENV a copy of BASE (empty without one), the files written;
#          answered by R
#   W seq  write a file: PATH NUL CONTENTS; answered by R
#   B seq  record the boot identity: remove the marker named in the payload
#          (when not empty), create a new one (/run/atex-boot-XXXXXXXXXX,
#          else in /dev/shm); answered by R with BOOT_ID NUL MARKER
#   U seq  remove the paths of the payload (each followed by NUL), trees
#          included; answered by R
#   K seq  send the signal in the payload (decimal) to wrapper seq (a test
#          started directly: SIGHUP to its group, SIGKILL after
#          wrapper.KILL_GRACE, at once for signal 9)
#   C seq  close our end of seq's control stream (its writes fail with EPIPE)
#          and stop taking its output (D is sent)
#   F seq  forget seq: close its pipes, SIGTERM its wrapper if it still runs
#          (a test whose X, E and D were all sent is forgotten without it:
#          the controller sends F only for a test it gives up before)
#   T seq  stop every running wrapper (as Q, without exiting); answered by R
#   Q 0    stop every wrapper (SIGTERM, SIGKILL after STOP_GRACE) and exit 0
# Frames (runner -> controller):
#   H 0    hello: the payload is VERSION
#   C seq  bytes written to the control stream of test seq
#   E seq  that control stream ended (every writer closed it)
#   O seq  output of test seq
#   D seq  that output ended
#   X seq  wrapper seq exited: its exit status, decimal (128+N: signal N)
#   R seq  answer to request seq: "0" (and the answer's data), or "1" and
#          a message
#
# When our stdin ends, our parent (sshd's session) dies, or we get SIGTERM,
# SIGHUP or SIGINT, every wrapper gets SIGTERM (it hangs up its test's process
# group) and SIGKILL after STOP_GRACE, every directly started test's group
# SIGHUP and SIGKILL after wrapper.KILL_GRACE, and we exit: no test outlives
# its connection. Each wrapper also asks for SIGTERM when we die; a test
# started directly cannot (posix_spawn runs no code in the child), so a
# SIGKILL of the runner itself (not of its connection) leaves such a test
# running to its end.

import sys

# The setup takes a `python3` without asking its version: it is asked here.
if sys.version_info < (3, 6):
    sys.stderr.write("atex-exec runner: python 3.6 or newer is needed, %s is %s\n"
                     % (sys.executable, sys.version.split()[0]))
    sys.exit(2)

# Every import is a cost of each session's start: json (with re), shutil
# and ctypes were 12 ms of CPU of it, and are not needed.
import errno  # noqa: E402
import mmap  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import stat  # noqa: E402  (imported by os already)
import struct  # noqa: E402
import time  # noqa: E402

# Also the wrapper's lazy imports, made once here so that forked wrappers
# find them loaded.
import fcntl  # noqa: E402
import termios  # noqa: E402,F401

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wrapper  # noqa: E402

VERSION = b"atex-runner 2"
HEADER = struct.Struct(">cII")
# The largest read of a test's stream, and the size asked for its pipes: a
# test writing a lot (a million results) then moves a megabyte per
# system call and per frame, not 64 KiB.
READ_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
# Up to this size a frame is one write of a joined copy, above it a writev
# of the header and the data in place.
SMALL_FRAME = 4096
# Without a pidfd, how often (seconds) we look whether our parent died.
PARENT_CHECK = 1.0
# Seconds a wrapper has after SIGTERM (it gives its test one second).
STOP_GRACE = 3.0
# The longest payload of a request (a prepare with a large test script).
MAX_REQUEST = 256 * 1024 * 1024
# The wrapper's flags: a test with any of them goes through the wrapper.
WRAPPER_FLAGS = ("--pty", "--no-exitcode", "--no-kill")
# The fd a directly started test finds its control stream on
# (ATEX_TEST_CONTROL), as the wrapper's first free fd would be.
CONTROL_FD = 3


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue


def writev_all(fd, header, data):
    """Writes header then data (a buffer) without joining them."""
    while True:
        try:
            written = os.writev(fd, [header, data])
            break
        except InterruptedError:
            continue
    if written < len(header):
        write_all(fd, header[written:])
        write_all(fd, data)
    elif written < len(header) + len(data):
        write_all(fd, memoryview(data)[written - len(header):])


def big_pipe():
    """A pipe (read end, write end) of READ_SIZE bytes where the kernel
    allows it (else of its default size)."""
    read, write = os.pipe()
    try:
        fcntl.fcntl(write, F_SETPIPE_SZ, READ_SIZE)
    except OSError:
        pass
    return read, write


def exit_status(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return wrapper.EXIT_UNKNOWN_STATUS


def write_file(path, data, mode):
    """Makes PATH a regular file of MODE holding DATA. A regular file with
    no other name is overwritten in place: a new inode per file and test
    cost more (ext4 passes over inodes freed in the last minute when it
    allocates one, so each test's files cost more than the last's), and
    truncating to zero before writing makes ext4 flush on close. Anything
    else there (a link, a directory, a FIFO, a file with other names) is
    removed first and a new file made: never written through."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ELOOP, errno.EISDIR, errno.ENXIO,
                           errno.ETXTBSY, errno.EACCES, errno.EPERM):
            raise
        fd = None
    if fd is not None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            os.close(fd)
            fd = None
    if fd is None:
        remove_tree(path)
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, mode)
    try:
        # An executable's mode regardless of the umask; others' as created.
        if mode & 0o111:
            os.fchmod(fd, mode)
        write_all(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def read_all(fd):
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


NAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def random_name(length):
    """`length` letters and digits, as mktemp's X's become."""
    return bytes(NAME_CHARS[b % len(NAME_CHARS)] for b in os.urandom(length))


def remove_tree(path):
    """rm -rf PATH: a file or link is unlinked, a directory emptied (links
    in it are not followed) and removed; a missing PATH is no error."""
    try:
        os.unlink(path)
        return
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.EISDIR, errno.EPERM):
            raise
    empty_dir(path)
    os.rmdir(path)


def empty_dir(path, keep=()):
    """Removes what the directory PATH holds but the paths in `keep` (as
    PATH/NAME), not following links."""
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.path in keep:
                continue
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                os.unlink(entry.path)


def parse_prepare(payload):
    """The P request: (DIR, BASE, ENV, [(PATH, MODE, DATA), ...])."""
    fields = payload.split(b"\0", 3)
    if len(fields) != 4:
        raise ValueError("fewer than three paths")
    test_dir, base, env, rest = fields
    files = []
    pos = 0
    while pos < len(rest):
        end = rest.index(b"\0", pos)
        path = rest[pos:end]
        mode_end = rest.index(b"\0", end + 1)
        mode = int(rest[end + 1:mode_end], 8)
        length_end = rest.index(b"\0", mode_end + 1)
        length = int(rest[mode_end + 1:length_end])
        pos = length_end + 1 + length
        if length < 0 or pos > len(rest):
            raise ValueError("a file runs past the request's end")
        files.append((path, mode, rest[length_end + 1:pos]))
    return test_dir, base, env, files


def close_quietly(fd):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


class Test(object):
    """One started test: its wrapper, or (direct) the test's own bash."""

    __slots__ = ("pid", "control", "output", "direct", "stop_signal",
                 "kill_at", "control_ended", "closed", "reaped")

    def __init__(self, pid, control, output, direct=False):
        self.pid = pid  # running: the wrapper's pid, or the test's (= its group)
        self.control = control  # our read end of its control stream, while read
        self.output = output  # our read end of its output, while read
        self.direct = direct
        # Direct tests only:
        self.stop_signal = None  # the signal it was stopped for
        self.kill_at = None  # when its group gets SIGKILL
        self.control_ended = False  # its control stream ended, E not sent yet
        self.closed = False  # the controller closed its control stream
        self.reaped = False


class Runner(object):
    def __init__(self):
        self.tests = {}  # seq -> Test
        self.by_pid = {}  # running pid -> (seq, Test)
        self.streams = {}  # our read end -> (seq, data kind, end kind)
        self.inbuf = bytearray()
        self.stopping = False
        self.poll = select.poll()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        # Where we were started: relative test scripts are taken from here,
        # and we come back here after starting a test in its work directory.
        self.home = os.open(".", os.O_RDONLY)
        self.parent = None  # our parent's pid, while watched
        self.parent_fd = None  # a pidfd on it
        self.direct = hasattr(os, "posix_spawn")
        self.bash = None
        # Every read of a test's stream lands here, and is sent from here:
        # anonymous memory, so that only the pages a read filled are ever
        # resident (a runner whose tests write little stays small).
        self.buf = mmap.mmap(-1, READ_SIZE)
        self.view = memoryview(self.buf)

    # Frames.

    def send(self, kind, seq, data=b""):
        header = HEADER.pack(kind, seq, len(data))
        try:
            if len(data) <= SMALL_FRAME:
                write_all(1, header + data)
            else:
                writev_all(1, header, data)
        except OSError:
            # The controller is gone: nobody is left to report to.
            self.shutdown(0)

    def answer(self, seq, error=None, data=b""):
        if error is None:
            self.send(b"R", seq, b"0" + data)
        else:
            self.send(b"R", seq, b"1" + error.encode("utf-8", "replace"))

    # Life cycle.

    def watch_parent(self):
        """Our parent is sshd's session (or the container runtime, or the
        controller itself): its death is the connection's, and ends us as
        SIGTERM would, even while something still holds our stdin. Watched
        by a pidfd in our poll (Python 3.9+, Linux 5.3+), else by checking
        our parent pid at least every PARENT_CHECK seconds. Not by
        PR_SET_PDEATHSIG, whose ctypes would be a third of our start (a
        forked wrapper still asks for it)."""
        parent = os.getppid()
        if parent <= 1:
            # 0: our parent is outside our PID namespace (under `podman
            # exec`, runc, which exits on purpose right after starting us);
            # 1: it is gone already, or we were started by init.
            return
        self.parent = parent
        try:
            self.parent_fd = os.pidfd_open(parent)
        except (AttributeError, OSError):
            self.parent_fd = None
            return
        self.poll.register(self.parent_fd, select.POLLIN)
        # It may have died before the pidfd was opened.
        self.check_parent()

    def check_parent(self):
        if self.parent is not None and os.getppid() != self.parent:
            self.shutdown(128 + signal.SIGTERM)

    def main(self):
        self.watch_parent()
        for sig in wrapper.TERMINATING_SIGNALS:
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.poll.register(0, select.POLLIN)
        self.poll.register(self.wake_r, select.POLLIN)
        self.send(b"H", 0, VERSION)
        while True:
            for fd, _ in self.poll.poll(self.timeout_ms()):
                if fd == 0:
                    self.read_requests()
                elif fd == self.wake_r:
                    try:
                        os.read(self.wake_r, 512)
                    except OSError:
                        pass
                    self.reap()
                elif fd in self.streams:
                    self.relay(fd)
                elif fd == self.parent_fd:
                    self.shutdown(128 + signal.SIGTERM)
            if self.parent_fd is None:
                self.check_parent()
            self.kill_late_groups()

    def on_signal(self, signum, frame):
        self.shutdown(128 + signum)

    def stop_all(self):
        """Stops every running test: SIGTERM to each wrapper (SIGKILL after
        STOP_GRACE), SIGHUP to each direct test's group (SIGKILL after
        wrapper.KILL_GRACE); returns once all are reaped."""
        for pid, (_, test) in list(self.by_pid.items()):
            if test.direct:
                self.stop_direct(test, signal.SIGTERM)
            else:
                self.signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.by_pid and time.monotonic() < deadline:
            if not self.reap():
                self.kill_late_groups()
                time.sleep(0.02)
        for pid, (_, test) in list(self.by_pid.items()):
            if test.direct:
                self.killpg(pid, signal.SIGKILL)
            else:
                self.signal_pid(pid, signal.SIGKILL)
        while self.by_pid and self.reap(block=True):
            pass

    def shutdown(self, code):
        if self.stopping:
            return
        self.stopping = True
        self.stop_all()
        os._exit(code)

    def signal_pid(self, pid, sig):
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    def killpg(self, pgid, sig):
        try:
            os.killpg(pgid, sig)
        except OSError:
            # ESRCH: the group is gone already.
            pass

    def reap(self, block=False):
        """Reaps tests and wrappers and reports them; returns whether one was
        reaped."""
        reaped = False
        while self.by_pid:
            try:
                pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            reaped = True
            seq, test = self.by_pid.pop(pid, (None, None))
            if test is not None:
                test.pid = None
                if test.direct:
                    self.direct_ended(seq, test, pid, status)
                elif not self.stopping and self.tests.get(seq) is test:
                    self.send(b"X", seq, str(exit_status(status)).encode("ascii"))
                    self.forget_if_sent(seq, test)
            if block:
                break
        return reaped

    # Streams.

    def watch(self, fd, seq, kind, end):
        self.streams[fd] = (seq, kind, end)
        self.poll.register(fd, select.POLLIN)

    def unwatch(self, fd):
        if fd is None or fd not in self.streams:
            return
        del self.streams[fd]
        self.poll.unregister(fd)
        os.close(fd)

    def relay(self, fd, drain=False):
        """Sends what fd has (all of it when drain), or its end."""
        seq, kind, end = self.streams[fd]
        while True:
            try:
                n = os.readv(fd, [self.buf])
            except (InterruptedError, BlockingIOError):
                return
            except OSError:
                n = 0
            if not n:
                break
            self.send(kind, seq, self.view[:n])
            if not drain:
                return
        self.unwatch(fd)
        test = self.tests.get(seq)
        if test is None:
            self.send(end, seq)
            return
        if kind == b"C":
            test.control = None
            if test.direct and not test.reaped:
                # "exitcode" is still to come: the end waits for it.
                test.control_ended = True
                return
        else:
            test.output = None
        self.send(end, seq)
        self.forget_if_sent(seq, test)

    # Requests.

    def read_requests(self):
        try:
            data = os.read(0, READ_SIZE)
        except InterruptedError:
            return
        except OSError:
            data = b""
        if not data:
            self.shutdown(0)
        self.inbuf += data
        while len(self.inbuf) >= HEADER.size:
            kind, seq, length = HEADER.unpack_from(self.inbuf)
            if length > MAX_REQUEST:
                wrapper.say("runner: request of %d bytes refused" % length)
                self.shutdown(wrapper.EXIT_SETUP)
            if len(self.inbuf) < HEADER.size + length:
                break
            payload = bytes(self.inbuf[HEADER.size:HEADER.size + length])
            del self.inbuf[:HEADER.size + length]
            self.handle(kind, seq, payload)

    def handle(self, kind, seq, payload):
        if kind == b"S":
            self.start(seq, payload)
        elif kind == b"P":
            self.answer(seq, self.prepare(payload))
        elif kind == b"B":
            try:
                self.answer(seq, data=self.boot_identity(payload))
            except OSError as e:
                self.answer(seq, "record the boot identity: %s: %s"
                            % (os.fsdecode(e.filename or b""), e.strerror))
        elif kind == b"U":
            try:
                for path in payload.split(b"\0")[:-1]:
                    remove_tree(path)
                self.answer(seq)
            except OSError as e:
                self.answer(seq, "remove %s: %s" % (os.fsdecode(e.filename or b""), e.strerror))
        elif kind == b"W":
            path, _, contents = payload.partition(b"\0")
            try:
                write_file(path, contents, 0o644)
                self.answer(seq)
            except OSError as e:
                self.answer(seq, "write %s: %s" % (os.fsdecode(path), e.strerror))
        elif kind == b"K":
            test = self.tests.get(seq)
            if test is not None and test.pid is not None:
                if test.direct:
                    self.stop_direct(test, int(payload))
                else:
                    self.signal_pid(test.pid, int(payload))
        elif kind == b"C":
            # The controller closed the channel (the test sent disconnect):
            # as when a connection goes, what the test writes after it is
            # not kept, the wrapper's complaint that it cannot write its
            # exit code included.
            test = self.tests.get(seq)
            if test is not None:
                test.closed = True
                test.control_ended = False
                self.unwatch(test.control)
                test.control = None
                if test.output is not None:
                    self.unwatch(test.output)
                    test.output = None
                    self.send(b"D", seq)
        elif kind == b"F":
            test = self.tests.pop(seq, None)
            if test is not None:
                self.unwatch(test.control)
                self.unwatch(test.output)
                if test.pid is not None:
                    if test.direct:
                        self.stop_direct(test, signal.SIGTERM)
                    else:
                        self.signal_pid(test.pid, signal.SIGTERM)
        elif kind == b"T":
            self.stop_all()
            self.answer(seq)
        elif kind == b"Q":
            self.shutdown(0)
        else:
            wrapper.say("runner: unknown request %r" % kind)
            self.shutdown(wrapper.EXIT_SETUP)

    def prepare(self, payload):
        try:
            test_dir, base, env, files = parse_prepare(payload)
            if os.path.isdir(test_dir) and not os.path.islink(test_dir):
                # Made anew by emptying it of all but the files written
                # below (rewritten in place by write_file): an rmdir and a
                # mkdir per test were a tenth of our time.
                empty_dir(test_dir, keep={path for path, _, _ in files})
            else:
                remove_tree(test_dir)
                os.mkdir(test_dir)
            try:
                fd = os.open(base, os.O_RDONLY)
            except FileNotFoundError:
                write_file(env, b"", 0o644)
            else:
                try:
                    write_file(env, read_all(fd), 0o644)
                finally:
                    os.close(fd)
            for path, mode, data in files:
                write_file(path, data, mode)
        except OSError as e:
            return "set the test up: %s: %s" % (os.fsdecode(e.filename or b""), e.strerror)
        except ValueError as e:
            return "set the test up: bad request: %s" % e
        return None

    def boot_identity(self, previous):
        """Removes the marker `previous` (when given), reads the boot id and
        creates a new marker; returns BOOT_ID NUL MARKER."""
        if previous:
            try:
                os.unlink(previous)
            except OSError:
                pass
        fd = os.open("/proc/sys/kernel/random/boot_id", os.O_RDONLY)
        try:
            boot_id = read_all(fd).strip()
        finally:
            os.close(fd)
        error = None
        for directory in (b"/run", b"/dev/shm"):
            for _ in range(100):
                marker = directory + b"/atex-boot-" + random_name(10)
                try:
                    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    continue
                except OSError as e:
                    error = e
                    break
                os.close(fd)
                return boot_id + b"\0" + marker
        raise error or OSError(errno.EEXIST, "no free marker name", "/dev/shm")

    def start(self, seq, payload):
        args = [os.fsdecode(a) for a in payload.split(b"\0")[:-1]]
        if self.direct and len(args) == 3 and args[0] not in WRAPPER_FLAGS:
            if self.start_direct(seq, *args):
                return
        self.start_wrapper(seq, args)

    # Tests started through a forked wrapper.

    def start_wrapper(self, seq, args):
        # A wrapper asks for PR_SET_PDEATHSIG through ctypes: loaded here,
        # once, so that every forked wrapper finds it loaded.
        try:
            wrapper.libc()
        except Exception:
            pass
        control_r, control_w = big_pipe()
        output_r, output_w = big_pipe()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (control_r, control_w, output_r, output_w):
                os.close(fd)
            self.tests[seq] = Test(None, None, None)
            self.cannot_start(seq, "cannot fork: %s" % e.strerror)
            return
        if pid == 0:
            try:
                self.become_wrapper(control_w, output_w, (control_r, output_r), args)
            finally:
                os._exit(wrapper.EXIT_SETUP)
        os.close(control_w)
        os.close(output_w)
        test = Test(pid, control_r, output_r)
        self.tests[seq] = test
        self.by_pid[pid] = (seq, test)
        self.watch(control_r, seq, b"C", b"E")
        self.watch(output_r, seq, b"O", b"D")

    def cannot_start(self, seq, message):
        """Reports a test that did not start, as its wrapper would have: the
        message in its output, no control, exit status EXIT_SETUP."""
        self.send(b"O", seq, ("atex-exec wrapper: " + message + "\n").encode("utf-8", "replace"))
        self.send(b"E", seq)
        self.send(b"D", seq)
        self.send(b"X", seq, str(wrapper.EXIT_SETUP).encode("ascii"))

    def become_wrapper(self, control_w, output_w, ours, args):
        """In the forked child: be `wrapper.py ARGS` with stdout the control
        pipe and stderr the output pipe."""
        signal.set_wakeup_fd(-1)
        for sig in wrapper.TERMINATING_SIGNALS + (signal.SIGCHLD,):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(control_w, 1)
        os.dup2(output_w, 2)
        # Nothing of the runner stays open in the test: another test's
        # streams would never end.
        # Nor our read ends: the test's writes must fail once we close ours.
        for fd in [null, control_w, output_w, self.wake_r, self.wake_w, self.home,
                   self.parent_fd] + list(ours) + list(self.streams):
            if fd is not None and fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        wrapper.main(args)

    # Tests started directly (see the top of this file).

    def start_direct(self, seq, env_file, script, workdir):
        """Starts `bash SCRIPT` as wrapper.py's main would; returns False when
        this Python cannot (the wrapper is then forked instead)."""
        test = Test(None, None, None, direct=True)
        self.tests[seq] = test
        try:
            env = dict(os.environb)
            env.update(wrapper.load_env_file(env_file))
        except wrapper.SetupError as e:
            self.cannot_start(seq, str(e))
            return True
        env[b"ATEX_TEST_CONTROL"] = str(CONTROL_FD).encode("ascii")
        if self.bash is None:
            self.bash = wrapper.find_bash()
        # A relative TEST_SCRIPT names a file from where we were started.
        script = os.path.abspath(script)
        control_r, control_w = big_pipe()
        output_r, output_w = big_pipe()
        if control_w == CONTROL_FD:
            # dup2 onto itself would leave it close-on-exec.
            moved = os.dup(control_w)
            os.close(control_w)
            control_w = moved
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, output_w, 1),
            (os.POSIX_SPAWN_DUP2, output_w, 2),
            (os.POSIX_SPAWN_DUP2, control_w, CONTROL_FD),
        ]
        pid = error = spawn_error = None
        try:
            os.chdir(workdir)
        except OSError as e:
            error = "cannot change directory to %s: %s" % (workdir, e.strerror)
        else:
            try:
                pid = os.posix_spawn(
                    self.bash, [self.bash, script], env, file_actions=actions,
                    setsid=True, setsigdef=wrapper.TEST_DEFAULT_SIGNALS,
                    setsigmask=())
            except NotImplementedError:
                # No POSIX_SPAWN_SETSID in this libc: the wrapper, from now on.
                self.direct = False
            except OSError as e:
                spawn_error = e
            finally:
                os.fchdir(self.home)
        os.close(control_w)
        os.close(output_w)
        if not self.direct or error is not None:
            os.close(control_r)
            os.close(output_r)
            if error is None:
                del self.tests[seq]
                return False
            self.cannot_start(seq, error)
            return True
        os.set_blocking(control_r, False)
        test.control = control_r
        test.output = output_r
        self.watch(control_r, seq, b"C", b"E")
        self.watch(output_r, seq, b"O", b"D")
        if spawn_error is not None:
            if spawn_error.errno in (errno.EAGAIN, errno.ENOMEM):
                # The fork part failed, as the wrapper's fork would have.
                self.unwatch(test.control)
                self.unwatch(test.output)
                test.control = test.output = None
                self.cannot_start(seq, "cannot fork: %s" % spawn_error.strerror)
                return True
            # bash could not be run: the wrapper's child would have said so
            # and ended 126 or 127.
            self.send(b"O", seq, ("atex-exec wrapper: cannot run %s: %s\n" % (self.bash, spawn_error.strerror)).encode("utf-8", "replace"))
            self.end_control(seq, test, 126 if spawn_error.errno == errno.EACCES else 127)
            test.reaped = True
            if test.control_ended:
                test.control_ended = False
                self.send(b"E", seq)
            self.send(b"X", seq, b"0")
            return True
        test.pid = pid
        self.by_pid[pid] = (seq, test)
        return True

    def stop_direct(self, test, sig):
        """Stops a direct test as its wrapper would on signal sig: SIGHUP to
        its group, SIGKILL after wrapper.KILL_GRACE (at once for SIGKILL)."""
        if test.pid is None:
            return
        if test.stop_signal is None:
            test.stop_signal = sig
            self.killpg(test.pid, signal.SIGHUP)
            test.kill_at = time.monotonic() + wrapper.KILL_GRACE
        if sig == signal.SIGKILL:
            self.killpg(test.pid, signal.SIGKILL)

    def timeout_ms(self):
        """How long poll may wait: until the next group to kill, or for ever
        (at most PARENT_CHECK without a pidfd on our parent)."""
        due = [t.kill_at for _, t in self.by_pid.values() if t.kill_at is not None]
        if self.parent is not None and self.parent_fd is None:
            due.append(time.monotonic() + PARENT_CHECK)
        if not due:
            return None
        return max(0, int((min(due) - time.monotonic()) * 1000) + 1)

    def kill_late_groups(self):
        now = time.monotonic()
        for pid, (_, test) in list(self.by_pid.items()):
            if test.kill_at is not None and test.kill_at <= now:
                test.kill_at = None
                self.killpg(pid, signal.SIGKILL)

    def direct_ended(self, seq, test, pid, status):
        """A direct test's bash was reaped: what its wrapper would do now."""
        test.kill_at = None
        # Background processes the test left behind would hold its streams
        # open (daemons that called setsid escape, as with the wrapper).
        self.killpg(pid, signal.SIGKILL)
        if self.stopping or self.tests.get(seq) is not test:
            test.reaped = True
            return
        if test.stop_signal is not None:
            # Stopped: no exitcode, the wrapper's 128 + signal.
            code = 128 + test.stop_signal
        elif test.closed:
            # The controller closed the control stream (disconnect): the
            # wrapper's write of exitcode would fail.
            code = wrapper.EXIT_CONTROL_WRITE
        else:
            self.end_control(seq, test, exit_status(status))
            code = 0
        test.reaped = True
        if test.control_ended:
            test.control_ended = False
            self.send(b"E", seq)
        self.send(b"X", seq, str(code).encode("ascii"))
        self.forget_if_sent(seq, test)

    def forget_if_sent(self, seq, test):
        """Forgets a test whose exit status, control stream's end and
        output's end (X, E, D) were all sent: what F would do, without a
        request per test."""
        if (test.pid is None and test.control is None and test.output is None
                and not test.control_ended and self.tests.get(seq) is test):
            del self.tests[seq]

    def end_control(self, seq, test, rc):
        """Sends "exitcode RC" after all the test wrote to its control
        stream (the stream's end, if it came, is left to the caller)."""
        if test.control is not None:
            self.relay(test.control, drain=True)
        self.send(b"C", seq, ("exitcode %d\n" % rc).encode("ascii"))


if __name__ == "__main__":
    try:
        Runner().main()
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        wrapper.say("runner: %s: %s" % (type(e).__name__, e))
        os._exit(wrapper.EXIT_SETUP)

# atex-exec remote test runner: started once per connection, it stays on the
# machine and starts each test's wrapper (wrapper.py's main) in a forked child
# of this warm process, so that a test costs a fork and a bash, not a new
# session and a new interpreter. Every test's control stream, output and exit
# status come back multiplexed over our stdout.
#
# Usage: python3 -S runner.py   (next to wrapper.py, which it imports)
#
# stdin carries requests, stdout frames, stderr our own diagnostics. Both
# directions use one layout: a 9-byte header (struct ">cII": kind, sequence
# number, payload length), then the payload.
#
# Requests (controller -> runner):
#   S seq  start a wrapper: the payload is its arguments (wrapper.py's argv
#          without the interpreter), each followed by NUL
#   P seq  set a test up: JSON {"dir": D, "plan_env": [BASE, ENV],
#          "files": [[PATH, MODE, TEXT], ...]}: D made anew, ENV a copy of
#          BASE (empty without one), the files written; answered by R
#   W seq  write a file: PATH NUL CONTENTS; answered by R
#   K seq  send the signal in the payload (decimal) to wrapper seq
#   C seq  close our end of seq's control stream (its writes fail with EPIPE)
#          and stop taking its output (D is sent)
#   F seq  forget seq: close its pipes, SIGTERM its wrapper if it still runs
#   T seq  stop every running wrapper (as Q, without exiting); answered by R
#   Q 0    stop every wrapper (SIGTERM, SIGKILL after STOP_GRACE) and exit 0
# Frames (runner -> controller):
#   H 0    hello: the payload is VERSION
#   C seq  bytes written to the control stream of test seq
#   E seq  that control stream ended (every writer closed it)
#   O seq  output of test seq
#   D seq  that output ended
#   X seq  wrapper seq exited: its exit status, decimal (128+N: signal N)
#   R seq  answer to request seq: "0", or "1" and a message
#
# When our stdin ends, our parent (sshd's session) dies, or we get SIGTERM,
# SIGHUP or SIGINT, every wrapper gets SIGTERM (it hangs up its test's process
# group) and SIGKILL after STOP_GRACE, and we exit: no test outlives its
# connection. Each wrapper also asks for SIGTERM when we die.

import json
import os
import select
import shutil
import signal
import struct
import sys
import time

# The wrapper's lazy imports, made once here so that forked wrappers find them
# loaded.
import fcntl  # noqa: F401
import termios  # noqa: F401

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wrapper  # noqa: E402

VERSION = b"atex-runner 1"
HEADER = struct.Struct(">cII")
READ_SIZE = 65536
# Seconds a wrapper has after SIGTERM (it gives its test one second).
STOP_GRACE = 3.0
# The longest payload of a request (a prepare with a large test script).
MAX_REQUEST = 256 * 1024 * 1024


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except InterruptedError:
            continue


def exit_status(status):
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return wrapper.EXIT_UNKNOWN_STATUS


def write_file(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if mode & 0o111:
            os.fchmod(fd, mode)
        write_all(fd, data)
    finally:
        os.close(fd)


class Test(object):
    __slots__ = ("pid", "control", "output")

    def __init__(self, pid, control, output):
        self.pid = pid
        self.control = control
        self.output = output


class Runner(object):
    def __init__(self):
        self.tests = {}  # seq -> Test
        self.by_pid = {}  # running wrapper pid -> seq
        self.streams = {}  # our read end -> (seq, data kind, end kind)
        self.inbuf = bytearray()
        self.stopping = False
        self.poll = select.poll()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)

    # Frames.

    def send(self, kind, seq, data=b""):
        try:
            write_all(1, HEADER.pack(kind, seq, len(data)) + data)
        except OSError:
            # The controller is gone: nobody is left to report to.
            self.shutdown(0)

    def answer(self, seq, error=None):
        if error is None:
            self.send(b"R", seq, b"0")
        else:
            self.send(b"R", seq, b"1" + error.encode("utf-8", "replace"))

    # Life cycle.

    def main(self):
        # Our parent is sshd's session (or the container runtime, or the
        # controller itself): its death is the connection's.
        wrapper.die_with_parent()
        for sig in wrapper.TERMINATING_SIGNALS:
            signal.signal(sig, self.on_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        self.poll.register(0, select.POLLIN)
        self.poll.register(self.wake_r, select.POLLIN)
        self.send(b"H", 0, VERSION)
        while True:
            for fd, _ in self.poll.poll():
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

    def on_signal(self, signum, frame):
        self.shutdown(128 + signum)

    def stop_wrappers(self):
        """SIGTERM to every running wrapper, SIGKILL after STOP_GRACE."""
        for pid in list(self.by_pid):
            self.signal_pid(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.by_pid and time.monotonic() < deadline:
            if not self.reap():
                time.sleep(0.02)
        for pid in list(self.by_pid):
            self.signal_pid(pid, signal.SIGKILL)
        while self.by_pid and self.reap(block=True):
            pass

    def shutdown(self, code):
        if self.stopping:
            return
        self.stopping = True
        self.stop_wrappers()
        os._exit(code)

    def signal_pid(self, pid, sig):
        try:
            os.kill(pid, sig)
        except OSError:
            pass

    def reap(self, block=False):
        """Reaps wrappers and reports them; returns whether one was reaped."""
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
            seq = self.by_pid.pop(pid, None)
            if seq is not None:
                test = self.tests.get(seq)
                if test is not None:
                    test.pid = None
                if not self.stopping:
                    self.send(b"X", seq, str(exit_status(status)).encode("ascii"))
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

    def relay(self, fd):
        seq, kind, end = self.streams[fd]
        try:
            data = os.read(fd, READ_SIZE)
        except InterruptedError:
            return
        except OSError:
            data = b""
        if data:
            self.send(kind, seq, data)
            return
        self.unwatch(fd)
        test = self.tests.get(seq)
        if test is not None:
            if kind == b"C":
                test.control = None
            else:
                test.output = None
        self.send(end, seq)

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
                self.signal_pid(test.pid, int(payload))
        elif kind == b"C":
            # The controller closed the channel (the test sent disconnect):
            # as when a connection goes, what the test writes after it is
            # not kept, the wrapper's complaint that it cannot write its
            # exit code included.
            test = self.tests.get(seq)
            if test is not None:
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
                    self.signal_pid(test.pid, signal.SIGTERM)
        elif kind == b"T":
            self.stop_wrappers()
            self.answer(seq)
        elif kind == b"Q":
            self.shutdown(0)
        else:
            wrapper.say("runner: unknown request %r" % kind)
            self.shutdown(wrapper.EXIT_SETUP)

    def prepare(self, payload):
        try:
            spec = json.loads(payload.decode("utf-8"))
            test_dir = spec["dir"]
            base, env = spec["plan_env"]
            if os.path.islink(test_dir):
                os.unlink(test_dir)
            elif os.path.exists(test_dir):
                shutil.rmtree(test_dir)
            os.mkdir(test_dir)
            if os.path.isfile(base):
                shutil.copyfile(base, env)
            else:
                write_file(env, b"", 0o644)
            for path, mode, text in spec["files"]:
                write_file(path, text.encode("utf-8"), mode)
        except OSError as e:
            return "set the test up: %s: %s" % (e.filename or "", e.strerror)
        except (ValueError, KeyError, TypeError) as e:
            return "set the test up: bad request: %s" % e
        return None

    def start(self, seq, payload):
        args = [os.fsdecode(a) for a in payload.split(b"\0")[:-1]]
        control_r, control_w = os.pipe()
        output_r, output_w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (control_r, control_w, output_r, output_w):
                os.close(fd)
            self.tests[seq] = Test(None, None, None)
            self.send(b"E", seq)
            self.send(b"D", seq)
            self.send(b"X", seq, str(wrapper.EXIT_SETUP).encode("ascii"))
            wrapper.say("runner: cannot fork: %s" % e.strerror)
            return
        if pid == 0:
            try:
                self.become_wrapper(control_w, output_w, (control_r, output_r), args)
            finally:
                os._exit(wrapper.EXIT_SETUP)
        os.close(control_w)
        os.close(output_w)
        self.tests[seq] = Test(pid, control_r, output_r)
        self.by_pid[pid] = seq
        self.watch(control_r, seq, b"C", b"E")
        self.watch(output_r, seq, b"O", b"D")

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
        for fd in [null, control_w, output_w, self.wake_r, self.wake_w] + list(ours) + list(self.streams):
            if fd > 2:
                try:
                    os.close(fd)
                except OSError:
                    pass
        wrapper.main(args)


if __name__ == "__main__":
    try:
        Runner().main()
    except BaseException as e:
        if isinstance(e, SystemExit):
            raise
        wrapper.say("runner: %s: %s" % (type(e).__name__, e))
        os._exit(wrapper.EXIT_SETUP)

# The runner's start, run as `python3 -S -c BOOT W/runner.py` (atex-exec,
# crate::runner::Runner::start; decision 45): runs W/runner.py as __main__
# with W/wrapper.py loaded as the module `wrapper` it imports, from code
# compiled once per machine, login and Python. Compiling the two was half
# of the runner's start (about 10 of 20 ms of CPU).
#
# The compiled code is kept in ${XDG_CACHE_HOME:-$HOME/.cache}/atex/
# runner-<cache tag>-<sys.hexversion>.bin (marshal: both sources, then both
# code objects), and used only when both sources are byte for byte the ones
# in W, and the file and its directory belong to this user and nobody
# else may write them. Anything else (no such file, another atex's
# sources, a damaged file, no writable HOME) compiles the sources as
# before, and writes the file anew unless bytecode writing is off (-B,
# PYTHONDONTWRITEBYTECODE). Python before 3.6 runs the runner as it is,
# which says it needs 3.6.
import sys

# `-c` puts the working directory (the login's home) first on the path:
# nothing is imported from there.
if sys.path and sys.path[0] == "":
    del sys.path[0]

import marshal  # noqa: E402
import os  # noqa: E402


def boot():
    runner_path = os.path.abspath(sys.argv[1])
    wrapper_path = os.path.join(os.path.dirname(runner_path), "wrapper.py")
    with open(runner_path, "rb") as f:
        runner_src = f.read()
    if sys.version_info < (3, 6):
        return compile(runner_src, runner_path, "exec"), None, runner_path, wrapper_path
    with open(wrapper_path, "rb") as f:
        wrapper_src = f.read()
    cache = cache_file()
    codes = cached(cache, runner_src, wrapper_src) if cache else None
    if codes is None:
        codes = (compile(runner_src, runner_path, "exec"),
                 compile(wrapper_src, wrapper_path, "exec"))
        if cache and not sys.flags.dont_write_bytecode:
            store(cache, (runner_src, wrapper_src) + codes)
    return codes[0], codes[1], runner_path, wrapper_path


def cache_file():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    implementation = sys.implementation.cache_tag or sys.implementation.name
    return os.path.join(base, "atex", "runner-%s-%x.bin" % (implementation, sys.hexversion))


def ours(st):
    return st.st_uid == os.getuid() and not st.st_mode & 0o022


def cached(cache, runner_src, wrapper_src):
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as f:
            if not (ours(os.fstat(f.fileno())) and ours(os.stat(os.path.dirname(cache)))):
                return None
            entry = marshal.loads(f.read())
        if entry[0] == runner_src and entry[1] == wrapper_src:
            return entry[2], entry[3]
    except Exception:
        pass
    return None


def store(cache, entry):
    directory = os.path.dirname(cache)
    temp = os.path.join(directory, ".%s.%d" % (os.path.basename(cache), os.getpid()))
    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        if not ours(os.stat(directory)):
            return
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(marshal.dumps(entry))
        os.rename(temp, cache)
    except Exception:
        try:
            os.unlink(temp)
        except OSError:
            pass


runner_code, wrapper_code, runner_path, wrapper_path = boot()
if wrapper_code is not None:
    wrapper = type(sys)("wrapper")
    wrapper.__file__ = wrapper_path
    sys.modules["wrapper"] = wrapper
    exec(wrapper_code, wrapper.__dict__)
sys.argv = [runner_path]
exec(runner_code, {"__name__": "__main__", "__file__": runner_path, "__builtins__": __builtins__})

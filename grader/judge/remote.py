"""The judge's side of the implementation under test: the ``impl`` object every graded test uses.

The judge (pytest with the kit's tests) never imports the submission. It talks to a *worker*
(:mod:`grader.sandboxed.worker`) that does, through a :class:`Session`:

- :class:`ProcessSession`: the worker is a separate process (sandboxed by the grader); replies are decoded by
  :mod:`grader.sandboxed.codec`, which cannot execute code. Used by the grader, Gradescope and the kit's own CI.
- :class:`LocalSession`: the same requests and the same codec round trip, in this process
  (``--isolation none``: a student's quick local loop, with plain tracebacks).

Test authors see one API (docs/CONVENTIONS.md §5)::

    model = impl.DynamicsModel(state_dim=4, action_dim=2)   # a Remote handle to an object in the worker
    out = model(states, actions)                            # a method call: plain data comes back
    grads = impl.run(probe, model, batch)                   # probe(worker_impl, model, batch) runs there

Values come back as plain data (tensors, arrays, numbers, strings, lists, tuples, dicts); every other object
stays in the worker and comes back as a :class:`Remote` handle. An exception the implementation raises
comes back as a :class:`StudentError` that is also an instance of the nearest built-in exception class
(``pytest.raises(ValueError)`` works), carrying the student's traceback as a note. The judge's own frames
are hidden from reports (``__tracebackhide__``): a student sees the test's line and their own traceback.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np

from grader.sandboxed.codec import MAX_FRAME_BYTES, CodecError, Handle, Record, RemoteErrorInfo, decode
from grader.sandboxed.worker import HANDLE_TAG, as_array, as_list

#: Worker output kept per test for the report (the rest is counted, not kept).
OUTPUT_LIMIT = 64 * 2**10


class WorkerLost(AssertionError):
    """The worker died, hung past its time, or sent something that is not data: the test fails."""


class StudentError(Exception):
    """An exception raised by the implementation under test, re-raised in the judge.

    Instances are also instances of the nearest built-in class of the original (``ValueError``, ...).
    ``remote_type`` is the original class name, ``remote_traceback`` the worker's formatted traceback.
    """

    remote_type: str = ""
    remote_traceback: str = ""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


_ERROR_CLASSES: dict[str, type[StudentError]] = {}
_NOT_MAPPED = {"BaseException", "SystemExit", "KeyboardInterrupt", "GeneratorExit", "object"}


def _error_class(mro: list[str]) -> type[StudentError]:
    """``StudentError`` combined with the first built-in exception class in ``mro``."""
    base = next((getattr(builtins, n) for n in mro if n not in _NOT_MAPPED and isinstance(getattr(builtins, n, None), type)
                 and issubclass(getattr(builtins, n), BaseException)), Exception)  # fmt: skip
    name = base.__name__
    if name not in _ERROR_CLASSES:
        try:
            _ERROR_CLASSES[name] = type(name, (StudentError, base), {"__module__": "student"})
        except TypeError:  # an incompatible layout: keep the name only
            _ERROR_CLASSES[name] = type(name, (StudentError,), {"__module__": "student"})
    return _ERROR_CLASSES[name]


def student_error(info: RemoteErrorInfo) -> StudentError:
    cls = _error_class(info.mro)
    exc = StudentError.__new__(cls)
    exc.args = (info.message,)
    exc.remote_type = info.type
    exc.remote_traceback = info.traceback
    if info.traceback:
        exc.add_note("Traceback in the implementation under test:\n" + info.traceback.rstrip())
    elif info.type != cls.__name__:
        exc.add_note(f"(raised as {info.type})")
    return exc


# --------------------------------------------------------------------------------------------- handles
class Remote:
    """A handle to an object that lives in the worker. Attribute access, calls, ``len``, ``[]``, ``list()`` and
    ``numpy.asarray()`` are requests to the worker (one each); the answers are plain data or further handles.
    Passed to a call or to ``impl.run``, a handle turns back into its object in the worker."""

    __slots__ = ("_session", "_id", "_generation", "_type", "_name")

    def __init__(self, session: Session, handle: Handle) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_id", handle.id)
        object.__setattr__(self, "_generation", session.generation)
        object.__setattr__(self, "_type", handle.type)
        object.__setattr__(self, "_name", handle.name)

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if (name.startswith("__") and name.endswith("__")) or name in Remote.__slots__:
            raise AttributeError(name)  # numpy, pytest and copy probe dunders: never a round trip
        if name in self._session.methods.get(self._type, ()):
            return RemoteMethod(self, name)
        return self._session.request("getattr", self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        __tracebackhide__ = True
        self._session.request("setattr", self, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._session.request("call", self, args, kwargs)

    def __getitem__(self, key: Any) -> Any:
        __tracebackhide__ = True
        return self._session.request("callattr", self, "__getitem__", (key,), {})

    def __setitem__(self, key: Any, value: Any) -> None:
        __tracebackhide__ = True
        self._session.request("callattr", self, "__setitem__", (key, value), {})

    def __len__(self) -> int:
        __tracebackhide__ = True
        n = self._session.request("callattr", self, "__len__", (), {})
        if type(n) is not int or n < 0:
            raise TypeError(f"len() of {self._name} returned {type(n).__name__}, not a non-negative int")
        return n

    def __iter__(self):
        __tracebackhide__ = True
        items = self._session.request("run", as_list, (self,), {})
        return iter(items)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``numpy.asarray(handle)`` and numpy's asserts: the object's array, made by numpy in the worker in one
        request (numpy here would walk ``len`` and ``[]``, a request per item, without end where every item is
        a handle again). An object numpy makes no array of numbers of gives a 0-d object array holding the
        handle, as any object does."""
        __tracebackhide__ = True
        array = self._session.request("run", as_array, (self,), {})
        if not isinstance(array, np.ndarray):
            array = np.empty((), dtype=object)
            array[()] = self
        return array if dtype is None else array.astype(dtype, copy=False)

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        """Two handles are equal when they name the same object in the worker (the worker keeps one id per
        object); a handle never equals data."""
        return (type(other) is Remote and other._session is self._session and other._generation == self._generation
                and other._id == self._id)  # fmt: skip

    def __hash__(self) -> int:
        return hash((id(self._session), self._generation, self._id))

    def __repr__(self) -> str:
        return f"<{self._name} in the worker>"


class RemoteMethod:
    """``handle.method`` for a method the handle's class defines: calling it is one request."""

    __slots__ = ("_owner", "_name")

    def __init__(self, owner: Remote, name: str) -> None:
        self._owner, self._name = owner, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return self._owner._session.request("callattr", self._owner, self._name, args, kwargs)

    def __repr__(self) -> str:
        return f"<method {self._name} of {self._owner!r}>"


class _Pickler(cloudpickle.Pickler):
    """cloudpickle that sends handles by id (the worker swaps its object back in)."""

    def __init__(self, file: io.BytesIO, session: Session) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.session = session

    def persistent_id(self, obj: Any) -> Any:
        if type(obj) is Remote:
            if obj._session is not self.session or obj._generation != self.session.generation:
                raise ValueError(f"{obj!r} belongs to an earlier test; handles live for one test")
            return (HANDLE_TAG, obj._id)
        if type(obj) is RemoteMethod:  # a bound method of a worker object: the worker looks it up again
            return (HANDLE_TAG, self.persistent_id(obj._owner)[1], obj._name)
        return None


_BY_VALUE: set[str] = set()


def ship_by_value(module_name: str) -> None:
    """Send the functions and classes of ``module_name`` (a test module or helper) by value, so that the
    worker can run them without the test files (cloudpickle.register_pickle_by_value)."""
    if module_name not in _BY_VALUE and module_name in sys.modules:
        cloudpickle.register_pickle_by_value(sys.modules[module_name])
        _BY_VALUE.add(module_name)


# --------------------------------------------------------------------------------------------- sessions
class Session:
    """A conversation with one worker. Subclasses implement :meth:`_exchange` (bytes in, bytes out)."""

    isolation = "?"

    def __init__(self) -> None:
        self.generation = 0
        self.methods: dict[int, frozenset[str]] = {}

    def encode_request(self, op: str, args: Sequence[Any]) -> bytes:
        buf = io.BytesIO()
        _Pickler(buf, self).dump((op, *args))
        return buf.getvalue()

    def request(self, op: str, *args: Any) -> Any:
        __tracebackhide__ = True
        reply = self._exchange(self.encode_request(op, args))
        try:
            value = decode(reply)
            if isinstance(value, RemoteErrorInfo):
                raise self._raise(value)
            if not (type(value) is dict and set(value) == {"ok"}):
                raise CodecError("the reply is not an answer")
        except CodecError as exc:
            self.discard(f"the worker's reply is not valid data ({exc})")
            raise WorkerLost(f"the worker sent a reply that is not valid data ({exc}); the probe counts as failed")
        return self._wrap(value["ok"])

    def _raise(self, info: RemoteErrorInfo) -> BaseException:
        return student_error(info)

    def _wrap(self, value: Any) -> Any:
        t = type(value)
        if t is Handle:
            if value.methods is not None:
                self.methods[value.type] = frozenset(value.methods)
            return Remote(self, value)
        if t is list:
            return [self._wrap(v) for v in value]
        if t is tuple:
            return tuple(self._wrap(v) for v in value)
        if t is Record:
            return Record([self._wrap(v) for v in value], value._name, value._fields)
        if t is dict:
            return {k: self._wrap(v) for k, v in value.items()}
        return value

    def reset(self, seed: int | None) -> None:
        """Start a test: forget every handle, seed the worker's generators."""
        __tracebackhide__ = True
        self.generation += 1
        self.methods.clear()
        self.request("reset", seed)

    def _exchange(self, request: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def discard(self, why: str) -> None:
        """The worker can no longer be trusted to be in a known state."""
        __tracebackhide__ = True

    @property
    def alive(self) -> bool:
        return True

    def take_output(self) -> str:
        return ""

    def close(self) -> None:
        pass


class LocalSession(Session):
    """The worker's dispatcher in this process (``--isolation none``), with the same copies and codec."""

    isolation = "none"

    def __init__(self, root: Path) -> None:
        super().__init__()
        from grader.sandboxed.worker import Dispatcher

        self.dispatcher = Dispatcher(root)

    def _exchange(self, request: bytes) -> bytes:
        __tracebackhide__ = True
        return self.dispatcher.handle(request)

    def _raise(self, info: RemoteErrorInfo) -> BaseException:
        exc = student_error(info)
        exc.__cause__ = self.dispatcher.last_exception  # plain tracebacks: the original, chained
        exc.__notes__ = []
        return exc


class ProcessSession(Session):
    """A worker process started with ``launch(argv, pass_fds) -> Popen``; every reply awaited with a deadline."""

    isolation = "process"

    def __init__(self, root: Path, launcher: Callable[[Path, int, int], subprocess.Popen] | None = None,
                 start_timeout: float = 180.0) -> None:  # fmt: skip
        super().__init__()
        self.root = Path(root).resolve()
        to_worker_r, self._to_worker = os.pipe()
        self._from_worker, from_worker_w = os.pipe()
        self.proc = (launcher or default_launcher)(self.root, to_worker_r, from_worker_w)
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.deadline: float | None = None
        self.busy = False
        self.lost: str | None = None
        self._output = bytearray()
        self._output_total = 0
        self._output_lock = threading.Lock()
        self._drain = threading.Thread(target=self._pump, daemon=True)
        self._drain.start()
        hello = self._read_frame(time.monotonic() + start_timeout, "starting")
        if hello != b"ready":
            text = hello.decode(errors="replace")
            self.close()
            raise WorkerLost(
                "the implementation could not be imported in the worker:\n" + text.removeprefix("import-error ")
                if text.startswith("import-error") else f"the worker did not start properly: {text[:300]!r}"
            )  # fmt: skip

    # -- output of the worker (what the student's code prints)
    def _pump(self) -> None:
        stream = self.proc.stdout
        if stream is None:
            return
        for chunk in iter(lambda: stream.read1(65536), b""):
            with self._output_lock:
                self._output_total += len(chunk)
                room = OUTPUT_LIMIT - len(self._output)
                if room > 0:
                    self._output += chunk[:room]

    def take_output(self) -> str:
        with self._output_lock:
            text = self._output.decode(errors="replace")
            if self._output_total > len(self._output):
                text += f"\n[... {self._output_total - len(self._output)} more bytes of output left out ...]"
            self._output.clear()
            self._output_total = 0
        return text

    # -- framing
    def _read_exact(self, n: int, deadline: float, what: str) -> bytes:
        __tracebackhide__ = True
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0:
                self.discard("timeout")
                raise WorkerLost(f"the implementation ran past the time limit of this test while {what}; "
                                 "look for an infinite loop or a much slower algorithm")  # fmt: skip
            ready, _, _ = select.select([self._from_worker], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self._from_worker, min(n - got, 1 << 20))
            if not chunk:
                code = self.proc.poll()
                if code is None:
                    try:
                        code = self.proc.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        pass
                self.discard("died")
                if code is not None and code < 0:
                    how = f"killed by {_signal_name(-code)}"
                elif code is not None and 128 < code < 128 + 65:  # a sandbox reports its child's signal so
                    how = f"killed by {_signal_name(code - 128)}, exit status {code}"
                else:
                    how = f"exit status {code}"
                raise WorkerLost(f"the worker process running the implementation died while {what} ({how}: a crash, "
                                 "os._exit/sys.exit, or a memory limit)")  # fmt: skip
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_frame(self, deadline: float, what: str, limit: int = 2**31) -> bytes:
        __tracebackhide__ = True
        (n,) = struct.unpack(">Q", self._read_exact(8, deadline, what))
        if n > limit:
            self.discard("oversized reply")
            raise WorkerLost(f"the worker's reply of {n} bytes is larger than the {limit >> 20} MiB allowed")
        return self._read_exact(n, deadline, what)

    def _exchange(self, request: bytes) -> bytes:
        __tracebackhide__ = True
        if self.lost is not None:
            raise WorkerLost(f"the worker is gone ({self.lost}); this test cannot continue")
        self.busy = True
        try:
            os.write(self._to_worker, struct.pack(">Q", len(request)))
            view = memoryview(request)
            while view:
                view = view[os.write(self._to_worker, view) :]
        except OSError as exc:
            self.discard("died")
            raise WorkerLost(f"the worker process is gone ({exc})") from None
        deadline = self.deadline if self.deadline is not None else time.monotonic() + 3600
        reply = self._read_frame(deadline, "running the implementation", MAX_FRAME_BYTES)
        self.busy = False
        return reply

    def discard(self, why: str) -> None:
        self.lost = why
        self.close()

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.busy and self.proc.poll() is None

    def close(self) -> None:
        for fd in ("_to_worker", "_from_worker"):
            try:
                os.close(getattr(self, fd))
            except OSError:
                pass
            setattr(self, fd, -1)
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        cleanup = getattr(self.proc, "ca15_cleanup", None)
        if cleanup is not None:
            self.proc.ca15_cleanup = None
            cleanup()
        if self.lost is None:
            self.lost = "closed"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def worker_argv(python: str, root: str | Path, read_fd: int, write_fd: int) -> list[str]:
    """The worker's command line."""
    return [python, "-m", "grader.sandboxed.worker", "--root", str(root), "--read-fd", str(read_fd), "--write-fd", str(write_fd)]


def default_launcher(root: Path, read_fd: int, write_fd: int) -> subprocess.Popen:
    """Start the worker as a plain child in its own session (the grader's launcher adds the sandbox)."""
    kit = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": kit, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(worker_argv(sys.executable, root, read_fd, write_fd), pass_fds=(read_fd, write_fd),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            cwd="/", start_new_session=True)  # fmt: skip


# --------------------------------------------------------------------------------------------- the facade
class ProbeVerdictError(TypeError):
    """A test's probe returned a verdict (a bare bool) instead of observations: a bug of the kit's test."""


def is_verdict(value: Any) -> bool:
    """Whether a probe's result is a bare truth value (``bool`` or a 0-d boolean array or tensor)."""
    if isinstance(value, bool):
        return True
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    return shape is not None and tuple(shape) == () and str(dtype) in ("bool", "torch.bool")


class RemoteImplementation:
    """What the ``impl`` fixture gives a test: the implementation under test, behind a session.

    ``impl.DynamicsModel(...)`` constructs in the worker; ``impl.module("planning.mcts")`` is a handle to a
    module; ``impl.run(probe, *args)`` runs ``probe(worker_impl, *args)`` in the worker and returns plain
    data; ``impl.seed(n)`` seeds the worker's generators.
    """

    def __init__(self, session: Session, root: Path) -> None:
        self._session = session
        self._names: dict[tuple[str, str], Remote] = {}
        self.root = root
        self.isolation = session.isolation

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        from grader.sandboxed.impl import PUBLIC_API

        if name.startswith("_") or name not in PUBLIC_API:
            raise AttributeError(f"{name!r} is not a public name of the assignment (CONVENTIONS §1)")
        return self._cached("name", name)

    def module(self, name: str) -> Remote:
        """A handle to module ``name`` of the implementation root."""
        __tracebackhide__ = True
        return self._cached("module", name)

    def _cached(self, op: str, name: str) -> Remote:
        __tracebackhide__ = True
        key = (op, name)
        hit = self._names.get(key)
        if hit is None or hit._generation != self._session.generation:
            hit = self._names[key] = self._session.request(op, name)
        return hit

    def run(self, probe: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``probe(worker_impl, *args, **kwargs)`` in the worker; its result as plain data (or handles)."""
        __tracebackhide__ = True
        module = getattr(probe, "__module__", None)
        if module:
            ship_by_value(module)
        result = self._session.request("run", probe, args, kwargs)
        if is_verdict(result):
            raise ProbeVerdictError(
                f"the probe {getattr(probe, '__qualname__', probe)!r} returned a bare {type(result).__name__}: a "
                "verdict computed in the worker, which the submission's process can simply choose. Return the "
                "observations (the values, with a flag only beside the values it qualifies) and decide in the "
                "test (docs/CONVENTIONS.md §5)."
            )  # fmt: skip
        return result

    def seed(self, seed: int) -> None:
        """Seed python, numpy and torch in the worker."""
        __tracebackhide__ = True
        self._session.request("seed", seed)

    def __repr__(self) -> str:
        return f"<implementation {self.root} ({self.isolation} isolation)>"

"""The worker: the only process that runs the implementation under test (untrusted).

    python -m grader.sandboxed.worker --root ROOT --read-fd R --write-fd W

It loads the implementation root, then answers requests from the judge one at a time. A request is a
cloudpickle of ``(op, *args)`` (the judge ships trusted code: probes, test doubles, inputs); a reply is one
frame of :mod:`grader.sandboxed.codec` (plain data, never a pickle). Objects that are not data stay here in a handle
table and travel as handle ids; the judge refers back to them by id (``persistent_id`` in its pickler).

Ops (see :class:`Dispatcher`): ``reset``, ``seed``, ``name``, ``module``, ``getattr``, ``setattr``,
``call``, ``callattr``, ``run``. The reply to each is ``{"ok": value}`` or an ``error`` node carrying the
exception's type names, message and formatted traceback.

Nothing here is trusted by the judge: a worker can lie, hang or die, and the judge only reads data.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import io
import os
import pickle
import random
import struct
import sys
import traceback
from pathlib import Path
from typing import Any

HANDLE_TAG = "ca15-handle"


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch global generators (the same function the judge's fixtures use). numpy and
    torch are seeded when the implementation has imported them; one imported later starts from its fixed
    default seed, so a run is reproducible either way."""
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, table: dict[int, object]) -> None:
        super().__init__(io.BytesIO(data))
        self.table = table

    def persistent_load(self, pid: Any) -> object:
        """``(tag, id)`` is a handle's object; ``(tag, id, name)`` its bound method ``name``."""
        if not (isinstance(pid, tuple) and len(pid) in (2, 3) and pid[0] == HANDLE_TAG):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if pid[1] not in self.table:
            raise LookupError(
                f"handle #{pid[1]} is no longer alive in the worker (handles live for one test; "
                "create the object again in this test)"
            )
        obj = self.table[pid[1]]
        return getattr(obj, pid[2]) if len(pid) == 3 else obj


def as_list(impl: Any, obj: Any) -> list:
    """The probe behind ``list(handle)``: it lives here because the worker has this module (and no other of
    the judge's)."""
    return list(obj)


def as_array(impl: Any, obj: Any) -> Any:
    """The probe behind ``numpy.asarray(handle)``: numpy's array of ``obj``, made here in one request, when it
    holds numbers or booleans (data); ``None`` when it would hold objects (the judge then keeps the handle)."""
    import numpy as np

    array = np.asarray(obj)
    return array if array.dtype.kind in "biufc" else None


def _methods(kind: type) -> list[str]:
    """Names of the plain functions a class defines or inherits (called without fetching them first)."""
    names = []
    for name in dir(kind):
        if name.startswith("__"):
            continue
        try:
            attr = inspect.getattr_static(kind, name)
        except AttributeError:
            continue
        if inspect.isfunction(attr) or isinstance(attr, (staticmethod, classmethod)) or inspect.ismethoddescriptor(attr):
            names.append(name)
    return names


class Dispatcher:
    """Executes the judge's requests against one implementation root and keeps the handle table."""

    def __init__(self, root: str | Path) -> None:
        from grader.sandboxed.impl import load_implementation

        self.impl = load_implementation(root)
        self.table: dict[int, object] = {}
        self.ids: dict[int, int] = {}  # id(obj) -> handle id, so one object keeps one handle
        self.types: dict[type, int] = {}
        self.next_id = 1
        self.last_exception: BaseException | None = None

    def warm(self) -> None:
        """Import the root's public modules before the first test, so that import time never counts against a
        test's time limit. Best effort: a module that fails to import fails again, visibly, when a test asks."""
        from grader.sandboxed.impl import PUBLIC_API

        for module in dict.fromkeys(PUBLIC_API.values()):
            try:
                self.impl.module(module)
            except BaseException:  # noqa: BLE001 - reported by the test that needs the module
                pass

    # -- handles
    def register(self, obj: object) -> dict:
        hid = self.ids.get(id(obj))
        if hid is None or self.table.get(hid) is not obj:
            hid = self.next_id
            self.next_id += 1
            self.table[hid] = obj
            self.ids[id(obj)] = hid
        kind = type(obj)
        named = obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else kind
        label = f"{getattr(named, '__module__', None) or '?'}.{getattr(named, '__qualname__', kind.__qualname__)}"
        if isinstance(obj, type(sys)):
            label = f"module {obj.__name__}"
        node = {"t": "handle", "id": hid, "name": str(label)[:300]}
        if kind not in self.types:
            self.types[kind] = len(self.types) + 1
            node["methods"] = _methods(kind) if not isinstance(obj, type(sys)) else []
        node["type"] = self.types[kind]
        return node

    def reset(self, seed: int | None) -> None:
        self.table.clear()
        self.ids.clear()
        self.types.clear()
        if seed is not None:
            seed_all(seed)

    # -- requests
    def execute(self, op: str, *args: Any) -> Any:
        if op == "reset":
            return self.reset(*args)
        if op == "seed":
            return seed_all(*args)
        if op == "name":
            return getattr(self.impl, args[0])
        if op == "module":
            return self.impl.module(args[0])
        # handles in a request arrive as their objects (persistent_load)
        if op == "getattr":
            return getattr(args[0], args[1])
        if op == "setattr":
            return setattr(args[0], args[1], args[2])
        if op == "call":
            obj, a, kw = args
            return obj(*a, **kw)
        if op == "callattr":
            obj, name, a, kw = args
            return getattr(obj, name)(*a, **kw)
        if op == "run":
            fn, a, kw = args
            return fn(self.impl, *a, **kw)
        raise ValueError(f"unknown op {op!r}")

    def handle(self, request: bytes) -> bytes:
        """One request (a cloudpickle from the judge) -> one reply frame."""
        from grader.sandboxed.codec import CodecError, encode, encode_error

        self.last_exception = None
        try:
            op, *args = _Unpickler(request, self.table).load()
            value = self.execute(op, *args)
            return encode({"ok": value}, self.register)
        except BaseException as exc:  # noqa: BLE001 - every failure of student code goes back to the judge
            if isinstance(exc, (KeyboardInterrupt,)):
                raise
            self.last_exception = exc
            text = student_traceback(exc)
            if isinstance(exc, CodecError):
                text = f"the value could not be sent back: {exc}"
            try:
                return encode_error(exc, text)
            except Exception:  # noqa: BLE001 - e.g. a message that is not valid text
                return encode_error(RuntimeError(f"an exception of type {type(exc).__name__} that cannot be shown"), "")


def student_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` without the worker's own frames and the import machinery's."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _INTERNAL:
        tb = tb.tb_next
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith("<frozen importlib")
              and f.filename not in _INTERNAL]  # fmt: skip
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)] if frames else []
    return "".join(lines + traceback.format_exception_only(exc))


_INTERNAL = {__file__, str(Path(__file__).with_name("impl.py")), importlib.__file__}


# ------------------------------------------------------------------------------------------------ serving
def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(root: str, read_fd: int, write_fd: int) -> int:
    """Answer requests until the judge closes the pipe."""
    os.environ["OMP_NUM_THREADS"] = "1"  # one thread per worker, also for a torch imported later
    os.set_inheritable(read_fd, False)
    os.set_inheritable(write_fd, False)
    owner = os.getpid()
    try:
        dispatcher = Dispatcher(root)
        dispatcher.warm()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(1)
        ready = b"ready"
    except BaseException as exc:  # noqa: BLE001 - the root does not import: say so in the handshake
        dispatcher = None
        ready = ("import-error " + "".join(traceback.format_exception(exc))[-8000:]).encode(errors="replace")
    _write_all(write_fd, struct.pack(">Q", len(ready)) + ready)
    while True:
        head = _read_exact(read_fd, 8)
        if head is None:
            return 0
        (n,) = struct.unpack(">Q", head)
        request = _read_exact(read_fd, n)
        if request is None:
            return 0
        if dispatcher is None:
            return 3
        reply = dispatcher.handle(request)
        if os.getpid() != owner:  # a copy forked by the implementation never answers the judge
            os._exit(0)
        _write_all(write_fd, struct.pack(">Q", len(reply)) + reply)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.sandboxed.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--read-fd", type=int, required=True)
    parser.add_argument("--write-fd", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(args.root, args.read_fd, args.write_fd)


if __name__ == "__main__":
    sys.exit(main())

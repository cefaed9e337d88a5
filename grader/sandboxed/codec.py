"""The data codec between the worker (untrusted) and the judge (trusted).

Everything the worker sends the judge is encoded here and decoded without executing anything: a frame is a
JSON header followed by raw byte blobs. JSON gives the tree (numbers, strings, lists and small tagged
objects); the blobs hold the bytes of tensors and arrays. There is no pickle on this path, so a worker that
lies can at worst send a wrong value or a frame that does not decode, which the judge treats as a failed
probe (:class:`CodecError`).

Frame layout::

    [4-byte big-endian header length][JSON header][blob 0][blob 1]...
    header = {"tree": <node>, "blobs": [len0, len1, ...]}

A node is ``null``, a boolean, a number, a string, a list of nodes, or a tagged object ``{"t": TAG, ...}``:

==========  =================================================================================
tag         value
==========  =================================================================================
dict        ``{"t": "dict", "v": [[key, value], ...]}`` (order kept, keys any hashable node)
tuple       ``{"t": "tuple", "v": [...]}``, a namedtuple with ``"name"`` and ``"fields"`` too (it
            arrives as a :class:`Record`); ``set`` / ``frozenset`` likewise
tensor      ``{"t": "tensor", "dtype": "float32", "shape": [..], "b": blob, "device": "cpu",
            "grad": bool}``: a plain strided tensor, detached (``grad`` keeps ``requires_grad``)
ndarray     ``{"t": "ndarray", "dtype": "<f8", "shape": [..], "b": blob}`` (no object dtype)
npscalar    ``{"t": "npscalar", "dtype": "<i8", "b": blob}``
bytes       ``{"t": "bytes", "b": blob}``
complex     ``{"t": "complex", "re": x, "im": y}``
float       ``{"t": "float", "v": "nan" | "inf" | "-inf"}`` (JSON has no NaN)
dtype       ``{"t": "dtype", "v": "float32"}`` (a torch dtype); ``device`` likewise
size        ``{"t": "size", "v": [..]}`` (a ``torch.Size``)
handle      ``{"t": "handle", "id": n, "type": k, "name": "module.Class", "methods": [...]}``: an
            object that stays in the worker; ``methods`` is sent the first time type ``k`` appears
error       ``{"t": "error", "type": name, "mro": [names], "message": str, "traceback": str}``
==========  =================================================================================
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: Largest frame the judge accepts (a probe that returns more is a failed probe).
MAX_FRAME_BYTES = 256 * 2**20
#: Largest JSON header; deeper than MAX_DEPTH or more than MAX_NODES nodes does not decode either.
MAX_HEADER_BYTES = 32 * 2**20
MAX_DEPTH = 64
MAX_NODES = 2_000_000
#: Cap on the text of a worker's exception (message, traceback) as it reaches the judge.
MAX_MESSAGE_CHARS = 4000
MAX_TRACEBACK_CHARS = 12000

#: The tensor dtypes that travel (by the name ``str(dtype)`` gives without ``torch.``).
TORCH_DTYPE_NAMES: frozenset[str] = frozenset(
    ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
     "int8", "int16", "int32", "int64", "uint8", "bool")
)  # fmt: skip


@cache
def torch_dtypes() -> dict[str, torch.dtype]:
    """Name → torch dtype for :data:`TORCH_DTYPE_NAMES` (torch is imported on first use: a worker whose
    implementation never imports torch does not pay for it)."""
    import torch

    return {name: getattr(torch, name) for name in TORCH_DTYPE_NAMES}
NUMPY_DTYPES: frozenset[str] = frozenset(
    np.dtype(d).str
    for d in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
              np.float16, np.float32, np.float64, np.complex64, np.complex128)
)  # fmt: skip


class CodecError(ValueError):
    """A frame that is not valid data (the judge treats it as a failed probe)."""


# ------------------------------------------------------------------------------------------------ encode
class _Encoder:
    def __init__(self, handle: Callable[[object], dict]) -> None:
        self.handle = handle
        self.blobs: list[bytes] = []

    def blob(self, data: bytes) -> int:
        self.blobs.append(data)
        return len(self.blobs) - 1

    def node(self, v: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"the value nests deeper than {MAX_DEPTH} levels")
        t = type(v)
        if v is None or t is bool or t is int or t is str:
            return v
        if t is float:
            return v if math.isfinite(v) else {"t": "float", "v": repr(v)}
        torch = sys.modules.get("torch")  # no tensor, size, dtype or device exists before torch is imported
        if torch is not None and isinstance(v, torch.Tensor):
            return self.tensor(v)
        if isinstance(v, np.ndarray):
            return self.ndarray(np.asarray(v))
        if isinstance(v, np.generic) and np.dtype(type(v)).str in NUMPY_DTYPES:
            return {"t": "npscalar", "dtype": v.dtype.str, "b": self.blob(v.tobytes())}
        if t is list:
            return [self.node(x, depth + 1) for x in v]
        if torch is not None and t is torch.Size:
            return {"t": "size", "v": [int(x) for x in v]}
        if t is tuple:
            return {"t": "tuple", "v": [self.node(x, depth + 1) for x in v]}
        if isinstance(v, tuple) and isinstance(getattr(t, "_fields", None), tuple):  # a namedtuple: its fields too
            return {"t": "tuple", "v": [self.node(x, depth + 1) for x in v], "name": t.__name__,
                    "fields": [str(f) for f in t._fields]}  # fmt: skip
        if t is dict or (isinstance(v, dict) and t.__module__ in ("collections", "builtins")):
            return {"t": "dict", "v": [[self.node(k, depth + 1), self.node(x, depth + 1)] for k, x in v.items()]}
        if t is set or t is frozenset:
            return {"t": t.__name__, "v": [self.node(x, depth + 1) for x in v]}
        if t is bytes:
            return {"t": "bytes", "b": self.blob(v)}
        if t is complex:
            return {"t": "complex", "re": self.node(v.real), "im": self.node(v.imag)}
        if torch is not None and t is torch.dtype:
            return {"t": "dtype", "v": str(v).removeprefix("torch.")}
        if torch is not None and t is torch.device:
            return {"t": "device", "v": str(v)}
        return self.handle(v)

    def tensor(self, v: torch.Tensor) -> dict:
        import torch

        name = str(v.dtype).removeprefix("torch.")
        if name not in TORCH_DTYPE_NAMES:
            raise CodecError(f"tensors of dtype {v.dtype} cannot be sent to the judge")
        grad = bool(v.requires_grad)
        device = str(v.device)
        plain = v.detach()
        if plain.layout != torch.strided:
            plain = plain.to_dense()
        plain = torch.Tensor.as_subclass(plain, torch.Tensor).to("cpu").contiguous()
        data = plain.reshape(-1).view(torch.uint8).numpy().tobytes() if plain.numel() else b""
        return {"t": "tensor", "dtype": name, "shape": list(plain.shape), "b": self.blob(data), "device": device,
                "grad": grad}  # fmt: skip

    def ndarray(self, v: np.ndarray) -> dict:
        if v.dtype.str not in NUMPY_DTYPES:
            raise CodecError(f"arrays of dtype {v.dtype} cannot be sent to the judge (only numbers and booleans)")
        return {"t": "ndarray", "dtype": v.dtype.str, "shape": list(v.shape),
                "b": self.blob(np.ascontiguousarray(v).tobytes())}  # fmt: skip


def encode(value: Any, handle: Callable[[object], dict]) -> bytes:
    """One frame holding ``value`` (worker side). Objects that are not data become ``handle(obj)`` nodes."""
    enc = _Encoder(handle)
    return _frame(enc.node(value), enc.blobs)


def encode_error(exc: BaseException, traceback_text: str) -> bytes:
    """One frame holding the ``error`` node of ``exc`` (worker side)."""
    return _frame(error_node(exc, traceback_text), [])


def _frame(tree: Any, blobs: list[bytes]) -> bytes:
    header = json.dumps({"tree": tree, "blobs": [len(b) for b in blobs]}, allow_nan=False).encode()
    return b"".join([struct.pack(">I", len(header)), header, *blobs])


def error_node(exc: BaseException, traceback_text: str) -> dict:
    """The ``error`` node for an exception raised by the implementation (worker side)."""
    try:
        message = str(exc)
    except Exception as inner:  # noqa: BLE001 - a hostile __str__
        message = f"<the exception's message could not be read: {type(inner).__name__}>"
    return {
        "t": "error",
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__ if isinstance(c.__name__, str)],
        "message": message[:MAX_MESSAGE_CHARS],
        "traceback": traceback_text[-MAX_TRACEBACK_CHARS:],
    }


# ------------------------------------------------------------------------------------------------ decode
class Handle:
    """The decoded form of a ``handle`` node: an object that stays in the worker (the judge wraps it)."""

    __slots__ = ("id", "type", "name", "methods")

    def __init__(self, id: int, type: int, name: str, methods: list[str] | None) -> None:
        self.id, self.type, self.name, self.methods = id, type, name, methods


class RemoteErrorInfo:
    """The decoded form of an ``error`` node: an exception the implementation raised."""

    __slots__ = ("type", "mro", "message", "traceback")

    def __init__(self, type: str, mro: list[str], message: str, traceback: str) -> None:
        self.type, self.mro, self.message, self.traceback = type, mro, message, traceback


class Record(tuple):
    """A namedtuple as the judge receives it: a tuple whose fields are also attributes (``out.states``)."""

    _fields: tuple[str, ...]
    _name: str

    def __new__(cls, items: list, name: str, fields: tuple[str, ...]) -> Record:
        self = super().__new__(cls, items)
        self._name, self._fields = name, fields
        return self

    def __getattr__(self, attr: str):
        if attr.startswith("_"):
            raise AttributeError(attr)
        try:
            return self[self._fields.index(attr)]
        except ValueError:
            raise AttributeError(f"{self._name} has no field {attr!r} (fields: {', '.join(self._fields)})") from None

    def _asdict(self) -> dict:
        return dict(zip(self._fields, self))

    def __reduce__(self):
        """Sent back to the worker (an argument of a call), it stays a tuple with the same named fields."""
        return (Record, (list(self), self._name, self._fields))

    def __repr__(self) -> str:
        return f"{self._name}(" + ", ".join(f"{f}={v!r}" for f, v in zip(self._fields, self)) + ")"


class _Decoder:
    def __init__(self, blobs: list[memoryview]) -> None:
        self.blobs = blobs
        self.nodes = 0

    def need(self, cond: bool, what: str) -> None:
        if not cond:
            raise CodecError(what)

    def blob(self, node: dict) -> memoryview:
        i = node.get("b")
        self.need(type(i) is int and 0 <= i < len(self.blobs), f"bad blob index {i!r}")
        return self.blobs[i]

    def shape(self, node: dict) -> tuple[int, ...]:
        shape = node.get("shape")
        self.need(type(shape) is list and len(shape) <= 32, "bad shape")
        self.need(all(type(s) is int and s >= 0 for s in shape), "bad shape entries")
        return tuple(shape)

    def text(self, node: dict, key: str, limit: int) -> str:
        value = node.get(key)
        self.need(type(value) is str, f"{key} is not a string")
        return value[:limit]

    def node(self, v: Any, depth: int = 0) -> Any:
        self.nodes += 1
        self.need(self.nodes <= MAX_NODES and depth <= MAX_DEPTH, "the value is too large or too deep")
        t = type(v)
        if v is None or t is bool or t is int or t is float or t is str:
            return v
        if t is list:
            return [self.node(x, depth + 1) for x in v]
        self.need(t is dict, f"unexpected JSON node {t.__name__}")
        tag = v.get("t")
        if tag in ("tuple", "set", "frozenset"):
            items = v.get("v")
            self.need(type(items) is list, f"{tag} without items")
            decoded = [self.node(x, depth + 1) for x in items]
            if tag == "tuple" and "fields" in v:
                return self.record(v, decoded)
            try:
                return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](decoded)
            except TypeError as exc:
                raise CodecError(f"unhashable {tag} member") from exc
        if tag == "dict":
            items = v.get("v")
            self.need(type(items) is list and all(type(p) is list and len(p) == 2 for p in items), "bad dict")
            try:
                return {self.node(k, depth + 1): self.node(x, depth + 1) for k, x in items}
            except TypeError as exc:
                raise CodecError("unhashable dict key") from exc
        if tag == "tensor":
            return self.tensor(v)
        if tag == "ndarray":
            dtype = v.get("dtype")
            self.need(dtype in NUMPY_DTYPES, f"array dtype {dtype!r} is not allowed")
            shape = self.shape(v)
            data = self.blob(v)
            self.need(len(data) == math.prod(shape) * np.dtype(dtype).itemsize, "array size does not match")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if tag == "npscalar":
            dtype = v.get("dtype")
            self.need(dtype in NUMPY_DTYPES, f"scalar dtype {dtype!r} is not allowed")
            data = self.blob(v)
            self.need(len(data) == np.dtype(dtype).itemsize, "scalar size does not match")
            return np.frombuffer(data, dtype=dtype)[0].copy()
        if tag == "bytes":
            return bytes(self.blob(v))
        if tag == "complex":
            re_, im = self.node(v.get("re"), depth + 1), self.node(v.get("im"), depth + 1)
            self.need(type(re_) is float and type(im) is float, "bad complex")
            return complex(re_, im)
        if tag == "float":
            self.need(v.get("v") in ("nan", "inf", "-inf"), "bad float")
            return float(v["v"])
        if tag == "dtype":
            self.need(v.get("v") in TORCH_DTYPE_NAMES, "unknown torch dtype")
            return torch_dtypes()[v["v"]]
        if tag == "device":
            import torch

            try:
                return torch.device(self.text(v, "v", 64))
            except (RuntimeError, ValueError) as exc:
                raise CodecError("bad device") from exc
        if tag == "size":
            import torch

            return torch.Size(self.shape({"shape": v.get("v")}))
        if tag == "handle":
            ident, kind, methods = v.get("id"), v.get("type"), v.get("methods")
            self.need(type(ident) is int and type(kind) is int, "bad handle")
            self.need(methods is None or (type(methods) is list and all(type(m) is str for m in methods)),
                      "bad handle methods")  # fmt: skip
            return Handle(ident, kind, self.text(v, "name", 300), methods)
        if tag == "error":
            mro = v.get("mro")
            self.need(type(mro) is list and all(type(m) is str for m in mro), "bad error")
            return RemoteErrorInfo(self.text(v, "type", 200), [m[:200] for m in mro[:64]],
                                   self.text(v, "message", MAX_MESSAGE_CHARS),
                                   self.text(v, "traceback", MAX_TRACEBACK_CHARS))  # fmt: skip
        raise CodecError(f"unknown tag {tag!r}")

    def record(self, v: dict, items: list) -> Record:
        fields, name = v.get("fields"), v.get("name")
        self.need(type(name) is str and type(fields) is list and len(fields) == len(items), "bad namedtuple")
        self.need(all(type(f) is str and f.isidentifier() and not f.startswith("_") for f in fields),
                  "bad namedtuple field")  # fmt: skip
        return Record(items, name[:100], tuple(fields))

    def tensor(self, v: dict) -> torch.Tensor:
        import torch

        name = v.get("dtype")
        self.need(name in TORCH_DTYPE_NAMES, f"tensor dtype {name!r} is not allowed")
        dtype = torch_dtypes()[name]
        shape = self.shape(v)
        data = self.blob(v)
        itemsize = torch.empty((), dtype=dtype).element_size()
        self.need(len(data) == math.prod(shape) * itemsize, "tensor size does not match")
        if len(data):
            out = torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).reshape(shape)
        else:
            out = torch.empty(shape, dtype=dtype)
        device = v.get("device")
        self.need(type(device) is str and len(device) < 64, "bad device")
        if device.startswith("cuda") and torch.cuda.is_available():
            out = out.to(device)
        if v.get("grad") is True and (out.is_floating_point() or out.is_complex()):
            out.requires_grad_(True)
        return out


def decode(frame: bytes | memoryview) -> Any:
    """The value of one frame (judge side). Raises :class:`CodecError` for anything that is not valid data."""
    view = memoryview(frame)
    if len(view) < 4 or len(view) > MAX_FRAME_BYTES:
        raise CodecError(f"frame of {len(view)} bytes")
    (hlen,) = struct.unpack(">I", view[:4])
    if hlen > MAX_HEADER_BYTES or 4 + hlen > len(view):
        raise CodecError("bad header length")
    try:
        header = json.loads(bytes(view[4 : 4 + hlen]))
    except (ValueError, RecursionError) as exc:
        raise CodecError(f"the header is not JSON: {exc}") from exc
    if type(header) is not dict or type(header.get("blobs")) is not list:
        raise CodecError("the header is not a frame header")
    sizes = header["blobs"]
    if not all(type(n) is int and n >= 0 for n in sizes) or 4 + hlen + sum(sizes) != len(view):
        raise CodecError("blob sizes do not match the frame")
    blobs, at = [], 4 + hlen
    for n in sizes:
        blobs.append(view[at : at + n])
        at += n
    try:
        return _Decoder(blobs).node(header.get("tree"))
    except RecursionError as exc:
        raise CodecError("the value nests too deeply") from exc

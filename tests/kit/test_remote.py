"""The judge/worker boundary: the data codec, handles, student exceptions, and workers that lie, hang or die."""

from __future__ import annotations

import json
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from grader.sandboxed.codec import CodecError, decode, encode
from grader.judge.remote import LocalSession, ProcessSession, RemoteImplementation, StudentError, WorkerLost

pytestmark = pytest.mark.timeout(180)


def _no_handles(obj):
    raise AssertionError(f"unexpected handle for {obj!r}")


def _frame(tree, blobs=()) -> bytes:
    header = json.dumps({"tree": tree, "blobs": [len(b) for b in blobs]}).encode()
    return struct.pack(">I", len(header)) + header + b"".join(blobs)


# ------------------------------------------------------------------------------------------------- codec
def test_codec_round_trips_plain_data() -> None:
    """Tensors (any supported dtype, 0-d, empty), arrays, numbers, containers and NaN come back equal."""
    value = {
        "t32": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "bf16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "scalar": torch.tensor(3, dtype=torch.int64),
        "empty": torch.zeros(0, 4),
        "bool": torch.tensor([True, False]),
        "arr": np.arange(4, dtype=np.int16).reshape(2, 2),
        "np_scalar": np.float64(2.5),
        (1, "k"): [None, True, 7, 1.25, "s", b"\x00\x01", 2 + 3j, {1, 2}, frozenset({3})],
        "nan": float("nan"),
        "inf": float("-inf"),
        "size": torch.Size([2, 3]),
        "dtype": torch.float64,
    }
    out = decode(encode(value, _no_handles))
    assert list(out) == list(value)
    for key in ("t32", "bf16", "scalar", "empty", "bool"):
        assert type(out[key]) is torch.Tensor and out[key].dtype == value[key].dtype
        torch.testing.assert_close(out[key], value[key])
    np.testing.assert_array_equal(out["arr"], value["arr"])
    assert out["arr"].dtype == np.int16 and out["np_scalar"] == 2.5 and type(out["np_scalar"]) is np.float64
    assert out[(1, "k")] == value[(1, "k")]
    assert math.isnan(out["nan"]) and out["inf"] == float("-inf")
    assert out["size"] == torch.Size([2, 3]) and out["dtype"] is torch.float64


def test_codec_keeps_requires_grad_as_a_flag_only() -> None:
    """A tensor that requires grad arrives as a detached leaf that still says requires_grad."""
    x = torch.ones(2, requires_grad=True) * 2
    out = decode(encode(x, _no_handles))
    assert out.requires_grad and out.grad_fn is None
    assert not decode(encode(x.detach(), _no_handles)).requires_grad


def test_codec_sends_other_objects_as_handles() -> None:
    """An object that is not data becomes a handle node; nothing of it is serialised."""
    seen = []

    def handle(obj):
        seen.append(obj)
        return {"t": "handle", "id": 7, "type": 1, "name": "x.Y", "methods": ["go"]}

    class Liar:
        def __eq__(self, other):
            return True

    out = decode(encode([Liar()], handle))
    assert len(seen) == 1 and out[0].id == 7 and out[0].methods == ["go"]


@pytest.mark.parametrize(
    "frame, why",
    [
        (b"\x00\x00", "shorter than a header"),
        (struct.pack(">I", 99) + b"{}", "header length past the end"),
        (struct.pack(">I", 5) + b"nope!", "header that is not JSON"),
        (_frame({"t": "pickle", "v": "cos\nsystem\n"}), "unknown tag"),
        (_frame({"t": "ndarray", "dtype": "|O", "shape": [1], "b": 0}, [b"\x00" * 8]), "object arrays"),
        (_frame({"t": "tensor", "dtype": "float32", "shape": [4], "b": 0, "device": "cpu"}, [b"\x00" * 8]),
         "tensor bytes that do not match the shape"),
        (_frame({"t": "tensor", "dtype": "qint8", "shape": [1], "b": 0, "device": "cpu"}, [b"\x00"]), "odd dtype"),
        (_frame({"t": "bytes", "b": 3}), "blob index out of range"),
        (_frame([[[[[[]]]]]] * 2) + b"trailing", "bytes after the last blob"),
        (_frame({"t": "dict", "v": [[[1], 2]]}), "unhashable key"),
    ],  # fmt: skip
)
def test_codec_refuses_frames_that_are_not_data(frame: bytes, why: str) -> None:
    """Malformed or non-data frames raise CodecError (a failed probe), never anything else."""
    with pytest.raises(CodecError):
        decode(frame)


def test_codec_refuses_deep_nesting() -> None:
    """A value nested deeper than the limit does not decode."""
    tree: list = []
    for _ in range(200):
        tree = [tree]
    with pytest.raises(CodecError):
        decode(_frame(tree))


# ------------------------------------------------------------------------------------------------ sessions
def _root(tmp_path: Path, source: str) -> Path:
    root = tmp_path / "root"
    for name in ("model_based_rl", "hierarchical_rl", "planning", "environments", "utils"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text("")
    (root / "model_based_rl" / "algorithms.py").write_text(source)
    return root


SOURCE = '''
import os, time

class Counter:
    def __init__(self):
        self.n = 0
    def add(self, k):
        self.n += k
        return self.n
    def child(self):
        return Counter()
    def fail(self):
        raise KeyError("missing-key")
    def custom(self):
        class Mine(ValueError):
            pass
        raise Mine("custom error")
    def hang(self):
        while True:
            pass
    def die(self):
        os._exit(7)
    def grad(self):
        import torch  # here, not at the top: a worker that never needs torch starts in a fraction of a second
        return torch.ones(2, requires_grad=True) * 3

class Triple:
    """A sequence of three ints that is no list (len and [] only)."""
    def __len__(self):
        return 3
    def __getitem__(self, i):
        if not -3 <= i < 3:
            raise IndexError(i)
        return 10 * (i % 3 + 1)

class Nest:
    """len 2, each item another Nest (numpy walking it item by item would never end), array form [0., 0.]."""
    def __len__(self):
        return 2
    def __getitem__(self, i):
        if not -2 <= i < 2:
            raise IndexError(i)
        return Nest()
    def __array__(self, dtype=None, copy=None):
        import numpy
        return numpy.zeros(2)
'''


@pytest.fixture(params=["process", "none"])
def session(request: pytest.FixtureRequest, tmp_path: Path):
    root = _root(tmp_path, SOURCE)
    s = ProcessSession(root) if request.param == "process" else LocalSession(root)
    s.reset(0)
    yield s
    s.close()


def _algorithms(session) -> object:
    return RemoteImplementation(session, Path("."))._session.request("module", "model_based_rl.algorithms")


def test_handles_call_methods_and_keep_state(session) -> None:
    """A handle's method calls run on the same object in the worker; results come back as data."""
    counter = _algorithms(session).Counter()
    assert counter.add(2) == 2 and counter.add(3) == 5 and counter.n == 5
    counter.n = 10
    assert counter.add(1) == 11
    assert repr(counter.child()).startswith("<model_based_rl.algorithms.Counter")


def _twice(impl, counter):
    return counter.add(1), counter.add(1)


def test_run_ships_a_probe_that_receives_the_handles_objects(session) -> None:
    """impl.run(probe, handle) runs the probe in the worker with the handle's object."""
    impl = RemoteImplementation(session, Path("."))
    counter = impl.module("model_based_rl.algorithms").Counter()
    assert impl.run(_twice, counter) == (1, 2)


def _call_twice(impl, method):
    return method(1), method(1)


def test_a_bound_method_of_a_handle_travels_back_as_that_method(session) -> None:
    """counter.add sent to the worker is the worker object's own bound method."""
    impl = RemoteImplementation(session, Path("."))
    counter = impl.module("model_based_rl.algorithms").Counter()
    assert impl.run(_call_twice, counter.add) == (1, 2) and counter.n == 2


class _Counting:
    """Counts the requests of ``session`` and stops a test that makes more than ``limit`` of them."""

    def __init__(self, session, limit: int = 50) -> None:
        self.session, self.limit, self.count, self.original = session, limit, 0, session.request

    def __call__(self, op, *args):
        self.count += 1
        if self.count > self.limit:
            raise AssertionError(f"{self.count} requests: numpy walked the handle item by item")
        return self.original(op, *args)


def test_numpy_converts_a_handle_in_the_worker_in_one_request(session, monkeypatch: pytest.MonkeyPatch) -> None:
    """np.asarray(handle to a sequence that is no list) gives its values, from one request, in the dtype asked."""
    triple = _algorithms(session).Triple()
    counting = _Counting(session)
    monkeypatch.setattr(session, "request", counting)
    np.testing.assert_array_equal(np.asarray(triple), [10, 20, 30])
    assert counting.count == 1
    assert np.asarray(triple, dtype=np.float32).dtype == np.float32


def test_numpy_on_a_handle_whose_items_are_handles_without_end_ends(session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Nest (each item another Nest): np.asarray and numpy's asserts take its array form, in one request each."""
    nest = _algorithms(session).Nest()
    counting = _Counting(session)
    monkeypatch.setattr(session, "request", counting)
    np.testing.assert_array_equal(np.asarray(nest), [0.0, 0.0])
    with pytest.raises(AssertionError, match="Mismatch"):
        np.testing.assert_array_equal(nest, [1.0, 1.0])
    assert counting.count == 2


def test_numpy_keeps_a_handle_to_an_opaque_object_as_a_0d_object_array(session) -> None:
    """np.asarray(handle to an object numpy makes no numbers of) holds the handle itself, as for any object."""
    counter = _algorithms(session).Counter()
    array = np.asarray(counter)
    assert array.shape == () and array.dtype == object and array[()] == counter


def test_student_exceptions_match_builtin_classes(session) -> None:
    """An exception raised by student code is a StudentError and an instance of its nearest built-in class."""
    counter = _algorithms(session).Counter()
    with pytest.raises(KeyError, match="missing-key") as info:
        counter.fail()
    assert isinstance(info.value, StudentError) and info.value.remote_type == "KeyError"
    with pytest.raises(ValueError, match="custom error"):
        counter.custom()


def test_handles_do_not_outlive_their_test(session) -> None:
    """After a reset (the next test) an old handle is refused with a clear message."""
    counter = _algorithms(session).Counter()
    session.reset(0)
    with pytest.raises(ValueError, match="earlier test"):
        _algorithms(session).Counter().add(counter)


def test_a_hanging_call_fails_with_a_time_note_and_the_worker_is_replaced(tmp_path: Path) -> None:
    """A call past the test's deadline raises WorkerLost naming the time limit; the worker is discarded."""
    s = ProcessSession(_root(tmp_path, SOURCE))
    s.reset(0)
    counter = _algorithms(s).Counter()
    s.deadline = time.monotonic() + 1.0
    with pytest.raises(WorkerLost, match="time limit"):
        counter.hang()
    assert not s.alive
    s.close()


def test_a_dying_worker_fails_the_call_with_its_exit_status(tmp_path: Path) -> None:
    """os._exit in student code raises WorkerLost naming the exit status."""
    s = ProcessSession(_root(tmp_path, SOURCE))
    s.reset(0)
    with pytest.raises(WorkerLost, match="exit status 7"):
        _algorithms(s).Counter().die()
    assert not s.alive


def test_a_reply_that_is_not_data_fails_the_call(tmp_path: Path) -> None:
    """A worker that writes a forged frame on its reply pipe fails that call; it is never unpickled."""
    source = SOURCE + '''
def forge():
    import os, pickle, struct
    payload = pickle.dumps(os.getpid)
    for fd in range(3, 64):
        try:
            os.write(fd, struct.pack(">Q", len(payload)) + payload)
        except OSError:
            pass
    return 1
'''
    s = ProcessSession(_root(tmp_path, source))
    s.reset(0)
    module = s.request("module", "model_based_rl.algorithms")
    with pytest.raises(WorkerLost, match="not valid data"):
        module.forge()
    s.close()


def test_requires_grad_survives_as_a_flag(session) -> None:
    """A tensor with a graph arrives detached, flagged requires_grad."""
    out = _algorithms(session).Counter().grad()
    assert out.requires_grad and out.grad_fn is None and torch.equal(out.detach(), torch.full((2,), 3.0))


def _verdict(impl, counter):
    return counter.add(1) == 1


def _observation_with_flag(impl, counter):
    return counter.add(1), True


def test_a_probe_that_returns_a_bare_bool_fails_loudly(session) -> None:
    """A probe's bare bool is a verdict the worker could choose: ProbeVerdictError, naming the probe."""
    from grader.judge.remote import ProbeVerdictError

    impl = RemoteImplementation(session, Path("."))
    counter = impl.module("model_based_rl.algorithms").Counter()
    with pytest.raises(ProbeVerdictError, match="_verdict.*returned a bare bool"):
        impl.run(_verdict, counter)
    assert impl.run(_observation_with_flag, counter) == (2, True)  # a flag beside the values it qualifies


def test_is_verdict_knows_python_numpy_and_torch_truth_values() -> None:
    """bool, a 0-d numpy bool and a 0-d torch bool are verdicts; ints, arrays and tuples are not."""
    import numpy as np
    import torch

    from grader.judge.remote import is_verdict

    assert all(map(is_verdict, [True, np.bool_(False), np.array(True), torch.tensor(False)]))
    assert not any(map(is_verdict, [1, 0.0, np.array([True]), (True,), torch.tensor(1), None, "True"]))

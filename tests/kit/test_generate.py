"""Golden tests of the skeleton generator (grader/authoring/generate.py, CONVENTIONS §2)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from grader.authoring.generate import MarkerError, build, differences, find_regions, main, strip_source


def test_function_region_becomes_named_not_implemented() -> None:
    """A region in a function becomes one raise with the function's name and the TODO text; the rest stays."""
    source = dedent(
        '''\
        def gaussian_nll(mean, log_std, target):
            """Negative log-likelihood."""
            var = 1.0
            # TODO(student): the NLL of target under N(mean, exp(log_std)^2).
            # BEGIN SOLUTION
            nll = (target - mean) ** 2 / var
            return nll.mean()
            # END SOLUTION
        '''
    )
    assert strip_source(source) == dedent(
        '''\
        def gaussian_nll(mean, log_std, target):
            """Negative log-likelihood."""
            var = 1.0
            # TODO(student): the NLL of target under N(mean, exp(log_std)^2).
            raise NotImplementedError("gaussian_nll: the NLL of target under N(mean, exp(log_std)^2).")
        '''
    )


def test_method_and_nested_function_qualified_names() -> None:
    """Methods are named Class.method and nested functions outer.<locals>.inner, at the region's indentation."""
    source = dedent(
        """\
        class Agent:
            def update(self):
                if True:
                    # TODO(student): the target.
                    # BEGIN SOLUTION
                    x = 1
                    # END SOLUTION
                return x

        def outer():
            def inner():
                # TODO(student): inner work.
                # BEGIN SOLUTION
                return 2
                # END SOLUTION
            return inner
        """
    )
    out = strip_source(source)
    assert '            raise NotImplementedError("Agent.update: the target.")\n        return x\n' in out
    assert '        raise NotImplementedError("outer.<locals>.inner: inner work.")\n    return inner\n' in out


def test_two_regions_in_one_function_and_code_between_them_stays() -> None:
    """Each region is replaced separately; the code between regions is kept byte for byte."""
    source = dedent(
        """\
        def f():
            # TODO(student): a.
            # BEGIN SOLUTION
            a = 1
            # END SOLUTION
            between = 'kept'
            # TODO(student): b.
            # BEGIN SOLUTION
            b = 2
            # END SOLUTION
            return a + b
        """
    )
    assert strip_source(source) == dedent(
        """\
        def f():
            # TODO(student): a.
            raise NotImplementedError("f: a.")
            between = 'kept'
            # TODO(student): b.
            raise NotImplementedError("f: b.")
            return a + b
        """
    )


def test_quotes_and_backslashes_in_todo_are_escaped() -> None:
    """A TODO with quotes and backslashes still yields valid code whose message is the TODO text."""
    source = 'def f():\n    # TODO(student): use "mean" \\ not sum.\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION\n'
    namespace: dict = {}
    exec(strip_source(source), namespace)
    with pytest.raises(NotImplementedError, match=r'f: use "mean" \\ not sum\.'):
        namespace["f"]()


def test_source_without_markers_is_unchanged() -> None:
    """A file without markers comes back identical (also CRLF and no trailing newline)."""
    for source in ["x = 1\n", "def f():\r\n    return 1\r\n", "y = 2"]:
        assert strip_source(source) == source


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("def f():\n    # END SOLUTION\n    pass\n", 2, "without a matching"),
        ("def f():\n    # TODO(student): x.\n    # BEGIN SOLUTION\n    pass\n", 3, "never closed"),
        (
            "def f():\n    # TODO(student): x.\n    # BEGIN SOLUTION\n    # TODO(student): y.\n"
            "    # BEGIN SOLUTION\n    pass\n    # END SOLUTION\n    # END SOLUTION\n",
            5,
            "nested",
        ),
        ("# TODO(student): x.\n# BEGIN SOLUTION\nx = 1\n# END SOLUTION\n", 2, "outside a function"),
        (
            "class A:\n    # TODO(student): x.\n    # BEGIN SOLUTION\n    x = 1\n    # END SOLUTION\n",
            3,
            "outside a function",
        ),
        (
            "def f():\n    # TODO(student): x.\n    # BEGIN SOLUTION\n    pass\n\ndef g():\n    pass\n    # END SOLUTION\n",
            3,
            "more than one function",
        ),
        ("def f():\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION\n", 2, r"TODO\(student\)"),
        ("def f():\n    # TODO(student):\n    # BEGIN SOLUTION\n    pass\n    # END SOLUTION\n", 3, r"TODO\(student\)"),
        (
            "def f():\n    if 1:\n        # TODO(student): x.\n        # BEGIN SOLUTION\n        pass\n    # END SOLUTION\n",
            6,
            "indentation",
        ),
        ("def f():\n    # begin solution\n    pass\n", 2, "malformed marker"),
        ("def f(:\n    # TODO(student): x.\n    # BEGIN SOLUTION\n    # END SOLUTION\n", 1, "cannot parse"),
    ],
    ids=[
        "end-without-begin",
        "unclosed",
        "nested",
        "module-level",
        "class-body",
        "spans-functions",
        "no-todo",
        "empty-todo",
        "end-indentation",
        "malformed",
        "syntax-error",
    ],
)
def test_marker_errors_name_file_and_line(source: str, line: int, message: str) -> None:
    """Every marker problem is a MarkerError naming the file and the offending line."""
    with pytest.raises(MarkerError, match=message) as info:
        find_regions(source, "pkg/mod.py")
    assert info.value.path == "pkg/mod.py"
    assert info.value.line == line
    assert str(info.value).startswith(f"pkg/mod.py:{line}:")


def _reference(tmp_path: Path) -> Path:
    src = tmp_path / "reference"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "algo.py").write_text(
        "def f():\n    # TODO(student): one.\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n"
    )
    (src / "pkg" / "data.json").write_bytes(b'{"a": 1}\r\n')
    (src / "pkg" / "__pycache__").mkdir()
    (src / "pkg" / "__pycache__" / "algo.cpython-311.pyc").write_bytes(b"\0junk")
    return src


def test_build_copies_tree_and_skips_caches(tmp_path: Path) -> None:
    """build writes stripped .py files, copies other files byte for byte and leaves out __pycache__."""
    src = _reference(tmp_path)
    dst = tmp_path / "skeleton"
    build(src, dst)
    assert 'raise NotImplementedError("f: one.")' in (dst / "pkg" / "algo.py").read_text()
    assert (dst / "pkg" / "data.json").read_bytes() == b'{"a": 1}\r\n'
    assert not (dst / "pkg" / "__pycache__").exists()


def test_build_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    """Building twice gives the same bytes, and stripping a skeleton again changes nothing."""
    src = _reference(tmp_path)
    build(src, tmp_path / "a")
    build(src, tmp_path / "b")
    assert differences(src, tmp_path / "a") == [] == differences(src, tmp_path / "b")
    build(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c" / "pkg" / "algo.py").read_bytes() == (tmp_path / "a" / "pkg" / "algo.py").read_bytes()


def test_build_replaces_stale_files(tmp_path: Path) -> None:
    """A file removed from the reference disappears from the regenerated skeleton."""
    src = _reference(tmp_path)
    dst = tmp_path / "skeleton"
    build(src, dst)
    (dst / "pkg" / "old.py").write_text("stale = True\n")
    build(src, dst)
    assert not (dst / "pkg" / "old.py").exists()


def test_marker_error_writes_nothing(tmp_path: Path) -> None:
    """When any file has a marker error, the existing skeleton is left exactly as it was."""
    src = _reference(tmp_path)
    dst = tmp_path / "skeleton"
    build(src, dst)
    before = (dst / "pkg" / "algo.py").read_bytes()
    (src / "pkg" / "bad.py").write_text("def g():\n    # END SOLUTION\n    pass\n")
    with pytest.raises(MarkerError, match="bad.py:2"):
        build(src, dst)
    assert (dst / "pkg" / "algo.py").read_bytes() == before
    assert not (dst / "pkg" / "bad.py").exists()


def test_check_reports_missing_extra_and_differing_files(tmp_path: Path, capsys) -> None:
    """--check exits 0 when up to date and 1 listing missing, extra and differing files otherwise."""
    src = _reference(tmp_path)
    dst = tmp_path / "skeleton"
    assert main(["--src", str(src), "--dst", str(dst)]) == 0
    assert main(["--src", str(src), "--dst", str(dst), "--check"]) == 0
    (dst / "pkg" / "algo.py").write_text("changed\n")
    (dst / "pkg" / "extra.py").write_text("")
    (dst / "pkg" / "data.json").unlink()
    capsys.readouterr()
    assert main(["--src", str(src), "--dst", str(dst), "--check"]) == 1
    out = capsys.readouterr().out
    assert "differs: pkg/algo.py" in out and "extra: pkg/extra.py" in out and "missing: pkg/data.json" in out


def test_cli_reports_marker_error_with_exit_2(tmp_path: Path, capsys) -> None:
    """The command line prints the marker error (file:line) and exits 2."""
    src = _reference(tmp_path)
    (src / "pkg" / "bad.py").write_text("def g():\n    # END SOLUTION\n    pass\n")
    assert main(["--src", str(src), "--dst", str(tmp_path / "s")]) == 2
    assert "pkg/bad.py:2:" in capsys.readouterr().err

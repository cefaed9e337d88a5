"""The child end of the grader's report channel, and the signed line format both ends share.

A sandboxed child (the judge's pytest plugin ``grader.judge.pytest_report``, the notebook driver
``grader.sandboxed.notebook``) reports records to the grader as HMAC-signed JSON lines over a pipe
(:class:`grader.judge.sandbox.ReportChannel` is the parent's end). This module runs inside the sandbox, so it
imports nothing of the kit outside ``grader.sandboxed``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os


def child_channel():
    """In the sandboxed child: the ``emit(record)`` function of the report pipe, or None outside a sandbox.

    Takes ``CA15_REPORT_FD``/``CA15_REPORT_KEY`` out of the environment and marks the pipe close-on-exec, so
    that neither a subprocess nor ``os.environ`` can reach them; a forked copy of the process never reports.
    """
    fd = os.environ.pop("CA15_REPORT_FD", None)
    key = os.environ.pop("CA15_REPORT_KEY", None)
    key_fd = os.environ.pop("CA15_REPORT_KEY_FD", None)
    if key is None and key_fd is not None:  # a sandboxed child gets the key through a descriptor, never in argv
        with os.fdopen(int(key_fd), "rb") as stream:
            key = stream.read(256).decode()
    if fd is None or key is None:
        return None
    os.set_inheritable(int(fd), False)
    stream = os.fdopen(int(fd), "wb", buffering=0)
    owner = os.getpid()

    def emit(record: dict) -> None:
        if os.getpid() != owner:
            return
        try:
            stream.write(sign(record, key))
        except OSError:
            pass

    return emit


def sign(record: dict, key: str) -> bytes:
    """One report line: ``<hex hmac> <json>\\n``."""
    body = json.dumps(record, sort_keys=True, default=str)
    mac = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{mac} {body}\n".encode()


def verify(line: bytes, key: str) -> dict | None:
    """The record of a signed line, or None when the signature does not match."""
    try:
        mac, body = line.decode().rstrip("\n").split(" ", 1)
    except (UnicodeDecodeError, ValueError):
        return None
    want = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(mac, want):
        return None
    try:
        record = json.loads(body)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None

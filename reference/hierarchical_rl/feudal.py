"""Placeholder: being written (see the issue)."""

__all__: list[str] = []

"""Utilities: replay buffers, running statistics, logging, plotting, environment helpers."""

"""Environments used across the assignment."""

"""Helpers for tests and benchmarks that drive a real ``skylight serve`` process."""

from skylight.testing.server import ServerProcess, free_port

__all__ = ["ServerProcess", "free_port"]

"""Helpers for tests and benchmarks that drive a real ``skylight serve`` process."""

from skylight.testing.server import ServerProcess, free_port
from skylight.testing.sled_agent import SledAgentProcess

__all__ = ["ServerProcess", "SledAgentProcess", "free_port"]

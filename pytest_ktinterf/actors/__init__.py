"""Interference actors: processes that take a resource away from the server, provably."""

from pytest_ktinterf.actors.base import Actor, Window
from pytest_ktinterf.actors.cpu import CpuStress

__all__ = ["Actor", "CpuStress", "Window"]

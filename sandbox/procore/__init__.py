"""Procore API sandbox: an in-memory HTTP stand-in for the Procore endpoints the product uses."""

from sandbox.procore.app import create_app
from sandbox.procore.state import SandboxState

__all__ = ["SandboxState", "create_app"]

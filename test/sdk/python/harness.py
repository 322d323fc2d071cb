"""Shared harness for the official-SDK protocol suites: how a sandbox is obtained (SDK_MODE), unique
paths, and bounded waiting. The SDKs themselves are used unmodified.

SDK_MODE=debug (default): the SDK's debug mode (E2B_DEBUG / NOVITA_DEBUG): no control plane, one
  sandbox whose envd is http://localhost:49983 (a standalone `agent envd`).
SDK_MODE=serve: a real create through the control plane named by <PREFIX>_API_URL and
  <PREFIX>_SANDBOX_URL with <PREFIX>_API_KEY (e.g. `agent serve`); the sandbox is killed afterwards.
"""

import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

MODE = os.environ.get("SDK_MODE", "debug")
HOME = "/home/user"

T = TypeVar("T")


@dataclass(frozen=True)
class Binding:
    """One SDK: its name, environment prefix and the classes the suite uses."""

    name: str
    env_prefix: str
    Sandbox: Any
    PtySize: Any
    CommandExitException: type
    NotFoundException: type
    InvalidArgumentException: type
    TimeoutException: type
    SandboxException: type


def create_sandbox(b: Binding):
    """Creates the sandbox a suite runs against."""
    if MODE == "debug":
        # Debug mode is what the SDK user turns on with the environment variable; set it for this
        # process so a bare `pytest` works. Pass it explicitly as well: novita-sandbox 2.1.1's
        # Sandbox.create() ignores NOVITA_DEBUG and goes to the control plane without it. URL
        # overrides would take precedence over debug mode's localhost:49983, so they go.
        os.environ[f"{b.env_prefix}_DEBUG"] = "true"
        for v in ("API_URL", "SANDBOX_URL", "DOMAIN", "ACCESS_TOKEN"):
            os.environ.pop(f"{b.env_prefix}_{v}", None)
        return b.Sandbox.create(debug=True)
    if MODE == "serve":
        for v in ("API_URL", "SANDBOX_URL", "API_KEY"):
            if not os.environ.get(f"{b.env_prefix}_{v}"):
                raise RuntimeError(f"SDK_MODE=serve needs {b.env_prefix}_{v}")
        os.environ.pop(f"{b.env_prefix}_DEBUG", None)
        return b.Sandbox.create(timeout=300)
    raise RuntimeError(f"unknown SDK_MODE {MODE!r} (want debug or serve)")


def release_sandbox(sbx) -> None:
    """Kills the sandbox in serve mode; debug mode has nothing to release."""
    if sbx is not None and MODE == "serve":
        sbx.kill()


def unique_dir(b: Binding, label: str) -> str:
    """A directory path under the default user's home, unique to one test of one SDK."""
    return f"{HOME}/sdk-py-{b.name}-{label}-{secrets.token_hex(4)}"


def rel_to_home(path: str) -> str:
    """The same path relative to the home, for commands (which start in the home)."""
    if not path.startswith(HOME + "/"):
        raise ValueError(f"{path} is not under {HOME}")
    return path[len(HOME) + 1 :]


def wait_for(cond: Callable[[], T], what: str, timeout: float = 15.0, interval: float = 0.05) -> T:
    """Polls cond until it returns a truthy value or timeout seconds pass, then fails with what."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)

"""PyPI `e2b`, unmodified, against envd: see harness.py for SDK_MODE."""

import e2b

from harness import Binding
from suite import SdkSuite


class TestE2B(SdkSuite):
    binding = Binding(
        name="e2b",
        env_prefix="E2B",
        Sandbox=e2b.Sandbox,
        PtySize=e2b.PtySize,
        CommandExitException=e2b.CommandExitException,
        NotFoundException=e2b.NotFoundException,
        InvalidArgumentException=e2b.InvalidArgumentException,
        TimeoutException=e2b.TimeoutException,
        SandboxException=e2b.SandboxException,
    )

"""PyPI `novita-sandbox`, unmodified, against envd: see harness.py for SDK_MODE."""

from novita_sandbox import core as novita

from harness import Binding
from suite import SdkSuite


class TestNovita(SdkSuite):
    binding = Binding(
        name="novita",
        env_prefix="NOVITA",
        Sandbox=novita.Sandbox,
        PtySize=novita.PtySize,
        CommandExitException=novita.CommandExitException,
        NotFoundException=novita.NotFoundException,
        InvalidArgumentException=novita.InvalidArgumentException,
        TimeoutException=novita.TimeoutException,
        SandboxException=novita.SandboxException,
    )

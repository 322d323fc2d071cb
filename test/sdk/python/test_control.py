"""Control-plane suite (serve mode only): PyPI `e2b` (POST /v2/sandboxes) and `novita-sandbox`
(POST /sandboxes), unmodified, against `agent serve`: create with metadata, env vars and timeout;
get_info; list with a metadata filter across pages; connect; set_timeout; kill; an expired sandbox
reported as gone; a wrong key refused."""

import re
import secrets
from types import SimpleNamespace

import e2b
import pytest
from novita_sandbox import core as novita

from harness import MODE, wait_for

pytestmark = pytest.mark.skipif(MODE != "serve", reason="serve mode only (needs a control plane)")

BINDINGS = [
    SimpleNamespace(name="e2b", sdk=e2b),
    SimpleNamespace(name="novita", sdk=novita),
]


@pytest.fixture(params=BINDINGS, ids=lambda b: b.name)
def b(request):
    return request.param


@pytest.fixture
def make(b):
    """Creates sandboxes for one test and kills them afterwards."""
    made = []

    def create(**kw):
        kw.setdefault("timeout", 120)
        s = b.sdk.Sandbox.create(**kw)
        made.append(s)
        return s

    yield create
    for s in made:
        try:
            b.sdk.Sandbox.kill(s.sandbox_id)
        except Exception:
            pass


def run_tag(b):
    return f"ctl-py-{b.name}-{secrets.token_hex(4)}"


def test_create_options_and_get_info(b, make):
    run = run_tag(b)
    s = make(metadata={"run": run, "role": "main"}, envs={"CTL_GREETING": "hello from env"}, timeout=90)
    assert re.fullmatch(r"[a-z0-9]+", s.sandbox_id), s.sandbox_id
    assert s.commands.run('echo "$CTL_GREETING"').stdout == "hello from env\n"
    info = s.get_info()
    assert info.sandbox_id == s.sandbox_id
    assert info.template_id == "base"
    assert info.metadata == {"run": run, "role": "main"}
    assert getattr(info.state, "value", info.state) == "running"
    assert (info.end_at - info.started_at).total_seconds() == 90
    assert s.is_running()


def test_list_metadata_filter_and_pages(b, make):
    run = run_tag(b)
    a = make(metadata={"run": run, "role": "listed"})
    c = make(metadata={"run": run, "role": "listed"})
    make(metadata={"run": run, "role": "other"})
    pager = b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run, "role": "listed"}), limit=1)
    seen = []
    pages = 0
    while pager.has_next:
        pages += 1
        assert pages < 10, "pagination does not end"
        items = pager.next_items()
        assert len(items) <= 1
        seen += [i.sandbox_id for i in items]
    assert sorted(seen) == sorted([a.sandbox_id, c.sandbox_id])
    running = b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run}, state=[b.sdk.SandboxState.RUNNING])).next_items()
    assert len(running) == 3
    paused = b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run}, state=[b.sdk.SandboxState.PAUSED])).next_items()
    assert paused == []


def test_connect_and_set_timeout(b, make):
    s = make(timeout=60)
    s.files.write("/home/user/ctl.txt", "shared state")
    created = s.get_info()
    c = b.sdk.Sandbox.connect(s.sandbox_id)
    assert c.sandbox_id == s.sandbox_id
    # The connection routes by its access token (novita-sandbox sends no routing header after connect).
    assert c.commands.run("cat /home/user/ctl.txt").stdout == "shared state"
    connected = b.sdk.Sandbox.get_info(s.sandbox_id)
    assert connected.end_at > created.end_at, "connect asked for the default 300 s: the end must move later"
    s.set_timeout(30)
    shorter = s.get_info()
    assert shorter.end_at < connected.end_at
    b.sdk.Sandbox.set_timeout(s.sandbox_id, 600)
    assert s.get_info().end_at > connected.end_at


def test_kill(b, make):
    s = make()
    assert b.sdk.Sandbox.kill(s.sandbox_id) is True
    assert b.sdk.Sandbox.kill(s.sandbox_id) is False
    assert s.is_running() is False
    with pytest.raises(b.sdk.NotFoundException):
        b.sdk.Sandbox.get_info(s.sandbox_id)
    with pytest.raises(Exception):
        s.commands.run("true")


def test_expired_sandbox_is_gone(b, make):
    run = run_tag(b)
    s = make(timeout=1, metadata={"run": run})
    wait_for(lambda: not s.is_running(), "the sandbox to expire", timeout=30, interval=0.2)
    with pytest.raises(b.sdk.NotFoundException):
        b.sdk.Sandbox.get_info(s.sandbox_id)
    with pytest.raises(Exception):
        s.files.read("/etc/hostname")
    assert b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run})).next_items() == []


def test_wrong_key_refused(b):
    wrong = "e2b_" + "0" * 40
    with pytest.raises(b.sdk.AuthenticationException):
        b.sdk.Sandbox.create(api_key=wrong)
    with pytest.raises(b.sdk.AuthenticationException):
        b.sdk.Sandbox.list(api_key=wrong).next_items()


def test_metrics(b, make):
    s = make()
    ms = s.get_metrics()
    assert len(ms) >= 1
    assert ms[0].mem_total > 0 and ms[0].disk_total > 0

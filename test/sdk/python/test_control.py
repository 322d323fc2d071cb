"""Control-plane suite (serve mode only): PyPI `e2b` (POST /v2/sandboxes) and `novita-sandbox`
(POST /sandboxes), unmodified, against `agent serve`: create with metadata, env vars and timeout;
get_info; list with a metadata filter across pages; connect; set_timeout; kill; an expired sandbox
reported as gone; a wrong key refused; pause and resume (e2b)."""

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


# A background counter: an increasing number in /tmp/counter ten times a second, from memory (a
# restarted process would start over at 1).
COUNTER = (
    "nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; "
    "mv /tmp/counter.new /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &"
)


def read_counter(s):
    return int(s.commands.run("cat /tmp/counter 2>/dev/null || echo 0").stdout.strip())


def wait_counter(s, n):
    got = [0]

    def past():
        got[0] = read_counter(s)
        return got[0] > n

    wait_for(past, f"the counter to pass {n}", timeout=30, interval=0.1)
    return got[0]


def test_pause_and_connect(b, make):
    if b.name != "e2b":
        pytest.skip("pause is exercised with the e2b SDK")
    run = run_tag(b)
    s = make(metadata={"run": run})
    s.files.write("/home/user/pause.txt", "before the pause")
    s.commands.run(COUNTER)
    before = wait_counter(s, 0)
    assert s.pause() is True
    assert b.sdk.Sandbox.pause(s.sandbox_id) is False, "a second pause (409) answers False"
    assert s.is_running() is False
    assert getattr(s.get_info().state, "value", None) == "paused"
    paused = b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run}, state=[b.sdk.SandboxState.PAUSED])).next_items()
    assert [i.sandbox_id for i in paused] == [s.sandbox_id]
    running = b.sdk.Sandbox.list(query=b.sdk.SandboxQuery(metadata={"run": run}, state=[b.sdk.SandboxState.RUNNING])).next_items()
    assert running == []
    c = b.sdk.Sandbox.connect(s.sandbox_id, timeout=120)
    assert c.sandbox_id == s.sandbox_id
    assert c.is_running()
    assert getattr(c.get_info().state, "value", None) == "running"
    assert c.files.read("/home/user/pause.txt") == "before the pause"
    after = read_counter(c)
    assert after >= before, f"the counter went back from {before} to {after}: the process restarted"
    wait_counter(c, after)

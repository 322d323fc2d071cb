"""The protocol suite, shared by the PyPI `e2b` and `novita-sandbox` SDKs (Novita's SDK is a fork of
E2B's with the same filesystem/commands/pty surface). Each test works in its own directory under the
default user's home, so the suites can share one debug-mode sandbox.

Standalone `agent envd` (debug mode) runs commands as host processes whose cwd is mapped into the world
root: `pwd` prints a host path ending in the sandbox path, and absolute paths inside commands are host
paths. Commands therefore use relative paths (they start in the home) and assertions on paths printed by
commands use suffixes; in a real sandbox the same assertions hold exactly.

A test module binds the suite to one SDK: `class TestX(SdkSuite): binding = Binding(...)`.
"""

import io
import os
import re
import secrets
import threading
from datetime import datetime

import pytest

from harness import HOME, MODE, Binding, create_sandbox, rel_to_home, release_sandbox, unique_dir, wait_for


def _value(enum_or_str) -> str:
    return getattr(enum_or_str, "value", enum_or_str)


class SdkSuite:
    """Tests for one SDK; subclasses set `binding`."""

    binding: Binding

    @pytest.fixture(scope="class")
    @classmethod
    def sbx(cls):
        s = create_sandbox(cls.binding)
        yield s
        release_sandbox(s)

    @pytest.fixture
    def tdir(self, sbx, request):
        """A fresh test directory path (not created), removed after the test."""
        label = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
        d = unique_dir(self.binding, label)
        yield d
        try:
            sbx.files.remove(d)
        except Exception:
            pass

    def _gone(self, sbx, pid):
        return lambda: all(p.pid != pid for p in sbx.commands.list())

    # ------------------------------------------------------------------ files

    def test_write_read_round_trip(self, sbx, tdir):
        text = "héllo wörld ✓\nsecond line\n"
        info = sbx.files.write(f"{tdir}/a.txt", text)
        assert info.path == f"{tdir}/a.txt"
        assert info.name == "a.txt"
        assert sbx.files.read(f"{tdir}/a.txt") == text

        data = bytes(i % 256 for i in range(512))
        sbx.files.write(f"{tdir}/b.bin", data)
        assert bytes(sbx.files.read(f"{tdir}/b.bin", format="bytes")) == data

        sbx.files.write(f"{tdir}/a.txt", "short")  # overwriting truncates
        assert sbx.files.read(f"{tdir}/a.txt") == "short"

        sbx.files.write(f"{tdir}/empty", "")
        assert sbx.files.read(f"{tdir}/empty") == ""

    def test_octet_stream_gzip_stream_large(self, sbx, tdir):
        text = "".join(f"line {i} ✓\n" for i in range(20000))
        sbx.files.write(f"{tdir}/oct.txt", text, use_octet_stream=True)
        assert sbx.files.read(f"{tdir}/oct.txt") == text
        sbx.files.write(f"{tdir}/gz.txt", text, gzip=True)
        assert sbx.files.read(f"{tdir}/gz.txt", gzip=True) == text
        # A file object is uploaded as it is read.
        sbx.files.write(f"{tdir}/fobj.txt", io.BytesIO(text.encode()))
        assert sbx.files.read(f"{tdir}/fobj.txt") == text

        streamed = b"".join(bytes(c) for c in sbx.files.read(f"{tdir}/gz.txt", format="stream"))
        assert streamed.decode() == text

        big = os.urandom(8 << 20)
        sbx.files.write(f"{tdir}/big.bin", big)
        assert bytes(sbx.files.read(f"{tdir}/big.bin", format="bytes")) == big
        assert sbx.files.get_info(f"{tdir}/big.bin").size == len(big)

    def test_read_missing_is_not_found(self, sbx, tdir):
        with pytest.raises(self.binding.NotFoundException):
            sbx.files.read(f"{tdir}/nope.txt")

    def test_paths_stay_inside_the_sandbox(self, sbx, tdir):
        rel = rel_to_home(tdir)
        target = f"/tmp/sdk-escape-{secrets.token_hex(4)}"
        try:
            sbx.commands.run(
                f"mkdir -p {rel} && echo hi > {rel}/file.txt && ln -s /etc/passwd {rel}/pw && "
                f"ln -s ../../../../../../../etc/group {rel}/grp && ln -s {target} {rel}/evil"
            )
            passwd = sbx.files.read("/etc/passwd")
            assert re.search(r"^user:x:1000:", passwd, re.M)
            assert sbx.files.read("/../../../etc/passwd") == passwd
            assert sbx.files.read(f"{tdir}/pw") == passwd  # absolute symlink resolves in the sandbox
            assert sbx.files.read(f"{tdir}/grp") == sbx.files.read("/etc/group")

            # Writing through a symlink to an absolute path lands inside the sandbox.
            sbx.files.write(f"{tdir}/evil", "through-link")
            assert sbx.files.read(target) == "through-link"
            if MODE == "debug":
                # Standalone envd serves a host directory: the host path must be untouched.
                escaped = os.path.lexists(target)
                if escaped:
                    os.remove(target)
                assert not escaped, f"write through a symlink escaped to the host's {target}"
        finally:
            try:
                sbx.files.remove(target)
            except Exception:
                pass

        # Relative and ~ paths resolve against the user's home.
        assert sbx.files.read(f"{rel}/file.txt") == "hi\n"
        assert sbx.files.read(f"~/{rel}/file.txt") == "hi\n"
        with pytest.raises(self.binding.InvalidArgumentException):
            sbx.files.read(tdir)

    def test_write_files_multi(self, sbx, tdir):
        entries = [
            {"path": f"{tdir}/one.txt", "data": "one"},
            {"path": f"{tdir}/nested/deeper/two.txt", "data": "two"},
            {"path": f"{tdir}/three.bin", "data": b"\x00\x01\x02\xfe\xff"},
        ]
        infos = sbx.files.write_files(entries)
        assert sorted(i.path for i in infos) == sorted(e["path"] for e in entries)
        assert sbx.files.read(f"{tdir}/one.txt") == "one"
        assert sbx.files.read(f"{tdir}/nested/deeper/two.txt") == "two"
        assert bytes(sbx.files.read(f"{tdir}/three.bin", format="bytes")) == b"\x00\x01\x02\xfe\xff"
        # The process world sees the same files.
        rel = rel_to_home(tdir)
        assert sbx.commands.run(f"cat {rel}/one.txt {rel}/nested/deeper/two.txt").stdout == "onetwo"

    def test_list_depth(self, sbx, tdir):
        sbx.files.write_files(
            [{"path": f"{tdir}/f1.txt", "data": "12345"}, {"path": f"{tdir}/sub/f2.txt", "data": "x"}]
        )
        l1 = sbx.files.list(tdir)
        assert sorted(e.name for e in l1) == ["f1.txt", "sub"]
        f1 = next(e for e in l1 if e.name == "f1.txt")
        assert _value(f1.type) == "file"
        assert f1.path == f"{tdir}/f1.txt"
        assert f1.size == 5
        assert _value(next(e for e in l1 if e.name == "sub").type) == "dir"

        l2 = sbx.files.list(tdir, depth=2)
        assert sorted(e.path for e in l2) == [f"{tdir}/f1.txt", f"{tdir}/sub", f"{tdir}/sub/f2.txt"]

        with pytest.raises(self.binding.NotFoundException):
            sbx.files.list(f"{tdir}/none")
        with pytest.raises(self.binding.InvalidArgumentException):
            sbx.files.list(f"{tdir}/f1.txt")

    def test_exists_get_info_make_dir_rename_remove(self, sbx, tdir):
        assert sbx.files.exists(tdir) is False
        assert sbx.files.make_dir(f"{tdir}/a/b") is True
        assert sbx.files.make_dir(f"{tdir}/a/b") is False
        assert sbx.files.exists(f"{tdir}/a/b") is True

        di = sbx.files.get_info(f"{tdir}/a/b")
        assert _value(di.type) == "dir"
        assert di.name == "b"
        assert di.path == f"{tdir}/a/b"
        assert di.owner == "user"

        sbx.files.write(f"{tdir}/a/f.txt", "abc")
        fi = sbx.files.get_info(f"{tdir}/a/f.txt")
        assert _value(fi.type) == "file"
        assert fi.size == 3
        assert fi.owner == "user"
        assert fi.group == "user"
        assert fi.permissions.startswith("-rw")
        assert fi.mode & 0o600 == 0o600
        assert isinstance(fi.modified_time, datetime)

        moved = sbx.files.rename(f"{tdir}/a/f.txt", f"{tdir}/g.txt")
        assert moved.path == f"{tdir}/g.txt"
        assert moved.name == "g.txt"
        assert sbx.files.exists(f"{tdir}/a/f.txt") is False
        assert sbx.files.read(f"{tdir}/g.txt") == "abc"

        sbx.files.remove(f"{tdir}/g.txt")
        assert sbx.files.exists(f"{tdir}/g.txt") is False
        sbx.files.remove(f"{tdir}/a")  # non-empty directory
        assert sbx.files.exists(f"{tdir}/a") is False
        with pytest.raises(self.binding.NotFoundException):
            sbx.files.get_info(f"{tdir}/a")

    def test_files_root_vs_default_user(self, sbx, tdir):
        sbx.files.write(f"{tdir}/mine/u.txt", "u")
        assert sbx.files.get_info(f"{tdir}/mine/u.txt").owner == "user"
        assert sbx.files.get_info(f"{tdir}/mine").owner == "user"  # parent created for the user
        sbx.files.write(f"{tdir}/r.txt", "r", user="root")
        ri = sbx.files.get_info(f"{tdir}/r.txt")
        assert ri.owner == "root"
        assert ri.group == "root"
        assert sbx.files.read(f"{tdir}/r.txt", user="root") == "r"

    def test_watch_dir_polling(self, sbx, tdir):
        sbx.files.make_dir(tdir)
        handle = sbx.files.watch_dir(tdir)
        events = []

        def seen(name, typ):
            events.extend(handle.get_new_events())
            return any(e.name == name and _value(e.type) == typ for e in events)

        try:
            sbx.files.write(f"{tdir}/w.txt", "watched")
            wait_for(lambda: seen("w.txt", "create"), "create event for w.txt")
            sbx.files.rename(f"{tdir}/w.txt", f"{tdir}/w2.txt")
            wait_for(lambda: seen("w.txt", "rename"), "rename event for w.txt")
            sbx.files.remove(f"{tdir}/w2.txt")
            wait_for(lambda: seen("w2.txt", "remove"), "remove event for w2.txt")
            # Changes made by a process, not the file API, are seen too.
            sbx.commands.run(f"echo hi > {rel_to_home(tdir)}/by-cmd.txt")
            wait_for(lambda: seen("by-cmd.txt", "create"), "create event for by-cmd.txt")
            wait_for(lambda: seen("by-cmd.txt", "write"), "write event for by-cmd.txt")
        except AssertionError as e:
            raise AssertionError(f"{e}\nevents: {[(ev.name, _value(ev.type)) for ev in events]}") from None
        finally:
            handle.stop()

    def test_watch_dir_recursive(self, sbx, tdir):
        sbx.files.make_dir(f"{tdir}/sub")
        handle = sbx.files.watch_dir(tdir, recursive=True)
        events = []

        def seen():
            events.extend(handle.get_new_events())
            return any(e.name == "sub/deep.txt" and _value(e.type) == "create" for e in events)

        try:
            sbx.files.write(f"{tdir}/sub/deep.txt", "deep")
            wait_for(seen, "create event for sub/deep.txt")
        except AssertionError as e:
            raise AssertionError(f"{e}\nevents: {[(ev.name, _value(ev.type)) for ev in events]}") from None
        finally:
            handle.stop()
        with pytest.raises(self.binding.NotFoundException):
            sbx.files.watch_dir(f"{tdir}/none")

    # ------------------------------------------------------------------ commands

    def test_run_foreground(self, sbx):
        r = sbx.commands.run("echo hello; echo oops >&2")
        assert r.exit_code == 0
        assert r.stdout == "hello\n"
        assert r.stderr == "oops\n"

        n = 20000
        big = sbx.commands.run(f"seq 1 {n}")
        assert big.stdout == "".join(f"{i}\n" for i in range(1, n + 1))

    def test_run_large_output(self, sbx):
        streamed = [0]

        def count(d):
            streamed[0] += len(d)

        r = sbx.commands.run(
            'for i in $(seq 1 4); do head -c 4194304 /dev/zero | tr "\\0" "$i"; done', on_stdout=count
        )
        assert len(r.stdout) == 16 << 20
        assert streamed[0] == 16 << 20
        for i in range(4):
            part = r.stdout[i * (4 << 20) : (i + 1) * (4 << 20)]
            assert part == str(i + 1) * (4 << 20), f"part {i + 1} differs"

    def test_run_on_stdout_on_stderr(self, sbx):
        out, err = [], []
        r = sbx.commands.run(
            "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done",
            on_stdout=out.append,
            on_stderr=err.append,
        )
        assert "".join(out) == "out1\nout2\nout3\n"
        assert "".join(err) == "err1\nerr2\nerr3\n"
        assert r.stdout == "".join(out)
        assert r.stderr == "".join(err)

    def test_exit_error(self, sbx):
        with pytest.raises(self.binding.CommandExitException) as ei:
            sbx.commands.run("echo partial; echo bad >&2; exit 7")
        e = ei.value
        assert e.exit_code == 7
        assert e.stdout == "partial\n"
        assert e.stderr == "bad\n"
        assert "exit status 7" in (e.error or "")

    def test_user_default_vs_root(self, sbx):
        u = sbx.commands.run('id -u; id -g; echo "$USER"; echo "$HOME"').stdout.split("\n")
        assert u[:3] == ["1000", "1000", "user"]
        assert u[3].endswith("/home/user"), u[3]

        r = sbx.commands.run('id -u; echo "$USER"; echo "$HOME"', user="root").stdout.split("\n")
        assert r[:2] == ["0", "root"]
        assert r[2].endswith("/root"), r[2]

    def test_files_made_by_commands_belong_to_their_user(self, sbx, tdir):
        sbx.files.make_dir(tdir)
        # Relative to the home for the user; root starts in /root, so it gets the directory as cwd.
        sbx.commands.run(f"echo u > {rel_to_home(tdir)}/by-user.txt")
        sbx.commands.run("echo r > by-root.txt", user="root", cwd=tdir)
        assert sbx.files.get_info(f"{tdir}/by-user.txt").owner == "user"
        assert sbx.files.get_info(f"{tdir}/by-root.txt").owner == "root"
        assert sbx.files.read(f"{tdir}/by-root.txt") == "r\n"

    def test_cwd(self, sbx, tdir):
        home = sbx.commands.run("pwd").stdout.strip()
        assert home.endswith(HOME), home

        # Set up with a command, so this test depends on the process service alone.
        rel = rel_to_home(tdir)
        sbx.commands.run(f"mkdir -p {rel}/work && echo in-work > {rel}/work/in.txt")
        pwd, content = sbx.commands.run("pwd; cat in.txt", cwd=f"{tdir}/work").stdout.split("\n")[:2]
        assert pwd.endswith(f"{tdir}/work"), pwd
        assert content == "in-work"
        # Relative and ~ cwds resolve against the home.
        for cwd in (f"{rel}/work", f"~/{rel}/work"):
            p = sbx.commands.run("pwd", cwd=cwd).stdout.strip()
            assert p.endswith(f"{tdir}/work"), (cwd, p)

        with pytest.raises(self.binding.InvalidArgumentException):
            sbx.commands.run("true", cwd=f"{tdir}/does-not-exist")

    def test_envs(self, sbx):
        r = sbx.commands.run('printf "%s|%s|%s" "$FOO" "$EQ" "$UNI"', envs={"FOO": "bar baz", "EQ": "a=b", "UNI": "ü✓"})
        assert r.stdout == "bar baz|a=b|ü✓"

    def test_background_wait(self, sbx):
        h = sbx.commands.run("sleep 0.3; echo bg-done", background=True)
        assert isinstance(h.pid, int) and h.pid > 0
        r = h.wait()
        assert r.exit_code == 0
        assert r.stdout == "bg-done\n"

    def test_list_shows_background_command(self, sbx, tdir):
        sbx.commands.run(f"mkdir -p {rel_to_home(tdir)}")
        mark = secrets.token_hex(4)
        cmd = f"sleep 60 # {mark}"
        h = sbx.commands.run(cmd, background=True, envs={"MARK": mark}, cwd=tdir)
        try:
            p = next((x for x in sbx.commands.list() if x.pid == h.pid), None)
            assert p is not None
            assert p.cmd == "/bin/bash"
            assert list(p.args) == ["-l", "-c", cmd]
            assert p.envs.get("MARK") == mark
            assert p.cwd == tdir
        finally:
            assert h.kill() is True
        wait_for(self._gone(sbx, h.pid), f"pid {h.pid} to leave the list")

    def test_kill(self, sbx):
        h = sbx.commands.run("sleep 60", background=True)
        assert sbx.commands.kill(h.pid) is True
        with pytest.raises(self.binding.CommandExitException) as ei:
            h.wait()
        assert ei.value.exit_code != 0
        wait_for(self._gone(sbx, h.pid), f"killed pid {h.pid} to leave the list")
        assert sbx.commands.kill(h.pid) is False

        h2 = sbx.commands.run("sleep 60", background=True)
        assert h2.kill() is True
        with pytest.raises(self.binding.CommandExitException):
            h2.wait()

    def test_send_stdin(self, sbx):
        h = sbx.commands.run('read a; read b; echo "got:$a,$b"', background=True, stdin=True)
        sbx.commands.send_stdin(h.pid, "first\n")
        sbx.commands.send_stdin(h.pid, "second\n")
        assert h.wait().stdout == "got:first,second\n"

        # Without stdin the command reads EOF at once instead of hanging.
        assert sbx.commands.run("cat; echo done", timeout=20).stdout == "done\n"

    def test_close_stdin(self, sbx):
        if not hasattr(sbx.commands, "close_stdin"):
            pytest.skip(f"{self.binding.name} Python SDK has no commands.close_stdin")
        c = sbx.commands.run('cat; echo "<eof>"', background=True, stdin=True)
        sbx.commands.send_stdin(c.pid, "abc")
        sbx.commands.send_stdin(c.pid, "def\n")
        sbx.commands.close_stdin(c.pid)
        assert c.wait().stdout == "abcdef\n<eof>\n"

    def test_connect(self, sbx):
        h = sbx.commands.run('read x; echo "after-connect:$x"', background=True, stdin=True)
        h.disconnect()
        h2 = sbx.commands.connect(h.pid)
        assert h2.pid == h.pid
        sbx.commands.send_stdin(h.pid, "ping\n")
        out = []
        r = h2.wait(on_stdout=out.append)
        assert r.stdout == "after-connect:ping\n"
        assert "".join(out) == "after-connect:ping\n"

        with pytest.raises(self.binding.NotFoundException):
            sbx.commands.connect(999_999_999)

    def test_timeout_kills_command(self, sbx):
        # Either the client's deadline (TimeoutException) or the server's kill (CommandExitException)
        # ends the call first; both are correct, success is not.
        timed_out = (self.binding.TimeoutException, self.binding.CommandExitException)
        with pytest.raises(timed_out):
            sbx.commands.run("sleep 120", timeout=1)

        h = sbx.commands.run("sleep 120", background=True, timeout=1.5)
        with pytest.raises(timed_out):
            h.wait()
        # The server killed it: it leaves the process list well before sleep would end.
        wait_for(self._gone(sbx, h.pid), f"timed-out pid {h.pid} to be killed", timeout=20)

    # ------------------------------------------------------------------ pty

    def test_pty_create_send_input_resize(self, sbx):
        b = self.binding
        h = sbx.pty.create(size=b.PtySize(rows=24, cols=80), timeout=50)
        out = b""
        stage = 0
        try:
            sbx.pty.send_stdin(h.pid, b"echo SIZE=$(stty size)\n")
            for _, _, pty in h:
                if pty is None:
                    continue
                out += bytes(pty)
                text = out.decode("utf-8", "replace")
                if stage == 0 and "SIZE=24 80" in text:
                    stage = 1
                    sbx.pty.resize(h.pid, b.PtySize(rows=30, cols=100))
                    sbx.pty.send_stdin(h.pid, b"echo SIZE=$(stty size)\n")
                elif stage == 1 and "SIZE=30 100" in text:
                    stage = 2
                    sbx.pty.send_stdin(h.pid, b"echo TTY=$(tty) TERM=$TERM; exit 0\n")
            r = h.wait()
        except BaseException:
            sbx.pty.kill(h.pid)
            raise
        text = out.decode("utf-8", "replace")
        assert stage == 2, text
        assert r.exit_code == 0
        assert re.search(r"TTY=/dev/pts/\d+ TERM=xterm-256color", text), text

    def test_pty_kill(self, sbx):
        h = sbx.pty.create(size=self.binding.PtySize(rows=24, cols=80), timeout=50)
        # Drain the stream in the background so the kill's end event is consumed.
        result = {}

        def drain():
            try:
                h.wait()
                result["ok"] = True
            except Exception as e:  # noqa: BLE001 - the test inspects it
                result["err"] = e

        t = threading.Thread(target=drain, daemon=True)
        t.start()
        assert sbx.pty.kill(h.pid) is True
        t.join(30)
        assert not t.is_alive(), "pty stream did not end after kill"
        assert isinstance(result.get("err"), self.binding.CommandExitException), result

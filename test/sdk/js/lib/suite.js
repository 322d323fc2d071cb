// The protocol suite, shared by the npm `e2b` and `novita-sandbox` SDKs (Novita's SDK is a fork of
// E2B's with the same filesystem/commands/pty surface). Each test works in its own directory under
// the default user's home, so the suites can share one debug-mode sandbox.
//
// Standalone `agent envd` (debug mode) runs commands as host processes whose cwd is mapped into the
// world root: `pwd` prints a host path ending in the sandbox path, and absolute paths inside commands
// are host paths. Commands therefore use relative paths (they start in the home) and assertions on
// paths printed by commands use suffixes; in a real sandbox the same assertions hold exactly.

import { describe, test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync, rmSync } from 'node:fs'

import { MODE, HOME, createSandbox, releaseSandbox, uniqueDir, relToHome, waitFor, within } from './harness.js'

const enc = (s) => new TextEncoder().encode(s)
const T = { timeout: 60_000 }

/**
 * Defines the suite for one SDK.
 * @param {{name: string, envPrefix: string, sdk: any}} b
 */
export function defineSuite(b) {
  const { CommandExitError, NotFoundError, InvalidArgumentError, TimeoutError, SandboxError } = b.sdk

  describe(`${b.name} JS SDK against envd (${MODE} mode)`, () => {
    /** @type {any} */
    let sbx

    before(async () => {
      sbx = await createSandbox(b)
    })
    after(async () => {
      await releaseSandbox(sbx)
    })

    /** A fresh test directory path (not created), removed after the test. */
    function tdir(t, label) {
      const dir = uniqueDir(b, label)
      t.after(async () => {
        await sbx.files.remove(dir).catch(() => {})
      })
      return dir
    }

    /** Asserts that p rejects with an instance of cls and returns the error. */
    async function rejectsWith(p, cls, what) {
      let err
      await assert.rejects(p, (e) => {
        err = e
        return true
      }, what)
      assert.ok(err instanceof cls, `${what}: want ${cls.name}, got ${err?.constructor?.name}: ${err?.message}`)
      return err
    }

    // ---------------------------------------------------------------- files

    test('files.write and files.read round-trip text, bytes and overwrite', T, async (t) => {
      const dir = tdir(t, 'rw')
      const text = 'héllo wörld ✓\nsecond line\n'
      const info = await sbx.files.write(`${dir}/a.txt`, text)
      assert.equal(info.path, `${dir}/a.txt`)
      assert.equal(info.name, 'a.txt')
      assert.equal(await sbx.files.read(`${dir}/a.txt`), text)

      const bytes = Uint8Array.from({ length: 512 }, (_, i) => i % 256)
      await sbx.files.write(`${dir}/b.bin`, bytes.buffer)
      const back = await sbx.files.read(`${dir}/b.bin`, { format: 'bytes' })
      assert.deepEqual(Buffer.from(back), Buffer.from(bytes))

      // Overwriting truncates.
      await sbx.files.write(`${dir}/a.txt`, 'short')
      assert.equal(await sbx.files.read(`${dir}/a.txt`), 'short')

      // An empty file is a file, not an error.
      await sbx.files.write(`${dir}/empty`, '')
      assert.equal(await sbx.files.read(`${dir}/empty`), '')
    })

    test('files: octet-stream and gzip uploads, gzip and stream downloads, a large file', T, async (t) => {
      const dir = tdir(t, 'enc')
      const text = Array.from({ length: 20000 }, (_, i) => `line ${i} ✓\n`).join('')
      await sbx.files.write(`${dir}/oct.txt`, text, { useOctetStream: true })
      assert.equal(await sbx.files.read(`${dir}/oct.txt`), text)
      await sbx.files.write(`${dir}/gz.txt`, text, { gzip: true })
      assert.equal(await sbx.files.read(`${dir}/gz.txt`, { gzip: true }), text)

      const stream = await sbx.files.read(`${dir}/gz.txt`, { format: 'stream' })
      const chunks = []
      for await (const c of stream) chunks.push(Buffer.from(c))
      assert.equal(Buffer.concat(chunks).toString('utf8'), text)

      const big = randomBytes(8 << 20)
      await sbx.files.write(`${dir}/big.bin`, big.buffer.slice(big.byteOffset, big.byteOffset + big.length))
      const back = Buffer.from(await sbx.files.read(`${dir}/big.bin`, { format: 'bytes' }))
      assert.equal(back.length, big.length)
      assert.ok(back.equals(big), '8 MiB round trip differs')
      assert.equal((await sbx.files.getInfo(`${dir}/big.bin`)).size, big.length)
    })

    test('files.read of a missing file is a not-found error', T, async (t) => {
      const dir = tdir(t, 'missing')
      await rejectsWith(sbx.files.read(`${dir}/nope.txt`), NotFoundError, 'read missing file')
    })

    test('file paths stay inside the sandbox: .., symlinks, relative and ~ paths', T, async (t) => {
      const dir = tdir(t, 'paths')
      const rel = relToHome(dir)
      const target = `/tmp/sdk-escape-${randomBytes(4).toString('hex')}`
      t.after(async () => {
        await sbx.files.remove(target).catch(() => {})
      })
      await sbx.commands.run(
        `mkdir -p ${rel} && echo hi > ${rel}/file.txt && ln -s /etc/passwd ${rel}/pw && ` +
          `ln -s ../../../../../../../etc/group ${rel}/grp && ln -s ${target} ${rel}/evil`,
      )
      const passwd = await sbx.files.read('/etc/passwd')
      assert.match(passwd, /^user:x:1000:/m)
      assert.equal(await sbx.files.read('/../../../etc/passwd'), passwd)
      assert.equal(await sbx.files.read(`${dir}/pw`), passwd, 'absolute symlink resolves in the sandbox')
      assert.equal(await sbx.files.read(`${dir}/grp`), await sbx.files.read('/etc/group'), 'relative symlink')

      // Writing through a symlink to an absolute path lands inside the sandbox.
      await sbx.files.write(`${dir}/evil`, 'through-link')
      assert.equal(await sbx.files.read(target), 'through-link')
      if (MODE === 'debug') {
        // Standalone envd serves a host directory: the host path must be untouched.
        const escaped = existsSync(target)
        if (escaped) rmSync(target, { force: true })
        assert.equal(escaped, false, `write through a symlink escaped to the host's ${target}`)
      }

      // Relative and ~ paths resolve against the user's home.
      assert.equal(await sbx.files.read(`${rel}/file.txt`), 'hi\n')
      assert.equal(await sbx.files.read(`~/${rel}/file.txt`), 'hi\n')
      await rejectsWith(sbx.files.read(dir), InvalidArgumentError, 'read a directory')
    })

    test('files.write with an array writes every file in one call, creating parents', T, async (t) => {
      const dir = tdir(t, 'multi')
      const bin = Uint8Array.from([0, 1, 2, 254, 255])
      const entries = [
        { path: `${dir}/one.txt`, data: 'one' },
        { path: `${dir}/nested/deeper/two.txt`, data: 'two' },
        { path: `${dir}/three.bin`, data: bin.buffer },
      ]
      const infos = await sbx.files.write(entries)
      assert.equal(infos.length, 3)
      assert.deepEqual(infos.map((i) => i.path).sort(), entries.map((e) => e.path).sort())
      assert.equal(await sbx.files.read(`${dir}/one.txt`), 'one')
      assert.equal(await sbx.files.read(`${dir}/nested/deeper/two.txt`), 'two')
      assert.deepEqual(Buffer.from(await sbx.files.read(`${dir}/three.bin`, { format: 'bytes' })), Buffer.from(bin))
      // The process world sees the same files.
      const r = await sbx.commands.run(`cat ${relToHome(dir)}/one.txt ${relToHome(dir)}/nested/deeper/two.txt`)
      assert.equal(r.stdout, 'onetwo')
    })

    test('files.list lists entries with types, sizes and paths, honouring depth', T, async (t) => {
      const dir = tdir(t, 'list')
      await sbx.files.write([
        { path: `${dir}/f1.txt`, data: '12345' },
        { path: `${dir}/sub/f2.txt`, data: 'x' },
      ])
      const l1 = await sbx.files.list(dir)
      assert.deepEqual(l1.map((e) => e.name).sort(), ['f1.txt', 'sub'])
      const f1 = l1.find((e) => e.name === 'f1.txt')
      assert.equal(f1.type, 'file')
      assert.equal(f1.path, `${dir}/f1.txt`)
      assert.equal(f1.size, 5)
      assert.equal(l1.find((e) => e.name === 'sub').type, 'dir')

      const l2 = await sbx.files.list(dir, { depth: 2 })
      assert.deepEqual(l2.map((e) => e.path).sort(), [`${dir}/f1.txt`, `${dir}/sub`, `${dir}/sub/f2.txt`])

      await rejectsWith(sbx.files.list(`${dir}/none`), NotFoundError, 'list missing dir')
      await rejectsWith(sbx.files.list(`${dir}/f1.txt`), InvalidArgumentError, 'list a file')
    })

    test('files.exists, getInfo, makeDir, rename and remove', T, async (t) => {
      const dir = tdir(t, 'ops')
      assert.equal(await sbx.files.exists(dir), false)
      assert.equal(await sbx.files.makeDir(`${dir}/a/b`), true, 'makeDir creates parents')
      assert.equal(await sbx.files.makeDir(`${dir}/a/b`), false, 'makeDir of an existing dir')
      assert.equal(await sbx.files.exists(`${dir}/a/b`), true)

      const di = await sbx.files.getInfo(`${dir}/a/b`)
      assert.equal(di.type, 'dir')
      assert.equal(di.name, 'b')
      assert.equal(di.path, `${dir}/a/b`)
      assert.equal(di.owner, 'user')

      await sbx.files.write(`${dir}/a/f.txt`, 'abc')
      const fi = await sbx.files.getInfo(`${dir}/a/f.txt`)
      assert.equal(fi.type, 'file')
      assert.equal(fi.size, 3)
      assert.equal(fi.owner, 'user')
      assert.equal(fi.group, 'user')
      assert.match(fi.permissions, /^-rw/)
      assert.equal(fi.mode & 0o600, 0o600)
      assert.ok(fi.modifiedTime instanceof Date && !Number.isNaN(fi.modifiedTime.getTime()), 'modifiedTime is a date')

      const moved = await sbx.files.rename(`${dir}/a/f.txt`, `${dir}/g.txt`)
      assert.equal(moved.path, `${dir}/g.txt`)
      assert.equal(moved.name, 'g.txt')
      assert.equal(await sbx.files.exists(`${dir}/a/f.txt`), false)
      assert.equal(await sbx.files.read(`${dir}/g.txt`), 'abc')

      await sbx.files.remove(`${dir}/g.txt`)
      assert.equal(await sbx.files.exists(`${dir}/g.txt`), false)
      await sbx.files.remove(`${dir}/a`) // non-empty directory
      assert.equal(await sbx.files.exists(`${dir}/a`), false)
      await rejectsWith(sbx.files.getInfo(`${dir}/a`), NotFoundError, 'getInfo of a removed dir')
    })

    test('files as root vs the default user: ownership of written files and created parents', T, async (t) => {
      const dir = tdir(t, 'owner')
      await sbx.files.write(`${dir}/mine/u.txt`, 'u')
      assert.equal((await sbx.files.getInfo(`${dir}/mine/u.txt`)).owner, 'user')
      assert.equal((await sbx.files.getInfo(`${dir}/mine`)).owner, 'user', 'parent created for the user')
      await sbx.files.write(`${dir}/r.txt`, 'r', { user: 'root' })
      const ri = await sbx.files.getInfo(`${dir}/r.txt`)
      assert.equal(ri.owner, 'root')
      assert.equal(ri.group, 'root')
      assert.equal(await sbx.files.read(`${dir}/r.txt`, { user: 'root' }), 'r')
    })

    test('files.watchDir streams create, rename and remove events', T, async (t) => {
      const dir = tdir(t, 'watch')
      await sbx.files.makeDir(dir)
      const events = []
      const handle = await sbx.files.watchDir(dir, (e) => events.push(e), { timeoutMs: 50_000 })
      const seen = (name, type) => events.some((e) => e.name === name && e.type === type)
      try {
        await sbx.files.write(`${dir}/w.txt`, 'watched')
        await waitFor(() => seen('w.txt', 'create'), { what: 'create event for w.txt' })
        await sbx.files.rename(`${dir}/w.txt`, `${dir}/w2.txt`)
        await waitFor(() => seen('w.txt', 'rename'), { what: 'rename event for w.txt' })
        await sbx.files.remove(`${dir}/w2.txt`)
        await waitFor(() => seen('w2.txt', 'remove'), { what: 'remove event for w2.txt' })
        // Changes made by a process, not the file API, are seen too.
        await sbx.commands.run(`echo hi > ${relToHome(dir)}/by-cmd.txt`)
        await waitFor(() => seen('by-cmd.txt', 'create'), { what: 'create event for by-cmd.txt' })
        await waitFor(() => seen('by-cmd.txt', 'write'), { what: 'write event for by-cmd.txt' })
      } catch (e) {
        e.message += `\nevents: ${JSON.stringify(events)}`
        throw e
      } finally {
        await handle.stop()
      }
    })

    test('files.watchDir recursive reports paths relative to the watched dir; a missing dir is not found', T, async (t) => {
      const dir = tdir(t, 'rwatch')
      await sbx.files.makeDir(`${dir}/sub`)
      const events = []
      const handle = await sbx.files.watchDir(dir, (e) => events.push(e), { recursive: true, timeoutMs: 50_000 })
      try {
        await sbx.files.write(`${dir}/sub/deep.txt`, 'deep')
        await waitFor(() => events.some((e) => e.name === 'sub/deep.txt' && e.type === 'create'), {
          what: 'create event for sub/deep.txt',
        })
      } catch (e) {
        e.message += `\nevents: ${JSON.stringify(events)}`
        throw e
      } finally {
        await handle.stop()
      }
      await rejectsWith(sbx.files.watchDir(`${dir}/none`, () => {}), NotFoundError, 'watch a missing dir')
    })

    // ---------------------------------------------------------------- commands

    test('commands.run in the foreground returns stdout, stderr and exit code', T, async () => {
      const r = await sbx.commands.run('echo hello; echo oops >&2')
      assert.equal(r.exitCode, 0)
      assert.equal(r.stdout, 'hello\n')
      assert.equal(r.stderr, 'oops\n')

      const n = 20000
      const big = await sbx.commands.run(`seq 1 ${n}`)
      assert.equal(big.stdout, Array.from({ length: n }, (_, i) => `${i + 1}\n`).join(''))
    })

    test('commands.run: 16 MiB of output arrives complete and in order', T, async () => {
      let streamed = 0
      const r = await sbx.commands.run('for i in $(seq 1 4); do head -c 4194304 /dev/zero | tr "\\0" "$i"; done', {
        onStdout: (d) => (streamed += d.length),
      })
      assert.equal(r.stdout.length, 16 << 20)
      assert.equal(streamed, 16 << 20)
      for (let i = 0; i < 4; i++) {
        const part = r.stdout.slice(i * (4 << 20), (i + 1) * (4 << 20))
        assert.ok(/^(\d)\1*$/.test(part) && part[0] === String(i + 1), `part ${i + 1} is not all '${i + 1}'`)
      }
    })

    test('commands.run delivers output to onStdout / onStderr as it comes', T, async () => {
      const out = []
      const err = []
      const r = await sbx.commands.run('for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done', {
        onStdout: (d) => out.push(d),
        onStderr: (d) => err.push(d),
      })
      assert.equal(out.join(''), 'out1\nout2\nout3\n')
      assert.equal(err.join(''), 'err1\nerr2\nerr3\n')
      assert.equal(r.stdout, out.join(''))
      assert.equal(r.stderr, err.join(''))
    })

    test('a non-zero exit is a CommandExitError carrying stdout, stderr and the exit code', T, async () => {
      const e = await rejectsWith(sbx.commands.run('echo partial; echo bad >&2; exit 7'), CommandExitError, 'exit 7')
      assert.equal(e.exitCode, 7)
      assert.equal(e.stdout, 'partial\n')
      assert.equal(e.stderr, 'bad\n')
      assert.match(e.error ?? '', /exit status 7/)
    })

    test('commands run as the default user, or as root on request', T, async () => {
      const u = (await sbx.commands.run('id -u; id -g; echo "$USER"; echo "$HOME"')).stdout.split('\n')
      assert.equal(u[0], '1000')
      assert.equal(u[1], '1000')
      assert.equal(u[2], 'user')
      assert.ok(u[3].endsWith('/home/user'), `HOME=${u[3]}`)

      const r = (await sbx.commands.run('id -u; echo "$USER"; echo "$HOME"', { user: 'root' })).stdout.split('\n')
      assert.equal(r[0], '0')
      assert.equal(r[1], 'root')
      assert.ok(r[2].endsWith('/root'), `HOME=${r[2]}`)
    })

    test('files made by commands belong to the user that ran them', T, async (t) => {
      const dir = tdir(t, 'cmdowner')
      await sbx.files.makeDir(dir)
      // Relative to the home for the user; root starts in /root, so it gets the directory as cwd.
      await sbx.commands.run(`echo u > ${relToHome(dir)}/by-user.txt`)
      await sbx.commands.run('echo r > by-root.txt', { user: 'root', cwd: dir })
      assert.equal((await sbx.files.getInfo(`${dir}/by-user.txt`)).owner, 'user')
      assert.equal((await sbx.files.getInfo(`${dir}/by-root.txt`)).owner, 'root')
      assert.equal(await sbx.files.read(`${dir}/by-root.txt`), 'r\n')
    })

    test('commands.run honours cwd (default: the home directory)', T, async (t) => {
      const home = (await sbx.commands.run('pwd')).stdout.trim()
      assert.ok(home.endsWith(HOME), `default cwd ${home}`)

      // Set up with a command, so this test depends on the process service alone.
      const dir = tdir(t, 'cwd')
      await sbx.commands.run(`mkdir -p ${relToHome(dir)}/work && echo in-work > ${relToHome(dir)}/work/in.txt`)
      const r = await sbx.commands.run('pwd; cat in.txt', { cwd: `${dir}/work` })
      const [pwd, content] = r.stdout.split('\n')
      assert.ok(pwd.endsWith(`${dir}/work`), `pwd ${pwd}`)
      assert.equal(content, 'in-work')
      // Relative and ~ cwds resolve against the home.
      for (const cwd of [`${relToHome(dir)}/work`, `~/${relToHome(dir)}/work`]) {
        const p = (await sbx.commands.run('pwd', { cwd })).stdout.trim()
        assert.ok(p.endsWith(`${dir}/work`), `cwd ${cwd}: pwd ${p}`)
      }

      await rejectsWith(sbx.commands.run('true', { cwd: `${dir}/does-not-exist` }), InvalidArgumentError, 'missing cwd')
    })

    test('commands.run passes envs', T, async () => {
      const r = await sbx.commands.run('printf "%s|%s|%s" "$FOO" "$EQ" "$UNI"', {
        envs: { FOO: 'bar baz', EQ: 'a=b', UNI: 'ü✓' },
      })
      assert.equal(r.stdout, 'bar baz|a=b|ü✓')
    })

    test('commands.run in the background returns a handle; wait() gives the result', T, async () => {
      const h = await sbx.commands.run('sleep 0.3; echo bg-done', { background: true })
      assert.ok(Number.isInteger(h.pid) && h.pid > 0, `pid ${h.pid}`)
      const r = await within(h.wait(), 30_000, 'wait')
      assert.equal(r.exitCode, 0)
      assert.equal(r.stdout, 'bg-done\n')
    })

    test('commands.list shows a running background command with its config', T, async (t) => {
      const dir = tdir(t, 'list-proc')
      await sbx.commands.run(`mkdir -p ${relToHome(dir)}`)
      const mark = randomBytes(4).toString('hex')
      const cmd = `sleep 60 # ${mark}`
      const h = await sbx.commands.run(cmd, { background: true, envs: { MARK: mark }, cwd: dir })
      t.after(() => sbx.commands.kill(h.pid).catch(() => {}))
      const procs = await sbx.commands.list()
      const p = procs.find((x) => x.pid === h.pid)
      assert.ok(p, `pid ${h.pid} in ${JSON.stringify(procs)}`)
      assert.equal(p.cmd, '/bin/bash')
      assert.deepEqual(p.args, ['-l', '-c', cmd])
      assert.equal(p.envs.MARK, mark)
      assert.equal(p.cwd, dir)
      assert.equal(await h.kill(), true)
      await waitFor(async () => !(await sbx.commands.list()).some((x) => x.pid === h.pid), {
        what: `pid ${h.pid} to leave the list`,
      })
    })

    test('commands.kill kills a background command; a second kill reports not found', T, async () => {
      const h = await sbx.commands.run('sleep 60', { background: true })
      assert.equal(await sbx.commands.kill(h.pid), true)
      const e = await rejectsWith(within(h.wait(), 30_000, 'wait after kill'), CommandExitError, 'wait after kill')
      assert.notEqual(e.exitCode, 0)
      await waitFor(async () => !(await sbx.commands.list()).some((x) => x.pid === h.pid), {
        what: `killed pid ${h.pid} to leave the list`,
      })
      assert.equal(await sbx.commands.kill(h.pid), false)

      const h2 = await sbx.commands.run('sleep 60', { background: true })
      assert.equal(await h2.kill(), true)
      await rejectsWith(within(h2.wait(), 30_000, 'wait after handle.kill'), CommandExitError, 'wait after handle.kill')
    })

    test('commands.sendStdin feeds a command started with stdin; closeStdin sends EOF', T, async () => {
      const h = await sbx.commands.run('read a; read b; echo "got:$a,$b"', { background: true, stdin: true })
      await sbx.commands.sendStdin(h.pid, 'first\n')
      await sbx.commands.sendStdin(h.pid, enc('second\n'))
      const r = await within(h.wait(), 30_000, 'wait')
      assert.equal(r.stdout, 'got:first,second\n')

      const c = await sbx.commands.run('cat; echo "<eof>"', { background: true, stdin: true })
      await sbx.commands.sendStdin(c.pid, 'abc')
      await sbx.commands.sendStdin(c.pid, 'def\n')
      await sbx.commands.closeStdin(c.pid)
      const cr = await within(c.wait(), 30_000, 'wait after closeStdin')
      assert.equal(cr.stdout, 'abcdef\n<eof>\n')

      // Without stdin the command reads EOF at once instead of hanging.
      const n = await sbx.commands.run('cat; echo done', { timeoutMs: 20_000 })
      assert.equal(n.stdout, 'done\n')
    })

    test('commands.connect re-attaches to a running command', T, async () => {
      const h = await sbx.commands.run('read x; echo "after-connect:$x"', { background: true, stdin: true })
      await h.disconnect()
      const out = []
      const h2 = await sbx.commands.connect(h.pid, { onStdout: (d) => out.push(d) })
      assert.equal(h2.pid, h.pid)
      await sbx.commands.sendStdin(h.pid, 'ping\n')
      const r = await within(h2.wait(), 30_000, 'wait on connected handle')
      assert.equal(r.stdout, 'after-connect:ping\n')
      assert.equal(out.join(''), 'after-connect:ping\n')

      await rejectsWith(sbx.commands.connect(999_999_999), NotFoundError, 'connect to unknown pid')
    })

    test('a command is killed when its timeout expires', T, async () => {
      // Either the client's deadline (TimeoutError) or the server's kill (CommandExitError) ends the
      // call first; both are correct, success is not.
      const timedOut = (e) => e instanceof TimeoutError || e instanceof CommandExitError
      const fg = await rejectsWith(within(sbx.commands.run('sleep 120', { timeoutMs: 1000 }), 30_000, 'run'), SandboxError, 'foreground timeout')
      assert.ok(timedOut(fg), `foreground: ${fg.constructor.name}: ${fg.message}`)

      const h = await sbx.commands.run('sleep 120', { background: true, timeoutMs: 1500 })
      const bg = await rejectsWith(within(h.wait(), 30_000, 'wait'), SandboxError, 'background timeout')
      assert.ok(timedOut(bg), `background: ${bg.constructor.name}: ${bg.message}`)
      // The server killed it: it leaves the process list well before sleep would end.
      await waitFor(async () => !(await sbx.commands.list()).some((x) => x.pid === h.pid), {
        timeoutMs: 20_000,
        what: `timed-out pid ${h.pid} to be killed`,
      })
    })

    // ---------------------------------------------------------------- pty

    test('pty.create, sendInput and resize', T, async () => {
      let text = ''
      const dec = new TextDecoder()
      const h = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => (text += dec.decode(d, { stream: true })), timeoutMs: 50_000 })
      try {
        await sbx.pty.sendInput(h.pid, enc('echo SIZE=$(stty size)\n'))
        await waitFor(() => /SIZE=24 80/.test(text), { what: 'initial size 24x80' })
        await sbx.pty.resize(h.pid, { cols: 100, rows: 30 })
        await sbx.pty.sendInput(h.pid, enc('echo SIZE=$(stty size)\n'))
        await waitFor(() => /SIZE=30 100/.test(text), { what: 'resized 30x100' })
        await sbx.pty.sendInput(h.pid, enc('echo TTY=$(tty) TERM=$TERM; exit 0\n'))
        const r = await within(h.wait(), 30_000, 'pty exit')
        assert.equal(r.exitCode, 0)
        assert.match(text, /TTY=\/dev\/pts\/\d+ TERM=xterm-256color/)
      } catch (e) {
        e.message += `\npty output: ${JSON.stringify(text)}`
        await sbx.pty.kill(h.pid).catch(() => {})
        throw e
      }
    })

    test('pty.kill ends a pty', T, async () => {
      const h = await sbx.pty.create({ cols: 80, rows: 24, onData: () => {}, timeoutMs: 50_000 })
      assert.equal(await sbx.pty.kill(h.pid), true)
      await rejectsWith(within(h.wait(), 30_000, 'pty wait after kill'), CommandExitError, 'pty after kill')
    })
  })
}

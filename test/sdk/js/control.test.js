// Control-plane suite (serve mode only): npm `e2b` (latest, POST /v2/sandboxes), `e2b` 2.45.0
// (POST /sandboxes) and `novita-sandbox`, unmodified, against `agent serve`: create with metadata,
// env vars and timeout; get_info; list with a metadata filter across pages; connect; set_timeout;
// kill; an expired sandbox reported as gone; a wrong key refused; pause and resume (latest e2b).
import { describe, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'

import * as e2bLatest from 'e2b'
import * as e2b245 from 'e2b-2.45'
import * as novita from 'novita-sandbox'

import { MODE, waitFor } from './lib/harness.js'

const T = { timeout: 90_000 }

// A background counter: an increasing number in /tmp/counter ten times a second, from memory (a
// restarted process would start over at 1).
const COUNTER = `nohup sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done' >/dev/null 2>&1 &`

async function readCounter(s) {
  return Number((await s.commands.run('cat /tmp/counter 2>/dev/null || echo 0')).stdout.trim())
}

// Waits until the counter is past n and returns it.
async function waitCounter(s, n) {
  let got = 0
  await waitFor(async () => (got = await readCounter(s)) > n, { timeoutMs: 30_000, what: `the counter to pass ${n}`, intervalMs: 100 })
  return got
}

const bindings = [
  { name: 'e2b', envPrefix: 'E2B', sdk: e2bLatest },
  { name: 'e2b-2.45', envPrefix: 'E2B', sdk: e2b245 },
  { name: 'novita', envPrefix: 'NOVITA', sdk: novita },
]

for (const b of bindings) {
  const { Sandbox, AuthenticationError, NotFoundError } = b.sdk
  describe(`${b.name} JS SDK control plane against agent serve`, { skip: MODE !== 'serve' && 'serve mode only' }, () => {
    const run = `ctl-${b.name}-${randomBytes(4).toString('hex')}`
    const created = []
    after(async () => {
      for (const s of created) await Sandbox.kill(s.sandboxId).catch(() => {})
    })
    async function create(opts = {}) {
      const s = await Sandbox.create({ timeoutMs: 120_000, ...opts })
      created.push(s)
      return s
    }

    test('create with metadata, env vars and timeout; get_info', T, async () => {
      const s = await create({ metadata: { run, role: 'main' }, envs: { CTL_GREETING: 'hello from env' }, timeoutMs: 90_000 })
      assert.match(s.sandboxId, /^[a-z0-9]+$/)
      const r = await s.commands.run('echo "$CTL_GREETING"')
      assert.equal(r.stdout, 'hello from env\n')
      const info = await s.getInfo()
      assert.equal(info.sandboxId, s.sandboxId)
      assert.equal(info.templateId, 'base')
      assert.deepEqual(info.metadata, { run, role: 'main' })
      assert.equal(info.state, 'running')
      assert.equal(info.endAt.getTime() - info.startedAt.getTime(), 90_000)
      assert.ok(await s.isRunning())
    })

    test('list filters by metadata and pages with limit', T, async () => {
      const a = await create({ metadata: { run, role: 'listed' } })
      const c = await create({ metadata: { run, role: 'listed' } })
      await create({ metadata: { run, role: 'other' } })
      const pager = Sandbox.list({ query: { metadata: { run, role: 'listed' } }, limit: 1 })
      const seen = []
      for (let page = 0; pager.hasNext; page++) {
        assert.ok(page < 10, 'pagination does not end')
        const items = await pager.nextItems()
        assert.ok(items.length <= 1, `page of ${items.length} with limit 1`)
        seen.push(...items.map((i) => i.sandboxId))
      }
      assert.deepEqual(seen.sort(), [a.sandboxId, c.sandboxId].sort())
      const running = await Sandbox.list({ query: { metadata: { run }, state: ['running'] } }).nextItems()
      assert.ok(running.length >= 3, `running sandboxes of the run: ${running.length}`)
      const paused = await Sandbox.list({ query: { metadata: { run }, state: ['paused'] } }).nextItems()
      assert.equal(paused.length, 0)
    })

    test('connect sees the same sandbox and extends it; set_timeout moves its end', T, async () => {
      const s = await create({ timeoutMs: 60_000 })
      await s.files.write('/home/user/ctl.txt', 'shared state')
      const created = await s.getInfo()
      // Connect asks for the default 300 s, more than the 60 s left: the end moves later.
      const c = await Sandbox.connect(s.sandboxId)
      assert.equal(c.sandboxId, s.sandboxId)
      assert.equal((await c.commands.run('cat /home/user/ctl.txt')).stdout, 'shared state')
      const connected = await Sandbox.getInfo(s.sandboxId)
      assert.ok(connected.endAt > created.endAt, `connect: end ${connected.endAt} not after ${created.endAt}`)
      await s.setTimeout(30_000)
      const shorter = await Sandbox.getInfo(s.sandboxId)
      assert.ok(shorter.endAt < connected.endAt, `set_timeout 30 s: end ${shorter.endAt} not before ${connected.endAt}`)
      await Sandbox.setTimeout(s.sandboxId, 600_000)
      const longer = await s.getInfo()
      assert.ok(longer.endAt > connected.endAt, `set_timeout 600 s: end ${longer.endAt} not after ${connected.endAt}`)
    })

    test('kill: gone for the control plane and the data plane', T, async () => {
      const s = await create()
      const killed = await Sandbox.kill(s.sandboxId)
      // novita-sandbox's kill resolves undefined; e2b's resolves true.
      assert.ok(killed === true || killed === undefined, `kill answered ${killed}`)
      if (b.name !== 'novita') assert.equal(await Sandbox.kill(s.sandboxId), false)
      assert.equal(await s.isRunning(), false)
      await assert.rejects(Sandbox.getInfo(s.sandboxId), (e) => e instanceof NotFoundError, 'get_info after kill')
      await assert.rejects(s.commands.run('true'), 'a command in a killed sandbox')
      await assert.rejects(Sandbox.connect(s.sandboxId), (e) => e instanceof NotFoundError, 'connect after kill')
    })

    test('an expired sandbox is reported as gone', T, async () => {
      const s = await create({ timeoutMs: 1_000 })
      await waitFor(async () => !(await s.isRunning()), { timeoutMs: 30_000, what: 'the sandbox to expire', intervalMs: 200 })
      await assert.rejects(Sandbox.getInfo(s.sandboxId), (e) => e instanceof NotFoundError, 'get_info after expiry')
      await assert.rejects(s.files.read('/etc/hostname'), 'a read in an expired sandbox')
      const listed = await Sandbox.list({ query: { metadata: { run } } }).nextItems()
      assert.ok(!listed.some((i) => i.sandboxId === s.sandboxId), 'the expired sandbox is still listed')
    })

    test('a wrong API key is refused', T, async () => {
      const wrong = { apiKey: `e2b_${'0'.repeat(40)}` }
      await assert.rejects(Sandbox.create(wrong), (e) => e instanceof AuthenticationError, 'create with a wrong key')
      await assert.rejects(Sandbox.list(wrong).nextItems(), (e) => e instanceof AuthenticationError, 'list with a wrong key')
    })

    test('pause, then connect resumes: files and a running process intact', { ...T, skip: b.name !== 'e2b' && 'pause is exercised with the latest e2b SDK' }, async () => {
      const s = await create({ metadata: { run, role: 'pause' } })
      await s.files.write('/home/user/pause.txt', 'before the pause')
      await s.commands.run(COUNTER)
      const before = await waitCounter(s, 0)
      assert.equal(await s.pause(), true)
      assert.equal(await Sandbox.pause(s.sandboxId), false, 'a second pause (409) answers false')
      assert.equal(await s.isRunning(), false)
      assert.equal((await s.getInfo()).state, 'paused')
      const paused = await Sandbox.list({ query: { metadata: { run, role: 'pause' }, state: ['paused'] } }).nextItems()
      assert.deepEqual(paused.map((i) => i.sandboxId), [s.sandboxId])
      const running = await Sandbox.list({ query: { metadata: { run, role: 'pause' }, state: ['running'] } }).nextItems()
      assert.equal(running.length, 0)
      const c = await Sandbox.connect(s.sandboxId, { timeoutMs: 120_000 })
      assert.equal(c.sandboxId, s.sandboxId)
      assert.ok(await c.isRunning())
      assert.equal((await c.getInfo()).state, 'running')
      assert.equal(await c.files.read('/home/user/pause.txt'), 'before the pause')
      const after = await readCounter(c)
      assert.ok(after >= before, `the counter went back from ${before} to ${after}: the process restarted`)
      await waitCounter(c, after)
    })

    test('metrics', T, async () => {
      const s = await create()
      const ms = await s.getMetrics()
      assert.ok(ms.length >= 1, 'no metrics sample')
      assert.ok(ms[0].memTotal > 0 && ms[0].diskTotal > 0, JSON.stringify(ms[0]))
    })
  })
}

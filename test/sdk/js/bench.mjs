// Benchmark helper (internal/cmd/servebench runs it): N times, Sandbox.create() then the first
// commands.run('true') with the npm SDK named by BENCH_SDK (default e2b) against the control plane
// in E2B_API_URL/E2B_SANDBOX_URL; prints one JSON line per iteration with the create→first-command
// milliseconds, then kills the sandbox (not timed).
const n = Number(process.env.BENCH_N ?? 20)
const warmup = Number(process.env.BENCH_WARMUP ?? 2)
const { Sandbox } = await import(process.env.BENCH_SDK ?? 'e2b')
for (let i = 0; i < warmup + n; i++) {
  const t0 = performance.now()
  const s = await Sandbox.create({ timeoutMs: 120_000 })
  const r = await s.commands.run('true')
  const ms = performance.now() - t0
  if (r.exitCode !== 0) throw new Error(`exit ${r.exitCode}`)
  await s.kill()
  if (i >= warmup) console.log(JSON.stringify({ ms }))
}

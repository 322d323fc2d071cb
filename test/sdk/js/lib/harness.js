// Shared harness for the official-SDK protocol suites: how a sandbox is obtained (SDK_MODE), unique
// paths, and bounded waiting. The SDKs themselves are used unmodified.
//
// SDK_MODE=debug (default): the SDK's debug mode (E2B_DEBUG / NOVITA_DEBUG): no control plane, one
//   sandbox whose envd is http://localhost:49983 (a standalone `agent envd`).
// SDK_MODE=serve: a real create through the control plane named by <PREFIX>_API_URL and
//   <PREFIX>_SANDBOX_URL with <PREFIX>_API_KEY (e.g. `agent serve`); the sandbox is killed afterwards.

import { randomBytes } from 'node:crypto'

export const MODE = process.env.SDK_MODE ?? 'debug'

/** Home of the default user inside the sandbox. */
export const HOME = '/home/user'

/**
 * Creates the sandbox a suite runs against.
 * @param {{name: string, envPrefix: string, sdk: any}} binding
 */
export async function createSandbox(binding) {
  const { Sandbox } = binding.sdk
  if (MODE === 'debug') {
    // Debug mode is what the SDK user turns on with the environment variable; set it for this
    // process so a bare `node --test` works, and pass it explicitly as well. URL overrides would
    // take precedence over debug mode's localhost:49983, so they go.
    process.env[`${binding.envPrefix}_DEBUG`] = 'true'
    for (const v of ['API_URL', 'SANDBOX_URL', 'DOMAIN', 'ACCESS_TOKEN']) delete process.env[`${binding.envPrefix}_${v}`]
    return Sandbox.create({ debug: true })
  }
  if (MODE === 'serve') {
    for (const v of ['API_URL', 'SANDBOX_URL', 'API_KEY']) {
      if (!process.env[`${binding.envPrefix}_${v}`]) {
        throw new Error(`SDK_MODE=serve needs ${binding.envPrefix}_${v}`)
      }
    }
    delete process.env[`${binding.envPrefix}_DEBUG`]
    return Sandbox.create({ timeoutMs: 300_000 })
  }
  throw new Error(`unknown SDK_MODE ${JSON.stringify(MODE)} (want debug or serve)`)
}

/** Releases the sandbox: kill in serve mode; debug mode has nothing to release. */
export async function releaseSandbox(sbx) {
  if (sbx && MODE === 'serve') await sbx.kill()
}

/** A directory path under the default user's home, unique to one test of one SDK. */
export function uniqueDir(binding, label) {
  return `${HOME}/sdk-js-${binding.name}-${label}-${randomBytes(4).toString('hex')}`
}

/** The same directory relative to the home, for commands (which start in the home). */
export function relToHome(path) {
  if (!path.startsWith(`${HOME}/`)) throw new Error(`${path} is not under ${HOME}`)
  return path.slice(HOME.length + 1)
}

/**
 * Polls cond until it returns a truthy value or timeoutMs passes, then throws with what.
 * @template T
 * @param {() => T | Promise<T>} cond
 * @param {{timeoutMs?: number, what: string, intervalMs?: number}} opts
 * @returns {Promise<T>}
 */
export async function waitFor(cond, { timeoutMs = 15_000, what, intervalMs = 50 }) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await cond()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/**
 * Awaits p, but rejects after ms so a hung call fails the test with a message instead of stalling it.
 * @template T
 * @param {Promise<T>} p
 */
export async function within(p, ms, what) {
  let timer
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([p, t])
  } finally {
    clearTimeout(timer)
  }
}

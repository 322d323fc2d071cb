// Package runner runs task suites: it turns resolved task specs (runner/spec) into jobs — every task
// times its repeat epochs — and runs them concurrently, each in a fresh sandbox, through one
// pipeline: create the sandbox, seed files, run setup, run the agent loop (package agent), run the
// checks, collect the produced files, kill the sandbox.
//
// One task's failure never stops the others (unless FailFast). Each task's results are written as
// soon as it ends, so an interrupted run keeps everything that finished and Resume re-runs only
// the rest. The results directory is documented in docs/RESULTS.md; its JSON files carry a
// schema_version.
//
// The runner reaches sandboxes through the Backend interface (local OCI sandboxes by default, see
// runner/localbackend; remote backends plug in the same way) and models through Models. Every
// file it reads from a sandbox goes through the sandbox's API (envd), bounded; it never follows a
// sandbox-owned path on the host.
package runner

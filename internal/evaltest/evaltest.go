// Package evaltest holds what the end-to-end tests of `agent eval`, `agent report` and the GitHub
// Action share: a leak check that covers the agent binary's processes, a small task suite whose
// outcome depends on the model, and scripted models (internal/llmtest) that pass, half-pass or
// never stop.
package evaltest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentrun/agent/internal/leakcheck"
	"github.com/agentrun/agent/internal/llmtest"
	"github.com/agentrun/agent/internal/testenv/localenv"
)

// CheckLeaks fails the test if, when it ends, anything of the data directory's scope
// (localenv.Scope) remains that was not there before, or a process of the agent binary agentBin:
// `agent eval` runs it apart from the test.
func CheckLeaks(t testing.TB, dataDir, agentBin string) {
	t.Helper()
	sc := localenv.Scope(dataDir)
	sc.ProcessMarkers = append(sc.ProcessMarkers, agentBin)
	leakcheck.Check(t, sc)
}

// Suite writes a two-task suite into dir and returns dir: hello (hello.txt must contain
// "hello") and answer (answer.txt must hold "42"). Both run in the host template without network.
func Suite(t testing.TB, dir string) string {
	t.Helper()
	files := map[string]string{
		"agent.yaml": "template: host\nlimits:\n  timeout: 2m\n  command_timeout: 30s\n  max_steps: 4\n  memory: 256MiB\n",
		"hello.yaml": "prompt: Write hello.txt containing the word hello.\ntags: [easy]\nfiles:\n  - {path: README.md, content: \"# greeting\\n\"}\nchecks:\n  - {name: hello.txt says hello, file: hello.txt, contains: hello}\n",
		"answer.yaml": "prompt: Write answer.txt holding the answer, 42, and a newline.\nchecks:\n" +
			"  - {name: the answer is 42, run: cat answer.txt, stdout: \"42\\n\"}\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeBoth scripts a model that writes hello.txt and answer.txt (with the given answer) in one
// turn, then answers.
func writeBoth(name, answer string) *llmtest.Scenario {
	return &llmtest.Scenario{Name: name, Turns: []llmtest.Turn{
		{Content: "Writing the files.", ToolCalls: []llmtest.ToolCall{{Name: "write_files", Args: map[string]any{
			"files": []any{
				map[string]any{"path": "hello.txt", "data": "hello\n"},
				map[string]any{"path": "answer.txt", "data": answer + "\n"},
			}}}}},
		{Content: "Done: wrote hello.txt and answer.txt."},
	}}
}

// Good passes both tasks.
func Good(name string) *llmtest.Scenario { return writeBoth(name, "42") }

// Bad passes hello and fails answer (it writes 41).
func Bad(name string) *llmtest.Scenario { return writeBoth(name, "41") }

// Looping never stops calling tools: every task ends in error (max_steps).
func Looping(name string) *llmtest.Scenario {
	return &llmtest.Scenario{Name: name, Loop: true, Turns: []llmtest.Turn{
		{ToolCalls: []llmtest.ToolCall{{Name: "run_commands", Args: map[string]any{"command": "true"}}}},
	}}
}

package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner/spec"
)

// Keeping sandboxes (--keep), continuing interrupted tasks in them (--resume), and forking one
// setup into every epoch (fork_setup): optional abilities of a backend, used where it has them.

// Keeper is a Sandbox that can be kept after its task for a person to look inside: it is paused
// (memory and processes kept) and released, so it outlives the run until it is reclaimed.
type Keeper interface {
	// Keep pauses and releases the sandbox; note says why (task, epoch, outcome).
	Keep(ctx context.Context, note string) error
	// EnterCommand is the command line that opens a shell in the kept sandbox.
	EnterCommand() string
}

// Reviver is a Backend that can take back a sandbox an earlier session kept, to continue its task
// (--resume).
type Reviver interface {
	// Revive resumes the kept sandbox id with req's lifetime: its processes continue where they
	// stopped. When its processes are gone (the host rebooted) but its files remain, it returns a
	// new sandbox with those files and filesOnly set. A sandbox that no longer exists is an error
	// matching sandbox.ErrNotFound.
	Revive(ctx context.Context, id string, req SandboxRequest) (sb Sandbox, filesOnly bool, err error)
	// Discard destroys a kept sandbox that will not be continued (its task starts over).
	Discard(ctx context.Context, id string) error
}

// Forker is a Backend that can snapshot a sandbox's files and create sandboxes from the snapshot
// (fork_setup: the setup runs once, every epoch starts from its result).
type Forker interface {
	// Snapshot saves the sandbox's files (not its processes); note describes the snapshot.
	Snapshot(ctx context.Context, sb Sandbox, note string) (snapshot string, err error)
	// CreateFrom creates a sandbox for req holding the snapshot's files.
	CreateFrom(ctx context.Context, snapshot string, req SandboxRequest) (Sandbox, error)
	// RemoveSnapshot deletes a snapshot no sandbox uses any more (one still in use is left to the
	// backend's garbage collection).
	RemoveSnapshot(ctx context.Context, snapshot string) error
}

// KeptSandbox describes a sandbox kept after its task (result.json, summary, report).
type KeptSandbox struct {
	ID      string `json:"id"`
	Backend string `json:"backend"`
	// Command opens a shell in it.
	Command string `json:"command"`
}

// Continued describes a task continued after an interruption in its kept sandbox (--resume).
type Continued struct {
	// Sandbox is the kept sandbox the task continued in.
	Sandbox string `json:"sandbox"`
	// Steps are the completed steps of the interrupted session given to the model as history.
	Steps int `json:"steps"`
	// FilesOnly is set when the sandbox's processes were gone (a reboot): the task continued in a
	// new sandbox with its files.
	FilesOnly bool `json:"files_only,omitempty"`
	// Transcript is the interrupted session's transcript, kept beside the new one.
	Transcript string `json:"transcript"`
}

// InterruptedTranscriptFile holds the transcript of the session a continued task was interrupted
// in.
const InterruptedTranscriptFile = "transcript.interrupted.json"

// shouldKeep tells whether the task's sandbox is kept rather than killed: every task's with keep
// all, a task's that did not pass (failed, error, interrupted) with keep failed.
func (t *task) shouldKeep() bool {
	switch t.s.Keep {
	case spec.KeepAll:
		return true
	case spec.KeepFailed:
		return t.res.Status != "" && t.res.Status != StatusPassed
	}
	return false
}

// keep keeps the task's sandbox when the spec asks for it and the sandbox can be kept; it reports
// whether it did (the sandbox must then not be killed).
func (t *task) keep(ctx context.Context) bool {
	if !t.shouldKeep() {
		return false
	}
	if t.gone {
		t.warn("keep %s: the sandbox is gone; nothing to keep", t.s.Keep)
		return false
	}
	k, ok := t.sb.(Keeper)
	if !ok {
		t.warn("keep %s: the %s backend cannot keep sandboxes; the sandbox was destroyed", t.s.Keep, t.b.Name())
		return false
	}
	status := string(t.res.Status)
	if status == "" {
		status = string(StatusPassed)
	}
	if t.res.Reason != "" {
		status += " (" + string(t.res.Reason) + ")"
	}
	note := fmt.Sprintf("agent run %s: task %s epoch %d %s", t.r.id, t.s.Name, t.j.epoch, status)
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.r.lim.KillTimeout)
	defer cancel()
	if err := k.Keep(kctx, note); err != nil {
		t.warn("keeping sandbox %s: %v; it was destroyed", t.sb.ID(), err)
		return false
	}
	t.res.Kept = &KeptSandbox{ID: t.sb.ID(), Backend: t.b.Name(), Command: k.EnterCommand()}
	return true
}

// continuation is what a task continues from: the completed steps of its interrupted session.
type continuation struct {
	sandbox  string
	prev     *transcript.Transcript
	raw      []byte
	history  []provider.Message
	steps    int
	tokens   int64
	filesOff bool
}

// maxTranscriptRead bounds the transcript read back to continue a task.
const maxTranscriptRead = 64 << 20

// loadContinuation reads what an interrupted task can continue from: its kept sandbox and the
// completed steps of its transcript. nil when it must restart (no kept sandbox, no transcript, a
// replay, a backend that cannot revive).
func (r *Runner) loadContinuation(b Backend, j *job, dir string) *continuation {
	prev := j.interrupted
	if prev == nil || prev.Kept == nil || prev.Kept.Backend != b.Name() {
		return nil
	}
	if _, ok := b.(Reviver); !ok {
		return nil
	}
	f, err := os.Open(filepath.Join(dir, TranscriptFile))
	if err != nil {
		return nil
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxTranscriptRead))
	if err != nil {
		return nil
	}
	var tr transcript.Transcript
	if err := json.Unmarshal(raw, &tr); err != nil || tr.Replay != nil {
		return nil
	}
	c := &continuation{sandbox: prev.Kept.ID, prev: &tr, raw: raw}
	c.history, c.steps = completedSteps(tr.Messages)
	if c.steps == 0 {
		return nil // nothing done yet: restarting costs nothing
	}
	for _, m := range tr.Messages {
		if m.Call != nil && m.Step <= c.steps {
			c.tokens += m.Call.Usage.TotalTokens
		}
	}
	return c
}

// completedSteps returns the conversation up to the last step whose every tool call was answered
// (without the system message), and the number of such steps. A step cut by the interruption (an
// assistant message with unanswered calls) is dropped: the model will ask again.
func completedSteps(msgs []transcript.Message) ([]provider.Message, int) {
	var out []provider.Message
	steps := 0
	for i := 0; i < len(msgs); {
		m := msgs[i]
		switch m.Role {
		case "system":
			i++
			continue
		case "user":
			out = append(out, provider.Message{Role: provider.RoleUser, Content: m.Content})
			i++
			continue
		case "assistant":
		default:
			return out, steps // a tool message without its call: stop here
		}
		step := []provider.Message{assistantMessage(m)}
		want := map[string]bool{}
		for _, c := range m.ToolCalls {
			want[c.ID] = true
		}
		k := i + 1
		for ; k < len(msgs) && msgs[k].Role == "tool"; k++ {
			delete(want, msgs[k].ToolCallID)
			step = append(step, provider.Message{Role: provider.RoleTool, Content: msgs[k].Content, ToolCallID: msgs[k].ToolCallID})
		}
		if len(want) > 0 {
			return out, steps
		}
		out = append(out, step...)
		steps++
		i = k
	}
	return out, steps
}

func assistantMessage(m transcript.Message) provider.Message {
	pm := provider.Message{Role: provider.RoleAssistant, Content: m.Content}
	for _, c := range m.ToolCalls {
		pm.ToolCalls = append(pm.ToolCalls, provider.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, ArgumentsOverflow: c.ArgumentsOverflow})
	}
	return pm
}

// revive takes back the kept sandbox of a continued task. It reports false (after a warning) when
// the task must start over in a fresh sandbox.
func (t *task) revive(ctx context.Context) (Sandbox, bool) {
	c := t.cont
	rv := t.b.(Reviver)
	sb, filesOnly, err := rv.Revive(ctx, c.sandbox, t.request())
	if err != nil {
		t.warn("continuing in kept sandbox %s: %v; the task starts over", c.sandbox, err)
		t.cont = nil
		return nil, false
	}
	c.filesOff = filesOnly
	t.res.Resumed = &Continued{Sandbox: c.sandbox, Steps: c.steps, FilesOnly: filesOnly, Transcript: InterruptedTranscriptFile}
	if err := writeFileAtomic(filepath.Join(t.dir, InterruptedTranscriptFile), c.raw); err != nil {
		t.warn("keeping the interrupted transcript: %v", err)
	}
	return sb, true
}

// continuePrompt is the user message that follows the replayed history of a continued task.
const continuePrompt = "The run was interrupted here and has now resumed in the same sandbox: %s. Continue the task from where you stopped; the original request is the first message above."

// continueTask turns the agent's task into the continuation of the interrupted session: the
// completed steps are the history, a note says what happened, and the step and token limits
// count what was already spent.
func (t *task) continueTask(task *agent.Task) {
	c := t.cont
	if c == nil {
		return
	}
	state := "its files and running processes are as they were"
	if c.filesOff {
		state = "its files are as they were, but its processes (background commands included) were stopped"
	}
	task.History = c.history
	task.Prompt = fmt.Sprintf(continuePrompt, state)
	if task.Limits.MaxSteps > 0 {
		task.Limits.MaxSteps = max(1, task.Limits.MaxSteps-c.steps)
	}
	if task.Limits.MaxTokens > 0 {
		task.Limits.MaxTokens = max(1, task.Limits.MaxTokens-c.tokens)
	}
}

// sandbox makes the task's sandbox: the kept one of an interrupted session (continued), one
// forked from the task's setup snapshot (fork_setup), or a fresh one. skipPrep is set when seeds
// and setup are already in it.
func (t *task) sandbox(ctx, tctx context.Context) (sb Sandbox, skipPrep bool, err error) {
	if t.bErr != nil {
		return nil, false, t.bErr
	}
	if t.cont != nil {
		if sb, ok := t.revive(tctx); ok {
			return sb, true, nil
		}
	}
	if fb := t.r.forkBase(t); fb != nil {
		sb, err := t.fromFork(ctx, tctx, fb)
		if sb != nil || err != nil {
			return sb, err == nil, err
		}
	}
	sb, err = t.b.Create(tctx, t.request())
	return sb, false, err
}

// discardKept destroys the sandbox an interrupted session kept for a task that starts over.
func (r *Runner) discardKept(ctx context.Context, b Backend, j *job) {
	prev := j.interrupted
	if prev == nil || prev.Kept == nil || prev.Kept.Backend != b.Name() {
		return
	}
	rv, ok := b.(Reviver)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.lim.KillTimeout)
	defer cancel()
	if err := rv.Discard(ctx, prev.Kept.ID); err != nil {
		r.log.Warn("destroying the kept sandbox of a task that starts over", "task", j.spec.Name, "sandbox", prev.Kept.ID, "err", err)
	}
}

package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/tools"
	"github.com/agentrun/agent/agent/transcript"
)

// DefaultMaxCallsPerStep bounds the tool calls carried out per model answer.
const DefaultMaxCallsPerStep = 32

// errTaskTimeout is the cause of a task's context when its wall time runs out.
var errTaskTimeout = errors.New("the task's time limit was reached")

// Run runs a task: it calls the model with the tools, carries out the calls in sb, and loops until
// the model answers without tool calls or a limit ends the task.
//
// The Result is always returned once the task has started, with its transcript; the error is nil
// when the task completed and an *EndError otherwise. A task that cannot start (no prompt, a
// malformed model id, a cost limit without a price) returns a nil Result and a plain error.
func Run(ctx context.Context, task Task, sb tools.Sandbox, p provider.Provider, opts Options) (*Result, error) {
	l, err := newLoop(task, sb, p, opts)
	if err != nil {
		return nil, err
	}
	return l.run(ctx)
}

type loop struct {
	task  Task
	lim   Limits
	model provider.ModelRef
	p     provider.Provider
	info  provider.Info
	opts  Options
	log   *slog.Logger
	set   *tools.Set
	owned bool
	specs []provider.ToolSpec

	price     Price
	priced    bool
	usage     provider.Usage
	cost      float64
	steps     int
	msgs      []provider.Message
	tr        *transcript.Transcript
	start     time.Time
	lastFinal string
}

func newLoop(task Task, sb tools.Sandbox, p provider.Provider, opts Options) (*loop, error) {
	if strings.TrimSpace(task.Prompt) == "" {
		return nil, errors.New("the task has no prompt")
	}
	ref, err := provider.ParseModel(task.Model)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", task.Name, err)
	}
	if p == nil {
		return nil, errors.New("no model provider")
	}
	l := &loop{task: task, lim: task.Limits, model: ref, p: p, info: p.Info(), opts: opts, log: opts.Logger}
	if l.log == nil {
		l.log = slog.Default()
	}
	if l.lim.MaxSteps <= 0 {
		l.lim.MaxSteps = DefaultMaxSteps
	}
	if l.lim.MaxCallsPerStep <= 0 {
		l.lim.MaxCallsPerStep = DefaultMaxCallsPerStep
	}
	l.price, l.priced = opts.Prices.Lookup(task.Model)
	replay := l.info.Name == provider.ReplayName
	needPrice := task.Limits.MaxCost > 0 || (opts.Budget != nil && opts.Budget.MaxCost() > 0)
	if needPrice && !l.priced && !replay {
		return nil, fmt.Errorf("task %s: a cost limit is set but the price table has no price for model %s", task.Name, task.Model)
	}
	l.set = opts.Tools
	if l.set == nil {
		if sb == nil {
			return nil, errors.New("no sandbox")
		}
		l.set = tools.New(sb, tools.Config{
			Workdir: task.Workdir, User: task.User, Env: task.Env,
			CommandTimeout: task.Limits.CommandTimeout, MaxResultBytes: task.Limits.MaxResultBytes,
		})
		l.owned = true
	}
	for _, s := range tools.Specs() {
		l.specs = append(l.specs, provider.ToolSpec{Name: s.Name, Description: s.Description, Parameters: s.Parameters})
	}
	return l, nil
}

func (l *loop) emit(e Event) {
	if l.opts.Observer == nil {
		return
	}
	e.Time = time.Now()
	e.Task = l.task.Name
	l.opts.Observer(e)
}

func (l *loop) run(ctx context.Context) (*Result, error) {
	if l.owned {
		defer l.set.Close()
	}
	l.start = time.Now()
	tctx, cancel := ctx, context.CancelFunc(func() {})
	if l.lim.Timeout > 0 {
		tctx, cancel = context.WithTimeoutCause(ctx, l.lim.Timeout, errTaskTimeout)
	}
	defer cancel()

	system := l.task.System
	if system == "" {
		wd := ""
		if l.task.Workdir != "" {
			wd = " " + l.task.Workdir
		}
		system = fmt.Sprintf(DefaultSystemPrompt, wd)
	}
	l.initTranscript(system)
	l.msgs = append(l.msgs, provider.Message{Role: provider.RoleSystem, Content: system})
	l.record(transcript.Message{Role: "system", Content: system})
	for _, m := range l.task.History {
		if m.Role == provider.RoleSystem {
			continue
		}
		l.msgs = append(l.msgs, m)
		l.record(historyMessage(m))
	}
	l.msgs = append(l.msgs, provider.Message{Role: provider.RoleUser, Content: l.task.Prompt})
	l.record(transcript.Message{Role: "user", Content: l.task.Prompt})
	l.emit(Event{Type: EventTaskStart, Text: l.task.Prompt})

	for step := 1; ; step++ {
		if reason, detail, spent := l.opts.Budget.exhausted(); spent {
			return l.end(reason, detail, nil)
		}
		if err := tctx.Err(); err != nil {
			return l.endContext(ctx, tctx, err)
		}
		l.steps = step
		calls, done, res, err := l.step(ctx, tctx, step)
		if res != nil || err != nil {
			return res, err
		}
		if done {
			return l.end(ReasonCompleted, "", nil)
		}
		// Budgets: the answer is recorded, its calls are not carried out.
		if l.lim.MaxTokens > 0 && l.usage.TotalTokens >= l.lim.MaxTokens {
			return l.end(ReasonMaxTokens, fmt.Sprintf("the task used %d tokens; its limit is %d", l.usage.TotalTokens, l.lim.MaxTokens), nil)
		}
		if l.lim.MaxCost > 0 && l.cost >= l.lim.MaxCost {
			return l.end(ReasonMaxCost, fmt.Sprintf("the task cost $%.4f; its limit is $%.4f", l.cost, l.lim.MaxCost), nil)
		}
		if reason, detail, spent := l.opts.Budget.exhausted(); spent {
			return l.end(reason, detail, nil)
		}
		if res, err := l.runTools(ctx, tctx, step, calls); res != nil || err != nil {
			return res, err
		}
		if step >= l.lim.MaxSteps {
			return l.end(ReasonMaxSteps, fmt.Sprintf("the model was still calling tools after %d steps", step), nil)
		}
	}
}

// step makes one model call and records its answer. It returns the calls to carry out, or done
// when the model answered without calls, or the task's end.
func (l *loop) step(ctx, tctx context.Context, step int) ([]provider.ToolCall, bool, *Result, error) {
	l.emit(Event{Type: EventStepStart, Step: step})
	req := &provider.Request{Model: l.model.Model, Messages: l.msgs, Tools: l.specs, MaxOutputTokens: l.lim.MaxOutputTokens, Seed: l.task.Seed}
	hooks := provider.Hooks{
		OnDelta: func(d provider.Delta) {
			e := Event{Type: EventDelta, Step: step, Text: d.Content, Reasoning: d.Reasoning}
			if d.ToolName != "" || d.ToolArguments != "" {
				e.ToolCall = &transcript.ToolCall{Name: d.ToolName, Arguments: d.ToolArguments}
			}
			l.emit(e)
		},
		OnRetry: func(r provider.Retry) {
			tr := retryRecord(r)
			l.emit(Event{Type: EventRetry, Step: step, Retry: &tr})
		},
	}
	started := time.Now()
	resp, err := l.p.Complete(tctx, req, hooks)
	if err != nil {
		if tctx.Err() != nil {
			res, err := l.endContext(ctx, tctx, err)
			return nil, false, res, err
		}
		var pe *provider.Error
		if errors.As(err, &pe) {
			res, err := l.endModel(pe)
			return nil, false, res, err
		}
		res, err := l.end(ReasonModelError, err.Error(), err)
		return nil, false, res, err
	}

	// Calls without ids cannot be answered; give them ids the conversation can refer to.
	calls := resp.Message.ToolCalls
	for i := range calls {
		if calls[i].ID == "" {
			calls[i].ID = fmt.Sprintf("call_%d_%d", step, i)
		}
	}
	callUsage := resp.Usage
	l.usage = l.usage.Add(callUsage)
	u := usageRecord(callUsage)
	if l.priced && !resp.Replayed {
		c := l.price.Cost(callUsage)
		l.cost += c
		u.CostUSD = &c
	}
	if l.opts.Budget != nil && !resp.Replayed {
		cost := 0.0
		if u.CostUSD != nil {
			cost = *u.CostUSD
		}
		l.opts.Budget.Add(callUsage.TotalTokens, cost)
	}
	call := &transcript.ModelCall{
		StartedAt:    started.UTC(),
		DurationMS:   time.Since(started).Milliseconds(),
		TTFBMS:       resp.TTFB.Milliseconds(),
		FinishReason: resp.FinishReason,
		Model:        resp.Model,
		ResponseID:   resp.ID,
		Attempts:     max(resp.Attempts, 1),
		Usage:        u,
		Replayed:     resp.Replayed,
	}
	for _, r := range resp.Retries {
		call.Retries = append(call.Retries, retryRecord(r))
	}
	tm := transcript.Message{Role: "assistant", Content: resp.Message.Content, Reasoning: resp.Message.Reasoning, Step: step, Call: call}
	for _, c := range calls {
		tm.ToolCalls = append(tm.ToolCalls, transcript.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, ArgumentsOverflow: c.ArgumentsOverflow})
	}
	l.record(tm)
	l.emit(Event{Type: EventAssistant, Step: step, Text: tm.Content, Reasoning: tm.Reasoning, ToolCalls: tm.ToolCalls, Call: call})

	// What the model is sent back: arguments that are not a JSON object (malformed, cut) are
	// replaced by {} — some endpoints refuse a history holding them — and the tool result tells
	// the model what was wrong. The transcript keeps them verbatim.
	sent := provider.Message{Role: provider.RoleAssistant, Content: resp.Message.Content}
	for _, c := range calls {
		args := c.Arguments
		if c.ArgumentsOverflow || !isJSONObject(args) {
			args = "{}"
		}
		sent.ToolCalls = append(sent.ToolCalls, provider.ToolCall{ID: c.ID, Name: c.Name, Arguments: args})
	}
	l.msgs = append(l.msgs, sent)
	if len(calls) == 0 {
		l.lastFinal = resp.Message.Content
		return nil, true, nil, nil
	}
	return calls, false, nil, nil
}

// runTools carries out the calls of one answer, in order.
func (l *loop) runTools(ctx, tctx context.Context, step int, calls []provider.ToolCall) (*Result, error) {
	for i, c := range calls {
		tc := transcript.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, ArgumentsOverflow: c.ArgumentsOverflow}
		l.emit(Event{Type: EventToolStart, Step: step, ToolCall: &tc})
		started := time.Now()
		var r tools.Result
		if i >= l.lim.MaxCallsPerStep {
			r = tools.Result{Error: true, Content: fmt.Sprintf("Error: not carried out: at most %d tool calls are carried out per answer", l.lim.MaxCallsPerStep)}
		} else {
			r = l.set.Call(tctx, tools.Call{Name: c.Name, Arguments: c.Arguments, ArgumentsOverflow: c.ArgumentsOverflow})
		}
		ex := &transcript.ToolExecution{
			Name:        c.Name,
			StartedAt:   started.UTC(),
			DurationMS:  time.Since(started).Milliseconds(),
			Error:       r.Error,
			ExitCode:    r.ExitCode,
			TimedOut:    r.TimedOut,
			PID:         r.PID,
			OutputBytes: r.OutputBytes,
			Truncated:   r.Truncated,
		}
		l.record(transcript.Message{Role: "tool", Content: r.Content, ToolCallID: c.ID, Step: step, Tool: ex})
		l.msgs = append(l.msgs, provider.Message{Role: provider.RoleTool, Content: r.Content, ToolCallID: c.ID})
		l.emit(Event{Type: EventToolEnd, Step: step, ToolCall: &tc, Text: r.Content, Tool: ex})
		if r.Fatal != nil {
			if tctx.Err() != nil {
				return l.endContext(ctx, tctx, r.Fatal)
			}
			return l.end(ReasonSandboxError, fmt.Sprintf("%s: %v", c.Name, r.Fatal), r.Fatal)
		}
	}
	return nil, nil
}

// endContext ends a task whose context ended: the task's own time limit, or the caller's cancel.
func (l *loop) endContext(ctx, tctx context.Context, err error) (*Result, error) {
	if ctx.Err() == nil && errors.Is(context.Cause(tctx), errTaskTimeout) {
		return l.end(ReasonTimeout, fmt.Sprintf("the task ran longer than its limit of %s", l.lim.Timeout),
			fmt.Errorf("%w: %w", errTaskTimeout, context.DeadlineExceeded))
	}
	cause := context.Cause(ctx)
	if cause == nil {
		cause = err
	}
	if errors.Is(cause, context.DeadlineExceeded) {
		return l.end(ReasonTimeout, "the caller's deadline passed", cause)
	}
	return l.end(ReasonCanceled, cause.Error(), cause)
}

func (l *loop) endModel(e *provider.Error) (*Result, error) {
	res, err := l.end(ReasonModelError, e.Error(), e)
	res.End.ErrorKind = string(e.Kind)
	res.Transcript.End.ErrorKind = string(e.Kind)
	return res, err
}

func (l *loop) end(reason Reason, detail string, cause error) (*Result, error) {
	now := time.Now()
	end := transcript.End{Reason: reason, Detail: detail}
	tr := l.tr
	tr.EndedAt = now.UTC()
	tr.DurationMS = now.Sub(l.start).Milliseconds()
	tr.End = end
	tr.Steps = l.steps
	tr.Usage = usageRecord(l.usage)
	if l.priced && l.info.Name != provider.ReplayName {
		c := l.cost
		tr.Usage.CostUSD = &c
	}
	if reason == ReasonCompleted {
		tr.FinalAnswer = l.lastFinal
	}
	tr.Background = backgroundRecord(l.set.Background())
	res := &Result{
		End:         end,
		Steps:       l.steps,
		Usage:       l.usage,
		Cost:        l.cost,
		CostKnown:   tr.Usage.CostUSD != nil,
		Duration:    now.Sub(l.start),
		Transcript:  tr,
		FinalAnswer: tr.FinalAnswer,
	}
	for _, m := range l.msgs {
		if m.Role != provider.RoleSystem {
			res.Messages = append(res.Messages, m)
		}
	}
	u := tr.Usage
	l.emit(Event{Type: EventTaskEnd, Step: l.steps, End: &end, Usage: &u, Text: tr.FinalAnswer})
	if reason == ReasonCompleted {
		return res, nil
	}
	l.log.Info("task ended", "task", l.task.Name, "reason", reason, "detail", detail, "steps", l.steps)
	return res, &EndError{Reason: reason, Detail: detail, Err: cause}
}

func (l *loop) initTranscript(system string) {
	t := &transcript.Transcript{
		Schema:    transcript.Version,
		ID:        newID(),
		Task:      transcript.Task{Name: l.task.Name, Prompt: l.task.Prompt, System: system},
		Model:     l.model.String(),
		Provider:  transcript.Provider{Name: l.info.Name, BaseURL: l.info.BaseURL, Streaming: l.info.Streaming},
		StartedAt: l.start.UTC(),
		Limits: transcript.Limits{
			MaxSteps:         l.lim.MaxSteps,
			MaxTokens:        l.lim.MaxTokens,
			MaxCostUSD:       l.lim.MaxCost,
			TimeoutMS:        l.lim.Timeout.Milliseconds(),
			CommandTimeoutMS: l.set.Config().CommandTimeout.Milliseconds(),
			MaxOutputTokens:  l.lim.MaxOutputTokens,
			MaxResultBytes:   l.set.Config().MaxResultBytes,
		},
		Messages: []transcript.Message{},
	}
	if l.info.Name == provider.ReplayName {
		t.Replay = &transcript.Replay{Source: l.info.ReplayOf, TranscriptID: l.info.ReplayID, Model: l.info.ReplayModel}
	}
	for _, s := range l.specs {
		t.Tools = append(t.Tools, transcript.Tool{Name: s.Name, Description: s.Description, Parameters: s.Parameters})
	}
	l.tr = t
}

func (l *loop) record(m transcript.Message) {
	l.tr.Messages = append(l.tr.Messages, m)
}

func historyMessage(m provider.Message) transcript.Message {
	tm := transcript.Message{Role: string(m.Role), Content: m.Content, Reasoning: m.Reasoning, ToolCallID: m.ToolCallID}
	for _, c := range m.ToolCalls {
		tm.ToolCalls = append(tm.ToolCalls, transcript.ToolCall{ID: c.ID, Name: c.Name, Arguments: c.Arguments, ArgumentsOverflow: c.ArgumentsOverflow})
	}
	return tm
}

func backgroundRecord(bg []tools.BackgroundCommand) []transcript.Background {
	var out []transcript.Background
	for _, c := range bg {
		state := c.Status
		if c.Running {
			state = "running"
		}
		out = append(out, transcript.Background{PID: c.PID, Command: c.Command, State: state, ExitCode: c.ExitCode, OutputBytes: c.OutputBytes})
	}
	return out
}

func usageRecord(u provider.Usage) transcript.Usage {
	return transcript.Usage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens, Estimated: u.Estimated}
}

func retryRecord(r provider.Retry) transcript.Retry {
	tr := transcript.Retry{Attempt: r.Attempt, WaitMS: r.Wait.Milliseconds()}
	if r.Err != nil {
		tr.Error = r.Err.Error()
	}
	var pe *provider.Error
	if errors.As(r.Err, &pe) {
		tr.Kind = string(pe.Kind)
	}
	return tr
}

func isJSONObject(s string) bool {
	s = strings.TrimSpace(s)
	return strings.HasPrefix(s, "{") && json.Valid([]byte(s))
}

func newID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux; a fixed id would only make transcripts less unique.
		return "0000000000000000"
	}
	return hex.EncodeToString(b[:])
}

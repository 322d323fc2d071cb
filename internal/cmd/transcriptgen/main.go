// Command transcriptgen makes the example transcripts in testdata/transcripts, which `make run`
// replays when no model is reachable.
//
// No model wrote them. For each spec in the example suite, a person wrote the model's side — the
// tool calls and the answers — in testdata/transcripts/src/<task>.yaml. transcriptgen turns each
// list into a draft transcript, replays it through the real runner in real local sandboxes (so
// every tool result in the output was produced by actually running the call), requires every task
// to pass its checks, and writes testdata/transcripts/<task>.json with "origin" saying how it was
// made. Run it as root after changing an example spec or its list:
//
//	go build -o bin/agent ./cmd/agent
//	go run ./internal/cmd/transcriptgen -agent bin/agent
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/agentrun/agent/agent/tools"
	"github.com/agentrun/agent/agent/transcript"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/localbackend"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox/local"
)

// Author is the model and provider name of a hand-written transcript.
const Author = "hand-written"

// script is a hand-written list of the model's turns.
type script struct {
	Turns []struct {
		Content   string `yaml:"content"`
		ToolCalls []struct {
			Name string         `yaml:"name"`
			Args map[string]any `yaml:"args"`
		} `yaml:"tool_calls"`
	} `yaml:"turns"`
}

func main() {
	specs := flag.String("specs", "tasks/examples", "the example suite")
	src := flag.String("src", "testdata/transcripts/src", "the hand-written lists of tool calls")
	out := flag.String("out", "testdata/transcripts", "where the transcripts go")
	agentBin := flag.String("agent", "bin/agent", "the agent binary (each sandbox's init)")
	dataDir := flag.String("data-dir", "", "sandbox data directory (default: a temporary one)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *specs, *src, *out, *agentBin, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "transcriptgen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, specsDir, srcDir, outDir, agentBin, dataDir string) error {
	suite, err := spec.Load(ctx, []string{specsDir}, spec.Options{})
	if err != nil {
		return err
	}
	drafts, err := os.MkdirTemp("", "transcriptgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(drafts)
	ids := map[string]string{}
	for _, s := range suite.Specs {
		tr, err := draft(s, filepath.Join(srcDir, s.Name+".yaml"))
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		ids[s.Name] = tr.ID
		if err := tr.WriteFile(filepath.Join(drafts, s.Name+".json")); err != nil {
			return err
		}
	}

	if dataDir == "" {
		if dataDir, err = os.MkdirTemp("", "transcriptgen-data-"); err != nil {
			return err
		}
		defer os.RemoveAll(dataDir)
		if err := os.Chmod(dataDir, 0o711); err != nil {
			return err
		}
	}
	bin, err := filepath.Abs(agentBin)
	if err != nil {
		return err
	}
	b, err := localbackend.Open(ctx, local.Config{DataDir: dataDir, Binary: bin})
	if err != nil {
		return err
	}
	defer b.Close()
	results := filepath.Join(drafts, "results")
	r, err := runner.New(runner.Config{
		Specs: suite.Specs, Models: &runner.Replays{Path: drafts}, Out: results, Concurrency: 2,
		Observer: runner.NewConsole(os.Stderr, false).Observe, Logger: slog.Default(),
	})
	if err != nil {
		return err
	}
	sum, err := r.Run(ctx, b)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range sum.Tasks {
		if t.Status != runner.StatusPassed {
			errs = append(errs, fmt.Errorf("%s: %s %s %s %v", t.Name, t.Status, t.Reason, t.Detail, t.FailedChecks))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("the hand-written tool calls do not solve every task:\n%w", err)
	}
	for _, s := range suite.Specs {
		tr, err := transcript.Load(filepath.Join(results, runner.TasksDir, s.Name, runner.TranscriptFile))
		if err != nil {
			return err
		}
		finish(tr, ids[s.Name], s.Name)
		data, err := tr.Marshal()
		if err != nil {
			return err
		}
		if err := transcript.Validate(data); err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		dst := filepath.Join(outDir, s.Name+".json")
		if err := os.WriteFile(dst, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "wrote %s (%d steps)\n", dst, tr.Steps)
	}
	return nil
}

// origin is what every generated transcript says about how it was made.
func origin(task string) string {
	return "hand-written: no model produced this transcript. The assistant turns (tool calls and answers) " +
		"were written by hand by the agent project, in testdata/transcripts/src/" + task + ".yaml; the tool " +
		"results were recorded by replaying those calls in a local host-template sandbox with " +
		"internal/cmd/transcriptgen, and the task's checks passed."
}

// draft turns a hand-written list into a transcript the replay provider can play.
func draft(s *spec.Spec, file string) (*transcript.Transcript, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var sc script
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(sc.Turns) == 0 || len(sc.Turns[len(sc.Turns)-1].ToolCalls) > 0 {
		return nil, fmt.Errorf("%s: the last turn must answer without tool calls", file)
	}
	sum := sha256.Sum256(data)
	now := time.Now().UTC()
	tr := &transcript.Transcript{
		Schema: transcript.Version, ID: hex.EncodeToString(sum[:8]),
		Task:  transcript.Task{Name: s.Name, Prompt: s.Prompt},
		Model: Author, Provider: transcript.Provider{Name: Author},
		Origin: origin(s.Name), StartedAt: now, EndedAt: now,
		End: transcript.End{Reason: transcript.ReasonCompleted}, Steps: len(sc.Turns),
		Messages: []transcript.Message{{Role: "user", Content: s.Prompt}},
	}
	for _, t := range tools.Specs() {
		tr.Tools = append(tr.Tools, transcript.Tool{Name: t.Name, Description: t.Description, Parameters: t.Parameters})
	}
	for i, turn := range sc.Turns {
		m := transcript.Message{Role: "assistant", Content: strings.TrimRight(turn.Content, "\n"), Step: i + 1,
			Call: &transcript.ModelCall{StartedAt: now, Attempts: 1}}
		for j, c := range turn.ToolCalls {
			// As a model writes them: no HTML escaping of <, > and &.
			var args bytes.Buffer
			enc := json.NewEncoder(&args)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(c.Args); err != nil {
				return nil, fmt.Errorf("%s: turn %d: %w", file, i+1, err)
			}
			m.ToolCalls = append(m.ToolCalls, transcript.ToolCall{ID: fmt.Sprintf("call_%d_%d", i+1, j), Name: c.Name,
				Arguments: strings.TrimSuffix(args.String(), "\n")})
		}
		if len(m.ToolCalls) > 0 {
			m.Call.FinishReason = "tool_calls"
		} else {
			m.Call.FinishReason = "stop"
			tr.FinalAnswer = m.Content
		}
		tr.Messages = append(tr.Messages, m)
	}
	return tr, nil
}

// finish turns the transcript of the replay run into the fixture: it names its author and origin
// instead of the replay it came from.
func finish(tr *transcript.Transcript, id, task string) {
	tr.ID = id
	tr.Model = Author
	tr.Provider = transcript.Provider{Name: Author}
	tr.Replay = nil
	tr.Origin = origin(task)
	for i := range tr.Messages {
		if c := tr.Messages[i].Call; c != nil {
			c.Replayed = false
			c.Model = Author
		}
	}
}

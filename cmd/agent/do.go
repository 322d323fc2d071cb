package main

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
)

// doRecordDir is where `agent do` keeps the record of its run (transcript, result) inside --out.
const doRecordDir = ".agent"

func newDoCmd() *cobra.Command {
	var (
		lf       localFlags
		mf       modelFlags
		of       overrideFlags
		files    string
		out      string
		name     string
		saveSpec string
		backend  string
		quiet    bool
	)
	cmd := &cobra.Command{
		Use:   `do [flags] "PROMPT"`,
		Short: "Run one task given on the command line in a fresh sandbox and copy out the files it produced",
		Long: `Run one task in a fresh sandbox: seed it with --files DIR, run the agent loop until the model
answers without tool calls (or a limit), stream its steps to the terminal, then copy every file it
created or changed to --out (default ./out). The run's record (transcript.json, result.json) goes
to OUT/.agent/. A PROMPT of "-" is read from stdin.

Exit codes: 0 the agent completed; 1 it ended in error (timeout, step limit, model or sandbox
error); 2 usage error; 3 internal error.`,
		Example: `  agent do "write fizzbuzz.py and test it"
  agent do --model novita:deepseek/deepseek-v3.2-exp --files ./project --out ./result "fix the failing tests"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError("agent do accepts 1 arg, the prompt (quote it), received %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			prompt := args[0]
			if prompt == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
				if err != nil {
					return usageError("reading the prompt from stdin: %v", err)
				}
				prompt = string(b)
			}
			if strings.TrimSpace(prompt) == "" {
				return usageError("empty prompt")
			}
			overrides, err := of.config(cmd.Flags(), &mf, 0)
			if err != nil {
				return err
			}
			s, err := adhocSpec(name, prompt, files, overrides, saveSpec)
			if err != nil {
				return err
			}
			var models runner.Models
			if mf.replay != "" {
				models = &runner.Replays{Path: mf.replay}
			} else {
				pcfg, err := mf.providerConfig(runSettings(overrides), provider.NewLimiter(max(mf.maxLLMConcurrency, 1)))
				if err != nil {
					return err
				}
				models = &runner.Endpoints{Config: pcfg}
				if s.Model == "" {
					s.Model = defaultModel()
				}
			}
			prices, budget, err := mf.budget(runSettings(overrides))
			if err != nil {
				return err
			}
			record := filepath.Join(out, doRecordDir)
			if err := os.RemoveAll(record); err != nil {
				return fmt.Errorf("clearing %s: %w", record, err)
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			text := agent.TextObserver(stdout, 12)
			observer := func(e runner.Event) {
				switch e.Type {
				case runner.EventAgent:
					if !quiet {
						text(*e.Agent)
					}
				case runner.EventPhase:
					if e.Phase != "agent" && e.Phase != "kill" {
						fmt.Fprintf(stderr, "· %s\n", e.Phase)
					}
				}
			}
			r, err := runner.New(runner.Config{
				Specs: []*spec.Spec{s}, Models: models, Out: record, Concurrency: 1,
				Observer: observer, Prices: prices, Budget: budget,
				Info: runner.RunInfo{Versions: runner.Versions{Agent: version, Go: runtime.Version(), EnvdProtocol: envdVersion()},
					Command: redactArgs(os.Args), Args: []string{}, Flags: changedFlags(cmd), Model: s.Model, Replay: mf.replay},
			})
			if err != nil {
				return usageError("%v", err)
			}
			if err := checkModels(models, []*spec.Spec{s}); err != nil {
				return err
			}
			b, closeBackend, err := openBackend(ctx, taskBackend(s, backend), &lf)
			if err != nil {
				return err
			}
			defer closeBackend()
			stopSignals := onInterrupt(ctx, stderr)
			defer stopSignals()
			sum, err := r.Run(ctx, b)
			if err != nil {
				return &exitError{code: exitInternal, err: err}
			}
			task := filepath.Join(record, sum.Tasks[0].Dir)
			n, err := copyTree(filepath.Join(task, runner.FilesDir), out)
			if err != nil {
				return &exitError{code: exitInternal, err: fmt.Errorf("copying the produced files to %s: %w", out, err)}
			}
			var res runner.TaskResult
			_ = readJSONFile(filepath.Join(task, runner.ResultFile), &res)
			fmt.Fprintf(stderr, "\n%s", doOutcome(&res))
			fmt.Fprintf(stderr, "%d file(s) → %s", n, out)
			if res.Artifacts != nil && len(res.Artifacts.Skipped) > 0 {
				fmt.Fprintf(stderr, " (%d skipped, see %s)", len(res.Artifacts.Skipped), filepath.Join(task, runner.ResultFile))
			}
			fmt.Fprintf(stderr, "\ntranscript: %s\n", filepath.Join(task, runner.TranscriptFile))
			if res.Kept != nil {
				fmt.Fprintf(stderr, "sandbox kept (paused): %s\n", res.Kept.Command)
			}
			if !sum.OK {
				return &exitError{code: exitFailed}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	lf.register(cmd)
	mf.register(fs, true)
	of.register(fs, false)
	of.registerKeep(fs)
	fs.StringVar(&files, "files", "", "seed the sandbox's workdir with this directory's files")
	fs.StringVarP(&out, "out", "o", "out", "copy the files the agent created or changed here")
	fs.StringVar(&name, "name", "do", "task name (in the transcript and results)")
	fs.StringVar(&saveSpec, "save-spec", "", "also write the task as a spec file here (to run it again with agent run --allow-outside)")
	fs.BoolVarP(&quiet, "quiet", "q", false, "do not stream the agent's steps")
	registerBackend(fs, &backend, &lf)
	return cmd
}

// runSettings resolves the run-wide settings given on the command line (no agent.yaml).
func runSettings(cli *spec.Config) spec.Run { return spec.ResolveRun(nil, "", cli) }

// defaultModel is the model of a task that names none: novita's default when its key is set.
// Otherwise the task needs --model.
func defaultModel() string {
	if strings.TrimSpace(os.Getenv("NOVITA_API_KEY")) != "" {
		return provider.PresetNovita + ":"
	}
	return ""
}

// doOutcome describes how an agent do task ended, in one line.
func doOutcome(r *runner.TaskResult) string {
	if r.Status == runner.StatusPassed || r.Status == runner.StatusFailed {
		return "done: the agent completed\n"
	}
	if r.Reason == "" {
		return "done\n"
	}
	return fmt.Sprintf("error: %s — %s\n", r.Reason, r.Detail)
}

// copyTree copies the regular files under src (written by this process) into dst, creating
// directories; os.Root keeps every write inside dst even if dst holds symlinks.
func copyTree(src, dst string) (int, error) {
	if _, err := os.Stat(src); os.IsNotExist(err) {
		return 0, os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	n := 0
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() {
			return root.MkdirAll(rel, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		w, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		_, err = io.Copy(w, in)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		n++
		return err
	})
	return n, err
}

// readJSONFile reads a small JSON file this process wrote.
func readJSONFile(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewDecoder(io.LimitReader(f, 16<<20)).Decode(v)
}

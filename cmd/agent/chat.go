package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentrun/agent/agent"
	"github.com/agentrun/agent/agent/provider"
	"github.com/agentrun/agent/agent/tools"
	"github.com/agentrun/agent/runner"
	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
)

const chatHelp = `Type a request for the agent, or:
  !COMMAND      run a shell command in the sandbox directly
  /model [ID]   show or switch the model for later turns
  /files [DIR]  list files in the sandbox (default: the workdir)
  /help         this help
  /exit         kill the sandbox and quit (also Ctrl-D, Ctrl-C)`

func newChatCmd() *cobra.Command {
	var (
		lf       localFlags
		mf       modelFlags
		of       overrideFlags
		files    string
		backend  string
		lifetime time.Duration
	)
	cmd := &cobra.Command{
		Use:   "chat",
		Short: "Chat with a coding agent working in a fresh sandbox (multi-step, in the terminal)",
		Long: `Chat with a coding agent in a fresh sandbox, as the tutorial's UI did, in the terminal. Each
request runs the agent loop until the model answers without tool calls; the conversation carries
over between requests. !COMMAND runs a shell command in the sandbox directly, /model switches the
model for later turns, /files lists the sandbox's files, /exit ends the chat and kills the sandbox.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError("agent chat takes no arguments (type requests at its prompt)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			overrides, err := of.config(cmd.Flags(), &mf, 0)
			if err != nil {
				return err
			}
			s, err := adhocSpec("chat", "chat", files, overrides, "")
			if err != nil {
				return err
			}
			if s.Model == "" {
				s.Model = defaultModel()
			}
			if s.Model == "" {
				return usageError("no model: pass --model (e.g. --model novita:qwen/qwen3-coder-30b-a3b-instruct, --model ollama:llama3) or set NOVITA_API_KEY")
			}
			pcfg, err := mf.providerConfig(runSettings(overrides), provider.NewLimiter(1))
			if err != nil {
				return err
			}
			p, _, err := provider.Open(s.Model, pcfg)
			if err != nil {
				return usageError("--model %s: %v", s.Model, err)
			}
			prices, _, err := mf.budget(runSettings(overrides))
			if err != nil {
				return err
			}
			b, closeBackend, err := openBackend(ctx, taskBackend(s, backend), &lf)
			if err != nil {
				return err
			}
			defer closeBackend()
			out := cmd.OutOrStdout()
			fmt.Fprintf(cmd.ErrOrStderr(), "creating a %s sandbox…\n", s.Template)
			sb, err := b.Create(ctx, runner.SandboxRequest{
				Task: "chat", Epoch: 1, Template: s.Template, Env: s.Env, Network: s.Network,
				MemoryBytes: int64(s.Limits.Memory), CPUs: s.Limits.CPUs, Pids: s.Limits.Pids, DiskBytes: int64(s.Limits.Disk),
				Lifetime: lifetime,
			})
			if err != nil {
				return fmt.Errorf("creating the sandbox: %w", err)
			}
			defer func() {
				kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				defer cancel()
				if err := sb.Kill(kctx); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "killing sandbox %s: %v\n", sb.ID(), err)
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "sandbox %s killed\n", sb.ID())
				}
				_ = sb.Close()
			}()
			c := &chat{
				ctx: ctx, sb: sb, spec: s.Workdir, model: s.Model, p: p, pcfg: pcfg, prices: prices, out: out,
				system: s.System, env: s.Env,
				limits:     agent.Limits{MaxSteps: s.Limits.MaxSteps, CommandTimeout: s.Limits.CommandTimeout.D(), MaxResultBytes: int(s.Limits.MaxOutput)},
				cmdTimeout: s.Limits.CommandTimeout.D(),
			}
			if err := c.seed(s.Files); err != nil {
				return fmt.Errorf("seeding files: %w", err)
			}
			c.set = tools.New(sb, tools.Config{Workdir: s.Workdir, Env: s.Env, CommandTimeout: c.cmdTimeout, MaxResultBytes: int(s.Limits.MaxOutput)})
			defer c.set.Close()
			fmt.Fprintf(out, "sandbox %s (%s), workdir %s, model %s\n%s\n", sb.ID(), s.Template, s.Workdir, s.Model, chatHelp)
			return c.loop(cmd.InOrStdin(), isTerminal(out))
		},
	}
	fs := cmd.Flags()
	lf.register(cmd)
	mf.register(fs, false)
	of.register(fs, false)
	fs.StringVar(&files, "files", "", "seed the sandbox's workdir with this directory's files")
	fs.DurationVar(&lifetime, "lifetime", 2*time.Hour, "the sandbox is destroyed after this long, even if the chat goes on")
	registerBackend(fs, &backend, &lf)
	return cmd
}

// chat is an interactive conversation with the agent in one sandbox.
type chat struct {
	ctx        context.Context
	sb         runner.Sandbox
	spec       string // the workdir
	model      string
	p          provider.Provider
	pcfg       provider.Config
	prices     *agent.Prices
	set        *tools.Set
	out        io.Writer
	system     string
	env        map[string]string
	limits     agent.Limits
	cmdTimeout time.Duration
	history    []provider.Message
}

func (c *chat) seed(files []spec.File) error {
	if err := c.sb.MakeDir(c.ctx, c.spec); err != nil && !errors.Is(err, sandbox.ErrExists) {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	var batch []sandbox.File
	for _, f := range files {
		batch = append(batch, sandbox.File{Path: path.Join(c.spec, f.Path), Data: f.Data})
	}
	return c.sb.WriteFiles(c.ctx, batch)
}

// maxChatLine bounds one line read from the terminal.
const maxChatLine = 1 << 20

// loop reads lines until /exit, end of input or the context ends.
func (c *chat) loop(in io.Reader, tty bool) error {
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), maxChatLine)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-c.ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
		close(lines)
	}()
	for {
		if tty {
			fmt.Fprint(c.out, "\nyou> ")
		}
		var line string
		select {
		case <-c.ctx.Done():
			fmt.Fprintln(c.out)
			return nil
		case l, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("reading input: %w", err)
				}
				return nil
			}
			line = l
		}
		line = strings.TrimRight(line, "\r")
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			continue
		case trimmed == "/exit" || trimmed == "/quit":
			return nil
		case trimmed == "/help":
			fmt.Fprintln(c.out, chatHelp)
		case trimmed == "/model" || strings.HasPrefix(trimmed, "/model "):
			c.switchModel(strings.TrimSpace(strings.TrimPrefix(trimmed, "/model")))
		case trimmed == "/files" || strings.HasPrefix(trimmed, "/files "):
			c.listFiles(strings.TrimSpace(strings.TrimPrefix(trimmed, "/files")))
		case strings.HasPrefix(trimmed, "!"):
			c.command(strings.TrimSpace(strings.TrimPrefix(trimmed, "!")))
		case strings.HasPrefix(trimmed, "/"):
			fmt.Fprintf(c.out, "unknown command %s\n%s\n", strings.Fields(trimmed)[0], chatHelp)
		default:
			c.turn(line)
		}
		if c.ctx.Err() != nil {
			return nil
		}
	}
}

// command runs a shell command in the sandbox directly, as the tutorial's command box did.
func (c *chat) command(cmdline string) {
	if cmdline == "" {
		fmt.Fprintln(c.out, "Please enter a command.")
		return
	}
	res, err := c.sb.Run(c.ctx, sandbox.Cmd{Shell: cmdline, Dir: c.spec, Env: c.env, Timeout: c.cmdTimeout, MaxOutput: 1 << 20})
	var ee *sandbox.ExitError
	if errors.As(err, &ee) {
		res, err = ee.Result, nil
	}
	if err != nil {
		fmt.Fprintf(c.out, "Error: %v\n", err)
		return
	}
	if len(res.Stdout) == 0 && len(res.Stderr) == 0 {
		fmt.Fprintln(c.out, "Command executed (no output).")
	} else {
		writeBlock(c.out, res.Stdout)
		writeBlock(c.out, res.Stderr)
	}
	if res.Truncated {
		fmt.Fprintln(c.out, "[output beyond 1 MiB not shown]")
	}
	switch {
	case res.TimedOut:
		fmt.Fprintf(c.out, "[timed out after %s]\n", c.cmdTimeout)
	case res.ExitCode != 0:
		fmt.Fprintf(c.out, "[exit %d]\n", res.ExitCode)
	}
}

func writeBlock(w io.Writer, b []byte) {
	if len(b) == 0 {
		return
	}
	w.Write(b)
	if b[len(b)-1] != '\n' {
		fmt.Fprintln(w)
	}
}

// switchModel shows the model, or switches to another for later turns.
func (c *chat) switchModel(id string) {
	if id == "" {
		fmt.Fprintf(c.out, "model: %s\n", c.model)
		for _, pr := range provider.Presets() {
			if len(pr.Models) > 0 {
				fmt.Fprintf(c.out, "%s models: %s\n", pr.Name, strings.Join(pr.Models, ", "))
			}
		}
		return
	}
	p, _, err := provider.Open(id, c.pcfg)
	if err != nil {
		fmt.Fprintf(c.out, "cannot switch to %s: %v\n", id, err)
		return
	}
	c.model, c.p = id, p
	fmt.Fprintf(c.out, "model: %s\n", id)
}

// listFiles lists a directory of the sandbox (two levels deep).
func (c *chat) listFiles(dir string) {
	if dir == "" {
		dir = c.spec
	} else if !path.IsAbs(dir) {
		dir = path.Join(c.spec, dir)
	}
	ents, err := c.sb.List(c.ctx, dir, 2)
	if err != nil {
		fmt.Fprintf(c.out, "Error: %v\n", err)
		return
	}
	if len(ents) == 0 {
		fmt.Fprintf(c.out, "%s is empty\n", dir)
		return
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Path < ents[j].Path })
	const maxShown = 500
	for i, e := range ents {
		if i == maxShown {
			fmt.Fprintf(c.out, "… %d more\n", len(ents)-maxShown)
			break
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(e.Path, dir), "/")
		switch {
		case e.SymlinkTarget != "":
			fmt.Fprintf(c.out, "%10s  %s -> %s\n", "", rel, e.SymlinkTarget)
		case e.Type == sandbox.TypeDir:
			fmt.Fprintf(c.out, "%10s  %s/\n", "", rel)
		default:
			fmt.Fprintf(c.out, "%10d  %s\n", e.Size, rel)
		}
	}
}

// turn runs the agent on one request, streaming its steps.
func (c *chat) turn(prompt string) {
	task := agent.Task{Name: "chat", Prompt: prompt, System: c.system, Model: c.model, History: c.history,
		Workdir: c.spec, Env: c.env, Limits: c.limits}
	res, err := agent.Run(c.ctx, task, c.sb, c.p, agent.Options{Tools: c.set, Prices: c.prices, Observer: agent.TextObserver(c.out, 12)})
	if res == nil {
		fmt.Fprintf(c.out, "Error: %v\n", err)
		return
	}
	// The text observer has shown the answer as it came (every provider reports it as deltas).
	c.history = res.Messages
}

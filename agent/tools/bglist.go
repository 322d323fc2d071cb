package tools

import (
	"slices"
	"unicode/utf8"
)

// BackgroundCommand describes a command the agent started with background: true, as it stands.
type BackgroundCommand struct {
	PID     uint32
	Command string
	// Running is true while it runs; Status says how it ended otherwise ("exited with code 0").
	Running bool
	Status  string
	// ExitCode is set once it exited.
	ExitCode *int
	// OutputBytes counts everything it wrote to stdout and stderr.
	OutputBytes int64
}

// maxListedCommand bounds a command's text in Background.
const maxListedCommand = 2000

// Background lists the background commands started through the set, in pid order. They outlive
// the agent loop (the set's Close ends only their output streams) unless stopped.
func (s *Set) Background() []BackgroundCommand {
	s.mu.Lock()
	procs := make([]*bgProc, 0, len(s.bg))
	pids := make([]uint32, 0, len(s.bg))
	for pid, p := range s.bg {
		procs = append(procs, p)
		pids = append(pids, pid)
	}
	s.mu.Unlock()
	out := make([]BackgroundCommand, 0, len(procs))
	for i, p := range procs {
		p.mu.Lock()
		running, status, code := p.status()
		total := p.outputTotal
		p.mu.Unlock()
		cmd := p.command
		if len(cmd) > maxListedCommand {
			cut := maxListedCommand
			for cut > 0 && !utf8.RuneStart(cmd[cut]) {
				cut--
			}
			cmd = cmd[:cut] + "…"
		}
		out = append(out, BackgroundCommand{PID: pids[i], Command: cmd, Running: running, Status: status, ExitCode: code, OutputBytes: total})
	}
	slices.SortFunc(out, func(a, b BackgroundCommand) int { return int(a.PID) - int(b.PID) })
	return out
}

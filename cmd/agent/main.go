// Command agent runs LLM coding agents in isolated sandboxes: one-shot (agent do), as suites with
// checks (agent run), as nightly model evaluations (agent eval), and serves the sandbox protocol.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCmd().ExecuteContext(ctx)
	os.Exit(exitCode(err))
}

// Exit codes, documented in the README and in `agent --help`.
const (
	exitOK       = 0
	exitFailed   = 1 // a task failed or errored
	exitUsage    = 2 // usage or configuration error
	exitInternal = 3 // internal error
)

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "agent:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "agent:", err)
	return exitInternal
}

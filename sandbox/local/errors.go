package local

import (
	"errors"
	"fmt"

	"github.com/agentrun/agent/sandbox"
)

// LimitError says which limit ended or hampered a sandbox. It matches the sandbox package's
// errors with errors.Is: ErrOOM, ErrPidsLimit, ErrNoSpace, ErrExpired (and ErrGone for expiry).
type LimitError struct {
	// Kind is one of the sandbox package's limit errors.
	Kind error
	// Detail says what was observed (counters, sizes).
	Detail string
}

// Error says which limit and what was observed.
func (e *LimitError) Error() string { return fmt.Sprintf("%v: %s", e.Kind, e.Detail) }

// Is matches the limit kind; an expired sandbox is also gone.
func (e *LimitError) Is(target error) bool {
	return target == e.Kind || (e.Kind == sandbox.ErrExpired && target == sandbox.ErrGone)
}

// ErrNoDataPlane is returned by file and command calls of a sandbox handle whose envd client could
// not be built.
var ErrNoDataPlane = errors.New("local sandbox: no envd client configured")

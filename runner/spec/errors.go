package spec

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrSpec matches every error about the content of a spec, an agent.yaml or the arguments that name
// them (errors.Is). The CLI maps it to the "usage or spec error" exit code.
var ErrSpec = errors.New("invalid task spec")

// Pos is a position in a YAML file. Line and Column start at 1; zero means unknown.
type Pos struct {
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`
}

// Error is one problem in a spec file, at a position.
type Error struct {
	File string
	Pos
	Msg string
}

// Error formats the error as file:line:column: message, the form editors and CI annotations parse.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, "%d:", e.Column)
		}
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is makes every *Error match ErrSpec.
func (e *Error) Is(target error) bool { return target == ErrSpec }

// ErrorList is every problem found, sorted by file and position.
type ErrorList []*Error

// Error joins the errors, one per line.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap exposes the errors to errors.Is and errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Is makes every non-empty ErrorList match ErrSpec.
func (l ErrorList) Is(target error) bool { return target == ErrSpec && len(l) > 0 }

// Sort orders the list by file, line and column; errors without a position come first.
func (l ErrorList) Sort() {
	sort.SliceStable(l, func(i, j int) bool {
		a, b := l[i], l[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
}

// err returns the list as an error, or nil when it is empty.
func (l ErrorList) err() error {
	if len(l) == 0 {
		return nil
	}
	l.Sort()
	return l
}

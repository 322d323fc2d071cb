package spec

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// Outcome is the result of grading one check.
type Outcome struct {
	Passed bool `json:"passed"`
	// Reason says why a check failed, in one line; empty when it passed.
	Reason string `json:"reason,omitempty"`
}

// GradeRun grades a run check from how its command ended. The runner executes the command (with
// c.Timeout) and passes the exit code and stdout it kept; timedOut marks a command killed by the
// timeout, which always fails.
func (c *Check) GradeRun(exitCode int, stdout []byte, timedOut bool) Outcome {
	if c.Kind != CheckRun {
		return Outcome{Reason: "not a run check"}
	}
	if timedOut {
		return Outcome{Reason: fmt.Sprintf("timed out after %s", c.Timeout)}
	}
	if exitCode != c.Exit {
		return Outcome{Reason: fmt.Sprintf("exit code %d, want %d", exitCode, c.Exit)}
	}
	if c.Stdout != nil && string(stdout) != *c.Stdout {
		return Outcome{Reason: "stdout " + describeDiff(stdout, []byte(*c.Stdout))}
	}
	if c.StdoutContains != nil && !bytes.Contains(stdout, []byte(*c.StdoutContains)) {
		return Outcome{Reason: fmt.Sprintf("stdout does not contain %s", quote(*c.StdoutContains))}
	}
	if c.StdoutRegex != nil && !c.StdoutRegex.Match(stdout) {
		return Outcome{Reason: fmt.Sprintf("stdout does not match /%s/", clip(c.StdoutRegex.String(), 80))}
	}
	return Outcome{Passed: true}
}

// GradeFile grades a file check from whether the file exists (as a regular file) and its content.
// The runner reads the file without following symlinks out of the sandbox and bounds the read;
// content is ignored when the file does not exist.
func (c *Check) GradeFile(exists bool, content []byte) Outcome {
	if c.Kind != CheckFile {
		return Outcome{Reason: "not a file check"}
	}
	if !c.Exists {
		if exists {
			return Outcome{Reason: fmt.Sprintf("%s exists, want it absent", c.File)}
		}
		return Outcome{Passed: true}
	}
	if !exists {
		return Outcome{Reason: fmt.Sprintf("%s does not exist", c.File)}
	}
	if c.Equals != nil && string(content) != *c.Equals {
		return Outcome{Reason: "content " + describeDiff(content, []byte(*c.Equals))}
	}
	if c.Contains != nil && !bytes.Contains(content, []byte(*c.Contains)) {
		return Outcome{Reason: fmt.Sprintf("content does not contain %s", quote(*c.Contains))}
	}
	if c.Regex != nil && !c.Regex.Match(content) {
		return Outcome{Reason: fmt.Sprintf("content does not match /%s/", clip(c.Regex.String(), 80))}
	}
	return Outcome{Passed: true}
}

// NeedsContent reports whether grading a file check needs the file's content.
func (c *Check) NeedsContent() bool {
	return c.Kind == CheckFile && c.Exists && (c.Equals != nil || c.Contains != nil || c.Regex != nil)
}

// describeDiff says where got first differs from want, in one line.
func describeDiff(got, want []byte) string {
	if len(got) == 0 {
		return "is empty, want " + quote(string(want))
	}
	gl := strings.SplitAfter(string(got), "\n")
	wl := strings.SplitAfter(string(want), "\n")
	for i := 0; i < len(gl) || i < len(wl); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			switch {
			case i >= len(gl) || (g == "" && i == len(gl)-1):
				return fmt.Sprintf("ends before line %d, want %s", i+1, quote(w))
			case i >= len(wl) || (w == "" && i == len(wl)-1):
				return fmt.Sprintf("has extra line %d: %s", i+1, quote(g))
			}
			return fmt.Sprintf("differs at line %d: got %s, want %s", i+1, quote(g), quote(w))
		}
	}
	return "differs"
}

func quote(s string) string { return strconv.Quote(clip(s, 80)) }

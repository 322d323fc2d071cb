package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"time"

	"github.com/agentrun/agent/runner/spec"
	"github.com/agentrun/agent/sandbox"
)

// checks runs the task's checks in order, writes checks.json and sets the status: passed when
// every check passed (and nothing ended the task in error before), failed when one failed, error
// when one could not be carried out.
func (t *task) checks(ctx context.Context) error {
	doc := ChecksDoc{SchemaVersion: ChecksSchema, Task: t.s.Name, Epoch: t.j.epoch, Checks: []CheckResult{}}
	counts := CheckCounts{Total: len(t.s.Checks)}
	var checkErr string
	for i := range t.s.Checks {
		c := &t.s.Checks[i]
		if ctx.Err() != nil || t.gone {
			cr := newCheckResult(c)
			cr.Skipped, cr.Reason = true, "not run: the run was interrupted"
			if t.gone {
				cr.Reason = "not run: the sandbox is gone"
			}
			doc.Checks = append(doc.Checks, cr)
			counts.Skipped++
			continue
		}
		var cr CheckResult
		if c.Kind == spec.CheckRun {
			cr = t.runCheck(ctx, c)
		} else {
			cr = t.fileCheck(ctx, c)
		}
		switch {
		case cr.Skipped:
			counts.Skipped++
		case cr.Error != "":
			counts.Failed++
			if checkErr == "" {
				checkErr = fmt.Sprintf("check %q could not be carried out: %s", cr.Name, cr.Error)
			}
		case cr.Passed:
			counts.Passed++
		default:
			counts.Failed++
		}
		doc.Checks = append(doc.Checks, cr)
	}
	t.res.Checks = counts
	if err := writeJSON(filepath.Join(t.dir, ChecksFile), doc); err != nil {
		return fmt.Errorf("task %s: %w", t.s.Name, err)
	}
	if ctx.Err() != nil {
		return nil // the caller marks the task canceled
	}
	switch {
	case checkErr != "":
		if !t.limitFailure() {
			t.fail(ReasonCheckError, checkErr)
		}
	case t.res.Status == StatusError:
		// The agent did not complete: the checks were graded for the diagnosis only.
	case counts.Failed > 0:
		t.res.Status = StatusFailed
	default:
		t.res.Status = StatusPassed
	}
	return nil
}

// skipChecks records every check as not run.
func (t *task) skipChecks(why string) {
	doc := ChecksDoc{SchemaVersion: ChecksSchema, Task: t.s.Name, Epoch: t.j.epoch, Checks: []CheckResult{}}
	for i := range t.s.Checks {
		cr := newCheckResult(&t.s.Checks[i])
		cr.Skipped, cr.Reason = true, "not run: "+why
		doc.Checks = append(doc.Checks, cr)
	}
	t.res.Checks = CheckCounts{Total: len(t.s.Checks), Skipped: len(t.s.Checks)}
	if err := writeJSON(filepath.Join(t.dir, ChecksFile), doc); err != nil {
		t.warn("writing checks.json: %v", err)
	}
}

func newCheckResult(c *spec.Check) CheckResult {
	return CheckResult{Name: c.Name, Kind: c.Kind, Run: c.Run, File: c.File, Line: c.Pos.Line}
}

// runCheck runs a command check and grades its exit code and stdout.
func (t *task) runCheck(ctx context.Context, c *spec.Check) CheckResult {
	cr := newCheckResult(c)
	started := time.Now()
	defer func() { cr.DurationMS = time.Since(started).Milliseconds() }()
	max := t.r.lim.MaxCheckOutput
	// The envd-side timeout kills the command; the client-side one (a little later) bounds a
	// sandbox that stops answering.
	cctx, cancel := context.WithTimeout(ctx, c.Timeout.D()+30*time.Second)
	defer cancel()
	res, err := t.sb.Run(cctx, sandbox.Cmd{Shell: c.Run, Dir: t.s.Workdir, Env: t.s.Env, Timeout: c.Timeout.D(), MaxOutput: max})
	var ee *sandbox.ExitError
	if errors.As(err, &ee) {
		res, err = ee.Result, nil
	}
	if err != nil {
		return t.couldNot(ctx, cr, "run the check", err)
	}
	code := res.ExitCode
	cr.ExitCode = &code
	cr.TimedOut = res.TimedOut
	cr.Stdout = clipText(string(res.Stdout), 64<<10)
	cr.Stderr = clipText(string(res.Stderr), 64<<10)
	cr.Truncated = res.Truncated
	out := c.GradeRun(res.ExitCode, res.Stdout, res.TimedOut)
	cr.Passed, cr.Reason = out.Passed, out.Reason
	if !cr.Passed && res.Truncated && (c.Stdout != nil || c.StdoutContains != nil || c.StdoutRegex != nil) {
		cr.Reason += fmt.Sprintf(" (output beyond %d bytes was not kept)", max)
	}
	return cr
}

// couldNot is the result of a check that could not do what (e.g. "run the check") because of err:
// skipped when the run was interrupted, an error otherwise; a sandbox found gone is noted.
func (t *task) couldNot(ctx context.Context, cr CheckResult, what string, err error) CheckResult {
	if ctx.Err() != nil {
		cr.Skipped, cr.Reason = true, "not run: the run was interrupted"
		return cr
	}
	if errors.Is(err, sandbox.ErrGone) {
		t.gone = true
	}
	cr.Error = clipText(err.Error(), 1000)
	cr.Reason = "could not " + what + ": " + cr.Error
	return cr
}

// fileCheck grades a file's existence and content, read through the sandbox's API. A symlink is
// never followed: it does not count as the file.
func (t *task) fileCheck(ctx context.Context, c *spec.Check) CheckResult {
	cr := newCheckResult(c)
	started := time.Now()
	defer func() { cr.DurationMS = time.Since(started).Milliseconds() }()
	p := c.File
	if !path.IsAbs(p) {
		p = path.Join(t.s.Workdir, p)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	fail := func(err error) CheckResult { return t.couldNot(ctx, cr, "read the file", err) }
	e, err := t.sb.Stat(cctx, p)
	exists := true
	var notRegular string
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		exists = false
	case err != nil:
		return fail(err)
	case isSymlink(e):
		exists, notRegular = false, fmt.Sprintf("%s is a symlink (to %s); symlinks are not followed", c.File, clipText(e.SymlinkTarget, 200))
	case e.Type != sandbox.TypeFile:
		exists, notRegular = false, fmt.Sprintf("%s is not a regular file (%s)", c.File, e.Type)
	}
	if exists {
		size := e.Size
		cr.Size = &size
	}
	var content []byte
	if exists && c.NeedsContent() {
		limit := t.r.lim.MaxCheckFileBytes
		if e.Size > limit {
			cr.Reason = fmt.Sprintf("%s is %d bytes, more than the %d a file check reads", c.File, e.Size, limit)
			return cr
		}
		rc, err := t.sb.Open(cctx, p)
		if err != nil {
			return fail(err)
		}
		content, err = io.ReadAll(io.LimitReader(rc, limit+1))
		rc.Close()
		if err != nil {
			return fail(err)
		}
		if int64(len(content)) > limit {
			cr.Reason = fmt.Sprintf("%s grew beyond the %d bytes a file check reads", c.File, limit)
			return cr
		}
	}
	out := c.GradeFile(exists, content)
	cr.Passed, cr.Reason = out.Passed, out.Reason
	if !cr.Passed && notRegular != "" && c.Exists {
		cr.Reason = notRegular
	}
	return cr
}

// isSymlink tells a symlink from what it points to: envd reports a symlink with its target's type
// and sets the target path.
func isSymlink(e sandbox.Entry) bool {
	return e.Type == sandbox.TypeSymlink || e.SymlinkTarget != "" || (len(e.Permissions) > 0 && e.Permissions[0] == 'L')
}

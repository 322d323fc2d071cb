package runner

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// Console shows a run's progress to a person. On a terminal it keeps a status line (tasks done,
// running, failed, elapsed) updated in place, with a line per finished task above it; otherwise
// it prints plain lines as tasks start and end.
type Console struct {
	w   io.Writer
	tty bool

	mu       sync.Mutex
	start    time.Time
	total    int
	reused   int
	done     int
	passed   int
	failed   int
	errored  int
	running  map[string]time.Time
	drawn    bool
	stop     chan struct{}
	stopOnce sync.Once
}

// NewConsole returns a console writing to w; tty selects the live display.
func NewConsole(w io.Writer, tty bool) *Console {
	c := &Console{w: w, tty: tty, start: time.Now(), running: map[string]time.Time{}, stop: make(chan struct{})}
	if tty {
		go c.tick()
	}
	return c
}

func (c *Console) tick() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.mu.Lock()
			c.redraw()
			c.mu.Unlock()
		}
	}
}

// Close stops the live display and clears its status line.
func (c *Console) Close() {
	c.stopOnce.Do(func() {
		close(c.stop)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.clear()
	})
}

func jobKey(task string, epoch int) string { return fmt.Sprintf("%s#%d", task, epoch) }

// Observe takes a run's events.
func (c *Console) Observe(e Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch e.Type {
	case EventRunStart:
		c.start, c.total, c.reused = e.Time, e.Total, e.Reused
		c.done = e.Reused
		msg := fmt.Sprintf("running %d task(s) → %s", e.Total-e.Reused, e.Dir)
		if e.Reused > 0 {
			msg += fmt.Sprintf(" (%d finished earlier, kept)", e.Reused)
		}
		c.line(msg)
	case EventTaskStart:
		c.running[jobKey(e.Task, e.Epoch)] = e.Time
		if !c.tty {
			c.line(fmt.Sprintf("start  %s", label(e.Task, e.Epoch)))
		}
	case EventTaskEnd:
		delete(c.running, jobKey(e.Task, e.Epoch))
		c.done++
		res := e.Result
		if res == nil {
			break
		}
		switch {
		case res.Status == StatusPassed:
			c.passed++
		case res.Status == StatusFailed:
			c.failed++
		case res.Reason != ReasonCanceled:
			c.errored++
		}
		c.line(taskLine(res, c.tty))
	}
	if c.tty {
		c.redraw()
	}
}

func label(task string, epoch int) string {
	if epoch > 1 {
		return fmt.Sprintf("%s #%d", task, epoch)
	}
	return task
}

// taskLine describes a finished task in one line.
func taskLine(r *TaskResult, tty bool) string {
	name := r.Task
	if r.Epochs > 1 {
		name = fmt.Sprintf("%s #%d", r.Task, r.Epoch)
	}
	icon := map[Status]string{StatusPassed: "✓", StatusFailed: "✗", StatusError: "!"}[r.Status]
	status := string(r.Status)
	if r.Reason == ReasonCanceled {
		icon, status = "-", "canceled"
	}
	if !tty {
		icon = status
	}
	var facts []string
	if r.Agent != nil {
		facts = append(facts, fmt.Sprintf("%d steps", r.Agent.Steps))
		if r.Agent.Usage.TotalTokens > 0 {
			facts = append(facts, fmtInt(r.Agent.Usage.TotalTokens)+" tokens")
		}
	}
	if r.Checks.Total > 0 {
		facts = append(facts, fmt.Sprintf("checks %d/%d", r.Checks.Passed, r.Checks.Total))
	}
	facts = append(facts, fmtDuration(time.Duration(r.DurationMS)*time.Millisecond))
	s := fmt.Sprintf("%-6s %s (%s)", icon, name, strings.Join(facts, ", "))
	if r.Status == StatusError && r.Reason != ReasonCanceled {
		s += fmt.Sprintf(": %s", r.Reason)
		if r.Detail != "" {
			s += " — " + clipText(oneLine(r.Detail), 160)
		}
	}
	return s
}

// line prints a line above the status line.
func (c *Console) line(s string) {
	c.clear()
	fmt.Fprintln(c.w, s)
}

func (c *Console) clear() {
	if c.tty && c.drawn {
		fmt.Fprint(c.w, "\r\033[K")
		c.drawn = false
	}
}

// redraw draws the status line: counts, the running tasks, elapsed time.
func (c *Console) redraw() {
	if !c.tty {
		return
	}
	var names []string
	for k := range c.running {
		names = append(names, strings.TrimSuffix(k, "#1"))
	}
	sort.Strings(names)
	run := strings.Join(names, " ")
	s := fmt.Sprintf("[%d/%d] %d passed · %d failed · %d errors · %d running · %s", c.done, c.total, c.passed, c.failed, c.errored,
		len(c.running), fmtDuration(time.Since(c.start).Truncate(time.Second)))
	if run != "" {
		s += " · " + clipText(run, 60)
	}
	fmt.Fprint(c.w, "\r\033[K"+s)
	c.drawn = true
}

package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/agentrun/agent/internal/testenv/localenv"
)

// ptyWait bounds every wait on a terminal session: output to appear, the command to exit.
const ptyWait = time.Minute

// ptySession is the agent binary running on a pseudo-terminal, as a person at a terminal runs it.
type ptySession struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File // the terminal's master side
	done chan struct{}

	mu  sync.Mutex
	out []byte // everything the terminal showed (bounded)
	eof chan struct{}
}

// maxPTYOutput bounds what a session keeps of its output.
const maxPTYOutput = 1 << 20

// startPTY runs the agent binary with args on a new terminal of the given size. At cleanup the
// session's process group is killed (if still running) and the terminal closed.
func startPTY(t *testing.T, rows, cols uint16, args ...string) *ptySession {
	t.Helper()
	cmd := exec.Command(agentBin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: rows, Cols: cols})
	if err != nil {
		t.Fatalf("starting agent on a terminal: %v", err)
	}
	s := &ptySession{t: t, cmd: cmd, tty: tty, done: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(s.eof)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			s.mu.Lock()
			if len(s.out)+n <= maxPTYOutput {
				s.out = append(s.out, buf[:n]...)
			}
			s.mu.Unlock()
			if err != nil {
				return // EIO once every holder of the terminal's other side has exited
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			// pty.Start makes the agent a session leader: its group holds the runtime's exec too.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
		_ = tty.Close()
		<-s.eof
	})
	return s
}

// output is everything the terminal showed so far.
func (s *ptySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.out)
}

// send types text on the terminal.
func (s *ptySession) send(text string) {
	s.t.Helper()
	if _, err := s.tty.Write([]byte(text)); err != nil {
		s.t.Fatalf("typing %q: %v", text, err)
	}
}

// waitFor waits (at most ptyWait) until the output matches re and returns the first match's
// submatches; it fails the test if the output never matches.
func (s *ptySession) waitFor(re *regexp.Regexp) []string {
	s.t.Helper()
	deadline := time.Now().Add(ptyWait)
	for {
		if m := re.FindStringSubmatch(s.output()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the terminal never showed %q; it showed:\n%s\n(quoted: %q)", re, s.output(), s.output())
		}
		select {
		case <-s.eof:
			if m := re.FindStringSubmatch(s.output()); m != nil {
				return m
			}
			s.t.Fatalf("the terminal closed without showing %q; it showed:\n%s", re, s.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// exitCode waits (at most ptyWait) for the command to exit and returns its exit code.
func (s *ptySession) exitCode() int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(ptyWait):
		s.t.Fatalf("the command did not exit; the terminal showed:\n%s", s.output())
	}
	return s.cmd.ProcessState.ExitCode()
}

// ready waits until the shell on the terminal runs commands: typed-ahead text is echoed before the
// shell reads it, so only the result of an expansion proves it is there.
func (s *ptySession) ready() {
	s.t.Helper()
	s.send("echo READY$((40+2))\r")
	s.waitFor(regexp.MustCompile(`READY42`))
}

// createSandbox creates a sandbox with the CLI in the data dir dd and kills it at cleanup.
func createSandbox(t *testing.T, dd string, args ...string) string {
	t.Helper()
	r := runAgent(t, nil, append([]string{"sandbox", "--data-dir", dd, "create"}, args...)...)
	if r.code != 0 {
		t.Fatalf("sandbox create: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	id := strings.TrimSpace(r.stdout)
	if !regexp.MustCompile(`^[a-z0-9]+$`).MatchString(id) {
		t.Fatalf("sandbox create printed %q", r.stdout)
	}
	t.Cleanup(func() { runAgent(t, nil, "sandbox", "--data-dir", dd, "kill", id) })
	return id
}

// TestSandboxShellPTY opens `agent sandbox shell ID` on a terminal: the shell runs on a terminal
// of its own inside the sandbox, sees the outer terminal's size and its changes, and its exit
// status is the command's. `agent sandbox exec -t` allocates a terminal the same way; without a
// terminal, shell is a usage error.
func TestSandboxShellPTY(t *testing.T) {
	requireSandboxes(t)
	dd := localenv.DataDir(t)
	localenv.CheckLeaks(t, dd)
	id := createSandbox(t, dd, "--timeout", "10m")

	t.Run("shell", func(t *testing.T) {
		s := startPTY(t, 37, 111, "sandbox", "--data-dir", dd, "shell", id)
		s.ready()
		// One line of output, so line editing noise (a prompt redrawn on a resize) cannot split it.
		s.send(`echo $((6*7)) > /tmp/x; echo "T=$(tty) X=$(cat /tmp/x) S=$(stty size) U=$(id -un)"` + "\r")
		m := s.waitFor(regexp.MustCompile(`T=(/dev/pts/\d+) X=(\S*) S=(\d+ \d+) U=(\w+)`))
		if m[2] != "42" || m[3] != "37 111" || m[4] != "user" {
			t.Errorf("inside the shell: /tmp/x %q, size %q, user %q", m[2], m[3], m[4])
		}
		// A resized terminal: the kernel signals SIGWINCH and the runtime resizes the inner one.
		if err := pty.Setsize(s.tty, &pty.Winsize{Rows: 50, Cols: 132}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(ptyWait)
		for i := 0; ; i++ {
			s.send(fmt.Sprintf("echo RESIZE%d $(stty size)\r", i))
			m := s.waitFor(regexp.MustCompile(fmt.Sprintf(`RESIZE%d (\d+ \d+)`, i)))
			if m[1] == "50 132" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the shell never saw the new size; last %q", m[1])
			}
			time.Sleep(100 * time.Millisecond)
		}
		s.send("exit 3\r")
		if code := s.exitCode(); code != 3 {
			t.Errorf("shell exit code %d, want 3; the terminal showed:\n%s", code, s.output())
		}
	})

	t.Run("files stay", func(t *testing.T) {
		// What the shell wrote is in the sandbox for the next session; root is asked for by -u.
		s := startPTY(t, 24, 80, "sandbox", "--data-dir", dd, "shell", "-u", "root", id)
		s.ready()
		s.send(`echo "X=$(cat /tmp/x) U=$(id -u)"; exit` + "\r")
		if m := s.waitFor(regexp.MustCompile(`X=(\S*) U=(\d+)`)); m[1] != "42" || m[2] != "0" {
			t.Errorf("second shell: /tmp/x %q, uid %s", m[1], m[2])
		}
		if code := s.exitCode(); code != 0 {
			t.Errorf("shell exit code %d, want 0", code)
		}
	})

	t.Run("exec -t", func(t *testing.T) {
		// The command asks for the size at once: the terminal must be sized before it starts.
		script := `tty; stty size; exit 5`
		s := startPTY(t, 29, 97, "sandbox", "--data-dir", dd, "exec", "-t", id, "--", "sh", "-c", script)
		m := s.waitFor(regexp.MustCompile(`(/dev/pts/\d+)\r?\n(\d+ \d+)\r?\n`))
		if m[2] != "29 97" {
			t.Errorf("exec -t: size %q", m[2])
		}
		if code := s.exitCode(); code != 5 {
			t.Errorf("exec -t exit code %d, want 5", code)
		}
		// A command that is nothing but the question, repeated: the race it would lose is short.
		for i := 0; i < 10; i++ {
			s := startPTY(t, 31, 101, "sandbox", "--data-dir", dd, "exec", "-t", id, "--", "stty", "size")
			if m := s.waitFor(regexp.MustCompile(`(\d+ \d+)\r?\n`)); m[1] != "31 101" {
				t.Fatalf("exec -t stty size, run %d: %q, want 31 101", i, m[1])
			}
			if code := s.exitCode(); code != 0 {
				t.Fatalf("exec -t stty size: exit code %d", code)
			}
		}
		// Without -t the command has no terminal even when agent has one.
		s = startPTY(t, 24, 80, "sandbox", "--data-dir", dd, "exec", id, "--", "sh", "-c", "tty; echo END")
		if m := s.waitFor(regexp.MustCompile(`(?m)^(.*)\r?\nEND`)); !strings.Contains(m[1], "not a tty") {
			t.Errorf("exec without -t: tty says %q", m[1])
		}
		if code := s.exitCode(); code != 0 {
			t.Errorf("exec without -t: exit code %d", code)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "shell", id); r.code != exitUsage || !strings.Contains(r.stderr, "needs a terminal") {
			t.Errorf("shell without a terminal: exit %d, stderr %q", r.code, r.stderr)
		}
		s := startPTY(t, 24, 80, "sandbox", "--data-dir", dd, "shell", "nosuchsandbox")
		if code := s.exitCode(); code != exitUsage {
			t.Errorf("shell in a missing sandbox: exit %d, want %d; the terminal showed:\n%s", code, exitUsage, s.output())
		}
	})

	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "kill", id); r.code != 0 {
		t.Errorf("kill: exit %d\n%s", r.code, r.stderr)
	}
	if r := runAgent(t, nil, "sandbox", "--data-dir", dd, "ls", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("after kill: %s", r.stdout)
	}
}

package initproc_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/internal/testenv"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// agentBin is the real `agent` binary, built once for these tests.
var agentBin string

func TestMain(m *testing.M) { os.Exit(testenv.RunWithAgent(m, &agentBin)) }

// sandboxInit is `agent envd` running as PID 1 of a new PID namespace.
type sandboxInit struct {
	*testenv.Envd
	pid    int // host pid of init
	client processconnect.ProcessClient
}

func startInit(t *testing.T) *sandboxInit {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (PID namespaces)")
	}
	e := testenv.StartEnvd(t, agentBin, testenv.EnvdOptions{LogLevel: "info", SysProcAttr: &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}})
	si := &sandboxInit{Envd: e, pid: e.Pid()}
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Minute}
	t.Cleanup(hc.CloseIdleConnections)
	si.client = processconnect.NewProcessClient(hc, si.URL, connect.WithProtoJSON(), connect.WithAcceptCompression("gzip", nil, nil))
	return si
}

// nsProc is a process of the init's PID namespace, seen from the host.
type nsProc struct {
	hostPID, nsPID, ppid int
	state                string
	name                 string
}

func (si *sandboxInit) procs(t *testing.T) []nsProc {
	t.Helper()
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", si.pid))
	if err != nil {
		t.Fatalf("init's pid namespace: %v", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []nsProc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || ns != want {
			continue
		}
		p, ok := readStatus(pid)
		if ok {
			out = append(out, p)
		}
	}
	return out
}

func readStatus(pid int) (nsProc, bool) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nsProc{}, false
	}
	defer f.Close()
	p := nsProc{hostPID: pid}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			p.name = v
		case "State":
			p.state = v
		case "PPid":
			p.ppid, _ = strconv.Atoi(v)
		case "NSpid":
			f := strings.Fields(v)
			p.nsPID, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	return p, true
}

func (si *sandboxInit) zombies(t *testing.T) []nsProc {
	var z []nsProc
	for _, p := range si.procs(t) {
		if strings.HasPrefix(p.state, "Z") {
			z = append(z, p)
		}
	}
	return z
}

// server is the server child of init.
func (si *sandboxInit) server(t *testing.T) nsProc {
	t.Helper()
	for _, p := range si.procs(t) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.hostPID))
		if p.ppid == si.pid && !strings.HasPrefix(p.state, "Z") && exe == agentBin {
			return p
		}
	}
	t.Fatal("no server child")
	return nsProc{}
}

// run runs a shell command through the process API and returns its stdout and end.
func (si *sandboxInit) run(t *testing.T, script string) (string, *process.ProcessEvent_EndEvent) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := false
	s, err := si.client.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}}, Stdin: &f,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out bytes.Buffer
	var end *process.ProcessEvent_EndEvent
	for s.Receive() {
		ev := s.Msg().GetEvent()
		out.Write(ev.GetData().GetStdout())
		if ev.GetEnd() != nil {
			end = ev.GetEnd()
		}
	}
	if err := s.Err(); err != nil || end == nil {
		t.Fatalf("run %q: %v (end %v)", script, err, end)
	}
	return out.String(), end
}

func TestPID1ReapsOrphans(t *testing.T) {
	si := startInit(t)
	if p := si.procs(t); len(p) < 2 {
		t.Fatalf("namespace has %d processes, want init and its server", len(p))
	}
	// The shell exits at once; its background sleep is orphaned and reparented to PID 1. (Its
	// output is redirected so that the end event does not wait for it.)
	out, end := si.run(t, "sleep 3 >/dev/null 2>&1 & echo $!; exit")
	if end.GetExitCode() != 0 {
		t.Fatalf("end %v", end)
	}
	orphan := 0
	for _, p := range si.procs(t) {
		if strconv.Itoa(p.nsPID) == strings.TrimSpace(out) {
			orphan = p.hostPID
			if p.ppid != si.pid {
				t.Errorf("orphan's parent is %d, want init %d", p.ppid, si.pid)
			}
		}
	}
	if orphan == 0 {
		t.Fatalf("orphan %s not found in the namespace", out)
	}
	// The brief's case, many times: short-lived orphans.
	for range 10 {
		si.run(t, "sleep 0.1 & exit")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", orphan))
		z := si.zombies(t)
		if errors.Is(err, os.ErrNotExist) && len(z) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reaped: orphan %d exists=%v, zombies %v", orphan, err == nil, z)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPID1RestartsServer(t *testing.T) {
	si := startInit(t)
	old := si.server(t)
	if err := syscall.Kill(old.hostPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if strings.Contains(si.Log.String(), "server exited unexpectedly") && strings.Count(si.Log.String(), "server started") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not restarted:\n%s", si.Log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	si.WaitHealthy(t)
	if now := si.server(t); now.hostPID == old.hostPID {
		t.Fatal("same server")
	}
	// The restarted server serves the same socket.
	if out, _ := si.run(t, "echo again"); out != "again\n" {
		t.Fatalf("stdout %q", out)
	}
	if z := si.zombies(t); len(z) != 0 {
		t.Errorf("zombies %v", z)
	}
}

func TestPID1StopsOnSIGTERM(t *testing.T) {
	si := startInit(t)
	// A running process must not keep the sandbox up, and a forwarded SIGHUP must not stop it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := si.client.Start(ctx, connect.NewRequest(&process.StartRequest{Process: &process.ProcessConfig{Cmd: "sleep", Args: []string{"1000"}}}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Receive() || s.Msg().GetEvent().GetStart() == nil {
		t.Fatalf("no start event: %v", s.Err())
	}
	server := si.server(t)
	if err := syscall.Kill(si.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if now := si.server(t); now.hostPID != server.hostPID {
		t.Fatal("SIGHUP restarted the server")
	}
	if err := syscall.Kill(si.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-si.Exited():
		if err := si.ExitErr(); err != nil {
			t.Fatalf("init exited with %v, want 0\n%s", err, si.Log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("init did not stop:\n%s", si.Log.String())
	}
	logs := si.Log.String()
	for _, want := range []string{"signal forwarded by init", "stopping", "server stopped"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	// The stream of the killed process ended with its end event.
	for s.Receive() {
		if e := s.Msg().GetEvent().GetEnd(); e != nil && e.GetStatus() != "signal: killed" {
			t.Errorf("end %v", e)
		}
	}
}

// vmHWM is the peak resident set size of a process.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// The real server's peak memory stays bounded while a process floods 1 GiB to a slow reader.
func TestServerMemoryBoundedUnderFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB")
	}
	si := startInit(t)
	server := si.server(t)
	before := vmHWM(t, server.hostPID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The binary codec keeps the test fast; the buffering is the same for JSON.
	hc := &http.Client{Transport: &http.Transport{}}
	defer hc.CloseIdleConnections()
	client := processconnect.NewProcessClient(hc, si.URL, connect.WithAcceptCompression("gzip", nil, nil))
	f := false
	s, err := client.Start(ctx, connect.NewRequest(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "head", Args: []string{"-c", strconv.Itoa(1 << 30), "/dev/zero"}}, Stdin: &f,
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var got int64
	var end *process.ProcessEvent_EndEvent
	for i := 0; s.Receive(); i++ {
		ev := s.Msg().GetEvent()
		got += int64(len(ev.GetData().GetStdout()))
		if ev.GetEnd() != nil {
			end = ev.GetEnd()
		}
		if i < 200 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if got != 1<<30 || end.GetExitCode() != 0 {
		t.Fatalf("received %d bytes, end %v", got, end)
	}
	peak := vmHWM(t, server.hostPID)
	t.Logf("server peak RSS %d MiB (before: %d MiB)", peak>>20, before>>20)
	if peak > 128<<20 {
		t.Errorf("server peak RSS %d MiB while streaming 1 GiB", peak>>20)
	}
}

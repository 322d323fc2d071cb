package procservice_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/procservice"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
)

// heapSampler records the peak heap in use of this process (envd runs in it) while it runs.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
	base uint64
}

func sampleHeap() *heapSampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h := &heapSampler{stop: make(chan struct{}), base: ms.HeapInuse}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				h.peak = max(h.peak, ms.HeapInuse)
			}
		}
	}()
	return h
}

// growth stops sampling and returns the peak heap growth over the baseline.
func (h *heapSampler) growth() uint64 {
	close(h.stop)
	h.wg.Wait()
	if h.peak < h.base {
		return 0
	}
	return h.peak - h.base
}

// wchar is how many bytes a process has written (its /proc/PID/io).
func wchar(t *testing.T, pid uint32) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

const (
	gib = 1 << 30
	mib = 1 << 20
	// heapBound is far below the data moved (1 GiB), and above what a bounded buffer, the HTTP
	// layers and the garbage collector's slack need.
	heapBound = 96 * mib
)

// A process flooding stdout, read by a slow client: the process is made to wait (back-pressure),
// memory stays bounded, and every byte arrives.
func TestFloodWithSlowReader(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB")
	}
	w := newWorld(t)
	ctx := ctxT(t, 5*time.Minute)
	heap := sampleHeap()
	s, err := w.proto.Start(ctx, connect.NewRequest(withStdin(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "head", Args: []string{"-c", strconv.Itoa(gib), "/dev/zero"}},
	}, false)))
	if err != nil {
		t.Fatal(err)
	}
	rd := readStart(t, s)
	var received int64
	var maxAhead int64
	for i := 0; rd.next(); i++ {
		d := s.Msg().GetEvent().GetData()
		if len(d.GetStderr()) > 0 {
			t.Fatalf("stderr: %q", d.GetStderr())
		}
		if !bytes.Equal(d.GetStdout(), make([]byte, len(d.GetStdout()))) {
			t.Fatal("data corrupted")
		}
		received += int64(len(d.GetStdout()))
		rd.out.stdout.Reset()
		if i < 300 {
			// Slow phase: the process must be held back, not buffered for.
			time.Sleep(5 * time.Millisecond)
			if wc := wchar(t, rd.out.pid); wc >= 0 {
				maxAhead = max(maxAhead, wc-received)
			}
		}
	}
	growth := heap.growth()
	if received != gib {
		t.Fatalf("received %d bytes, want %d", received, gib)
	}
	if rd.out.end.GetExitCode() != 0 {
		t.Fatalf("end %v", rd.out.end)
	}
	t.Logf("peak heap growth %d MiB; writer at most %d MiB ahead of the reader", growth/mib, maxAhead/mib)
	if growth > heapBound {
		t.Errorf("heap grew by %d MiB while streaming 1 GiB", growth/mib)
	}
	// Ahead = envd's buffer + pipe + socket buffers: bounded, nowhere near the 1 GiB written.
	if maxAhead > 64*mib {
		t.Errorf("the process wrote %d MiB more than the reader had read: no back-pressure", maxAhead/mib)
	}
}

// A detached flooding process never blocks (its output goes to a ring) and memory stays bounded;
// the next stream to attach receives the ring's tail, no more than the buffer holds.
func TestDetachedFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB")
	}
	const bufSize = 1 * mib
	w := newWorld(t, func(c *envd.Config) { c.MaxBufferedOutput = bufSize })
	ctx := ctxT(t, 5*time.Minute)
	heap := sampleHeap()

	startCtx, detach := context.WithCancel(ctx)
	s, err := w.proto.Start(startCtx, connect.NewRequest(withStdin(sh(fmt.Sprintf("head -c %d /dev/zero; echo; echo TAIL; touch \"$HOME/flooded\"; exec sleep 60", gib)), false)))
	if err != nil {
		t.Fatal(err)
	}
	rd := readStart(t, s)
	pid := rd.out.pid
	detach()
	s.Close()

	flag := filepath.Join(w.dir, "home/user/flooded")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if _, err := os.Stat(flag); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("detached process blocked: wrote %d bytes", wchar(t, pid))
		}
		time.Sleep(50 * time.Millisecond)
	}
	growth := heap.growth()
	t.Logf("peak heap growth %d MiB", growth/mib)
	if growth > heapBound {
		t.Errorf("heap grew by %d MiB while a detached process wrote 1 GiB", growth/mib)
	}

	c, err := w.proto.Connect(ctx, connect.NewRequest(&process.ConnectRequest{Process: pidSel(pid)}))
	if err != nil {
		t.Fatal(err)
	}
	rc := readConnect(t, c)
	if !rc.until(func(o *outcome) bool { return strings.HasSuffix(o.stdout.String(), "\nTAIL\n") }) {
		t.Fatalf("replay does not end with TAIL: %d bytes", rc.out.stdout.Len())
	}
	n := rc.out.stdout.Len()
	t.Logf("replayed %d bytes", n)
	if n > bufSize || n < bufSize/2 {
		t.Errorf("replayed %d bytes, want the ring's tail (about %d)", n, bufSize)
	}
	if _, err := w.proto.SendSignal(ctx, connect.NewRequest(&process.SendSignalRequest{Process: pidSel(pid), Signal: process.Signal_SIGNAL_SIGKILL})); err != nil {
		t.Fatal(err)
	}
	if o := rc.all(); o.end.GetStatus() != "signal: killed" {
		t.Errorf("end %v", o.end)
	}
}

// Output a process wrote before exiting reaches a stream that stalls for longer than the drain
// limits: those limits are for background children's output, not for back-pressure.
func TestSlowReaderGetsTheTailAfterExit(t *testing.T) {
	// The system's python (the world's user cannot reach root's own installs).
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skip("needs /usr/bin/python3 to enlarge its stdout pipe")
	}
	// The smallest buffer (one chunk) cannot hold what is left in the pipe at exit.
	w := newServiceWorld(t, procservice.Config{MaxBufferedOutput: 1, DrainIdle: 50 * time.Millisecond, DrainMax: 100 * time.Millisecond}, true)
	ctx := ctxT(t, 2*time.Minute)
	const total = 300000
	// A 1 MiB pipe takes all the output at once: the process exits with most of it unread.
	script := fmt.Sprintf("import fcntl, sys\nfcntl.fcntl(1, 1031, 1 << 20)\nsys.stdout.buffer.write(b'x' * %d)\n", total)
	s, err := w.proto.Start(ctx, connect.NewRequest(withStdin(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: python, Args: []string{"-c", script}},
	}, false)))
	if err != nil {
		t.Fatal(err)
	}
	rd := readStart(t, s)
	// Read nothing until the process has exited and been reaped, and for ten times DrainMax more.
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", rd.out.pid)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("process did not exit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second)
	o := rd.all()
	if o.stdout.Len() != total || o.end.GetExitCode() != 0 {
		t.Fatalf("received %d of %d bytes, end %v", o.stdout.Len(), total, o.end)
	}
}

// Close does not hang on output owed to a stream that never reads.
func TestCloseWithStuckReader(t *testing.T) {
	w := newServiceWorld(t, procservice.Config{MaxBufferedOutput: 1, CloseWait: 200 * time.Millisecond}, true)
	ctx := ctxT(t, time.Minute)
	s, err := w.proto.Start(ctx, connect.NewRequest(withStdin(&process.StartRequest{
		Process: &process.ProcessConfig{Cmd: "head", Args: []string{"-c", strconv.Itoa(64 * mib), "/dev/zero"}},
	}, false)))
	if err != nil {
		t.Fatal(err)
	}
	rd := readStart(t, s) // and read nothing more: the process blocks on its output
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Blocked once every buffer is full: its output stops growing.
		a := wchar(t, rd.out.pid)
		time.Sleep(100 * time.Millisecond)
		if b := wchar(t, rd.out.pid); a > 0 && a == b {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("process never blocked")
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- w.svc.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung")
	}
	waitGone(t, int(rd.out.pid), 10*time.Second)
}

package fsservice_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd/internal/envdtest"
	"github.com/agentrun/agent/sandbox/envd/internal/fsservice"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

// waitTimeout bounds every wait for an event; it is a failure deadline, not a timing assertion.
const waitTimeout = 20 * time.Second

type streamItem struct {
	msg *filesystem.WatchDirResponse
	err error
}

// watch opens a WatchDir stream, checks that its first message is `start`, and returns the rest.
func watch(t *testing.T, client filesystemconnect.FilesystemClient, req *connect.Request[filesystem.WatchDirRequest]) <-chan streamItem {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := client.WatchDir(c, req)
	if err != nil {
		t.Fatalf("WatchDir: %v", err)
	}
	if !stream.Receive() {
		t.Fatalf("WatchDir ended before start: %v", stream.Err())
	}
	if stream.Msg().GetStart() == nil {
		t.Fatalf("first message is %v, want start", stream.Msg())
	}
	out := make(chan streamItem, 1024)
	go func() {
		defer close(out)
		for stream.Receive() {
			out <- streamItem{msg: stream.Msg()}
		}
		out <- streamItem{err: stream.Err()}
		stream.Close()
	}()
	return out
}

type ev struct {
	name string
	typ  filesystem.EventType
}

func (e ev) String() string { return e.name + ":" + strings.TrimPrefix(e.typ.String(), "EVENT_TYPE_") }

// until collects filesystem events until one matches want; it fails on a stream end or timeout.
func until(t *testing.T, ch <-chan streamItem, want ev) []ev {
	t.Helper()
	var seen []ev
	deadline := time.After(waitTimeout)
	for {
		select {
		case it, ok := <-ch:
			if !ok || it.err != nil {
				t.Fatalf("stream ended waiting for %v (seen %v): %v", want, seen, it.err)
			}
			fe := it.msg.GetFilesystem()
			if fe == nil {
				continue
			}
			got := ev{fe.GetName(), fe.GetType()}
			seen = append(seen, got)
			if got == want {
				return seen
			}
		case <-deadline:
			t.Fatalf("no %v event (seen %v)", want, seen)
		}
	}
}

const (
	create = filesystem.EventType_EVENT_TYPE_CREATE
	write  = filesystem.EventType_EVENT_TYPE_WRITE
	remove = filesystem.EventType_EVENT_TYPE_REMOVE
	rename = filesystem.EventType_EVENT_TYPE_RENAME
	chmod  = filesystem.EventType_EVENT_TYPE_CHMOD
)

func contains(evs []ev, name string) bool {
	for _, e := range evs {
		if e.name == name {
			return true
		}
	}
	return false
}

func TestWatchDirEvents(t *testing.T) {
	e := newEnv(t)
	must(t, os.MkdirAll(e.host("/home/user/w/sub"), 0o755))
	ch := watch(t, e.client, connect.NewRequest(&filesystem.WatchDirRequest{Path: "w"}))
	p := e.host("/home/user/w") + "/"

	must(t, os.WriteFile(p+"a", nil, 0o644))
	until(t, ch, ev{"a", create})
	f, err := os.OpenFile(p+"a", os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.WriteString("more")
	must(t, err)
	f.Close()
	until(t, ch, ev{"a", write})
	must(t, os.Chmod(p+"a", 0o600))
	until(t, ch, ev{"a", chmod})
	must(t, os.Rename(p+"a", p+"b"))
	until(t, ch, ev{"a", rename})
	until(t, ch, ev{"b", create})
	must(t, os.Remove(p+"b"))
	until(t, ch, ev{"b", remove})

	// Not recursive: nothing from below sub. Events of one watch arrive in order, so everything
	// before the marker's event has been seen.
	must(t, os.WriteFile(p+"sub/x", []byte("x"), 0o644))
	must(t, os.WriteFile(p+"marker", nil, 0o644))
	if seen := until(t, ch, ev{"marker", create}); contains(seen, "sub/x") {
		t.Errorf("non-recursive watch reported sub/x: %v", seen)
	}
}

func TestWatchDirRecursive(t *testing.T) {
	e := newEnv(t)
	must(t, os.MkdirAll(e.host("/home/user/rw/nested"), 0o755))
	e.write(t, "/home/user/rw/nested/f", "old")
	ch := watch(t, e.client, connect.NewRequest(&filesystem.WatchDirRequest{Path: "/home/user/rw", Recursive: true}))
	p := e.host("/home/user/rw") + "/"

	must(t, os.WriteFile(p+"nested/f", []byte("new"), 0o644))
	until(t, ch, ev{"nested/f", write})

	// A directory created after the watch started is watched too.
	must(t, os.Mkdir(p+"n2", 0o755))
	until(t, ch, ev{"n2", create})
	must(t, os.WriteFile(p+"n2/f", []byte("x"), 0o644))
	until(t, ch, ev{"n2/f", write})

	// A directory created with its contents at once (mkdir -p): the contents are reported.
	must(t, os.MkdirAll(p+"deep/er/est", 0o755))
	until(t, ch, ev{"deep/er/est", create})
	must(t, os.WriteFile(p+"deep/er/est/g", []byte("x"), 0o644))
	until(t, ch, ev{"deep/er/est/g", write})

	// Renamed directories report their new names.
	must(t, os.Rename(p+"n2", p+"n3"))
	until(t, ch, ev{"n3", create})
	must(t, os.WriteFile(p+"n3/g", []byte("x"), 0o644))
	until(t, ch, ev{"n3/g", write})

	// A directory moved out of the tree is no longer watched.
	must(t, os.Rename(p+"n3", e.host("/home/user/gone")))
	until(t, ch, ev{"n3", rename})
	must(t, os.WriteFile(e.host("/home/user/gone/h"), []byte("x"), 0o644))
	must(t, os.RemoveAll(p+"deep"))
	until(t, ch, ev{"deep", remove})
	must(t, os.WriteFile(p+"marker", nil, 0o644))
	seen := until(t, ch, ev{"marker", create})
	for _, s := range seen {
		if strings.HasSuffix(s.name, "/h") {
			t.Errorf("event from a directory moved out of the tree: %v", seen)
		}
	}

	// A symlinked directory is not followed.
	must(t, os.MkdirAll(e.host("/home/user/elsewhere"), 0o755))
	must(t, os.Symlink("/home/user/elsewhere", p+"link"))
	until(t, ch, ev{"link", create})
	must(t, os.WriteFile(e.host("/home/user/elsewhere/z"), nil, 0o644))
	must(t, os.WriteFile(p+"marker2", nil, 0o644))
	if seen := until(t, ch, ev{"marker2", create}); contains(seen, "link/z") {
		t.Errorf("recursive watch followed a symlink: %v", seen)
	}
}

func TestWatchDirIncludeEntry(t *testing.T) {
	e := newEnv(t)
	must(t, os.MkdirAll(e.host("/home/user/ie"), 0o755))
	ch := watch(t, e.client, connect.NewRequest(&filesystem.WatchDirRequest{Path: "ie", IncludeEntry: true}))
	must(t, os.WriteFile(e.host("/home/user/ie/file"), []byte("12345"), 0o644))
	var created, removed *filesystem.FilesystemEvent
	deadline := time.After(waitTimeout)
	for removed == nil {
		select {
		case it := <-ch:
			if it.err != nil {
				t.Fatal(it.err)
			}
			fe := it.msg.GetFilesystem()
			switch {
			case fe == nil:
			case fe.GetType() == create && created == nil:
				created = fe
				must(t, os.Remove(e.host("/home/user/ie/file")))
			case fe.GetType() == remove:
				removed = fe
			}
		case <-deadline:
			t.Fatal("no create/remove events")
		}
	}
	en := created.GetEntry()
	if en == nil || en.GetPath() != "/home/user/ie/file" || en.GetName() != "file" || en.GetType() != filesystem.FileType_FILE_TYPE_FILE {
		t.Errorf("create event entry = %+v", en)
	}
	if removed.Entry != nil {
		t.Errorf("remove event carries an entry: %+v", removed.Entry)
	}
}

func TestWatchDirKeepalive(t *testing.T) {
	e := newEnv(t)
	req := connect.NewRequest(&filesystem.WatchDirRequest{Path: "/tmp"})
	req.Header().Set("Keepalive-Ping-Interval", "1")
	ch := watch(t, e.client, req)
	deadline := time.After(waitTimeout)
	for {
		select {
		case it := <-ch:
			if it.err != nil {
				t.Fatal(it.err)
			}
			if it.msg.GetKeepalive() != nil {
				return
			}
		case <-deadline:
			t.Fatal("no keepalive with Keepalive-Ping-Interval: 1")
		}
	}
}

func TestWatchDirErrors(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/file", "x")
	for path, code := range map[string]connect.Code{"missing": connect.CodeNotFound, "file": connect.CodeInvalidArgument, "~x": connect.CodeInvalidArgument} {
		stream, err := e.client.WatchDir(ctx(t), connect.NewRequest(&filesystem.WatchDirRequest{Path: path}))
		if err == nil {
			if stream.Receive() {
				t.Fatalf("WatchDir(%s) sent %v", path, stream.Msg())
			}
			err = stream.Err()
			stream.Close()
		}
		wantCode(t, err, code)
		_, err = e.client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: path}))
		wantCode(t, err, code)
	}
}

func TestPollingWatcher(t *testing.T) {
	e := newEnv(t)
	must(t, os.MkdirAll(e.host("/home/user/pw/sub"), 0o755))
	res, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "pw", Recursive: true, IncludeEntry: true}))
	must(t, err)
	id := res.Msg.GetWatcherId()
	if id == "" {
		t.Fatal("empty watcher id")
	}
	must(t, os.WriteFile(e.host("/home/user/pw/sub/f"), []byte("x"), 0o644))
	must(t, os.Remove(e.host("/home/user/pw/sub/f")))

	var seen []ev
	deadline := time.Now().Add(waitTimeout)
	for !contains(seen, "sub/f") || seen[len(seen)-1] != (ev{"sub/f", remove}) {
		if time.Now().After(deadline) {
			t.Fatalf("events so far: %v", seen)
		}
		r, err := e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
		must(t, err)
		for _, fe := range r.Msg.GetEvents() {
			seen = append(seen, ev{fe.GetName(), fe.GetType()})
			// The entry is best-effort (the file may be gone already) but never wrong.
			if fe.GetType() == create && fe.Entry != nil && fe.GetEntry().GetPath() != "/home/user/pw/sub/f" {
				t.Errorf("create entry %+v", fe.GetEntry())
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if seen[0] != (ev{"sub/f", create}) {
		t.Errorf("first event %v, want sub/f create (all: %v)", seen[0], seen)
	}
	_, err = e.client.RemoveWatcher(ctx(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: id}))
	must(t, err)
	_, err = e.client.GetWatcherEvents(ctx(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: id}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = e.client.RemoveWatcher(ctx(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: id}))
	wantCode(t, err, connect.CodeNotFound)
}

func TestWatcherLimitAndExpiry(t *testing.T) {
	w := envdtest.NewWorld(t)
	client := startService(t, w, func(c *fsservice.Config) {
		c.MaxWatchers = 1
		c.WatcherIdleTimeout = 200 * time.Millisecond
	})
	res, err := client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "/tmp"}))
	must(t, err)
	_, err = client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "/tmp"}))
	wantCode(t, err, connect.CodeResourceExhausted)
	stream, err := client.WatchDir(ctx(t), connect.NewRequest(&filesystem.WatchDirRequest{Path: "/tmp"}))
	if err == nil {
		stream.Receive()
		err = stream.Err()
		stream.Close()
	}
	wantCode(t, err, connect.CodeResourceExhausted)

	// Not polled for far longer than the idle timeout: the janitor removed it and freed its slot.
	time.Sleep(15 * 200 * time.Millisecond)
	_, err = client.GetWatcherEvents(ctx(t), connect.NewRequest(&filesystem.GetWatcherEventsRequest{WatcherId: res.Msg.GetWatcherId()}))
	wantCode(t, err, connect.CodeNotFound)
	res, err = client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "/tmp"}))
	must(t, err)
	_, err = client.RemoveWatcher(ctx(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: res.Msg.GetWatcherId()}))
	must(t, err)
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	return len(ents)
}

// TestWatchersReleaseResources opens and closes many streams and polling watchers: their inotify
// descriptors and goroutines must all go away.
func TestWatchersReleaseResources(t *testing.T) {
	e := newEnv(t)
	must(t, os.MkdirAll(e.host("/home/user/r/a/b"), 0o755))
	runtime.GC()
	fds, goroutines := countFDs(t), runtime.NumGoroutine()
	for range 20 {
		c, cancel := context.WithCancel(ctx(t))
		stream, err := e.client.WatchDir(c, connect.NewRequest(&filesystem.WatchDirRequest{Path: "r", Recursive: true}))
		must(t, err)
		if !stream.Receive() {
			t.Fatal(stream.Err())
		}
		cancel()
		stream.Close()
		res, err := e.client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "r", Recursive: true}))
		must(t, err)
		_, err = e.client.RemoveWatcher(ctx(t), connect.NewRequest(&filesystem.RemoveWatcherRequest{WatcherId: res.Msg.GetWatcherId()}))
		must(t, err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		f, g := countFDs(t), runtime.NumGoroutine()
		if f <= fds+2 && g <= goroutines+5 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("descriptors %d → %d, goroutines %d → %d", fds, f, goroutines, g)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchDirWireDeadline speaks the Connect streaming protocol by hand, as the SDKs' JSON
// transports do: an enveloped request, application/connect+json frames back, `start` first, and a
// Connect-Timeout-Ms deadline (the JS SDK's timeoutMs) ending the stream with an end-stream frame
// carrying deadline_exceeded, as envd does.
func TestWatchDirWireDeadline(t *testing.T) {
	e := newEnv(t)
	msg := []byte(`{"path":"/tmp"}`)
	frame := append([]byte{0, 0, 0, 0, byte(len(msg))}, msg...)
	req, err := http.NewRequestWithContext(ctx(t), http.MethodPost, e.base+"/filesystem.Filesystem/WatchDir", bytes.NewReader(frame))
	must(t, err)
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Connect-Protocol-Version", "1")
	req.Header.Set("Connect-Timeout-Ms", "300")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var frames []string
	var end []byte
	for end == nil {
		var hdr [5]byte
		if _, err := io.ReadFull(res.Body, hdr[:]); err != nil {
			t.Fatalf("after %v: %v", frames, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(res.Body, body); err != nil {
			t.Fatal(err)
		}
		if hdr[0]&0x02 != 0 {
			end = body
		} else {
			frames = append(frames, string(body))
		}
	}
	if len(frames) == 0 || frames[0] != `{"start":{}}` {
		t.Errorf("frames %v, want start first", frames)
	}
	var es struct {
		Error struct{ Code string } `json:"error"`
	}
	must(t, json.Unmarshal(end, &es))
	if es.Error.Code != "deadline_exceeded" {
		t.Errorf("end-stream %s, want deadline_exceeded", end)
	}
}

// TestRecursiveWatchLimit: a recursive watch that would need more directories than allowed is
// refused, and one that grows beyond the limit ends instead of silently missing directories.
func TestRecursiveWatchLimit(t *testing.T) {
	w := envdtest.NewWorld(t)
	for _, d := range []string{"big/a", "big/b", "big/c", "small/a"} {
		must(t, os.MkdirAll(filepath.Join(w, d), 0o755))
	}
	client := startService(t, w, func(c *fsservice.Config) { c.MaxWatchesPerWatch = 3 })
	_, err := client.CreateWatcher(ctx(t), connect.NewRequest(&filesystem.CreateWatcherRequest{Path: "/big", Recursive: true}))
	wantCode(t, err, connect.CodeResourceExhausted)

	ch := watch(t, client, connect.NewRequest(&filesystem.WatchDirRequest{Path: "/small", Recursive: true}))
	must(t, os.Mkdir(filepath.Join(w, "small/b"), 0o755)) // the third watch: fine
	until(t, ch, ev{"b", create})
	must(t, os.Mkdir(filepath.Join(w, "small/c"), 0o755)) // the fourth: over the limit
	deadline := time.After(waitTimeout)
	for {
		select {
		case it, ok := <-ch:
			if !ok {
				t.Fatal("stream closed without an error")
			}
			if it.err != nil {
				wantCode(t, it.err, connect.CodeResourceExhausted)
				return
			}
		case <-deadline:
			t.Fatal("watch kept running past its limit")
		}
	}
}

package fsservice

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// TestPollQueueDropsOldest checks the polling watcher's bounded queue: when full, the oldest events
// go and are counted.
func TestPollQueueDropsOldest(t *testing.T) {
	p := &pollWatcher{queue: make([]*filesystem.FilesystemEvent, 3)}
	var dropped uint64
	for i := range 10 {
		dropped = p.push(&filesystem.FilesystemEvent{Name: fmt.Sprint(i)})
	}
	if dropped != 7 || p.dropped != 7 {
		t.Fatalf("dropped = %d (%d), want 7", dropped, p.dropped)
	}
	got, err := p.take(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "7" || got[1].Name != "8" || got[2].Name != "9" {
		t.Fatalf("queue = %v, want the newest three", got)
	}
	if got, _ := p.take(time.Now()); len(got) != 0 {
		t.Fatalf("second take = %v, want empty", got)
	}
	p.push(&filesystem.FilesystemEvent{Name: "x"})
	if got, _ := p.take(time.Now()); len(got) != 1 || got[0].Name != "x" {
		t.Fatalf("after wrap = %v", got)
	}
}

func TestKeepaliveInterval(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": DefaultKeepalive, "x": DefaultKeepalive, "0": DefaultKeepalive, "-5": DefaultKeepalive,
		"1": time.Second, "50": 50 * time.Second, "999999999": maxKeepalive,
	} {
		if got := keepaliveInterval(in); got != want {
			t.Errorf("keepaliveInterval(%q) = %v, want %v", in, got, want)
		}
	}
}

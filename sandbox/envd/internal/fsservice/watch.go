package fsservice

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"path"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// maxKeepalive bounds the Keepalive-Ping-Interval a client may ask for.
const maxKeepalive = 24 * time.Hour

// keepaliveInterval reads the Keepalive-Ping-Interval header (seconds), as envd does.
func keepaliveInterval(h string) time.Duration {
	n, err := strconv.Atoi(h)
	if err != nil || n <= 0 {
		return DefaultKeepalive
	}
	return min(time.Duration(n)*time.Second, maxKeepalive)
}

// carriesEntry reports whether an event's path should still hold the entry it is about: remove and
// rename events name a path whose entry is gone (a stat could find a replacement).
func carriesEntry(op filesystem.EventType) bool {
	switch op {
	case filesystem.EventType_EVENT_TYPE_CREATE, filesystem.EventType_EVENT_TYPE_WRITE, filesystem.EventType_EVENT_TYPE_CHMOD:
		return true
	}
	return false
}

// startWatch validates a watch request, takes a watcher slot and starts inotify. release gives the
// slot back and must be called once the watch is closed.
func (s *Service) startWatch(ctx context.Context, p string, recursive, allowNetwork bool) (w *inotifyWatch, world string, release func(), err error) {
	_, world, err = s.resolve(ctx, p)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := s.cfg.Root.Stat(world)
	if err != nil {
		return nil, "", nil, notFoundOr(err, "path %s not found", world)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, "", nil, errf(connect.CodeInvalidArgument, "path %s is not a directory", world)
	}
	select {
	case s.watchSlots <- struct{}{}:
	default:
		return nil, "", nil, errf(connect.CodeResourceExhausted, "too many watchers (at most %d)", s.cfg.MaxWatchers)
	}
	release = func() { <-s.watchSlots }
	w, err = newInotifyWatch(s.cfg.Root, world, recursive, allowNetwork, s.cfg.MaxWatchesPerWatch, s.log)
	if err != nil {
		release()
		return nil, "", nil, connect.NewError(watchErrCode(err), err)
	}
	return w, world, release, nil
}

// watchErrCode is the Connect code of an error that ended a watch.
func watchErrCode(err error) connect.Code {
	if errors.Is(err, errOverflow) || errors.Is(err, errTooManyWatches) {
		return connect.CodeResourceExhausted
	}
	return codeOf(err)
}

// event builds the FilesystemEvent of e, with the entry when asked and meaningful.
func (s *Service) event(e fsEvent, base string, includeEntry bool, ents *entries) *filesystem.FilesystemEvent {
	ev := &filesystem.FilesystemEvent{Name: utf8Text(e.name), Type: e.op}
	if includeEntry && carriesEntry(e.op) {
		info, err := ents.info(path.Join(base, e.name))
		if err == nil {
			ev.Entry = info
		} else if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("entry info for filesystem event", "path", path.Join(base, e.name), "err", err)
		}
	}
	return ev
}

// WatchDir streams a directory's events: `start` first, then filesystem events as they happen and
// a keepalive after every Keepalive-Ping-Interval seconds of silence. A client that reads slowly
// holds inotify back; if the kernel queue overflows the stream ends with resource_exhausted.
func (s *Service) WatchDir(ctx context.Context, req *connect.Request[filesystem.WatchDirRequest], stream *connect.ServerStream[filesystem.WatchDirResponse]) error {
	w, base, release, err := s.startWatch(ctx, req.Msg.GetPath(), req.Msg.GetRecursive(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return err
	}
	defer release()
	if !s.track(w) {
		w.Close()
		return errf(connect.CodeUnavailable, "envd is shutting down")
	}
	defer s.untrack(w)
	defer w.Close()

	events := make(chan fsEvent, 64)
	runErr := make(chan error, 1)
	go func() {
		defer close(events)
		runErr <- w.run(func(e fsEvent) bool {
			select {
			case events <- e:
				return true
			case <-ctx.Done():
				return false
			}
		})
	}()

	if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Start{Start: &filesystem.WatchDirResponse_StartEvent{}}}); err != nil {
		return err
	}
	interval := keepaliveInterval(req.Header().Get("Keepalive-Ping-Interval"))
	keepalive := time.NewTicker(interval)
	defer keepalive.Stop()
	ents := s.entries()
	for {
		select {
		case <-ctx.Done():
			// As envd: a Connect-Timeout-Ms deadline ends the stream with deadline_exceeded.
			return ctx.Err()
		case <-keepalive.C:
			if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Keepalive{Keepalive: &filesystem.WatchDirResponse_KeepAlive{}}}); err != nil {
				return err
			}
		case e, ok := <-events:
			if !ok {
				err := <-runErr
				if err == nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return errf(connect.CodeUnavailable, "watcher closed")
				}
				return connect.NewError(watchErrCode(err), err)
			}
			ev := s.event(e, base, req.Msg.GetIncludeEntry(), ents)
			if err := stream.Send(&filesystem.WatchDirResponse{Event: &filesystem.WatchDirResponse_Filesystem{Filesystem: ev}}); err != nil {
				return err
			}
			keepalive.Reset(interval)
		}
	}
}

func (s *Service) track(w *inotifyWatch) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.streams[w] = struct{}{}
	return true
}

func (s *Service) untrack(w *inotifyWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, w)
}

// pollWatcher is the polling form of a watch: events wait in a bounded queue until
// GetWatcherEvents takes them; when it is full the oldest are dropped and counted.
type pollWatcher struct {
	id      string
	w       *inotifyWatch
	release func()
	done    chan struct{}

	mu       sync.Mutex
	queue    []*filesystem.FilesystemEvent // ring buffer
	head, n  int
	dropped  uint64
	err      error
	lastPoll time.Time
}

func (p *pollWatcher) push(ev *filesystem.FilesystemEvent) (dropped uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == len(p.queue) {
		p.queue[p.head] = nil
		p.head = (p.head + 1) % len(p.queue)
		p.n--
		p.dropped++
		dropped = p.dropped
	}
	p.queue[(p.head+p.n)%len(p.queue)] = ev
	p.n++
	return dropped
}

func (p *pollWatcher) take(now time.Time) ([]*filesystem.FilesystemEvent, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastPoll = now
	if p.n == 0 && p.err != nil {
		return nil, p.err
	}
	out := make([]*filesystem.FilesystemEvent, 0, p.n)
	for i := range p.n {
		j := (p.head + i) % len(p.queue)
		out = append(out, p.queue[j])
		p.queue[j] = nil
	}
	p.head, p.n = 0, 0
	return out, nil
}

func (p *pollWatcher) idleSince() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastPoll
}

func (p *pollWatcher) close() {
	p.w.Close()
	<-p.done
	p.release()
}

// CreateWatcher starts a polling watcher and returns its id.
func (s *Service) CreateWatcher(ctx context.Context, req *connect.Request[filesystem.CreateWatcherRequest]) (*connect.Response[filesystem.CreateWatcherResponse], error) {
	w, base, release, err := s.startWatch(ctx, req.Msg.GetPath(), req.Msg.GetRecursive(), req.Msg.GetAllowNetworkMounts())
	if err != nil {
		return nil, err
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	p := &pollWatcher{
		id: "w" + hex.EncodeToString(raw[:]), w: w, release: release, done: make(chan struct{}),
		queue: make([]*filesystem.FilesystemEvent, s.cfg.WatcherQueue), lastPoll: time.Now(),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		w.Close()
		release()
		return nil, errf(connect.CodeUnavailable, "envd is shutting down")
	}
	s.watchers[p.id] = p
	s.mu.Unlock()

	includeEntry := req.Msg.GetIncludeEntry()
	log := s.log.With("watcher", p.id, "path", base)
	go func() {
		defer close(p.done)
		ents := s.entries()
		err := w.run(func(e fsEvent) bool {
			if d := p.push(s.event(e, base, includeEntry, ents)); d == 1 || (d > 0 && d%1000 == 0) {
				log.Warn("watcher queue full, dropping oldest events", "dropped", d, "queue", s.cfg.WatcherQueue)
			}
			return true
		})
		if err != nil {
			log.Warn("watcher stopped", "err", err)
			p.mu.Lock()
			p.err = connect.NewError(watchErrCode(err), err)
			p.mu.Unlock()
		}
	}()
	return connect.NewResponse(&filesystem.CreateWatcherResponse{WatcherId: p.id}), nil
}

// GetWatcherEvents returns and forgets the events a watcher gathered since the last poll. A watcher
// that failed reports its error once its remaining events are taken.
func (s *Service) GetWatcherEvents(ctx context.Context, req *connect.Request[filesystem.GetWatcherEventsRequest]) (*connect.Response[filesystem.GetWatcherEventsResponse], error) {
	s.mu.Lock()
	p, ok := s.watchers[req.Msg.GetWatcherId()]
	s.mu.Unlock()
	if !ok {
		return nil, errf(connect.CodeNotFound, "watcher with id %s not found", req.Msg.GetWatcherId())
	}
	events, err := p.take(time.Now())
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&filesystem.GetWatcherEventsResponse{Events: events}), nil
}

// RemoveWatcher stops a polling watcher.
func (s *Service) RemoveWatcher(ctx context.Context, req *connect.Request[filesystem.RemoveWatcherRequest]) (*connect.Response[filesystem.RemoveWatcherResponse], error) {
	s.mu.Lock()
	p, ok := s.watchers[req.Msg.GetWatcherId()]
	delete(s.watchers, req.Msg.GetWatcherId())
	s.mu.Unlock()
	if !ok {
		return nil, errf(connect.CodeNotFound, "watcher with id %s not found", req.Msg.GetWatcherId())
	}
	p.close()
	return connect.NewResponse(&filesystem.RemoveWatcherResponse{}), nil
}

// janitor removes polling watchers nobody polled for WatcherIdleTimeout: a client that went away
// must not hold inotify instances forever.
func (s *Service) janitor() {
	defer close(s.done)
	period := max(min(s.cfg.WatcherIdleTimeout/4, time.Minute), 10*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			var expired []*pollWatcher
			s.mu.Lock()
			for id, p := range s.watchers {
				if now.Sub(p.idleSince()) > s.cfg.WatcherIdleTimeout {
					delete(s.watchers, id)
					expired = append(expired, p)
				}
			}
			s.mu.Unlock()
			for _, p := range expired {
				s.log.Info("removing idle watcher", "watcher", p.id, "idle", s.cfg.WatcherIdleTimeout)
				p.close()
			}
		}
	}
}

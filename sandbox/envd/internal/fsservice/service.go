// Package fsservice implements the envd filesystem.Filesystem Connect service over a world root:
// Stat, MakeDir, Move, ListDir, Remove, the WatchDir stream and the polling watchers. Paths are world
// paths resolved against the requesting user's home; every file operation goes through fsroot, so
// nothing outside the root is ever reached.
package fsservice

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

// Defaults for Config's bounds.
const (
	DefaultMaxListEntries     = 100_000
	DefaultMaxWatchers        = 64
	DefaultMaxWatchesPerWatch = 65_536
	DefaultWatcherQueue       = 4096
	DefaultWatcherIdleTimeout = time.Hour
	DefaultKeepalive          = 90 * time.Second
)

// Config configures the service. Zero bounds take the defaults above.
type Config struct {
	Root   *fsroot.Root
	Users  *users.DB
	Logger *slog.Logger
	// MaxListEntries bounds the directory entries one ListDir reads.
	MaxListEntries int
	// MaxWatchers bounds concurrent watches (WatchDir streams and polling watchers together).
	MaxWatchers int
	// MaxWatchesPerWatch bounds the directories one recursive watch observes.
	MaxWatchesPerWatch int
	// WatcherQueue bounds the events a polling watcher holds between polls; the oldest are dropped.
	WatcherQueue int
	// WatcherIdleTimeout removes a polling watcher nobody polled for that long.
	WatcherIdleTimeout time.Duration
}

// Service implements filesystemconnect.FilesystemHandler. Each handler runs as the user that
// users.FromContext returns (the server always sets one).
type Service struct {
	filesystemconnect.UnimplementedFilesystemHandler
	cfg   Config
	log   *slog.Logger
	chown bool // envd runs as root, so what it creates for a user is handed to that user

	watchSlots chan struct{}
	mu         sync.Mutex
	watchers   map[string]*pollWatcher
	streams    map[*inotifyWatch]struct{}
	closed     bool
	stop       chan struct{}
	done       chan struct{}
}

// New returns the service and starts the janitor that expires idle polling watchers.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxListEntries <= 0 {
		cfg.MaxListEntries = DefaultMaxListEntries
	}
	if cfg.MaxWatchers <= 0 {
		cfg.MaxWatchers = DefaultMaxWatchers
	}
	if cfg.MaxWatchesPerWatch <= 0 {
		cfg.MaxWatchesPerWatch = DefaultMaxWatchesPerWatch
	}
	if cfg.WatcherQueue <= 0 {
		cfg.WatcherQueue = DefaultWatcherQueue
	}
	if cfg.WatcherIdleTimeout <= 0 {
		cfg.WatcherIdleTimeout = DefaultWatcherIdleTimeout
	}
	s := &Service{
		cfg:        cfg,
		log:        cfg.Logger.With("service", "filesystem"),
		chown:      os.Geteuid() == 0,
		watchSlots: make(chan struct{}, cfg.MaxWatchers),
		watchers:   map[string]*pollWatcher{},
		streams:    map[*inotifyWatch]struct{}{},
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	go s.janitor()
	return s
}

// Close stops every watcher and the janitor.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ws := s.watchers
	s.watchers = map[string]*pollWatcher{}
	streams := s.streams
	s.streams = map[*inotifyWatch]struct{}{}
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	for _, w := range ws {
		w.close()
	}
	for w := range streams {
		w.Close()
	}
	return nil
}

// request is what every handler needs about its caller.
type request struct {
	user     users.User
	uid, gid int // owner for what is created; -1 when envd cannot chown
}

func (s *Service) caller(ctx context.Context) (request, error) {
	u, ok := users.FromContext(ctx)
	if !ok {
		return request{}, connect.NewError(connect.CodeInternal, errors.New("request has no user"))
	}
	r := request{user: u, uid: -1, gid: -1}
	if s.chown {
		r.uid, r.gid = u.UID, u.GID
	}
	return r, nil
}

// abs resolves a client path for the caller; a bad path is invalid_argument.
func (r request) abs(p string) (string, error) {
	home := r.user.Home
	if home == "" {
		home = "/"
	}
	w, err := fsroot.Abs(p, home)
	if err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, err)
	}
	return w, nil
}

// resolve is the caller of ctx and the world path the client path p names for it.
func (s *Service) resolve(ctx context.Context, p string) (request, string, error) {
	r, err := s.caller(ctx)
	if err != nil {
		return request{}, "", err
	}
	w, err := r.abs(p)
	if err != nil {
		return request{}, "", err
	}
	return r, w, nil
}

// info describes the world path p, an error mapped to its Connect code.
func (s *Service) info(p string) (*filesystem.EntryInfo, error) {
	info, err := s.entries().info(p)
	if err != nil {
		return nil, toConnect(err)
	}
	return info, nil
}

// notFoundOr maps an error looking a path up: a missing path is not_found with the message
// format (which takes the path p), anything else gets its own code.
func notFoundOr(err error, format, p string) error {
	if errors.Is(err, fs.ErrNotExist) {
		return errf(connect.CodeNotFound, format, p)
	}
	return toConnect(err)
}

// toConnect maps a filesystem error to its Connect code. Messages carry world paths only.
func toConnect(err error) error {
	if err == nil {
		return nil
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		return err
	}
	return connect.NewError(codeOf(err), err)
}

func codeOf(err error) connect.Code {
	var errno unix.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.ENOENT:
			return connect.CodeNotFound
		case unix.EEXIST:
			return connect.CodeAlreadyExists
		case unix.ENOTDIR, unix.EISDIR, unix.EINVAL, unix.ENAMETOOLONG:
			return connect.CodeInvalidArgument
		case unix.EACCES, unix.EPERM, unix.EROFS:
			return connect.CodePermissionDenied
		case unix.ENOSPC, unix.EDQUOT, unix.EMFILE, unix.ENFILE:
			return connect.CodeResourceExhausted
		case unix.ELOOP, unix.ENOTEMPTY, unix.EXDEV, unix.EBUSY, unix.ETXTBSY:
			return connect.CodeFailedPrecondition
		case unix.EAGAIN:
			return connect.CodeUnavailable
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return connect.CodeNotFound
	case errors.Is(err, fs.ErrInvalid):
		return connect.CodeInvalidArgument
	case errors.Is(err, fsroot.ErrTooMany):
		return connect.CodeResourceExhausted
	case errors.Is(err, fsroot.ErrClosed):
		return connect.CodeUnavailable
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded
	}
	return connect.CodeInternal
}

func errf(code connect.Code, format string, args ...any) error {
	return connect.NewError(code, fmt.Errorf(format, args...))
}

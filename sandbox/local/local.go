// Package local is the default sandbox backend: each sandbox is an OCI container run by a real
// runtime (runc by default, crun or runsc selectable) with every namespace, root inside mapped to an
// unprivileged uid range outside, the moby default seccomp profile and capabilities less NET_RAW,
// cgroup limits on memory, pids and CPU, and a root filesystem made of a read-only template under a
// private overlay layer held in a size-capped disk image. Its init is `agent envd`, served over a
// listening socket the host creates and passes in, so the host never follows a path the sandbox owns.
//
// State lives under a data directory so every process sees every sandbox; GC reclaims what a crashed
// process left behind.
package local

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envdclient"
	"github.com/agentrun/agent/sandbox/local/cgroups"
	"github.com/agentrun/agent/sandbox/local/network"
	"github.com/agentrun/agent/sandbox/local/ociruntime"
	"github.com/agentrun/agent/sandbox/local/template"
)

// Defaults.
const (
	DefaultDataDir      = "/var/lib/agent"
	DefaultRuntime      = ociruntime.Runc
	DefaultTemplate     = template.Host
	DefaultMemory       = 1 << 30
	DefaultPids         = 512
	DefaultCPUs         = 1.0
	DefaultDisk         = 10 << 30
	DefaultLifetime     = 300 * time.Second
	DefaultNoFile       = 65536
	DefaultUIDBase      = 0x10000000
	DefaultMaxSlots     = 16384
	DefaultReadyTimeout = 30 * time.Second
	DefaultSlotDir      = "/run/agent/uid-slots"
	// UIDRange is the number of uids (and gids) each sandbox maps.
	UIDRange = 65536
)

// Limits bound one sandbox. Zero fields take the backend's defaults.
type Limits struct {
	MemoryBytes int64         `json:"memory_bytes"`
	Pids        int64         `json:"pids"`
	CPUs        float64       `json:"cpus"`
	DiskBytes   int64         `json:"disk_bytes"`
	Lifetime    time.Duration `json:"lifetime"`
	NoFile      uint64        `json:"nofile"`
}

func (l Limits) withDefaults(d Limits) Limits {
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Pids <= 0 {
		l.Pids = d.Pids
	}
	if l.CPUs <= 0 {
		l.CPUs = d.CPUs
	}
	if l.DiskBytes <= 0 {
		l.DiskBytes = d.DiskBytes
	}
	if l.Lifetime <= 0 {
		l.Lifetime = d.Lifetime
	}
	if l.NoFile == 0 {
		l.NoFile = d.NoFile
	}
	return l
}

// DefaultLimits are the limits a sandbox gets when neither the backend nor the request sets them.
func DefaultLimits() Limits {
	return Limits{MemoryBytes: DefaultMemory, Pids: DefaultPids, CPUs: DefaultCPUs, DiskBytes: DefaultDisk,
		Lifetime: DefaultLifetime, NoFile: DefaultNoFile}
}

// DataPlane is what an envd client provides: the file and command halves of sandbox.Sandbox.
type DataPlane interface {
	sandbox.Files
	sandbox.Commands
	Close() error
}

// ConnectInfo tells an envd client how to reach a sandbox's envd.
type ConnectInfo struct {
	ID string
	// SocketPath is the host-private unix socket envd serves on.
	SocketPath string
	// Dial connects to it (use as the HTTP transport's DialContext; any host name in URLs works).
	Dial func(ctx context.Context) (net.Conn, error)
	// AccessToken is the token envd requires as X-Access-Token (Options.AccessToken), or "".
	AccessToken string
}

// DefaultConnect is the envd client of a local sandbox: the envd protocol over the sandbox's
// host-private unix socket. envd's own default user (the template's) applies to requests that name
// none.
func DefaultConnect(ctx context.Context, info ConnectInfo) (DataPlane, error) {
	return envdclient.New(envdclient.Config{BaseURL: "http://envd", Dial: info.Dial})
}

// Config configures a Backend.
type Config struct {
	// DataDir holds sandbox state, runtime state and (by default) templates.
	DataDir string
	// TemplateDir holds templates; default DataDir/templates.
	TemplateDir string
	// Runtime is the default OCI runtime (runc, crun, runsc).
	Runtime string
	// Binary is the agent binary run as each sandbox's init (`agent envd`); default: this executable.
	Binary string
	// Limits are the defaults for every sandbox.
	Limits Limits
	// UIDBase is the first host uid handed to sandboxes; each gets UIDRange ids from there on.
	UIDBase uint32
	// MaxSlots bounds concurrent sandboxes (uid ranges).
	MaxSlots int
	// SlotDir records which uid ranges are taken, host-wide (shared by every data directory, so two
	// data directories never hand out the same range); default DefaultSlotDir.
	SlotDir string
	// ReadyTimeout bounds the wait for a new sandbox's envd to answer.
	ReadyTimeout time.Duration
	// Connect builds the envd client of a sandbox; default: an envdclient.Client dialling the
	// sandbox's host-private socket.
	Connect func(ctx context.Context, info ConnectInfo) (DataPlane, error)
	// Templates overrides the template builders (default: host and debian).
	Templates map[string]template.Builder
	// Progress receives template build progress.
	Progress func(template.Progress)
	// Pool keeps this many sandboxes ready, created with PoolTemplate, PoolLimits and PoolEnv on
	// the default runtime with network none. A Create asking for the same template, env and limits
	// (after defaults; the lifetime aside, it is set when a sandbox is claimed) claims one.
	Pool         int
	PoolTemplate string
	PoolLimits   Limits
	PoolEnv      map[string]string
	// PoolAccessToken makes pooled sandboxes require a random access token each, for requests
	// with GenerateAccessToken (agent serve).
	PoolAccessToken bool
	// SkipGC skips reclaiming leftovers when the backend opens.
	SkipGC bool
	// Network configures the networked modes (address pool, DNS upstreams, run directory).
	Network network.Config
	Logger  *slog.Logger
}

// Backend creates and tracks local sandboxes.
type Backend struct {
	cfg       Config
	sbDir     string
	rtDir     string
	cgParent  string
	cg        *cgroups.Host
	templates *template.Store
	slots     slots
	net       *network.Manager
	log       *slog.Logger

	mu    sync.Mutex
	owned map[string]*Sandbox
	pool  *pool
}

// New opens (creating when needed) the data directory and reclaims leftovers of crashed processes.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("local sandboxes need root (user namespaces, mounts, cgroups)")
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	dd, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	cfg.DataDir = dd
	if cfg.TemplateDir == "" {
		cfg.TemplateDir = filepath.Join(cfg.DataDir, "templates")
	}
	if cfg.Runtime == "" {
		cfg.Runtime = DefaultRuntime
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the agent binary: %w", err)
		}
		cfg.Binary = exe
	}
	if cfg.Binary, err = filepath.EvalSymlinks(cfg.Binary); err != nil {
		return nil, fmt.Errorf("resolving the agent binary: %w", err)
	}
	cfg.Limits = cfg.Limits.withDefaults(DefaultLimits())
	if cfg.UIDBase == 0 {
		cfg.UIDBase = DefaultUIDBase
	}
	if cfg.MaxSlots <= 0 {
		cfg.MaxSlots = DefaultMaxSlots
	}
	if uint64(cfg.UIDBase)+uint64(cfg.MaxSlots)*UIDRange > 1<<32-1 {
		return nil, fmt.Errorf("uid base %d with %d slots overflows the uid space", cfg.UIDBase, cfg.MaxSlots)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Connect == nil {
		cfg.Connect = DefaultConnect
	}
	if cfg.Templates == nil {
		cfg.Templates = map[string]template.Builder{
			template.Host:   template.HostBuilder{},
			template.Debian: template.DebianBuilder{},
		}
	}
	b := &Backend{
		cfg:   cfg,
		sbDir: filepath.Join(cfg.DataDir, "sandboxes"),
		rtDir: filepath.Join(cfg.DataDir, "runtime"),
		log:   cfg.Logger,
		owned: map[string]*Sandbox{},
	}
	b.cgParent = CgroupParentFor(cfg.DataDir)
	if cfg.SlotDir == "" {
		cfg.SlotDir = DefaultSlotDir
		b.cfg.SlotDir = DefaultSlotDir
	}
	for _, d := range []string{cfg.DataDir, b.sbDir, b.rtDir, cfg.SlotDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("creating data dir: %w", err)
		}
	}
	// The runtime's init runs as the sandbox's root, an unprivileged uid of the host: it must be able
	// to traverse (not list) the path to each sandbox's rootfs.
	for _, d := range []string{cfg.DataDir, b.sbDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
	}
	if err := checkTraversable(filepath.Dir(cfg.DataDir)); err != nil {
		return nil, err
	}
	// The runtime sets RLIMIT_NOFILE from inside the sandbox's user namespace, where it cannot raise
	// the hard limit it inherited from us: raise ours first (root may), else clamp.
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && rl.Max < cfg.Limits.NoFile {
		want := unix.Rlimit{Cur: rl.Cur, Max: cfg.Limits.NoFile}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err != nil {
			cfg.Limits.NoFile = rl.Max
			b.cfg.Limits.NoFile = rl.Max
		}
	}
	b.slots = slots{dir: cfg.SlotDir, max: cfg.MaxSlots}
	if b.cg, err = cgroups.Detect(); err != nil {
		return nil, err
	}
	if b.templates, err = template.NewStore(cfg.TemplateDir, cfg.Templates); err != nil {
		return nil, err
	}
	if b.net, err = networkManager(cfg); err != nil {
		return nil, err
	}
	if !cfg.SkipGC {
		if _, err := b.GC(ctx); err != nil {
			b.log.Warn("reclaiming leftovers", "err", err)
		}
	}
	if cfg.Pool > 0 {
		tpl := cfg.PoolTemplate
		if tpl == "" {
			tpl = DefaultTemplate
		}
		b.pool = newPool(b, Options{Template: tpl, Limits: cfg.PoolLimits, Env: cfg.PoolEnv, GenerateAccessToken: cfg.PoolAccessToken}, cfg.Pool)
	}
	return b, nil
}

// checkTraversable checks that every directory from dir up to / lets others traverse it.
func checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("data dir parent: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("data dir parent %s is not traversable by others (mode %v): sandboxes, whose root is an unprivileged host uid, cannot reach their root filesystem; chmod o+x %s or choose another --data-dir", d, fi.Mode().Perm(), d)
		}
		if d == "/" {
			return nil
		}
	}
}

// Templates is the backend's template store.
func (b *Backend) Templates() *template.Store { return b.templates }

// maxSocketPath is the longest path a unix socket can be bound at (sun_path less its NUL).
const maxSocketPath = 107

// checkSocketRoom refuses a data dir so deep that its sandboxes' unix sockets would not fit, with
// the fix, instead of a bare EINVAL from bind in the middle of a create.
func (b *Backend) checkSocketRoom() error {
	sock := filepath.Join(b.paths(strings.Repeat("x", 16)).envdSockDir(), "envd.sock")
	if len(sock) <= maxSocketPath {
		return nil
	}
	dd := b.cfg.DataDir
	return fmt.Errorf("data dir %s is too long: its sandboxes' sockets would need %d bytes, a unix socket path holds %d; use a data dir of at most %d bytes (--data-dir): %w",
		dd, len(sock), maxSocketPath, maxSocketPath-(len(sock)-len(dd)), sandbox.ErrInvalid)
}

// CgroupParentFor returns the cgroup under which the sandboxes of a data directory (absolute path)
// live. It is unique per data directory, so GC of one never touches another's sandboxes.
func CgroupParentFor(dataDir string) string {
	h := fnv.New32a()
	h.Write([]byte(dataDir))
	return fmt.Sprintf("/agent-%08x", h.Sum32())
}

// CgroupParent is the cgroup under which this backend's sandboxes' groups live.
func (b *Backend) CgroupParent() string { return b.cgParent }

// DataDir is the backend's data directory.
func (b *Backend) DataDir() string { return b.cfg.DataDir }

// Cgroups describes the host's cgroup layout.
func (b *Backend) Cgroups() *cgroups.Host { return b.cg }

func (b *Backend) runtime(name string) (*ociruntime.Runtime, error) {
	if name == "" {
		name = b.cfg.Runtime
	}
	return ociruntime.New(name, filepath.Join(b.rtDir, name))
}

func (b *Backend) paths(id string) paths { return paths{dir: filepath.Join(b.sbDir, id)} }

// Options describe a sandbox to create.
type Options struct {
	// Template names the root filesystem (default "host").
	Template string
	// Runtime overrides the backend's OCI runtime.
	Runtime string
	// Limits override the backend's defaults field by field.
	Limits Limits
	// Env is the sandbox-wide environment of every command.
	Env map[string]string
	// Network is the network policy in netpolicy form: "none" (default, loopback only),
	// "internet", or "allow:DOMAIN,*.DOMAIN,CIDR,…" (runner/spec's Network.String()).
	Network string
	// AccessToken, when set, is required by the sandbox's envd as X-Access-Token on every request
	// but /health (and signs /files URLs), as on E2B: for sandboxes whose envd is exposed beyond
	// this process (agent serve). It is kept in memory only: Get from another process cannot use it.
	AccessToken string
	// GenerateAccessToken, without AccessToken, has the backend pick a random token
	// (Sandbox.AccessToken): such requests can claim pooled sandboxes made with
	// Config.PoolAccessToken, whose token had to be chosen before anyone asked.
	GenerateAccessToken bool
	// From starts the sandbox from a snapshot's files (snapshot.go); unset fields take the
	// snapshot's template and limits.
	From string
}

// Create creates a sandbox and returns once its envd answers. The caller owns it: it is killed when
// its lifetime ends or the backend closes, and reclaimed by GC if this process dies.
func (b *Backend) Create(ctx context.Context, o Options) (*Sandbox, error) {
	if o.From != "" {
		return b.createFrom(ctx, o)
	}
	if o.Template == "" {
		o.Template = DefaultTemplate
	}
	if b.pool != nil {
		if s := b.pool.claim(o); s != nil {
			if err := b.activate(s, o); err == nil {
				return s, nil
			}
			_ = s.Kill(context.WithoutCancel(ctx))
		}
	}
	s, err := b.create(ctx, o, PhaseRunning)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Get opens a sandbox created by any process. The returned handle does not own it: Close leaves it
// running, Kill destroys it.
func (b *Backend) Get(ctx context.Context, id string) (*Sandbox, error) {
	if s, err := b.ownedByID(id); err != nil || s != nil {
		return s, err
	}
	rec, err := readRecord(b.paths(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %s: %w", id, sandbox.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if rec.Phase != PhaseRunning && rec.Phase != PhasePaused {
		return nil, fmt.Errorf("sandbox %s is %s: %w", id, rec.Phase, sandbox.ErrNotFound)
	}
	s := b.newSandbox(rec, nil)
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ownedByID checks id and returns the sandbox of that id this process owns (nil when it owns
// none).
func (b *Backend) ownedByID(id string) (*Sandbox, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("sandbox id %q: %w", id, sandbox.ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.owned[id], nil
}

// Lookup reads one sandbox's record (no runtime call): cheap enough to poll.
func (b *Backend) Lookup(id string) (*Record, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("sandbox id %q: %w", id, sandbox.ErrInvalid)
	}
	rec, err := readRecord(b.paths(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %s: %w", id, sandbox.ErrNotFound)
	}
	return rec, err
}

// Info describes a sandbox for listings.
type Info struct {
	Record
	// Status is the runtime's view (running, stopped, …) or "missing".
	Status string `json:"status"`
	// Owned tells whether a live process holds the sandbox.
	Owned bool          `json:"owned"`
	Stats cgroups.Stats `json:"stats"`
}

// List describes every sandbox in the data directory, from any process, oldest first.
func (b *Backend) List(ctx context.Context) ([]Info, error) {
	ents, err := os.ReadDir(b.sbDir)
	if err != nil {
		return nil, fmt.Errorf("listing sandboxes: %w", err)
	}
	var out []Info
	for _, e := range ents {
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		p := b.paths(e.Name())
		rec, err := readRecord(p)
		if err != nil {
			continue
		}
		in := Info{Record: *rec, Status: "missing"}
		if rt, err := b.runtime(rec.Runtime); err == nil {
			if st, err := rt.State(ctx, rec.ID); err == nil {
				in.Status = st.Status
			}
		}
		if l, ok, _ := tryLock(p.alive(), false); ok {
			l.Close()
		} else {
			in.Owned = true
		}
		in.Stats = b.cg.Stats(rec.CgroupsPath)
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Info) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// Kill destroys the sandbox with the given id, whoever created it. A gone sandbox is not an error.
func (b *Backend) Kill(ctx context.Context, id string) error {
	s, err := b.ownedByID(id)
	if err != nil {
		return err
	}
	if s != nil {
		return s.Kill(ctx)
	}
	// Another process's sandbox (agent sandbox kill): this backend's Close may never come, so the
	// data dir's cgroup parent goes now if that was its last sandbox.
	err = b.destroyByID(ctx, id)
	b.removeIdleCgroupParent(ctx)
	return err
}

// Close kills the sandboxes this backend owns (pooled and created) and stops the pool.
func (b *Backend) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if b.pool != nil {
		b.pool.close(ctx)
	}
	b.mu.Lock()
	var all []*Sandbox
	for _, s := range b.owned {
		all = append(all, s)
	}
	b.mu.Unlock()
	var errs []error
	for _, s := range all {
		if err := s.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	b.removeIdleCgroupParent(ctx)
	return errors.Join(errs...)
}

// removeIdleCgroupParent removes the data dir's cgroup parent when the data dir holds no sandbox
// (any process's), so a data dir that is deleted leaves no cgroup behind. A create in another
// process makes its sandbox directory well before the runtime makes cgroups, so it is seen here.
func (b *Backend) removeIdleCgroupParent(ctx context.Context) {
	ents, err := os.ReadDir(b.sbDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() && ValidID(e.Name()) {
			return
		}
	}
	_ = b.cg.Remove(ctx, b.cgParent)
}

package local

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Phase is where a sandbox is in its life, as recorded on disk.
type Phase string

// Phases.
const (
	PhaseCreating Phase = "creating"
	PhasePooled   Phase = "pooled"
	PhaseRunning  Phase = "running"
)

// Record is a sandbox's on-disk state (state.json in its directory), readable by any process.
type Record struct {
	ID             string    `json:"id"`
	Phase          Phase     `json:"phase"`
	Template       string    `json:"template"`
	TemplateDigest string    `json:"template_digest"`
	Runtime        string    `json:"runtime"`
	Network        string    `json:"network"`
	Slot           int       `json:"slot"`
	UIDBase        uint32    `json:"uid_base"`
	CgroupsPath    string    `json:"cgroups_path"`
	Limits         Limits    `json:"limits"`
	Created        time.Time `json:"created"`
	Expires        time.Time `json:"expires"`
	DefaultUser    string    `json:"default_user"`
	Workdir        string    `json:"workdir"`
	// InitPid is the host pid of the sandbox's init (envd).
	InitPid int `json:"init_pid"`
	// Pooled tells that the sandbox was claimed from the warm pool (Config.Pool).
	Pooled bool `json:"pooled,omitempty"`
	// Lifecycle records pauses, keeping and the snapshot the sandbox came from (pause.go).
	Lifecycle
}

var idRE = regexp.MustCompile(`^[a-z0-9]{1,64}$`)

// ValidID tells whether id is a well-formed sandbox id.
func ValidID(id string) bool { return idRE.MatchString(id) }

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns a random 16-character id.
func newID() string {
	b := make([]byte, 16)
	max := big.NewInt(int64(len(idAlphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err) // crypto/rand never fails on Linux
		}
		b[i] = idAlphabet[n.Int64()]
	}
	return string(b)
}

// paths of one sandbox's directory.
type paths struct{ dir string }

func (p paths) state() string   { return filepath.Join(p.dir, "state.json") }
func (p paths) opLock() string  { return filepath.Join(p.dir, "op.lock") }
func (p paths) alive() string   { return filepath.Join(p.dir, "alive.lock") }
func (p paths) rootfs() string  { return filepath.Join(p.dir, "rootfs") }
func (p paths) lower() string   { return filepath.Join(p.dir, "lower") }
func (p paths) disk() string    { return filepath.Join(p.dir, "disk") }
func (p paths) image() string   { return filepath.Join(p.dir, "disk.img") }
func (p paths) private() string { return filepath.Join(p.dir, "private") }
func (p paths) socket() string  { return filepath.Join(p.private(), "envd.sock") }
func (p paths) pidFile() string { return filepath.Join(p.dir, "init.pid") }
func (p paths) upper() string   { return filepath.Join(p.disk(), "upper") }
func (p paths) work() string    { return filepath.Join(p.disk(), "work") }
func (p paths) log() string     { return filepath.Join(p.disk(), "init.log") }

func writeRecord(p paths, r *Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := p.state() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing sandbox state: %w", err)
	}
	if err := os.Rename(tmp, p.state()); err != nil {
		return fmt.Errorf("writing sandbox state: %w", err)
	}
	return nil
}

func readRecord(p paths) (*Record, error) {
	b, err := os.ReadFile(p.state())
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("corrupt sandbox state %s: %w", p.state(), err)
	}
	return &r, nil
}

// lockFile is an flock(2) lock; it is released when the holder closes it or dies.
type lockFile struct{ f *os.File }

// tryLock takes an exclusive (or shared) lock without waiting; ok is false when another holds it.
func tryLock(path string, shared bool) (l *lockFile, ok bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("opening lock %s: %w", path, err)
	}
	how := unix.LOCK_EX
	if shared {
		how = unix.LOCK_SH
	}
	if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("locking %s: %w", path, err)
	}
	return &lockFile{f: f}, true, nil
}

func (l *lockFile) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// slots hands out user-namespace ranges host-wide: slot n is a file created with O_EXCL in a
// directory shared by every data directory, holding the owning sandbox's directory, so no two
// sandboxes on the host — whatever process or data directory made them — share a uid range.
type slots struct {
	dir string
	max int
}

func (s slots) claim(owner string) (int, error) {
	for attempt := 0; attempt < 4*s.max; attempt++ {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(s.max)))
		if err != nil {
			return 0, err
		}
		slot := int(n.Int64())
		f, err := os.OpenFile(filepath.Join(s.dir, strconv.Itoa(slot)), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("claiming a uid range: %w", err)
		}
		_, werr := f.WriteString(owner)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return 0, fmt.Errorf("claiming a uid range: %w", werr)
		}
		return slot, nil
	}
	return 0, fmt.Errorf("no free uid range among %d: too many sandboxes", s.max)
}

func (s slots) release(slot int, owner string) {
	p := filepath.Join(s.dir, strconv.Itoa(slot))
	if b, err := os.ReadFile(p); err == nil && string(b) == owner {
		_ = os.Remove(p)
	}
}

// sweep releases slots whose owner directory is gone (a sandbox dir exists before its slot is
// claimed and is removed before its slot is released, so a missing owner means a stale slot).
func (s slots) sweep() []string {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		owner, err := os.ReadFile(filepath.Join(s.dir, e.Name()))
		if err != nil || !filepath.IsAbs(string(owner)) {
			continue
		}
		if _, err := os.Stat(string(owner)); errors.Is(err, fs.ErrNotExist) {
			s.release(n, string(owner))
			out = append(out, e.Name())
		}
	}
	return out
}

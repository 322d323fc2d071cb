// Package users knows the accounts of envd's world (its /etc/passwd and /etc/group, read through the
// world root) and carries the user a request runs as in its context.
package users

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"golang.org/x/sys/unix"
)

// User is an account of the world.
type User struct {
	Name  string
	UID   int
	GID   int
	Home  string
	Shell string
}

// ErrUnknown is returned for a user name the world does not have.
var ErrUnknown = errors.New("unknown user")

// maxDBBytes bounds how much of passwd/group is read: they are sandbox-owned files.
const maxDBBytes = 4 << 20

// DB looks users and groups up in the world. It rereads the files on every lookup so accounts added
// inside the sandbox (useradd) are seen; the files are small.
type DB struct {
	root *fsroot.Root
}

// NewDB returns a DB over the world root.
func NewDB(root *fsroot.Root) *DB { return &DB{root: root} }

func (d *DB) readLines(world string, fn func(fields []string) bool) error {
	f, err := d.root.OpenFile(world, unix.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// A sandbox can replace its passwd with a FIFO or a device; only regular files are read.
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", world)
	}
	sc := bufio.NewScanner(io.LimitReader(f, maxDBBytes))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if fn(strings.Split(line, ":")) {
			return nil
		}
	}
	return sc.Err()
}

// Lookup finds a user by name.
func (d *DB) Lookup(name string) (User, error) {
	var u User
	found := false
	err := d.readLines("/etc/passwd", func(f []string) bool {
		if len(f) < 7 || f[0] != name {
			return false
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return false
		}
		u = User{Name: f[0], UID: uid, GID: gid, Home: f[5], Shell: f[6]}
		found = true
		return true
	})
	if err != nil && !found {
		if name == "root" {
			// A world without /etc/passwd still has root.
			return User{Name: "root", Home: "/root", Shell: "/bin/sh"}, nil
		}
		return User{}, fmt.Errorf("%w %q: %v", ErrUnknown, name, err)
	}
	if !found {
		if name == "root" {
			return User{Name: "root", Home: "/root", Shell: "/bin/sh"}, nil
		}
		return User{}, fmt.Errorf("%w %q", ErrUnknown, name)
	}
	return u, nil
}

// UserName returns the name of uid, or the number as text.
func (d *DB) UserName(uid int) string { return d.nameOf("/etc/passwd", uid) }

// GroupName returns the name of gid, or the number as text.
func (d *DB) GroupName(gid int) string { return d.nameOf("/etc/group", gid) }

func (d *DB) nameOf(file string, id int) string {
	want := strconv.Itoa(id)
	name := ""
	_ = d.readLines(file, func(f []string) bool {
		if len(f) >= 3 && f[2] == want {
			name = f[0]
			return true
		}
		return false
	})
	if name == "" {
		if id == 0 {
			return "root"
		}
		return want
	}
	return name
}

// Groups returns the supplementary group ids of a user.
func (d *DB) Groups(u User) []uint32 {
	var gids []uint32
	_ = d.readLines("/etc/group", func(f []string) bool {
		if len(f) < 4 {
			return false
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == u.Name {
				if g, err := strconv.Atoi(f[2]); err == nil && g != u.GID {
					gids = append(gids, uint32(g))
				}
			}
		}
		return false
	})
	return gids
}

type ctxKey struct{}

// WithUser returns a context carrying the user a request runs as.
func WithUser(ctx context.Context, u User) context.Context {
	return context.WithValue(ctx, ctxKey{}, u)
}

// FromContext returns the request's user; ok is false when the server did not set one.
func FromContext(ctx context.Context) (User, bool) {
	u, ok := ctx.Value(ctxKey{}).(User)
	return u, ok
}

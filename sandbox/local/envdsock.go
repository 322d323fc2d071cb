package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/local/ocispec"
)

// Runtimes that cannot pass a listening socket into the sandbox (runsc has no --preserve-fds)
// get envd's socket another way: envd creates it inside the sandbox, in a directory bound from
// the host (runsc's --host-uds=create makes it a real host socket), and the host dials it without
// following anything the sandbox may have planted there.

// envdRunDir is where that directory appears inside the sandbox.
const envdRunDir = "/.agent/run"

// envdSockDir is the host side of envdRunDir, inside the sandbox's private directory.
func (p paths) envdSockDir() string { return filepath.Join(p.dir, "envd-run") }

// prepareEnvdSockDir makes the host directory, writable by the sandbox's root only.
func prepareEnvdSockDir(p paths, uidBase uint32) error {
	d := p.envdSockDir()
	if err := os.Mkdir(d, 0o700); err != nil {
		return fmt.Errorf("creating envd socket dir: %w", err)
	}
	return os.Chown(d, int(uidBase), int(uidBase))
}

// envdSocketOpts are the spec options of that transport: the bound directory and envd's flag.
func envdSocketOpts(p paths) (args []string, opt ocispec.Opt) {
	return []string{"--listen", "unix:" + envdRunDir + "/envd.sock"},
		ocispec.WithBind(p.envdSockDir(), envdRunDir, false)
}

// dialEnvd dials the sandbox's envd: the host-private socket (runtimes that pass it in), or the
// socket envd made in its bound directory, opened without following links: a sandbox that
// replaces it with a symlink to a host socket gets a refusal, not a connection.
func dialEnvd(ctx context.Context, p paths, viaSandbox bool) (net.Conn, error) {
	var d net.Dialer
	if !viaSandbox {
		return d.DialContext(ctx, "unix", p.socket())
	}
	dfd, err := unix.Open(p.envdSockDir(), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening envd socket dir: %w", err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, "envd.sock", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening envd socket: %w", err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("envd socket: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("envd socket is not a socket (mode %o): refusing to dial it", st.Mode)
	}
	// Connecting through the descriptor's /proc link reaches exactly the inode checked above.
	return d.DialContext(ctx, "unix", "/proc/self/fd/"+strconv.Itoa(fd))
}

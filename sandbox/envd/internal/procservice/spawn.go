package procservice

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"connectrpc.com/connect"
	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/process"
)

// defaultPath is the PATH of processes when envd itself has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bounds on a start request, which is untrusted input.
const (
	maxArgs     = 1 << 16
	maxEnvs     = 1 << 14
	maxTagBytes = 1 << 10
)

// prepared is a command ready to start, with the parent's ends of its stdio.
type prepared struct {
	cmd *exec.Cmd
	// childFiles are the child's ends, closed in the parent once it started.
	childFiles []*os.File
	stdout     *os.File
	stderr     *os.File
	stdin      *os.File
	pty        *os.File
}

func (pr *prepared) closeChild() {
	for _, f := range pr.childFiles {
		f.Close()
	}
	pr.childFiles = nil
}

func (pr *prepared) closeAll() {
	pr.closeChild()
	for _, f := range []*os.File{pr.stdout, pr.stderr, pr.stdin, pr.pty} {
		if f != nil {
			f.Close()
		}
	}
}

// prepare validates a start request and builds its command: executable, arguments, environment,
// working directory, credentials, process group and stdio. Errors are Connect errors.
func (s *Service) prepare(u users.User, req *process.StartRequest) (*prepared, error) {
	cfg := req.GetProcess()
	if cfg.GetCmd() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("process.cmd is required"))
	}
	if len(cfg.GetArgs()) > maxArgs || len(cfg.GetEnvs()) > maxEnvs {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("too many arguments or environment variables"))
	}
	if req.Tag != nil && len(req.GetTag()) > maxTagBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("tag longer than %d bytes", maxTagBytes))
	}
	if strings.IndexByte(cfg.GetCmd(), 0) >= 0 || slices.ContainsFunc(cfg.GetArgs(), hasNUL) {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("command or argument contains NUL"))
	}
	home := u.Home
	if home == "" || !path.IsAbs(home) {
		home = "/"
	}
	cwd, err := s.resolveCwd(cfg.Cwd, home)
	if err != nil {
		return nil, err
	}
	env, err := s.environ(u, home, cfg.GetEnvs())
	if err != nil {
		return nil, err
	}
	exe, err := lookPath(cfg.GetCmd(), envValue(env, "PATH"))
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("error starting process '%s': %w", commandLine(cfg), err))
	}
	cmd := &exec.Cmd{
		Path: exe,
		Args: append([]string{cfg.GetCmd()}, cfg.GetArgs()...),
		Env:  env,
		Dir:  s.cfg.Root.HostPath(cwd),
	}
	attr := &syscall.SysProcAttr{}
	if euid := os.Geteuid(); euid == 0 && u.UID != euid {
		groups := append([]uint32{uint32(u.GID)}, s.cfg.Users.Groups(u)...)
		attr.Credential = &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: groups}
	}
	cmd.SysProcAttr = attr

	pr := &prepared{cmd: cmd}
	if req.Pty != nil {
		if err := preparePTY(pr, req.GetPty(), attr.Credential); err != nil {
			pr.closeAll()
			return nil, err
		}
		return pr, nil
	}
	// Its own process group, so that signals and the timeout reach the process's children too.
	attr.Setpgid = true
	if err := preparePipes(pr, req.Stdin == nil || req.GetStdin()); err != nil {
		pr.closeAll()
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return pr, nil
}

func hasNUL(s string) bool { return strings.IndexByte(s, 0) >= 0 }

func commandLine(cfg *process.ProcessConfig) string {
	return strings.Join(append([]string{cfg.GetCmd()}, cfg.GetArgs()...), " ")
}

// resolveCwd turns the requested cwd into a world path of an existing directory: default home, "~"
// expanded, relative paths taken from home.
func (s *Service) resolveCwd(req *string, home string) (string, error) {
	if req == nil || *req == "" {
		return path.Clean(home), nil
	}
	world, err := fsroot.Abs(*req, home)
	if err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s': %w", *req, err))
	}
	st, err := s.cfg.Root.Stat(world)
	if errors.Is(err, fs.ErrNotExist) {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' does not exist", world))
	}
	if err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s': %w", world, err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd '%s' is not a directory", world))
	}
	return world, nil
}

// environ builds a process's environment: PATH, HOME, USER and LOGNAME, then the sandbox-wide
// variables, then the request's; a later value of a name replaces an earlier one.
//
// HOME is the host path of the user's home: inside a sandbox that is the home itself; standalone it
// is where the world's home lives on the host, so `~` in a command means what it means to the
// file API.
func (s *Service) environ(u users.User, home string, reqEnv map[string]string) ([]string, error) {
	pathVar := os.Getenv("PATH")
	if pathVar == "" {
		pathVar = defaultPath
	}
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	set("PATH", pathVar)
	set("HOME", s.cfg.Root.HostPath(home))
	set("USER", u.Name)
	set("LOGNAME", u.Name)
	if s.cfg.Env != nil {
		sandboxEnv := s.cfg.Env()
		for _, k := range sortedKeys(sandboxEnv) {
			set(k, sandboxEnv[k])
		}
	}
	for _, k := range sortedKeys(reqEnv) {
		if k == "" || strings.ContainsAny(k, "=\x00") || hasNUL(reqEnv[k]) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("invalid environment variable %q", k))
		}
		set(k, reqEnv[k])
	}
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == name {
			return v
		}
	}
	return ""
}

// lookPath finds an executable in the process's PATH (not envd's). A name with a slash is used as
// given (relative to the working directory). Relative PATH entries are skipped, as os/exec does.
func lookPath(name, pathVar string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(pathVar) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

// preparePipes connects stdout and stderr to pipes, and stdin to a pipe or /dev/null.
func preparePipes(pr *prepared, withStdin bool) error {
	or, ow, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stdout pipe: %w", err)
	}
	pr.stdout, pr.childFiles = or, append(pr.childFiles, ow)
	er, ew, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("stderr pipe: %w", err)
	}
	pr.stderr, pr.childFiles = er, append(pr.childFiles, ew)
	pr.cmd.Stdout, pr.cmd.Stderr = ow, ew
	if withStdin {
		ir, iw, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
		pr.stdin, pr.childFiles = iw, append(pr.childFiles, ir)
		pr.cmd.Stdin = ir
	}
	return nil
}

// preparePTY opens a pseudo-terminal of the requested size as the process's controlling terminal
// and stdio, in a new session.
func preparePTY(pr *prepared, req *process.PTY, cred *syscall.Credential) error {
	cols, rows := req.GetSize().GetCols(), req.GetSize().GetRows()
	if cols > 0xffff || rows > 0xffff {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("pty size %dx%d out of range", cols, rows))
	}
	master, tty, err := pty.Open()
	if err != nil {
		return connect.NewError(connect.CodeInternal, fmt.Errorf("open pty: %w", err))
	}
	pr.childFiles = append(pr.childFiles, tty)
	// pty.Open leaves the master in blocking mode; a non-blocking duplicate lets reads and writes
	// use deadlines and be interrupted by Close.
	m, err := nonblockingDup(master)
	master.Close()
	if err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	pr.pty = m
	if err := setWinsize(m, uint16(cols), uint16(rows)); err != nil {
		return connect.NewError(connect.CodeInternal, err)
	}
	if cred != nil {
		// The terminal belongs to the user it runs as, as login(1) arranges.
		_ = unix.Fchown(int(tty.Fd()), int(cred.Uid), int(cred.Gid))
	}
	pr.cmd.Stdin, pr.cmd.Stdout, pr.cmd.Stderr = tty, tty, tty
	attr := pr.cmd.SysProcAttr
	attr.Setsid = true
	attr.Setctty = true
	attr.Ctty = 0
	return nil
}

func nonblockingDup(f *os.File) (*os.File, error) {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup pty master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pty master non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

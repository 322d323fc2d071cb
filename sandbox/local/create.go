package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/agentrun/agent/sandbox/local/mounts"
	"github.com/agentrun/agent/sandbox/local/ocispec"
	"github.com/agentrun/agent/sandbox/local/template"
)

// EnvdPath is where the agent binary is mounted (read-only) inside every sandbox.
const EnvdPath = "/.agent/envd"

// envdTokenEnv carries Options.AccessToken to envd.
const envdTokenEnv = "AGENT_ENVD_ACCESS_TOKEN"

// create builds a sandbox step by step; on any failure everything done so far is undone.
func (b *Backend) create(ctx context.Context, o Options, phase Phase) (_ *Sandbox, err error) {
	if err := b.checkSocketRoom(); err != nil {
		return nil, err
	}
	if o.Network == "" {
		o.Network = NetworkNone
	}
	if o.GenerateAccessToken && o.AccessToken == "" {
		o.AccessToken = randomToken()
	}
	rt, err := b.runtime(o.Runtime)
	if err != nil {
		return nil, err
	}
	netw, err := b.networkFor(ctx, o.Network, rt)
	if err != nil {
		return nil, err
	}
	rt = rt.WithNetwork(runtimeNetwork(netw))
	// Without --preserve-fds (runsc), envd makes its socket inside (see envdsock.go).
	viaSandbox := !rt.SupportsPreserveFDs()
	t0 := time.Now()
	var timings []Timing
	mark := func(step string) {
		timings = append(timings, Timing{Step: step, Duration: time.Since(t0)})
		t0 = time.Now()
	}
	tpl, err := b.templates.Ensure(ctx, o.Template, b.cfg.Progress)
	if err != nil {
		return nil, err
	}
	lim := o.Limits.withDefaults(b.cfg.Limits)
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err == nil && lim.NoFile > rl.Max {
		lim.NoFile = rl.Max
	}
	if lim.MemoryBytes < 16<<20 || lim.Pids < 8 || lim.DiskBytes < 64<<20 {
		return nil, fmt.Errorf("limits %+v: memory must be ≥ 16 MiB, pids ≥ 8, disk ≥ 64 MiB", lim)
	}

	// A fresh directory under a fresh id.
	var id string
	var p paths
	for {
		id = newID()
		p = b.paths(id)
		// Private until the uid range is known (then 0710 for the sandbox's root group).
		err := os.Mkdir(p.dir, 0o700)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("creating sandbox dir: %w", err)
		}
	}
	op, _, err := tryLock(p.opLock(), false)
	if err != nil || op == nil {
		_ = os.RemoveAll(p.dir)
		return nil, fmt.Errorf("locking new sandbox: %v", err)
	}
	defer op.Close()
	alive, _, err := tryLock(p.alive(), true)
	if err != nil || alive == nil {
		_ = os.RemoveAll(p.dir)
		return nil, fmt.Errorf("locking new sandbox: %v", err)
	}
	rec := &Record{
		ID: id, Phase: PhaseCreating, Template: tpl.Name, TemplateDigest: tpl.Digest, Runtime: rt.Name,
		Network: netw.Name(), Slot: -1, CgroupsPath: b.cgParent + "/" + id, Limits: lim,
		Created: time.Now().UTC(), DefaultUser: tpl.DefaultUser, Workdir: tpl.Workdir,
	}
	rec.From = o.From
	if err := writeRecord(p, rec); err != nil {
		alive.Close()
		_ = os.RemoveAll(p.dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			alive.Close()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if derr := b.destroy(cctx, p, rec); derr != nil {
				b.log.Error("cleaning up a failed sandbox", "id", id, "err", derr)
			}
		}
	}()
	slot, err := b.slots.claim(p.dir)
	if err != nil {
		return nil, err
	}
	rec.Slot = slot
	rec.UIDBase = b.cfg.UIDBase + uint32(slot)*UIDRange
	if err := writeRecord(p, rec); err != nil {
		return nil, err
	}
	// Only this sandbox's root group (its runtime init must reach rootfs/) may traverse the
	// directory; other host users may not.
	if err := os.Chown(p.dir, 0, int(rec.UIDBase)); err != nil {
		return nil, err
	}
	if err := os.Chmod(p.dir, 0o710); err != nil {
		return nil, err
	}

	mark("state")
	if err := b.prepareRootfs(ctx, p, rec, tpl, mark); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(p.log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating init log: %w", err)
	}
	defer logf.Close()

	netnsPath, err := netw.Setup(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", netw.Name(), err)
	}
	if ns := netw.Nameserver(id); ns != "" {
		if err := writeSandboxFile(p.rootfs(), "etc/resolv.conf", "nameserver "+ns+"\noptions edns0\n", int(rec.UIDBase)); err != nil {
			return nil, err
		}
	}
	mark("network")
	opts := b.specOpts(rec, tpl, o, netnsPath)
	if rt.AppliesSeccompInside() {
		opts = append(opts, ocispec.WithSeccompClone3Allowed())
	}
	if viaSandbox {
		if err := prepareEnvdSockDir(p, rec.UIDBase); err != nil {
			return nil, err
		}
		args, bind := envdSocketOpts(p)
		opts = append(opts, bind, func(s *specs.Spec) error {
			// Replace "--listen-fd 3" with the in-sandbox socket.
			s.Process.Args = append([]string{s.Process.Args[0], s.Process.Args[1]}, append(args, s.Process.Args[4:]...)...)
			return nil
		})
	}
	spec, err := ocispec.New(opts...)
	if err != nil {
		return nil, err
	}
	if err := ocispec.Write(p.dir, spec); err != nil {
		return nil, err
	}

	// envd's listening socket: created here in the host-private sandbox directory, passed in as fd 3.
	// The host dials this path; the sandbox never sees it and cannot replace it.
	if err := os.Mkdir(p.private(), 0o700); err != nil {
		return nil, fmt.Errorf("creating private dir: %w", err)
	}
	var lnFile *os.File
	if !viaSandbox {
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: p.socket(), Net: "unix"})
		if err != nil {
			return nil, fmt.Errorf("creating envd socket: %w", err)
		}
		ln.SetUnlinkOnClose(false)
		lnFile, err = ln.File()
		ln.Close()
		if err != nil {
			return nil, fmt.Errorf("creating envd socket: %w", err)
		}
	}
	mark("spec")
	cerr := rt.Create(ctx, id, ociCreate(p, lnFile, logf))
	if lnFile != nil {
		lnFile.Close() // the sandbox holds the only listening fd now: its death refuses connections
	}
	if cerr != nil {
		msg := logTail(p.log(), 2048)
		if strings.Contains(msg, "hybrid mode not supported") {
			msg += "\nfix: this host mixes cgroup v1 and v2 controllers, which crun refuses; run `agent doctor --fix` (or use runc: --runtime runc, or runtime: runc in the spec)"
		}
		return nil, fmt.Errorf("%w\n%s", cerr, msg)
	}
	mark("runtime create")
	if st, err := rt.State(ctx, id); err != nil {
		return nil, withLog(err, p.log())
	} else if err := netw.Attach(ctx, id, st.Pid); err != nil {
		return nil, fmt.Errorf("network %s: %w", netw.Name(), err)
	}
	if err := rt.Start(ctx, id); err != nil {
		return nil, withLog(err, p.log())
	}
	mark("runtime start")
	if err := waitReady(ctx, func(ctx context.Context) (net.Conn, error) { return dialEnvd(ctx, p, viaSandbox) }, b.cfg.ReadyTimeout); err != nil {
		return nil, withLog(fmt.Errorf("sandbox %s did not become ready: %w", id, err), p.log())
	}
	mark("envd ready")
	if st, err := rt.State(ctx, id); err == nil {
		rec.InitPid = st.Pid
	}
	rec.Phase = phase
	if phase == PhaseRunning {
		rec.Expires = time.Now().UTC().Add(lim.Lifetime)
	}
	if err := writeRecord(p, rec); err != nil {
		return nil, err
	}
	s := b.newSandbox(rec, alive)
	s.timings = timings
	s.token = o.AccessToken
	if phase == PhaseRunning {
		if err := s.connect(ctx); err != nil {
			return nil, err
		}
		b.own(s)
	}
	return s, nil
}

// prepareRootfs makes the sandbox's root: disk image (quota) holding the overlay's upper and work
// directories, an idmapped read-only view of the template as lower layer, the overlay, and the
// template's host directories bound read-only and idmapped on top.
func (b *Backend) prepareRootfs(ctx context.Context, p paths, rec *Record, tpl *template.Template, mark func(string)) error {
	disk := mounts.Disk{Image: p.image(), Size: rec.Limits.DiskBytes}
	if err := disk.Format(ctx); err != nil {
		return err
	}
	for _, d := range []string{p.disk(), p.lower(), p.rootfs()} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}
	mark("disk format")
	if err := disk.Mount(p.disk()); err != nil {
		return err
	}
	if err := os.Chmod(p.disk(), 0o700); err != nil {
		return err
	}
	mark("disk mount")
	base := int(rec.UIDBase)
	if err := os.Mkdir(p.upper(), 0o755); err != nil {
		return err
	}
	if err := os.Chown(p.upper(), base, base); err != nil {
		return err
	}
	if err := os.Mkdir(p.work(), 0o700); err != nil {
		return err
	}
	ns, err := mounts.NewUserNS(b.cfg.Binary, mounts.IDMap{HostBase: rec.UIDBase, Size: UIDRange})
	if err != nil {
		return err
	}
	defer ns.Close()
	mark("userns")
	if err := mounts.BindIDMapped(tpl.Rootfs(), p.lower(), ns, mounts.Attr{ReadOnly: true, NoDev: true}); err != nil {
		return err
	}
	if err := b.overlay(p, rec, ns); err != nil {
		return err
	}
	// The overlay holds its own reference to the lower layer.
	if err := mounts.Detach(p.lower()); err != nil {
		return err
	}
	for _, d := range tpl.HostBinds {
		target := filepath.Join(p.rootfs(), d)
		if fi, err := os.Lstat(target); err != nil || !fi.IsDir() {
			return fmt.Errorf("template %s: mount point %s is not a directory", tpl.Name, d)
		}
		if err := mounts.BindIDMapped(d, target, ns, mounts.Attr{ReadOnly: true, NoSuid: true, NoDev: true}); err != nil {
			return err
		}
	}
	// The agent binary, envd, read-only. Bound here rather than by the runtime, whose init runs in
	// the sandbox's user namespace and may not reach the binary's host directory.
	envd := filepath.Join(p.rootfs(), EnvdPath)
	if err := mounts.BindReadOnly(b.cfg.Binary, envd); err != nil {
		return err
	}
	mark("rootfs")
	// Per-sandbox identity files, written before anything runs inside.
	files := map[string]string{
		"etc/hostname": rec.ID + "\n",
		"etc/hosts":    "127.0.0.1\tlocalhost " + rec.ID + "\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	}
	for name, content := range files {
		if err := writeSandboxFile(p.rootfs(), name, content, base); err != nil {
			return err
		}
	}
	return nil
}

// writeSandboxFile writes a file of the sandbox's root before anything runs inside (so no
// sandbox process can have planted a symlink there), owned by the sandbox's root.
func writeSandboxFile(rootfs, name, content string, owner int) error {
	target := filepath.Join(rootfs, name)
	if fi, err := os.Lstat(target); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return os.Lchown(target, owner, owner)
}

func (b *Backend) specOpts(rec *Record, tpl *template.Template, o Options, netnsPath string) []ocispec.Opt {
	args := []string{EnvdPath, "envd", "--listen-fd", "3"}
	if tpl.DefaultUser != "" {
		args = append(args, "--user", tpl.DefaultUser)
	}
	keys := make([]string, 0, len(o.Env))
	for k := range o.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--env", k+"="+o.Env[k])
	}
	env := []string{"PATH=" + ocispec.DefaultPath, "HOME=/root", "LANG=C.UTF-8", "TERM=xterm"}
	if o.AccessToken != "" {
		// envd reads the token from its environment and removes it before anything else runs.
		args = append(args, "--access-token-env", envdTokenEnv)
		env = append(env, envdTokenEnv+"="+o.AccessToken)
	}
	nproc := uint64(rec.Limits.Pids) * 2
	if nproc < 1024 {
		nproc = 1024
	}
	return []ocispec.Opt{
		ocispec.WithProcess(args, env, "/"),
		ocispec.WithHostname(rec.ID),
		ocispec.WithRootfs("rootfs", false),
		ocispec.WithNamespaces(netnsPath),
		ocispec.WithUserNamespace(rec.UIDBase, UIDRange),
		ocispec.WithCapabilities(ocispec.DefaultCapabilities()),
		ocispec.WithSeccompDefault(),
		ocispec.WithMaskedPaths(),
		ocispec.WithDefaultMounts(),
		ocispec.WithRlimits(rec.Limits.NoFile, nproc),
		ocispec.WithResources(rec.CgroupsPath, ocispec.Resources{
			MemoryBytes: rec.Limits.MemoryBytes, Pids: rec.Limits.Pids, CPUs: rec.Limits.CPUs,
		}),
		ocispec.WithOOMScoreAdj(500),
	}
}

// waitReady asks envd's /health over the socket. The socket listens from the start, so the
// request simply waits until envd serves it.
func waitReady(ctx context.Context, dial func(context.Context) (net.Conn, error), timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx)
		},
		DisableKeepAlives: true,
	}}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://envd/health", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
			err = fmt.Errorf("envd /health answered %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// withLog appends the end of the sandbox's init log to err, when there is one.
func withLog(err error, log string) error {
	if t := logTail(log, 2048); t != "" {
		return fmt.Errorf("%w\n%s", err, t)
	}
	return err
}

// logTail returns the end of the sandbox's init log (bounded), for error messages.
func logTail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := fi.Size() - n
	if off < 0 {
		off = 0
	}
	buf := make([]byte, n)
	k, _ := f.ReadAt(buf, off)
	s := strings.TrimSpace(string(buf[:k]))
	if s == "" {
		return ""
	}
	return "init log:\n" + s
}

// randomToken is a generated envd access token: 256 random bits, hex.
func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

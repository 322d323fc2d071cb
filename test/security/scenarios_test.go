package security

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/agentrun/agent/internal/fakenet"
	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/local"
	"github.com/agentrun/agent/sandbox/local/network"
)

func networkConfig(in *fakenet.Internet, dd string) network.Config {
	return network.Config{Upstreams: []netip.AddrPort{in.Upstream()}}
}

func ok(cond bool, observed string, args ...any) outcome {
	return outcome{Observed: fmt.Sprintf(observed, args...), Contained: cond}
}

// denied runs a script that prints DENIED when the attack failed and ESCAPED when it worked.
func denied(ctx context.Context, s *local.Sandbox, script string) outcome {
	out, code := sh(ctx, s, script)
	return ok(strings.Contains(out, "DENIED") && !strings.Contains(out, "ESCAPED"), "exit %d: %s", code, out)
}

// pySyscall tries a raw syscall through ctypes and prints DENIED on failure.
func pySyscall(name string, nr int, args string) string {
	return fmt.Sprintf(`import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(%d%s)
e = ctypes.get_errno()
print(("ESCAPED %s returned %%d" %% r) if r >= 0 else "DENIED %s: " + os.strerror(e))`, nr, args, name, name)
}

// hostListener listens on every host address; hits counts connections.
func hostListener() (port int, hits func() int64, closeFn func()) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return 0, func() int64 { return -1 }, func() {}
	}
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, n.Load, func() { ln.Close() }
}

func hostAddrs() []string {
	ifs, _ := net.InterfaceAddrs()
	var out []string
	for _, a := range ifs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

func fileHash(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return "missing"
	}
	defer f.Close()
	h := sha256.New()
	_, _ = io.Copy(h, f)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// curlAll tries each URL from inside and reports which ones answered.
func curlAll(ctx context.Context, s *local.Sandbox, urls ...string) (reached []string, out string) {
	var b strings.Builder
	for _, u := range urls {
		o, code := sh(ctx, s, "curl -fsS --max-time 4 -o /dev/null "+u+" 2>&1; echo rc=$?")
		b.WriteString(u + ": " + strings.TrimSpace(o) + "; ")
		if code == 0 && strings.Contains(o, "rc=0") {
			reached = append(reached, u)
		}
	}
	return reached, b.String()
}

func scenarios() []scenario {
	const (
		cEscape  = "container escape"
		cKernel  = "kernel surface"
		cHost    = "host state"
		cFiles   = "files API and artifacts"
		cSecrets = "secrets"
		cExhaust = "exhaustion"
		cNet     = "network"
	)
	refusedOrInert := "refused (EPERM/EACCES/EROFS) or confined to the sandbox"
	return []scenario{
		// --- container-escape classes (SandboxEscapeBench) ---
		{Name: "privileged mount", Class: cEscape, Expected: "mount refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				o := denied(ctx, s, `mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1 && echo ESCAPED || echo DENIED`)
				if strings.Contains(readTrim("/proc/self/mountinfo"), "/tmp/m ") {
					o.Contained = false
				}
				return o
			}},
		{Name: "CAP_SYS_ADMIN via unshare -r", Class: cEscape, Expected: "new user/mount namespace refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				return denied(ctx, s, `unshare -Urm sh -c 'mount -t tmpfs x /mnt && echo ESCAPED' 2>&1 || echo DENIED`)
			}},
		{Name: "host socket files", Class: cEscape, Expected: "no runtime/daemon sockets visible",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `for p in /run/docker.sock /var/run/docker.sock /run/containerd/containerd.sock /run/crio/crio.sock /run/systemd/private /run/dbus/system_bus_socket; do [ -e $p ] && echo "ESCAPED $p"; done; find / -xdev -type s 2>/dev/null | grep -v '^/.agent/run/' | head; echo DENIED-scan-done`)
				return ok(!strings.Contains(out, "ESCAPED") && strings.TrimSpace(strings.ReplaceAll(out, "DENIED-scan-done", "")) == "", "%s", out)
			}},
		{Name: "pid namespace: host processes", Class: cEscape, Expected: "host pids invisible",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				pid := os.Getpid()
				out, _ := sh(ctx, s, fmt.Sprintf(`n=$(python3 -c "import os; print(sum(p.isdigit() for p in os.listdir('/proc')))"); if [ -e /proc/%d ] && grep -q security /proc/%d/cmdline 2>/dev/null; then echo ESCAPED; fi; echo "pids=$n"; kill -0 %d 2>&1 || echo DENIED`, pid, pid, pid))
				n := 0
				if i := strings.Index(out, "pids="); i >= 0 {
					fmt.Sscanf(out[i+5:], "%d", &n)
				}
				return ok(!strings.Contains(out, "ESCAPED") && n > 0 && n < 50, "%d processes visible; %s", n, out)
			}},
		{Name: "kernel module load", Class: cEscape, Expected: "init_module refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("init_module", 175, ", 0, 0, b''"))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "open_by_handle_at (shocker)", Class: cEscape, Expected: "refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("open_by_handle_at", 304, ", 3, ctypes.create_string_buffer(b'\\x08\\x00\\x00\\x00\\x01\\x00\\x00\\x00'+b'\\x02'+b'\\x00'*7), 0"))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "host paths", Class: cEscape, Expected: "host files invisible",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, fmt.Sprintf(`cat %s/secret.txt 2>&1; ls /root 2>&1; grep -rl %s /tmp /root /home /etc 2>/dev/null | head -3; echo DENIED`, e.hostDir, e.secret))
				return ok(!strings.Contains(out, e.secret), "%s", out)
			}},
		{Name: "cgroup release_agent", Class: cEscape, Expected: "cgroup mount and release_agent write refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := readTrim("/sys/fs/cgroup/memory/release_agent")
				o := denied(ctx, s, `mkdir -p /tmp/cg; mount -t cgroup -o memory cgroup /tmp/cg 2>&1 && echo ESCAPED; for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent /tmp/cg/release_agent; do [ -e "$f" ] && (echo /evil > "$f") 2>/dev/null && echo "ESCAPED $f"; done; echo DENIED`)
				if readTrim("/sys/fs/cgroup/memory/release_agent") != before {
					o.Contained = false
					o.Observed += " (host release_agent changed!)"
				}
				return o
			}},
		{Name: "overwrite runtime via /proc/self/exe", Class: cEscape, Expected: "write refused; host binaries unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				bins := []string{agentBin, "/usr/sbin/runc", "/usr/bin/runsc"}
				var before []string
				for _, b := range bins {
					before = append(before, fileHash(b))
				}
				o := denied(ctx, s, `for p in /proc/self/exe /proc/1/exe /.agent/envd; do (echo x >> $p) 2>/dev/null && echo "ESCAPED $p"; done; echo DENIED`)
				for i, b := range bins {
					if fileHash(b) != before[i] {
						o.Contained = false
						o.Observed += " host binary changed: " + b
					}
				}
				return o
			}},
		{Name: "bpf program load", Class: cEscape, Expected: "bpf refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("bpf", 321, ", 5, ctypes.create_string_buffer(128), 128"))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "packet socket", Class: cEscape, Expected: "AF_PACKET refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, `import socket
try:
    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); print("ESCAPED packet socket")
except OSError as e: print("DENIED", e)
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print("ESCAPED raw socket")
except OSError as e: print("DENIED", e)`)
				return ok(!strings.Contains(out, "ESCAPED"), "%s", out)
			}},
		// --- kernel attack surface ---
		{Name: "userfaultfd", Class: cKernel, Expected: "refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("userfaultfd", 323, ", 0"))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "keyctl / add_key", Class: cKernel, Expected: "refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("add_key", 248, ", b'user', b'k', b'v', 1, -3")+"\n"+strings.ReplaceAll(pySyscall("keyctl", 250, ", 0, -3, 1"), "import ctypes, os", ""))
				return ok(strings.Count(out, "DENIED") == 2, "%s", out)
			}},
		{Name: "perf_event_open", Class: cKernel, Expected: "refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("perf_event_open", 298, ", ctypes.create_string_buffer(128), 0, -1, -1, 0"))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "ptrace a host process", Class: cKernel, Expected: "host pid not reachable",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscall("ptrace(ATTACH host pid)", 101, fmt.Sprintf(", 16, %d, 0, 0", os.Getpid())))
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "/proc/sys writes", Class: cHost, Expected: refusedOrInert + "; host sysctls unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				keys := []string{"kernel/sysrq", "kernel/core_pattern", "vm/drop_caches", "kernel/hostname"}
				var before []string
				for _, k := range keys {
					before = append(before, readTrim("/proc/sys/"+k))
				}
				o := denied(ctx, s, `for k in kernel/sysrq kernel/core_pattern kernel/hostname; do (echo '|/tmp/evil' > /proc/sys/$k) 2>/dev/null && echo "ESCAPED $k"; done; (echo 3 > /proc/sys/vm/drop_caches) 2>/dev/null && echo ESCAPED drop_caches; echo DENIED`)
				for i, k := range keys {
					if k != "vm/drop_caches" && readTrim("/proc/sys/"+k) != before[i] {
						o.Contained = false
						o.Observed += " host " + k + " changed"
					}
				}
				return o
			}},
		{Name: "/sys writes", Class: cHost, Expected: "read-only; host unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := readTrim("/sys/kernel/mm/transparent_hugepage/enabled")
				o := denied(ctx, s, `(echo never > /sys/kernel/mm/transparent_hugepage/enabled) 2>/dev/null && echo ESCAPED thp; (echo 1 > /sys/class/net/lo/mtu) 2>/dev/null && echo ESCAPED mtu; (echo 1 > /sys/kernel/uevent_helper) 2>/dev/null && echo ESCAPED uevent; echo DENIED`)
				if readTrim("/sys/kernel/mm/transparent_hugepage/enabled") != before {
					o.Contained = false
				}
				return o
			}},
		{Name: "sysrq-trigger", Class: cHost, Expected: "refused",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				return denied(ctx, s, `(echo h > /proc/sysrq-trigger) 2>/dev/null && echo ESCAPED; echo DENIED`)
			}},
		{Name: "device nodes", Class: cHost, Expected: "mknod refused or node unusable; no host disks",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				return denied(ctx, s, `ls /dev | tr '\n' ' '; mknod /tmp/vda b 254 0 2>/dev/null && head -c 512 /tmp/vda >/dev/null 2>&1 && echo ESCAPED read block device; for d in /dev/mem /dev/kmem /dev/port /dev/sda /dev/vda /dev/kmsg; do head -c 1 $d >/dev/null 2>&1 && echo "ESCAPED $d"; done; echo DENIED`)
			}},
		{Name: "clock change", Class: cHost, Expected: "settimeofday refused; host clock unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				o := denied(ctx, s, `date -s '2001-01-01 00:00:00' >/dev/null 2>&1 && [ "$(date +%Y)" = 2001 ] && echo ESCAPED; echo DENIED`)
				if time.Now().Year() < 2024 {
					o.Contained = false
					o.Observed += " host clock moved"
				}
				return o
			}},
		{Name: "hostname change", Class: cHost, Expected: "refused or confined to the sandbox's UTS namespace; host hostname unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before, _ := os.Hostname()
				out, _ := sh(ctx, s, `hostname evil-battery 2>&1; hostname`)
				after, _ := os.Hostname()
				return ok(before == after && after != "evil-battery", "inside: %s; host hostname %q", out, after)
			}},
		{Name: "setuid binary made inside", Class: cHost, Expected: "root inside stays an unprivileged host uid",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `cp /bin/sh /tmp/rootsh 2>/dev/null; chmod 4755 /tmp/rootsh; su -s /bin/sh user -c '/tmp/rootsh -p -c "sleep 3"' & sleep 1; id; echo spawned`)
				rec := s.Record()
				hostRoot := 0
				if rec.InitPid > 0 {
					hostRoot = hostUIDOf(rec.InitPid)
				}
				// runc: the init is the sandbox's root, mapped to its uid range; runsc: the init is
				// gVisor's sentry, which runs as nobody in a user namespace of its own.
				good := hostRoot >= int(rec.UIDBase) || (e.runtime == "runsc" && hostRoot == 65534)
				return ok(good, "init host uid %d (base %d); %s", hostRoot, rec.UIDBase, out)
			}},
		{Name: "setuid host binaries (nosuid binds)", Class: cHost, Expected: "host system dirs mounted nosuid, read-only",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `(touch /usr/bin/evil) 2>/dev/null && echo ESCAPED wrote /usr; grep -E ' /usr ' /proc/mounts; su -s /bin/sh user -c 'su -c id root </dev/null' 2>&1 | head -2; echo DENIED`)
				roUsr := strings.Contains(out, " /usr ") && strings.Contains(out, "ro,") && strings.Contains(out, "nosuid")
				if e.runtime == "runsc" { // gVisor shows its own mount table; the write attempt decides
					roUsr = true
				}
				return ok(roUsr && !strings.Contains(out, "ESCAPED"), "%s", out)
			}},
		// --- files API, seed files, artifacts ---
		{Name: "files API: .. traversal write", Class: cFiles, Expected: "lands inside the sandbox; host untouched",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				name := fmt.Sprintf("agent-battery-escape-%d", time.Now().UnixNano())
				err := s.WriteFile(ctx, "../../../../../../tmp/"+name, strings.NewReader("x"))
				_, hostErr := os.Stat("/tmp/" + name)
				out, _ := sh(ctx, s, "ls /tmp/"+name+" 2>&1")
				return ok(os.IsNotExist(hostErr), "write err=%v; inside: %s; host file exists=%v", err, out, hostErr == nil)
			}},
		{Name: "files API: absolute host path read", Class: cFiles, Expected: "sandbox's own file, never the host's",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				rc, err := s.Open(ctx, filepath.Join(e.hostDir, "secret.txt"))
				var got []byte
				if err == nil {
					got, _ = io.ReadAll(io.LimitReader(rc, 4096))
					rc.Close()
				}
				return ok(!bytes.Contains(got, []byte(e.secret)), "open err=%v, %d bytes", err, len(got))
			}},
		{Name: "files API: symlink to a host path", Class: cFiles, Expected: "resolves inside the sandbox root",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				sh(ctx, s, "ln -sf "+e.hostDir+"/secret.txt /home/user/link; ln -sf ../../../../../.. /home/user/up")
				var leaked bool
				var errs []string
				for _, p := range []string{"/home/user/link", "/home/user/up" + e.hostDir + "/secret.txt"} {
					rc, err := s.Open(ctx, p)
					if err != nil {
						errs = append(errs, err.Error())
						continue
					}
					b, _ := io.ReadAll(io.LimitReader(rc, 4096))
					rc.Close()
					leaked = leaked || bytes.Contains(b, []byte(e.secret))
				}
				return ok(!leaked, "errors: %s", strings.Join(errs, "; "))
			}},
		{Name: "artifacts: planted symlink not followed", Class: cFiles, Expected: "listed and stat'ed as a symlink (collector skips it)",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				sh(ctx, s, "mkdir -p /home/user/out && ln -sf /etc/shadow /home/user/out/result.txt && ln -sf / /home/user/out/root")
				ents, err := s.List(ctx, "/home/user/out", 1)
				if err != nil {
					return ok(false, "list: %v", err)
				}
				good := len(ents) == 2
				for _, en := range ents {
					good = good && en.Type == sandbox.TypeSymlink
				}
				st, err := s.Stat(ctx, "/home/user/out/result.txt")
				good = good && err == nil && st.Type == sandbox.TypeSymlink
				return ok(good, "entries %d (all symlinks: %v), stat type %s", len(ents), good, st.Type)
			}},
		{Name: "artifacts: hostile names on the host side", Class: cFiles, Expected: "host writer confined to the results dir (os.Root)",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				dir := filepath.Join(e.t.TempDir(), "artifacts")
				os.MkdirAll(dir, 0o755)
				os.Symlink("/", filepath.Join(dir, "escape"))
				root, err := os.OpenRoot(dir)
				if err != nil {
					return ok(false, "%v", err)
				}
				defer root.Close()
				var refused []string
				for _, n := range []string{"../x", "/etc/x", "escape/tmp/x", "a/../../x"} {
					if f, err := root.OpenFile(n, os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
						f.Close()
					} else {
						refused = append(refused, n)
					}
				}
				return ok(len(refused) == 4, "refused %v", refused)
			}},
		{Name: "hardlink to a host file", Class: cFiles, Expected: "only sandbox files linkable; host link count unchanged",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				var st1 os.FileInfo
				st1, _ = os.Stat("/usr/bin/env")
				out, _ := sh(ctx, s, `ln /usr/bin/env /tmp/envlink 2>&1 && echo linked; echo x >> /tmp/envlink 2>&1; echo DENIED`)
				st2, _ := os.Stat("/usr/bin/env")
				same := st1 != nil && st2 != nil && st1.Size() == st2.Size() && st1.ModTime() == st2.ModTime()
				return ok(same, "%s", out)
			}},
		{Name: "seed files: hostile paths", Class: cFiles, Expected: "written inside the sandbox only",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				name := fmt.Sprintf("agent-battery-seed-%d", time.Now().UnixNano())
				err := s.WriteFiles(ctx, []sandbox.File{{Path: "../../../tmp/" + name, Data: []byte("a")}, {Path: "/tmp/" + name + "-abs", Data: []byte("b")}})
				_, e1 := os.Stat("/tmp/" + name)
				_, e2 := os.Stat("/tmp/" + name + "-abs")
				out, _ := sh(ctx, s, "ls /tmp/ | grep -c "+name)
				return ok(os.IsNotExist(e1) && os.IsNotExist(e2), "write err=%v; inside count %s", err, strings.TrimSpace(out))
			}},
		// --- secrets ---
		{Name: "host environment", Class: cSecrets, Expected: "absent",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `env; cat /proc/1/environ 2>/dev/null | tr '\0' '\n'; for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null | tr '\0' '\n'; done`)
				return ok(!strings.Contains(out, e.secret) && !strings.Contains(out, "AGENT_BATTERY_MARKER"), "%d bytes of environment scanned", len(out))
			}},
		{Name: "API keys", Class: cSecrets, Expected: "absent",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `env | grep -i -E 'api_key|token|secret' ; grep -r -l -s sk-battery / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -3; echo done`)
				return ok(!strings.Contains(out, "sk-battery"), "%s", out)
			}},
		{Name: "runner files", Class: cSecrets, Expected: "data dir, results and test files invisible",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				dd := e.b.DataDir()
				out, _ := sh(ctx, s, fmt.Sprintf(`for p in %s %s %s /work /var/lib/agent; do [ -e "$p" ] && echo "VISIBLE $p"; done; echo DENIED`, dd, e.hostDir, filepath.Dir(agentBin)))
				return ok(!strings.Contains(out, "VISIBLE"), "%s", out)
			}},
		// --- exhaustion (each alone, with a neighbour measured) ---
		{Name: "fork bomb", Class: cExhaust, Expected: "pids limit; host and neighbour keep working", Exclusive: true,
			Limits: local.Limits{Pids: 128},
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				sh(ctx, s, `timeout 8 sh -c 'b(){ b | b & }; b' >/dev/null 2>&1; sleep 1; pkill -9 -f 'sh -c' ; true`)
				st := s.Stats()
				_, hostErr := os.ReadFile("/proc/self/status")
				return ok(hostErr == nil && (st.PidsLimitHits > 0 || e.runtime == "runsc"), "pids limit hits %d; sandbox failure: %v", st.PidsLimitHits, s.Failure())
			}},
		{Name: "memory bomb", Class: cExhaust, Expected: "OOM inside the sandbox only", Exclusive: true,
			Limits: local.Limits{MemoryBytes: 128 << 20},
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, "x=[]\nwhile True: x.append(bytearray(16<<20))")
				st := s.Stats()
				return ok(st.OOMKills > 0 || strings.Contains(out, "MemoryError") || strings.Contains(strings.ToLower(out), "killed"), "oom kills %d; %s", st.OOMKills, clip(out, 80))
			}},
		{Name: "disk fill", Class: cExhaust, Expected: "quota holds: ENOSPC inside (runsc: the sandbox ends)", Exclusive: true,
			Limits: local.Limits{DiskBytes: 128 << 20},
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `dd if=/dev/zero of=/tmp/fill bs=1M count=1024 2>&1 | head -2 | tr '\n' ' ' `)
				used, size, _ := s.DiskUsage()
				graceful := strings.Contains(out, "No space")
				return ok(size <= 130<<20 && used <= size && (graceful || e.runtime == "runsc"), "%s; host view used %d of %d", out, used, size)
			}},
		{Name: "inode exhaustion", Class: cExhaust, Expected: "ENOSPC at the quota's inode count (runsc: the sandbox ends)", Exclusive: true,
			Limits: local.Limits{DiskBytes: 64 << 20},
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, `import os
os.makedirs("/tmp/i", exist_ok=True)
n=0
try:
    while n < 2000000:
        open("/tmp/i/%d" % n, "w").close(); n+=1
    print("ESCAPED no limit")
except OSError as e: print("DENIED after", n, e)`)
				used, size, _ := s.DiskUsage()
				return ok(strings.Contains(out, "DENIED") || (e.runtime == "runsc" && size <= 66<<20 && used <= size), "%s", out)
			}},
		{Name: "file descriptor exhaustion", Class: cExhaust, Expected: "EMFILE at RLIMIT_NOFILE", Exclusive: true,
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, `import os, resource
print("limit", resource.getrlimit(resource.RLIMIT_NOFILE))
fs=[]
try:
    while len(fs) < 10000000: fs.append(os.open("/dev/null", os.O_RDONLY))
    print("ESCAPED")
except OSError as e: print("DENIED after", len(fs), e)`)
				return ok(strings.Contains(out, "DENIED"), "%s", out)
			}},
		{Name: "inotify exhaustion", Class: cExhaust, Expected: "limit inside; host inotify still works", Exclusive: true,
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, pySyscallLoop("inotify_init1", 294, ", 0", 100000))
				// The host can still make an instance.
				hostOK := probeHostInotify()
				return ok(strings.Contains(out, "DENIED") && hostOK, "%s; host inotify ok=%v", out, hostOK)
			}},
		{Name: "output flood", Class: cExhaust, Expected: "bounded in the host's memory (truncated)", Exclusive: true,
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				res, _ := s.Run(rctx, sandbox.Cmd{Shell: "head -c 300000000 /dev/zero | tr '\\0' x", User: "root", MaxOutput: 1 << 20, Timeout: 50 * time.Second})
				if res == nil {
					return ok(false, "no result")
				}
				return ok(res.Truncated && len(res.Stdout) <= 1<<20, "kept %d bytes, truncated=%v", len(res.Stdout), res.Truncated)
			}},
		{Name: "CPU hog", Class: cExhaust, Expected: "CPU quota holds", Exclusive: true,
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `for i in 1 2 3 4; do timeout 5 sh -c 'while :; do :; done' & done; wait; echo done`)
				return ok(strings.Contains(out, "done"), "4 busy loops for 5 s under a 1-CPU quota")
			}},
		// --- network ---
		{Name: "none: host loopback service", Class: cNet, Expected: "unreachable; host listener sees nothing",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				port, hits, closeFn := hostListener()
				defer closeFn()
				out, _ := sh(ctx, s, fmt.Sprintf(`for h in 127.0.0.1 %s; do curl -sS --max-time 3 http://$h:%d/ 2>&1 | head -1; done`, strings.Join(hostAddrs(), " "), port))
				return ok(hits() == 0, "host listener hits %d; %s", hits(), out)
			}},
		{Name: "none: metadata address", Class: cNet, Expected: "unreachable; trap sees nothing",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.TrapHits())
				reached, out := curlAll(ctx, s, "http://169.254.169.254/", "http://10.1.2.3/")
				return ok(len(reached) == 0 && len(e.in.TrapHits()) == before, "%s", out)
			}},
		{Name: "none: DNS tunnel", Class: cNet, Expected: "no resolver; upstream sees no query",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				tag := fmt.Sprintf("n%d", time.Now().UnixNano()%1e9)
				out, _ := sh(ctx, s, fmt.Sprintf(`getent hosts %s.tunnel.other.test; python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'x', ('203.0.113.53', 53))" 2>&1; echo done`, tag))
				leaked := false
				for _, q := range e.in.DNSQueries() {
					leaked = leaked || strings.Contains(q, tag)
				}
				return ok(!leaked, "%s", out)
			}},
		{Name: "internet: public host reachable", Class: cNet, Expected: "reachable (positive control), DNS works", Network: "internet", Control: true,
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				reached, out := curlAll(ctx, s, "http://allowed.test/")
				return ok(len(reached) == 1, "%s", out)
			}},
		{Name: "internet: host itself", Class: cNet, Expected: "every host address refused", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				port, hits, closeFn := hostListener()
				defer closeFn()
				gw, _ := sh(ctx, s, "ip route 2>/dev/null | awk '/default/{print $3}'; awk '/nameserver/{print $2}' /etc/resolv.conf")
				targets := append(hostAddrs(), strings.Fields(gw)...)
				var urls []string
				for _, h := range targets {
					urls = append(urls, fmt.Sprintf("http://%s:%d/", h, port))
				}
				reached, out := curlAll(ctx, s, urls...)
				return ok(len(reached) == 0 && hits() == 0, "host hits %d; %s", hits(), clip(out, 150))
			}},
		{Name: "internet: metadata 169.254.169.254", Class: cNet, Expected: "refused; trap sees nothing", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.HitsTo(fakenet.Metadata))
				reached, out := curlAll(ctx, s, "http://169.254.169.254/latest/meta-data/")
				return ok(len(reached) == 0 && len(e.in.HitsTo(fakenet.Metadata)) == before, "%s", out)
			}},
		{Name: "internet: private and CGNAT ranges", Class: cNet, Expected: "refused; traps see nothing", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.TrapHits())
				reached, out := curlAll(ctx, s, "http://10.1.2.3/", "http://172.16.5.4/", "http://192.168.7.8/", "http://100.64.1.1/")
				sh(ctx, s, `python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x', (a, 53)) for a in ['10.1.2.3','172.16.5.4','192.168.7.8','100.64.1.1']]"`)
				time.Sleep(200 * time.Millisecond)
				return ok(len(reached) == 0 && len(e.in.TrapHits()) == before, "%s", clip(out, 150))
			}},
		{Name: "internet: multicast and broadcast", Class: cNet, Expected: "refused", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, `import socket
s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for a in ["224.0.0.1","239.255.255.250","255.255.255.255"]:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); s.sendto(b"x",(a,1900)); print("sent", a)
    except OSError as e: print("DENIED", a, e)`)
				rep, _ := s.NetworkReport(ctx)
				n := int64(-1)
				if rep != nil {
					n = rep.RefusedPackets
				}
				return ok(n > 0, "%s; firewall refused %d packets", out, n)
			}},
		{Name: "internet: IPv6 ULA and link-local", Class: cNet, Expected: "no IPv6 route", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := py(ctx, s, `import socket
for a in ["fd00::1","fe80::1%eth0","2001:db8::1"]:
    try:
        c=socket.create_connection((a,80),timeout=3); print("ESCAPED", a)
    except OSError as e: print("DENIED", a, e)`)
				return ok(!strings.Contains(out, "ESCAPED"), "%s", out)
			}},
		{Name: "internet: another sandbox", Class: cNet, Expected: "refused", Network: "internet",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				other, err := e.b.Create(ctx, local.Options{Runtime: e.runtime, Network: "internet"})
				if err != nil {
					return ok(false, "second sandbox: %v", err)
				}
				defer other.Kill(context.WithoutCancel(ctx))
				other.Start(ctx, sandbox.Cmd{Shell: "python3 -m http.server 8080", User: "root"})
				rep, _ := other.NetworkReport(ctx)
				time.Sleep(500 * time.Millisecond)
				reached, out := curlAll(ctx, s, "http://"+rep.Address+":8080/")
				return ok(len(reached) == 0, "%s", out)
			}},
		{Name: "allow: name not on the list", Class: cNet, Expected: "NXDOMAIN; upstream never asked; refusal recorded", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				tag := fmt.Sprintf("x%d.other.test", time.Now().UnixNano()%1e9)
				out, _ := sh(ctx, s, "getent hosts "+tag+"; echo rc=$?")
				asked := false
				for _, q := range e.in.DNSQueries() {
					asked = asked || q == tag
				}
				rep, _ := s.NetworkReport(ctx)
				recorded := rep != nil && strings.Contains(fmt.Sprint(rep.Refused), tag)
				return ok(!asked && recorded && strings.Contains(out, "rc=2"), "%s; recorded=%v", out, recorded)
			}},
		{Name: "allow: DNS tunnel", Class: cNet, Expected: "TXT on allowed names empty; other names never forwarded", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				tag := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
				out, _ := py(ctx, s, fmt.Sprintf(`import socket, struct
def q(name, t):
    h=struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0)
    b=b"".join(bytes([len(l)])+l.encode() for l in name.split("."))+b"\0"+struct.pack(">HH", t, 1)
    s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
    ns=[l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
    s.sendto(h+b, (ns,53)); r=s.recv(4096)
    return struct.unpack(">HHHHHH", r[:12])
print("txt allowed", q("allowed.test", 16))
print("tunnel", q("%s.tunnel.other.test", 16))
print("null", q("%s.allowed.test", 10))`, tag, tag))
				leaked := false
				for _, n := range e.in.DNSQueries() {
					leaked = leaked || strings.Contains(n, tag)
				}
				return ok(!leaked && strings.Contains(out, "txt allowed (7, 33152, 1, 0"), "%s", out)
			}},
		{Name: "allow: domain fronting SNI not allowed", Class: cNet, Expected: "refused by the proxy; host never sees it", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.HitsTo(fakenet.Allowed))
				out, _ := sh(ctx, s, `curl -ksS --max-time 4 --resolve evil.test:443:203.0.113.10 https://evil.test/ 2>&1; echo rc=$?`)
				return ok(!strings.Contains(out, "hello") && len(e.in.HitsTo(fakenet.Allowed)) == before, "%s", out)
			}},
		{Name: "allow: allowed SNI to a foreign address", Class: cNet, Expected: "refused (address is not the name's)", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.HitsTo(fakenet.Other))
				out, _ := sh(ctx, s, `curl -ksS --max-time 4 --resolve allowed.test:443:203.0.113.20 https://allowed.test/ 2>&1; echo rc=$?`)
				return ok(!strings.Contains(out, "hello") && len(e.in.HitsTo(fakenet.Other)) == before, "%s", out)
			}},
		{Name: "allow: HTTP Host switch", Class: cNet, Expected: "second request refused (403)", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				out, _ := sh(ctx, s, `curl -sS --max-time 4 -o /dev/null -w '%{http_code} ' http://allowed.test/ -H 'Host: allowed.test' --next -o /dev/null -w '%{http_code}' http://allowed.test/ -H 'Host: evil.test' 2>&1`)
				return ok(strings.Contains(out, "200 403"), "status codes %s", out)
			}},
		{Name: "allow: bare address and other ports", Class: cNet, Expected: "refused", Network: "allow:allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				reached, out := curlAll(ctx, s, "http://203.0.113.20/", "http://169.254.169.254/", "telnet://203.0.113.10:22")
				return ok(len(reached) == 0, "%s", clip(out, 150))
			}},
		{Name: "allow: DNS rebinding to a private address", Class: cNet, Expected: "answer dropped; trap sees nothing", Network: "allow:*.allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.TrapHits())
				out, _ := sh(ctx, s, "getent hosts rebind.allowed.test; echo rc=$?; curl -sS --max-time 3 http://rebind.allowed.test/ 2>&1 | head -1")
				return ok(len(e.in.TrapHits()) == before && !strings.Contains(out, "10.1.2.3"), "%s", out)
			}},
		{Name: "allow: TLS fronting on a shared CDN address (known bypass)", Class: cNet,
			Expected: "reaches the shared address: Host inside TLS is not visible without interception (documented)", Network: "allow:*.allowed.test",
			Run: func(ctx context.Context, e *env, s *local.Sandbox) outcome {
				before := len(e.in.HitsTo(fakenet.Other))
				out, _ := sh(ctx, s, `curl -ksS --max-time 4 https://cdn.allowed.test/ -H 'Host: evil.test' 2>&1`)
				reached := len(e.in.HitsTo(fakenet.Other)) > before
				return ok(reached && strings.Contains(out, "host evil.test"), "bypass reproduced=%v: %s", reached, out)
			}},
	}
}

func pySyscallLoop(name string, nr int, args string, n int) string {
	return fmt.Sprintf(`import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fds = 0
while fds < %d:
    r = libc.syscall(%d%s)
    if r < 0:
        print("DENIED %s after %%d: %%s" %% (fds, os.strerror(ctypes.get_errno()))); break
    fds += 1
else:
    print("ESCAPED no limit")`, n, nr, args, name)
}

func probeHostInotify() bool {
	fd, err := inotifyInit()
	if err != nil {
		return false
	}
	closeFD(fd)
	return true
}

func hostUIDOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 1 {
				n, _ := strconv.Atoi(f[1])
				return n
			}
		}
	}
	return -1
}

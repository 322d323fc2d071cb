package local_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/local"
)

// TestIsolation checks from inside a sandbox, as its root, that the host is out of reach.
func TestIsolation(t *testing.T) {
	for _, rt := range runtimesUnderTest(t) {
		t.Run(rt, func(t *testing.T) { testIsolation(t, rt) })
	}
}

func testIsolation(t *testing.T, rt string) {
	t.Setenv("AGENT_TEST_HOST_SECRET", "hunter2")
	b := newBackend(t, nil)
	ctx := ctxT(t, 3*time.Minute)

	// Things of the host the sandbox must not reach: a process, a loopback listener, a file.
	sleeper := exec.Command("sleep", "120")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hostFile := filepath.Join(t.TempDir(), "host-secret")
	if err := os.WriteFile(hostFile, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}

	s := mustCreate(t, ctx, b, local.Options{Template: "host", Runtime: rt})
	installProbe(t, ctx, s)
	out, code, err := s.Output(ctx, "root", "/tmp/probe", "isolation", strconv.Itoa(sleeper.Process.Pid), ln.Addr().String(), hostFile)
	if err != nil || code != 0 {
		t.Fatalf("probe: %v (exit %d): %s", err, code, out)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	t.Logf("probe: %v", res)
	for _, check := range []string{"mount", "mount_proc", "finit_module", "init_module", "sysrq", "mknod",
		"raw_socket", "packet_socket", "clone_newuser", "unshare_newns", "setns", "chroot_escape_pivot", "bpf",
		"keyctl", "write_usr", "reboot", "settimeofday", "ptrace_host_pid", "connect_host", "host_file"} {
		got, ok := res[check]
		if !ok {
			t.Errorf("%s: not probed", check)
			continue
		}
		if got == "allowed" {
			t.Errorf("%s: allowed inside the sandbox", check)
		}
	}
	// Setting the sandbox's own hostname is fine (its own UTS namespace) but not possible without
	// CAP_SYS_ADMIN either.
	if res["set_hostname"] == "allowed" {
		t.Errorf("sethostname allowed")
	}

	// Host processes are invisible: the sandbox sees only its own few.
	out, _, err = s.Output(ctx, "root", "sh", "-c", "ls /proc | grep -c '^[0-9]*$'; cat /proc/1/cmdline | tr '\\0' ' '")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(strings.TrimSpace(out), "\n", 2)
	if n, _ := strconv.Atoi(lines[0]); n == 0 || n > 8 {
		t.Errorf("sandbox sees %s processes; want only its own", lines[0])
	}
	if len(lines) < 2 || !strings.Contains(lines[1], "envd") {
		t.Errorf("pid 1 is not envd: %q", out)
	}

	// Host files outside the template are invisible.
	out, _, _ = s.Output(ctx, "root", "sh", "-c", "ls -A /root /home /var /run /etc | tr '\\n' ' '; test -e /etc/shadow && echo SHADOW")
	for _, bad := range []string{"SHADOW", "agent-local-test", "work"} {
		if strings.Contains(out, bad) {
			t.Errorf("host file visible (%s): %s", bad, out)
		}
	}
	if h, _ := os.ReadFile("/etc/hostname"); len(h) > 0 {
		out, _, _ := s.Output(ctx, "root", "cat", "/etc/hostname")
		if strings.TrimSpace(out) != s.ID() {
			t.Errorf("/etc/hostname inside = %q, want the sandbox id", out)
		}
	}

	// Only the standard safe devices.
	out, _, _ = s.Output(ctx, "root", "sh", "-c", "find /dev -mindepth 1 \\( -type c -o -type b \\) | sort | tr '\\n' ' '")
	allowed := map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true,
		"/dev/urandom": true, "/dev/tty": true, "/dev/ptmx": true, "/dev/pts/ptmx": true, "/dev/console": true}
	for _, d := range strings.Fields(out) {
		if !allowed[d] {
			t.Errorf("device %s present in the sandbox", d)
		}
	}
	// rlimits set from the spec.
	out, code, err = s.Output(ctx, "root", "sh", "-c", "grep -E 'Max (open files|processes)' /proc/1/limits")
	// NOFILE is the default (65536) or, where this process may not raise its hard limit, that limit.
	if nofile := strconv.FormatUint(s.Record().Limits.NoFile, 10); err != nil || code != 0 ||
		!regexp.MustCompile(`Max open files +`+nofile+` +`+nofile).MatchString(out) ||
		!regexp.MustCompile(`Max processes +1024 +1024`).MatchString(out) {
		t.Errorf("init rlimits:\n%s", out)
	}

	// Only loopback.
	out, _, _ = s.Output(ctx, "root", "sh", "-c", "ls /sys/class/net | tr '\\n' ' '")
	if strings.TrimSpace(out) != "lo" {
		t.Errorf("network interfaces inside: %q, want only lo", out)
	}

	// The host's environment is absent from the init and from commands.
	out, _, _ = s.Output(ctx, "root", "sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n'; env")
	if strings.Contains(out, "hunter2") || strings.Contains(out, "AGENT_TEST_HOST_SECRET") {
		t.Errorf("host environment leaked into the sandbox: %s", out)
	}

	// Root inside is an unprivileged uid outside: the init's uid seen from the host, and the owner of
	// a file root creates inside as stored on the host.
	rec := s.Record()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", rec.InitPid))
	if err != nil {
		t.Fatal(err)
	}
	var uidLine string
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") {
			uidLine = l
		}
	}
	f := strings.Fields(uidLine)
	if len(f) < 2 || f[1] != strconv.Itoa(int(rec.UIDBase)) {
		t.Errorf("init uid on the host: %q, want %d", uidLine, rec.UIDBase)
	}
	if rec.UIDBase < 65536 {
		t.Errorf("uid base %d overlaps ordinary host users", rec.UIDBase)
	}
	// Other host users cannot enter the sandbox's directory (socket, state, disk, rootfs).
	var dst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(b.DataDir(), "sandboxes", s.ID()), &dst); err != nil {
		t.Fatal(err)
	}
	if dst.Mode&0o007 != 0 || dst.Uid != 0 || dst.Gid != rec.UIDBase {
		t.Errorf("sandbox dir mode %o owner %d:%d: want 0710 root:%d", dst.Mode&0o777, dst.Uid, dst.Gid, rec.UIDBase)
	}
	// Capabilities of the init, seen from the host: moby's default set without NET_RAW.
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "CapBnd:") {
			v, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(l, "CapBnd:")), 16, 64)
			const capNetRaw, capSysAdmin = 13, 21
			if v&(1<<capNetRaw) != 0 || v&(1<<capSysAdmin) != 0 {
				t.Errorf("init bounding set %x holds NET_RAW or SYS_ADMIN", v)
			}
		}
		if strings.HasPrefix(l, "Seccomp:") && strings.TrimSpace(strings.TrimPrefix(l, "Seccomp:")) != "2" {
			t.Errorf("init is not under a seccomp filter: %s", l)
		}
	}
}

// runtimesUnderTest lists the runtimes that work on this host; the others are skipped with the
// reason.
func runtimesUnderTest(t *testing.T) []string {
	requireRoot(t)
	rts := []string{"runc"}
	if reason := crunUnusable(); reason == "" {
		rts = append(rts, "crun")
	} else if strings.Contains(reason, "hybrid") && os.Getenv("AGENT_TEST_CRUN_HOST_FIX") != "" {
		// The documented host fix (agent doctor --fix), applied for this test only. Opt-in: while
		// it is applied, every container any process creates also gets a cgroup in the moved
		// hierarchies, and the hierarchy outlives the unmount until those are gone.
		mounted, err := local.FixCrunHybrid()
		t.Cleanup(func() {
			if err := local.UndoCrunHybridFix(mounted); err != nil {
				t.Logf("undoing the crun host fix: %v", err)
			}
		})
		if err != nil {
			t.Logf("crun not tested: %s; the host fix failed: %v", reason, err)
		} else {
			rts = append(rts, "crun")
		}
	} else {
		t.Logf("crun not tested: %s (AGENT_TEST_CRUN_HOST_FIX=1 applies the fix for the test)", reason)
	}
	// runsc (gVisor) has its own suite: runsc_test.go.
	return rts
}

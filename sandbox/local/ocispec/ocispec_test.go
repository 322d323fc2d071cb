package ocispec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestNamespacesAll(t *testing.T) {
	s, err := New(WithNamespaces(""))
	if err != nil {
		t.Fatal(err)
	}
	var got []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		got = append(got, ns.Type)
		if ns.Path != "" {
			t.Errorf("%s joins %s; want a new namespace", ns.Type, ns.Path)
		}
	}
	for _, want := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.PIDNamespace, specs.MountNamespace,
		specs.NetworkNamespace, specs.UTSNamespace, specs.IPCNamespace, specs.CgroupNamespace} {
		if !slices.Contains(got, want) {
			t.Errorf("namespace %s missing", want)
		}
	}
	s, _ = New(WithNamespaces("/run/netns/x"))
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace && ns.Path != "/run/netns/x" {
			t.Errorf("network namespace path %q", ns.Path)
		}
	}
}

func TestUserNamespaceMapsToUnprivilegedRange(t *testing.T) {
	s, err := New(WithUserNamespace(0x10000000, 65536))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range [][]specs.LinuxIDMapping{s.Linux.UIDMappings, s.Linux.GIDMappings} {
		if len(m) != 1 || m[0].ContainerID != 0 || m[0].HostID != 0x10000000 || m[0].Size != 65536 {
			t.Errorf("mapping %+v", m)
		}
	}
	if _, err := New(WithUserNamespace(0, 65536)); err == nil {
		t.Error("mapping root inside to root outside was accepted")
	}
}

func TestCapabilitiesDropNetRaw(t *testing.T) {
	caps := DefaultCapabilities()
	for _, bad := range []string{"CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_NET_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_TIME"} {
		if slices.Contains(caps, bad) {
			t.Errorf("%s granted", bad)
		}
	}
	s, _ := New(WithCapabilities(caps))
	c := s.Process.Capabilities
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted} {
		if !slices.Equal(set, caps) {
			t.Errorf("capability set %v, want %v", set, caps)
		}
	}
	if len(c.Ambient) != 0 {
		t.Errorf("ambient capabilities %v", c.Ambient)
	}
}

func TestSeccompDefaultProfile(t *testing.T) {
	if _, err := New(WithSeccompDefault()); err == nil {
		t.Error("seccomp before capabilities was accepted")
	}
	s, err := New(WithCapabilities(DefaultCapabilities()), WithSeccompDefault())
	if err != nil {
		t.Fatal(err)
	}
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno {
		t.Fatalf("seccomp %+v: want default action errno", sc)
	}
	allowed := map[string]bool{}
	for _, sys := range sc.Syscalls {
		if sys.Action == specs.ActAllow && len(sys.Args) == 0 {
			for _, n := range sys.Names {
				allowed[n] = true
			}
		}
	}
	for _, want := range []string{"read", "write", "execve", "openat"} {
		if !allowed[want] {
			t.Errorf("%s not allowed", want)
		}
	}
	// Without CAP_SYS_ADMIN / CAP_SYS_MODULE the profile must not allow these unconditionally.
	for _, bad := range []string{"mount", "umount2", "init_module", "finit_module", "bpf", "unshare", "setns", "keyctl", "pivot_root", "reboot"} {
		if allowed[bad] {
			t.Errorf("%s allowed unconditionally", bad)
		}
	}
}

func TestMaskedAndReadonlyPaths(t *testing.T) {
	s, _ := New(WithMaskedPaths())
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware", "/proc/timer_list"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, p) {
			t.Errorf("%s not read-only", p)
		}
	}
}

func TestDefaultMountsAreNosuid(t *testing.T) {
	s, _ := New(WithDefaultMounts())
	dests := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		dests[m.Destination] = m
		if !slices.Contains(m.Options, "nosuid") {
			t.Errorf("%s mounted without nosuid", m.Destination)
		}
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"} {
		if _, ok := dests[d]; !ok {
			t.Errorf("%s not mounted", d)
		}
	}
	if !slices.Contains(dests["/sys"].Options, "ro") {
		t.Error("/sys is writable")
	}
}

func TestResources(t *testing.T) {
	s, err := New(WithResources("/agent-x/abc", Resources{MemoryBytes: 1 << 30, Pids: 512, CPUs: 1.5}))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Linux.Resources
	if s.Linux.CgroupsPath != "/agent-x/abc" || *r.Memory.Limit != 1<<30 || *r.Memory.Swap != 1<<30 ||
		*r.Pids.Limit != 512 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Errorf("resources %+v %+v %+v %+v", r.Memory, r.Pids, *r.CPU.Quota, *r.CPU.Period)
	}
	if len(r.Devices) != 1 || r.Devices[0].Allow {
		t.Errorf("device rules %+v: want deny-all (the runtime adds its safe set)", r.Devices)
	}
	if _, err := New(WithResources("/x", Resources{MemoryBytes: 1, Pids: 0, CPUs: 1})); err == nil {
		t.Error("zero pids limit accepted")
	}
}

func TestRlimits(t *testing.T) {
	s, _ := New(WithRlimits(4096, 1024))
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}, {Type: "RLIMIT_NPROC", Hard: 1024, Soft: 1024}}
	if !slices.Equal(s.Process.Rlimits, want) {
		t.Errorf("rlimits %+v", s.Process.Rlimits)
	}
}

func TestWriteIsValidJSONWithOldSpecVersion(t *testing.T) {
	s, err := New(WithProcess([]string{"/init"}, []string{"A=b"}, "/"), WithHostname("abc"),
		WithCapabilities(DefaultCapabilities()), WithSeccompDefault())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Version != "1.0.2" || back.Hostname != "abc" || back.Process.Args[0] != "/init" || back.Process.User.UID != 0 {
		t.Errorf("round trip: %+v", back)
	}
	if _, err := New(WithProcess(nil, nil, "/")); err == nil {
		t.Error("empty args accepted")
	}
}

// TestSeccompClone3Allowed: clone3 leaves every non-allow rule and is allowed; the other rules
// (unshare, keyctl denied) stay as they were.
func TestSeccompClone3Allowed(t *testing.T) {
	if _, err := New(WithSeccompClone3Allowed()); err == nil {
		t.Error("clone3 allowed before a profile was set")
	}
	s, err := New(WithCapabilities(DefaultCapabilities()), WithSeccompDefault(), WithSeccompClone3Allowed())
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, r := range s.Linux.Seccomp.Syscalls {
		for _, n := range r.Names {
			if n == "clone3" && r.Action != specs.ActAllow {
				t.Errorf("clone3 still in a %s rule", r.Action)
			}
			if r.Action == specs.ActAllow && len(r.Args) == 0 {
				allowed[n] = true
			}
		}
	}
	if !allowed["clone3"] || allowed["unshare"] || allowed["keyctl"] || !allowed["read"] {
		t.Errorf("allowed: clone3 %v unshare %v keyctl %v read %v", allowed["clone3"], allowed["unshare"], allowed["keyctl"], allowed["read"])
	}
}

package hostinfo

import (
	"os"
	"testing"
)

func TestReadsThisMachine(t *testing.T) {
	if _, err := os.Stat("/proc/meminfo"); err != nil {
		t.Skip("no /proc/meminfo here")
	}
	total, avail := Meminfo("MemTotal"), Meminfo("MemAvailable")
	if total <= 0 || avail <= 0 || avail > total {
		t.Errorf("MemTotal %d, MemAvailable %d", total, avail)
	}
	if Meminfo("NoSuchField") != 0 {
		t.Error("a missing field is not 0")
	}
	if Kernel() == "" {
		t.Error("no kernel release")
	}
}

// Package hostinfo reads what benchmarks report about the machine they ran on: its kernel release
// and the figures of /proc/meminfo.
package hostinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Kernel is the running kernel's release ("" when unreadable).
func Kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// Meminfo returns the /proc/meminfo field key (e.g. "MemAvailable", "MemTotal", "Slab") in bytes;
// 0 when it cannot be read.
func Meminfo(key string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

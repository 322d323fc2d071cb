package main

import (
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512M": 512 << 20, "10g": 10 << 30, "1048576": 1 << 20, "1.5G": 3 << 29, "64k": 64 << 10} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1G", "1Q"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"agent", "run", "--base-url", "https://me:secret@example.com/v1", "--base-url=http://u:pw@h/x", "plain@text", "tasks/"})
	joined := strings.Join(got, " ")
	if strings.Contains(joined, "secret") || strings.Contains(joined, ":pw@") || !strings.Contains(joined, "https://me:xxxxx@example.com/v1") || !strings.Contains(joined, "plain@text") {
		t.Errorf("redactArgs = %q", got)
	}
}

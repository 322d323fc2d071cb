package spec

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{"90s": 90 * time.Second, "10m": 10 * time.Minute, "1h30m": 90 * time.Minute, "500ms": 500 * time.Millisecond, " 2h ": 2 * time.Hour, "168h": MaxDuration}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	bad := map[string]string{"": "empty", "600": "has no unit", "1.5": "has no unit", "10 minutes": "invalid duration", "-1s": "must be positive", "0s": "must be positive", "169h": "longer than", "1d": "invalid duration"}
	for in, msg := range bad {
		if _, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"1": 1, "1048576": 1 << 20, "512MiB": 512 << 20, "1GiB": 1 << 30, "1gib": 1 << 30, "1.5GiB": 3 << 29,
		"2GB": 2e9, "2gb": 2e9, "10kB": 10000, "10KB": 10000, "64Ki": 64 << 10, "3Mi": 3 << 20, "1 TiB": 1 << 40, "100B": 100,
	}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	bad := map[string]string{
		"": "invalid size", "1G": "ambiguous size unit", "5m": "ambiguous", "1GiB2": "invalid size", "-1GiB": "invalid size",
		"0": "at least one byte", "0.1B": "at least one byte", "2PiB": "unknown size unit", "9999TiB": "larger than the maximum", "1e9": "invalid size",
	}
	for in, msg := range bad {
		if _, err := ParseSize(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
	for v, want := range map[int64]string{1 << 30: "1GiB", 2e9: "2GB", 1000: "1kB", 1023: "1023", 3 << 29: "1536MiB", 16 << 10: "16KiB"} {
		if got := FormatSize(v); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", v, got, want)
		}
		if back, err := ParseSize(FormatSize(v)); err != nil || back != v {
			t.Errorf("FormatSize(%d) does not parse back: %v %v", v, back, err)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for in, want := range map[string]string{
		"none":                                 "none",
		"internet":                             "internet",
		"allow:PyPI.org.,*.npmjs.org,10.1.2.3": "allow:pypi.org,*.npmjs.org,10.1.2.3/32",
		"allow:a.com,a.com,192.0.2.9/24,::1":   "allow:a.com,192.0.2.0/24,::1/128",
		"allow: registry.npmjs.org , 2001:db8::/48": "allow:registry.npmjs.org,2001:db8::/48",
	} {
		n, err := ParseNetwork(in)
		if err != nil || n.String() != want {
			t.Errorf("%q: %q %v, want %q", in, n.String(), err, want)
		}
	}
	for in, msg := range map[string]string{
		"all": "invalid network", "allow:": "empty allow-list entry", "allow:*": "use network: internet", "allow:::/0": "allows every address",
		"allow:fe80::1%eth0": "zones", "allow:-a.com": "invalid domain", "allow:" + strings.Repeat("a", 64) + ".com": "invalid domain", "allow:a.b*.com": "wildcard", "allow:0.0.0.0.": "never all digits",
	} {
		if _, err := ParseNetwork(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", in, err, msg)
		}
	}
}

func TestParseModeAndKeep(t *testing.T) {
	for in, want := range map[string]Mode{"644": 0o644, "0755": 0o755, "0o700": 0o700, "0": 0} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "888", "4755", "rwx", "0x1ff"} {
		if _, err := ParseMode(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	for _, in := range []string{"none", "failed", "all"} {
		if k, err := ParseKeep(in); err != nil || string(k) != in {
			t.Errorf("%q: %v", in, err)
		}
	}
	if _, err := ParseKeep("failing"); err == nil {
		t.Error("keep failing accepted")
	}
	for _, in := range []string{"runc", "crun", "runsc"} {
		if r, err := ParseRuntime(in); err != nil || string(r) != in {
			t.Errorf("runtime %q: %v", in, err)
		}
	}
	for _, in := range []string{"", "RUNC", "kata", "runc ", "gvisor"} {
		if _, err := ParseRuntime(in); err == nil || !strings.Contains(err.Error(), "want runc, crun or runsc") {
			t.Errorf("runtime %q: %v", in, err)
		}
	}
}

func TestGrade(t *testing.T) {
	str := func(s string) *string { return &s }
	re := func(s string) *Pattern {
		p, err := CompilePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	run := Check{Kind: CheckRun, Exit: 0, Timeout: Duration(time.Minute)}
	cases := []struct {
		c        Check
		exit     int
		out      string
		timedOut bool
		reason   string // "" = passes
	}{
		{run, 0, "anything", false, ""},
		{run, 1, "", false, "exit code 1, want 0"},
		{run, 0, "", true, "timed out after 1m0s"},
		{Check{Kind: CheckRun, Exit: 2}, 2, "", false, ""},
		{Check{Kind: CheckRun, Stdout: str("1\n2\nFizz\n")}, 0, "1\n2\nFizz\n", false, ""},
		{Check{Kind: CheckRun, Stdout: str("1\n2\nFizz\n")}, 0, "1\n2\nfizz\n", false, `stdout differs at line 3: got "fizz\n", want "Fizz\n"`},
		{Check{Kind: CheckRun, Stdout: str("1\n2\n")}, 0, "1\n2", false, `stdout differs at line 2: got "2", want "2\n"`},
		{Check{Kind: CheckRun, Stdout: str("1\n2\n")}, 0, "1\n", false, `stdout ends before line 2, want "2\n"`},
		{Check{Kind: CheckRun, Stdout: str("1\n")}, 0, "", false, `stdout is empty, want "1\n"`},
		{Check{Kind: CheckRun, Stdout: str("1\n")}, 0, "1\n2\n", false, `stdout has extra line 2: "2\n"`},
		{Check{Kind: CheckRun, StdoutContains: str("OK")}, 0, "Ran 3 tests\nOK\n", false, ""},
		{Check{Kind: CheckRun, StdoutContains: str("OK")}, 0, "FAILED", false, `stdout does not contain "OK"`},
		{Check{Kind: CheckRun, StdoutRegex: re(`(?m)^Ran [1-9]\d* tests?$`)}, 0, "x\nRan 12 tests\n", false, ""},
		{Check{Kind: CheckRun, StdoutRegex: re(`(?m)^Ran [1-9]\d* tests?$`)}, 0, "Ran 0 tests\n", false, "stdout does not match"},
	}
	for i, tc := range cases {
		o := tc.c.GradeRun(tc.exit, []byte(tc.out), tc.timedOut)
		if o.Passed != (tc.reason == "") || !strings.Contains(o.Reason, tc.reason) {
			t.Errorf("run case %d: %+v, want reason %q", i, o, tc.reason)
		}
	}
	fcases := []struct {
		c       Check
		exists  bool
		content string
		reason  string
	}{
		{Check{Kind: CheckFile, File: "a", Exists: true}, true, "", ""},
		{Check{Kind: CheckFile, File: "a", Exists: true}, false, "", "a does not exist"},
		{Check{Kind: CheckFile, File: "a", Exists: false}, false, "", ""},
		{Check{Kind: CheckFile, File: "a", Exists: false}, true, "", "a exists, want it absent"},
		{Check{Kind: CheckFile, File: "a", Exists: true, Equals: str("x\n")}, true, "x\n", ""},
		{Check{Kind: CheckFile, File: "a", Exists: true, Equals: str("x\n")}, true, "x", "content differs at line 1"},
		{Check{Kind: CheckFile, File: "a", Exists: true, Contains: str("def ")}, true, "def f(): pass", ""},
		{Check{Kind: CheckFile, File: "a", Exists: true, Contains: str("def ")}, true, "lambda", `content does not contain "def "`},
		{Check{Kind: CheckFile, File: "a", Exists: true, Regex: re(`total: \d+`)}, true, "total: 12", ""},
		{Check{Kind: CheckFile, File: "a", Exists: true, Regex: re(`total: \d+`)}, true, "total: x", "content does not match"},
	}
	for i, tc := range fcases {
		o := tc.c.GradeFile(tc.exists, []byte(tc.content))
		if o.Passed != (tc.reason == "") || !strings.Contains(o.Reason, tc.reason) {
			t.Errorf("file case %d: %+v, want reason %q", i, o, tc.reason)
		}
	}
	if o := run.GradeFile(true, nil); o.Passed {
		t.Error("a run check graded as a file check passed")
	}
}

package runner

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReport feeds hostile text (from a model, a check's output, a task name) into report.md: the
// table keeps its shape and everything stays valid UTF-8 when the input is.
func FuzzReport(f *testing.F) {
	f.Add("name", "stdout differs", "detail\nwith | pipes `and` ``backticks``")
	f.Add("", "", "")
	f.Add("|||", "\r\n\t", strings.Repeat("x", 5000))
	f.Fuzz(func(t *testing.T, name, reason, detail string) {
		sum := &Summary{Total: 3, Passed: 1, Failed: 1, Error: 1, Tasks: []SummaryTask{
			{Name: name, Status: StatusPassed},
			{Name: name, Status: StatusFailed, Checks: CheckCounts{Total: 1, Failed: 1}, FailedChecks: []FailedCheck{{Name: name, Reason: reason}}},
			{Name: name, Status: StatusError, Reason: Reason(reason), Detail: detail,
				// Refusals carry names chosen inside the sandbox (DNS names, TLS server names).
				NetworkRefused: 2, NetworkSample: []string{detail, reason}},
		}}
		md := Report(&RunInfo{Model: detail, Templates: map[string]string{name: detail}}, sum)
		for _, line := range strings.Split(md, "\n") {
			if strings.HasPrefix(line, "| ") {
				if n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|"); n != 9 {
					t.Fatalf("table row with %d separators: %q", n, line)
				}
			}
		}
		// The network refusals stay one line for the one task that has some (task names are
		// validated by the spec loader; refusals are the sandbox's).
		_, net, ok := strings.Cut(md, "### Network refusals\n\n")
		net, _, _ = strings.Cut(net, "\n\n")
		if !ok || !strings.ContainsAny(name, "\r\n") && strings.Count(net, "\n") != 0 || !strings.HasPrefix(net, "- **") {
			t.Fatalf("network refusals section %q in:\n%s", net, md)
		}
		if utf8.ValidString(name) && utf8.ValidString(reason) && utf8.ValidString(detail) && !utf8.ValidString(md) {
			t.Fatalf("report is not valid UTF-8")
		}
	})
}

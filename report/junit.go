package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentrun/agent/report/results"
)

// The JUnit XML elements, in the shape CI systems read (the Ant/Maven Surefire schema that
// GitHub test reporters, GitLab, Jenkins and Buildkite understand).
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// maxJUnitText bounds the text of one failure or output element.
const maxJUnitText = 16 << 10

// JUnit writes report.xml: one test suite per model, one test case per task × epoch. A failed
// task carries a <failure> naming its failing check and why it failed (every check's outcome in
// the body); an errored task carries an <error> with its reason.
func JUnit(w io.Writer, r *results.Results) error {
	doc := junitSuites{Name: "agent " + firstNonEmpty(r.Run.Command, "run")}
	var total time.Duration
	multiEpoch := map[string]bool{}
	for _, c := range r.Cells {
		if c.Epoch > 1 {
			multiEpoch[c.Model+"\x00"+c.Task] = true
		}
	}
	for _, model := range r.Models() {
		s := junitSuite{Name: model}
		if !r.Run.StartedAt.IsZero() {
			s.Timestamp = r.Run.StartedAt.UTC().Format("2006-01-02T15:04:05")
		}
		s.Properties = append(s.Properties, junitProperty{Name: "model", Value: xmlText(model, 512)})
		var st time.Duration
		for _, c := range r.Cells {
			if c.Model != model {
				continue
			}
			name := c.Task
			if multiEpoch[c.Model+"\x00"+c.Task] {
				name = fmt.Sprintf("%s [epoch %d]", c.Task, c.Epoch)
			}
			tc := junitCase{Name: xmlText(name, 512), Classname: xmlText(c.Task, 512), Time: seconds(c.Duration)}
			switch c.Status {
			case results.StatusFailed:
				s.Failures++
				msg := "a check failed"
				if ch := c.FailingCheck(); ch != nil {
					msg = "check failed: " + Why(c)
				}
				tc.Failure = &junitProblem{Message: xmlText(oneLine(msg, 500), 1024), Type: "check", Text: xmlText(checksText(c), maxJUnitText)}
			case results.StatusError:
				s.Errors++
				tc.Error = &junitProblem{Message: xmlText(oneLine(Why(c), 500), 1024), Type: firstNonEmpty(xmlText(c.Reason, 64), "error"),
					Text: xmlText(firstNonEmpty(c.Detail, c.Reason), maxJUnitText)}
			}
			if c.Transcript != nil && c.Transcript.FinalAnswer != "" {
				tc.SystemOut = xmlText(c.Transcript.FinalAnswer, maxJUnitText)
			}
			s.Tests++
			st += c.Duration
			s.Cases = append(s.Cases, tc)
		}
		s.Time = seconds(st)
		total += st
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Errors += s.Errors
		doc.Suites = append(doc.Suites, s)
	}
	if !r.Run.StartedAt.IsZero() && r.Run.EndedAt.After(r.Run.StartedAt) {
		total = r.Run.EndedAt.Sub(r.Run.StartedAt)
	}
	doc.Time = seconds(total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("writing JUnit XML: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// checksText lists every check's outcome, one per line.
func checksText(c *results.Cell) string {
	var b strings.Builder
	for _, ch := range c.Checks {
		mark := "PASS"
		switch {
		case ch.Skipped:
			mark = "SKIP"
		case !ch.Passed:
			mark = "FAIL"
		}
		fmt.Fprintf(&b, "%s %s", mark, oneLine(ch.Name, 200))
		if why := firstNonEmpty(ch.Reason, ch.Error); why != "" {
			fmt.Fprintf(&b, ": %s", oneLine(why, 500))
		}
		b.WriteByte('\n')
		if !ch.Passed && (ch.Stdout != "" || ch.Stderr != "") {
			if ch.Stdout != "" {
				fmt.Fprintf(&b, "  stdout: %s\n", clipText(ch.Stdout, 2000))
			}
			if ch.Stderr != "" {
				fmt.Fprintf(&b, "  stderr: %s\n", clipText(ch.Stderr, 2000))
			}
		}
	}
	return b.String()
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// xmlText makes s safe for XML 1.0 (which cannot carry most control characters, even escaped)
// and bounds it.
func xmlText(s string, n int) string {
	s = clipText(s, n)
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return '\uFFFD'
		}
		return r
	}, s)
}

// clipText cuts s to about n bytes on a rune boundary, marking the cut.
func clipText(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !validStart(s[cut]) {
		cut--
	}
	return s[:cut] + "… (cut)"
}

func validStart(b byte) bool { return b&0xC0 != 0x80 }

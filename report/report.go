// Package report draws the reports of a results directory: report.md (a summary short enough for
// a GitHub job summary), report.html (one self-contained page with inline SVG charts and every
// transcript, readable offline) and report.xml (JUnit XML for CI test reporting). It also serves
// reports over HTTP for browsing runs. Everything shown came from models and sandboxes and is
// escaped as untrusted text.
package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentrun/agent/report/results"
)

// File names of the reports in a results directory.
const (
	MarkdownFile = "report.md"
	HTMLFile     = "report.html"
	JUnitFile    = "report.xml"
)

// WriteAll writes report.md, report.html and report.xml into the results directory r was read
// from (each through a temporary file renamed into place, so a reader never sees half a report).
func WriteAll(r *results.Results) error {
	var md, html, xml bytes.Buffer
	if err := Markdown(&md, r, MarkdownOptions{}); err != nil {
		return err
	}
	if err := HTML(&html, r); err != nil {
		return err
	}
	if err := JUnit(&xml, r); err != nil {
		return err
	}
	for name, b := range map[string][]byte{MarkdownFile: md.Bytes(), HTMLFile: html.Bytes(), JUnitFile: xml.Bytes()} {
		if err := writeAtomic(filepath.Join(r.Dir, name), b); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(file string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(file), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", filepath.Base(file), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", filepath.Base(file), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(file), err)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(file), err)
	}
	return nil
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentrun/agent/runner/spec"
)

// adhocSpec builds the spec of a task given on the command line (agent do, agent chat): the
// prompt, the seed directory, the CLI's overrides. It goes through the spec loader like any spec
// file, so seed files are read with the same bounds and checks. save, when set, also writes the
// spec file there (agent do --save-spec).
func adhocSpec(name, prompt, filesDir string, overrides *spec.Config, save string) (*spec.Spec, error) {
	sf := &spec.SpecFile{Name: spec.Ptr(name), Prompt: prompt}
	if filesDir != "" {
		abs, err := filepath.Abs(filesDir)
		if err != nil {
			return nil, usageError("--files %s: %v", filesDir, err)
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return nil, usageError("--files: %v", err)
		}
		if !fi.IsDir() {
			return nil, usageError("--files %s: not a directory", filesDir)
		}
		sf.Files = []spec.FileEntry{{From: spec.Ptr(abs)}}
	}
	if overrides != nil {
		// The overrides become the spec's own settings, so a saved spec reproduces the task.
		sf.Common = spec.MergeCommon(&overrides.Common)
	}
	src, err := spec.FormatSpec(sf)
	if err != nil {
		return nil, fmt.Errorf("building the task: %w", err)
	}
	dir, err := os.MkdirTemp("", "agent-task-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		return nil, err
	}
	s, err := spec.LoadSpec(file, spec.Options{AllowOutside: true})
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("%s", strings.ReplaceAll(err.Error(), file, "the task"))}
	}
	s.File = "(command line)"
	if save != "" {
		if err := os.WriteFile(save, src, 0o644); err != nil {
			return nil, fmt.Errorf("--save-spec: %w", err)
		}
	}
	return s, nil
}

package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
)

// digestVersion changes whenever the canonical form changes, so that old digests never match.
const digestVersion = 1

// canonical is what the digest covers: everything that can change what a task does or how it is
// graded. Left out on purpose: the spec file's path and the positions (moving or reformatting a
// spec, or editing comments, keeps its digest), tags (selection only), repeat (so adding epochs
// keeps the finished ones), keep, fork_setup, sandbox and runtime (how and where sandboxes are
// managed, not what they do).
type canonical struct {
	V              int               `json:"v"`
	Name           string            `json:"name"`
	Prompt         string            `json:"prompt"`
	System         string            `json:"system"`
	Model          string            `json:"model"`
	Template       string            `json:"template"`
	Workdir        string            `json:"workdir"`
	Files          []canonicalFile   `json:"files"`
	Setup          []Step            `json:"setup"`
	Checks         []canonicalCheck  `json:"checks"`
	Limits         Limits            `json:"limits"`
	Env            map[string]string `json:"env"`
	Artifacts      []string          `json:"artifacts"`
	Network        Network           `json:"network"`
	StopBackground bool              `json:"stop_background"`
}

type canonicalFile struct {
	Path   string `json:"path"`
	Mode   Mode   `json:"mode"`
	SHA256 string `json:"sha256"`
}

// canonicalCheck is a Check without its position.
type canonicalCheck Check

// MarshalJSON leaves the position out.
func (c canonicalCheck) MarshalJSON() ([]byte, error) {
	c.Pos = Pos{}
	type plain canonicalCheck
	return json.Marshal(plain(c))
}

// Digest returns "sha256:" and the hex SHA-256 of the spec's canonical JSON form, which includes
// the content of every seed file (read from `from` paths at load time). --resume keys finished
// tasks on it: an edited spec, an edited seed file, a changed agent.yaml default or CLI override
// all change it; comments, formatting, file location, tags and repeat do not.
func Digest(s *Spec) string {
	c := canonical{
		V: digestVersion, Name: s.Name, Prompt: s.Prompt, System: s.System, Model: s.Model,
		Template: s.Template, Workdir: s.Workdir, Setup: s.Setup, Limits: s.Limits, Env: s.Env,
		Artifacts: s.Artifacts, Network: s.Network, StopBackground: s.StopBackground,
	}
	for _, f := range s.Files {
		c.Files = append(c.Files, canonicalFile{Path: f.Path, Mode: f.Mode, SHA256: f.SHA256})
	}
	slices.SortFunc(c.Files, func(a, b canonicalFile) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	for _, ch := range s.Checks {
		c.Checks = append(c.Checks, canonicalCheck(ch))
	}
	b, err := json.Marshal(c)
	if err != nil {
		// Every field is plain data; Marshal cannot fail. Keep the digest distinct anyway.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

package evaltest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
)

// Workdir makes a temporary directory for a program that runs `agent eval` (the evaluation's
// results and data directory go under it) and returns it with the function that removes it.
// Sandboxes' roots are unprivileged host uids, so it is traversable by others.
func Workdir(prefix string) (dir string, remove func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// Eval runs `agentBin eval args...` and waits for it; its output is discarded, and a failure
// carries what it wrote to stderr.
func Eval(agentBin string, args ...string) error {
	cmd := exec.Command(agentBin, append([]string{"eval"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("agent eval: %v\n%s", err, stderr.String())
	}
	return nil
}

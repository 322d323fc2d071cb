package mounts

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// OverlayLayers mounts an overlay at target with several read-only lower layers, topmost first,
// and upper/work directories (a sandbox created from a snapshot: the snapshot's layer over the
// template). It is nodev and volatile where the kernel allows.
func OverlayLayers(lowers []string, upper, work, target string) error {
	if len(lowers) == 0 {
		return fmt.Errorf("overlay at %s: no lower layer", target)
	}
	for _, p := range append([]string{upper, work}, lowers...) {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("overlay layer path %q contains ',' or ':'", p)
		}
	}
	lower := strings.Join(lowers, ":")
	// volatile: the upper layer dies with the sandbox, so overlay need not sync it.
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,volatile", lower, upper, work)
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err != nil {
		// Kernels before 5.10 lack volatile; retry with the essentials.
		opts = fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
		if err2 := unix.Mount("overlay", target, "overlay", unix.MS_NODEV, opts); err2 != nil {
			return fmt.Errorf("mounting overlay at %s: %w", target, err2)
		}
	}
	return nil
}

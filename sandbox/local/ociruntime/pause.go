package ociruntime

import "context"

// Pause freezes every process of the container (runc and crun use the cgroup freezer; runsc stops
// its sandbox). Memory, open files and process state stay as they are.
func (r *Runtime) Pause(ctx context.Context, id string) error {
	_, err := r.run(ctx, "pause", id)
	return err
}

// Resume thaws a paused container.
func (r *Runtime) Resume(ctx context.Context, id string) error {
	_, err := r.run(ctx, "resume", id)
	return err
}

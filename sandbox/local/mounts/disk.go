package mounts

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Disk describes a per-sandbox disk: a sparse ext4 image of a fixed size, loop-mounted. The image
// bounds everything the sandbox writes (its overlay upper layer) with a hard quota: writes beyond it
// fail with ENOSPC inside the sandbox, and host disk use grows only with what is written.
type Disk struct {
	Image string
	Size  int64
}

// Format creates the sparse image file and an ext4 filesystem in it (no journal, no reserved
// blocks, inode tables initialized lazily and never zeroed in the background).
func (d Disk) Format(ctx context.Context) error {
	f, err := os.OpenFile(d.Image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	if err := f.Truncate(d.Size); err != nil {
		f.Close()
		return fmt.Errorf("sizing disk image: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal,^resize_inode", "-i", "32768",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", d.Image)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", d.Image, err, tail(out, 512))
	}
	return nil
}

// Mount attaches the image to a free loop device (released automatically on unmount) and mounts it
// at target, nosuid and nodev.
func (d Disk) Mount(target string) error {
	img, err := os.OpenFile(d.Image, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening disk image: %w", err)
	}
	defer img.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening loop control (is the loop driver available?): %w", err)
	}
	defer ctl.Close()
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("finding a free loop device: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		lf, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", dev, err)
		}
		cfg := &unix.LoopConfig{Fd: uint32(img.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(lf.Fd()), cfg)
		if errors.Is(err, unix.EBUSY) && attempt < 32 {
			lf.Close()
			continue // another process took it first
		}
		if err != nil {
			lf.Close()
			return fmt.Errorf("configuring %s: %w", dev, err)
		}
		merr := unix.Mount(dev, target, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "noinit_itable,errors=remount-ro")
		// With AUTOCLEAR the device is released when the last reference goes: our fd now, or the
		// mount's when it is unmounted.
		lf.Close()
		if merr != nil {
			return fmt.Errorf("mounting %s at %s: %w", dev, target, merr)
		}
		return nil
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

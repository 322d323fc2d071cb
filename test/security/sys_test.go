package security

import "golang.org/x/sys/unix"

func inotifyInit() (int, error) { return unix.InotifyInit1(unix.IN_CLOEXEC) }
func closeFD(fd int)            { _ = unix.Close(fd) }

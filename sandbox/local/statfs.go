package local

import "golang.org/x/sys/unix"

type syscallStatfs = unix.Statfs_t

func statfs(path string, st *unix.Statfs_t) error { return unix.Statfs(path, st) }

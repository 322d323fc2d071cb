package template

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"syscall"
)

// Digest hashes a tree deterministically: every path (in lexical order), its type, mode, owner,
// size, symlink target and file content. It also returns the allocated size on disk.
func Digest(ctx context.Context, root string) (string, int64, error) {
	h := sha256.New()
	var size int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, _ := info.Sys().(*syscall.Stat_t)
		var uid, gid uint32
		if st != nil {
			uid, gid = st.Uid, st.Gid
			size += st.Blocks * 512
		}
		fmt.Fprintf(h, "%s\x00%o\x00%d:%d\x00", rel, info.Mode(), uid, gid)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "->%s\x00", t)
		case info.Mode().IsRegular():
			fmt.Fprintf(h, "%d\x00", info.Size())
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", 0, fmt.Errorf("digesting %s: %w", root, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), size, nil
}

package fsservice

import (
	"context"
	"errors"
	"io/fs"
	"path"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// Stat describes a path without following a final symlink.
func (s *Service) Stat(ctx context.Context, req *connect.Request[filesystem.StatRequest]) (*connect.Response[filesystem.StatResponse], error) {
	_, p, err := s.resolve(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	info, err := s.info(p)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&filesystem.StatResponse{Entry: info}), nil
}

// MakeDir creates a directory and its missing parents, all owned by the caller. An existing
// directory is already_exists; an existing non-directory is invalid_argument.
func (s *Service) MakeDir(ctx context.Context, req *connect.Request[filesystem.MakeDirRequest]) (*connect.Response[filesystem.MakeDirResponse], error) {
	r, p, err := s.resolve(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	st, err := s.cfg.Root.Stat(p)
	switch {
	case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return nil, errf(connect.CodeAlreadyExists, "directory already exists: %s", p)
	case err == nil:
		return nil, errf(connect.CodeInvalidArgument, "path already exists but it is not a directory: %s", p)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, toConnect(err)
	}
	created, err := s.cfg.Root.MkdirAll(p, 0o755, r.uid, r.gid)
	if err != nil {
		return nil, toConnect(err)
	}
	if !created {
		return nil, errf(connect.CodeAlreadyExists, "directory already exists: %s", p)
	}
	info, err := s.info(p)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&filesystem.MakeDirResponse{Entry: info}), nil
}

// Move renames source to destination, creating the destination's missing parents for the caller.
// A symlink is moved, not its target.
func (s *Service) Move(ctx context.Context, req *connect.Request[filesystem.MoveRequest]) (*connect.Response[filesystem.MoveResponse], error) {
	r, src, err := s.resolve(ctx, req.Msg.GetSource())
	if err != nil {
		return nil, err
	}
	dst, err := r.abs(req.Msg.GetDestination())
	if err != nil {
		return nil, err
	}
	if src == "/" || dst == "/" {
		return nil, errf(connect.CodeInvalidArgument, "cannot move the root directory")
	}
	if _, err := s.cfg.Root.Lstat(src); err != nil {
		return nil, notFoundOr(err, "source file not found: %s", src)
	}
	if _, err := s.cfg.Root.MkdirAll(path.Dir(dst), 0o755, r.uid, r.gid); err != nil {
		return nil, toConnect(err)
	}
	if err := s.cfg.Root.Rename(src, dst); err != nil {
		return nil, toConnect(err)
	}
	info, err := s.info(dst)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&filesystem.MoveResponse{Entry: info}), nil
}

// ListDir lists a directory (reached through symlinks if need be) down to depth levels (0 means
// 1), in lexical depth-first order, never descending into symlinked directories. Entry paths are
// below the requested path, not its symlink-resolved form.
func (s *Service) ListDir(ctx context.Context, req *connect.Request[filesystem.ListDirRequest]) (*connect.Response[filesystem.ListDirResponse], error) {
	_, p, err := s.resolve(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	depth := int(min(req.Msg.GetDepth(), 1<<16))
	if depth == 0 {
		depth = 1
	}
	st, err := s.cfg.Root.Stat(p)
	if err != nil {
		return nil, notFoundOr(err, "directory not found: %s", p)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, errf(connect.CodeInvalidArgument, "path is not a directory: %s", p)
	}
	e := s.entries()
	var list []*filesystem.EntryInfo
	err = s.cfg.Root.Walk(p, depth, s.cfg.MaxListEntries, func(rel string, st *unix.Stat_t) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		list = append(list, e.fromStat(path.Join(p, rel), st))
		return nil
	})
	if err != nil {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&filesystem.ListDirResponse{Entries: list}), nil
}

// Remove deletes a file, a symlink or a whole tree. A missing path is not an error (envd and the
// SDKs treat remove as idempotent).
func (s *Service) Remove(ctx context.Context, req *connect.Request[filesystem.RemoveRequest]) (*connect.Response[filesystem.RemoveResponse], error) {
	_, p, err := s.resolve(ctx, req.Msg.GetPath())
	if err != nil {
		return nil, err
	}
	if p == "/" {
		return nil, errf(connect.CodeInvalidArgument, "refusing to remove the root directory")
	}
	if err := s.cfg.Root.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, toConnect(err)
	}
	return connect.NewResponse(&filesystem.RemoveResponse{}), nil
}

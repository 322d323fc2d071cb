package envdclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
)

// maxWriteResponse bounds the JSON answer of POST /files.
const maxWriteResponse = 16 << 20

// checkPath refuses paths that cannot travel in a query or a multipart header.
func checkPath(op, p string) error {
	if p == "" {
		return fmt.Errorf("%s: %w: empty path", op, sandbox.ErrInvalid)
	}
	if strings.ContainsAny(p, "\x00\r\n") {
		return fmt.Errorf("%s: %w: path contains NUL or a line break", op, sandbox.ErrInvalid)
	}
	return nil
}

// fileQuery is the query of a /files request.
func (c *Client) fileQuery(path string) url.Values {
	q := url.Values{}
	if path != "" {
		q.Set("path", path)
	}
	if u := c.effectiveUser(); u != "" {
		q.Set("username", u)
	}
	return q
}

// silentError reports a stream or transfer the watchdog ended: sandbox.ErrGone when envd no longer
// answers /health, sandbox.ErrTimeout when it does.
func (c *Client) silentError(op string) error {
	err := fmt.Errorf("no data from envd for %s", c.cfg.StreamIdleTimeout)
	gone := c.probeGone(op, err)
	if errors.Is(gone, sandbox.ErrGone) {
		return gone
	}
	return fmt.Errorf("%s: %w: %w", op, sandbox.ErrTimeout, err)
}

// Open streams a file's content (GET /files). The reader stays valid until it is closed or ctx ends;
// a transfer silent for StreamIdleTimeout fails.
func (c *Client) Open(ctx context.Context, path string) (io.ReadCloser, error) {
	op := "read " + path
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	wd := newWatchdog(c.cfg.StreamIdleTimeout, cancel)
	req, err := c.newRequest(rctx, http.MethodGet, "/files", c.fileQuery(path), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if c.cfg.CompressDownloads {
		req.Header.Set("Accept-Encoding", "gzip")
	} else {
		req.Header.Set("Accept-Encoding", "identity")
	}
	wd.armFor(c.cfg.RequestTimeout)
	resp, err := c.http.Do(req)
	wd.disarm()
	if err != nil {
		cancel()
		if wd.Fired() {
			return nil, c.silentError(op)
		}
		return nil, c.transportError(ctx, op, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		return nil, c.responseError(op, resp)
	}
	fr := &fileReader{c: c, op: op, ctx: ctx, wd: wd, body: resp.Body, cancel: cancel}
	fr.r = &idleReader{r: resp.Body, wd: wd}
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		zr, err := gzip.NewReader(fr.r)
		if err != nil {
			fr.Close()
			return nil, fr.mapErr(err)
		}
		fr.r = zr
	}
	return fr, nil
}

// fileReader is a download in progress.
type fileReader struct {
	c      *Client
	op     string
	ctx    context.Context
	wd     *watchdog
	body   io.ReadCloser
	r      io.Reader
	cancel context.CancelFunc
	once   sync.Once
}

func (f *fileReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = f.mapErr(err)
	}
	return n, err
}

func (f *fileReader) mapErr(err error) error {
	switch {
	case f.wd.Fired():
		return f.c.silentError(f.op)
	case f.ctx.Err() != nil:
		return ctxError(f.op, f.ctx.Err())
	case errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("%s: corrupt gzip stream: %w", f.op, err)
	}
	return f.c.probeGone(f.op, err)
}

func (f *fileReader) Close() error {
	f.once.Do(func() {
		f.wd.disarm()
		f.body.Close()
		f.cancel()
	})
	return nil
}

// upload is one part of a POST /files request.
type upload struct {
	path string
	data io.Reader
}

// WriteFile creates or truncates a file (POST /files, multipart), creating parent directories. data is
// streamed: it is never held in memory whole. WriteFile returns only once it no longer reads data.
func (c *Client) WriteFile(ctx context.Context, path string, data io.Reader) error {
	op := "write " + path
	if err := checkPath(op, path); err != nil {
		return err
	}
	if data == nil {
		data = bytes.NewReader(nil)
	}
	return c.upload(ctx, op, path, []upload{{path: path, data: data}})
}

// WriteFiles writes several files in one POST /files request with one part per file; each part's
// filename is the file's full path.
func (c *Client) WriteFiles(ctx context.Context, files []sandbox.File) error {
	if len(files) == 0 {
		return nil
	}
	op := fmt.Sprintf("write %d files", len(files))
	if len(files) == 1 {
		op = "write " + files[0].Path
	}
	seen := make(map[string]bool, len(files))
	parts := make([]upload, len(files))
	for i, f := range files {
		if err := checkPath(op, f.Path); err != nil {
			return err
		}
		if seen[f.Path] {
			return fmt.Errorf("%s: %w: %s given twice", op, sandbox.ErrInvalid, f.Path)
		}
		seen[f.Path] = true
		parts[i] = upload{path: f.Path, data: bytes.NewReader(f.Data)}
	}
	// The SDKs name the destination in the query only for a single file; each part names its own.
	qpath := ""
	if len(files) == 1 {
		qpath = files[0].Path
	}
	return c.upload(ctx, op, qpath, parts)
}

// sourceReader remembers an error of the caller's reader, to tell it from a network error.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// errUploadDone unblocks the body writer once the request has ended.
var errUploadDone = errors.New("upload ended")

func (c *Client) upload(ctx context.Context, op, qpath string, parts []upload) error {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wd := newWatchdog(c.cfg.StreamIdleTimeout, cancel)
	defer wd.disarm()

	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	srcs := make([]*sourceReader, len(parts))
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := func() error {
			for i, p := range parts {
				h := textproto.MIMEHeader{}
				h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, escapeQuotes(p.path)))
				h.Set("Content-Type", "application/octet-stream")
				w, err := mw.CreatePart(h)
				if err != nil {
					return err
				}
				srcs[i] = &sourceReader{r: p.data}
				if _, err := io.Copy(w, srcs[i]); err != nil {
					return err
				}
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()

	body := &stallReader{r: pr, wd: wd, done: func() { wd.armFor(c.cfg.RequestTimeout) }}
	req, err := c.newRequest(rctx, http.MethodPost, "/files", c.fileQuery(qpath), body)
	if err != nil {
		pr.CloseWithError(errUploadDone)
		<-done
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	wd.armFor(c.cfg.RequestTimeout)
	resp, err := c.http.Do(req)
	pr.CloseWithError(errUploadDone)
	// Wait for the writer: the caller's readers must not be read after we return.
	<-done
	wd.disarm()
	for _, s := range srcs {
		if s != nil && s.err != nil {
			if resp != nil {
				resp.Body.Close()
			}
			return fmt.Errorf("%s: reading data: %w", op, s.err)
		}
	}
	if err != nil {
		if wd.Fired() {
			return c.silentError(op)
		}
		return c.transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return c.responseError(op, resp)
	}
	var written []struct {
		Path string `json:"path"`
		Name string `json:"name"`
		Type string `json:"type"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxWriteResponse)).Decode(&written); err != nil {
		if ctx.Err() != nil {
			return ctxError(op, ctx.Err())
		}
		return fmt.Errorf("%s: unexpected answer from envd: %w", op, err)
	}
	if len(written) == 0 {
		return fmt.Errorf("%s: envd reported no file written", op)
	}
	return nil
}

// escapeQuotes escapes a multipart header parameter the way mime.ParseMediaType reads it back.
func escapeQuotes(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// List lists a directory to the given depth (1 = direct children; 0 is taken as 1).
func (c *Client) List(ctx context.Context, path string, depth int) ([]sandbox.Entry, error) {
	op := "list " + path
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	if depth < 0 {
		return nil, fmt.Errorf("%s: %w: negative depth %d", op, sandbox.ErrInvalid, depth)
	}
	depth = max(depth, 1)
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&filesystem.ListDirRequest{Path: path, Depth: uint32(min(depth, 1<<16))})
	c.setUser(req.Header(), "")
	resp, err := c.fs.ListDir(uctx, req)
	if err != nil {
		return nil, c.rpcError(ctx, op, err)
	}
	out := make([]sandbox.Entry, 0, len(resp.Msg.GetEntries()))
	for _, e := range resp.Msg.GetEntries() {
		out = append(out, entryFromProto(e))
	}
	return out, nil
}

// Stat describes one path without following a final symlink.
func (c *Client) Stat(ctx context.Context, path string) (sandbox.Entry, error) {
	op := "stat " + path
	if err := checkPath(op, path); err != nil {
		return sandbox.Entry{}, err
	}
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&filesystem.StatRequest{Path: path})
	c.setUser(req.Header(), "")
	resp, err := c.fs.Stat(uctx, req)
	if err != nil {
		return sandbox.Entry{}, c.rpcError(ctx, op, err)
	}
	return entryFromProto(resp.Msg.GetEntry()), nil
}

// MakeDir creates a directory and its parents; sandbox.ErrExists when it already exists.
func (c *Client) MakeDir(ctx context.Context, path string) error {
	op := "make directory " + path
	if err := checkPath(op, path); err != nil {
		return err
	}
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&filesystem.MakeDirRequest{Path: path})
	c.setUser(req.Header(), "")
	_, err := c.fs.MakeDir(uctx, req)
	return c.rpcError(ctx, op, err)
}

// Move renames a path.
func (c *Client) Move(ctx context.Context, from, to string) error {
	op := fmt.Sprintf("move %s to %s", from, to)
	if err := checkPath(op, from); err != nil {
		return err
	}
	if err := checkPath(op, to); err != nil {
		return err
	}
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&filesystem.MoveRequest{Source: from, Destination: to})
	c.setUser(req.Header(), "")
	_, err := c.fs.Move(uctx, req)
	return c.rpcError(ctx, op, err)
}

// Remove deletes a file or a directory tree; removing a missing path is not an error (envd).
func (c *Client) Remove(ctx context.Context, path string) error {
	op := "remove " + path
	if err := checkPath(op, path); err != nil {
		return err
	}
	uctx, cancel := c.unaryCtx(ctx)
	defer cancel()
	req := connect.NewRequest(&filesystem.RemoveRequest{Path: path})
	c.setUser(req.Header(), "")
	_, err := c.fs.Remove(uctx, req)
	return c.rpcError(ctx, op, err)
}

// entryFromProto converts envd's EntryInfo. Size, Mode and ModTime are what envd reports (for a
// symlink, envd may describe its target).
func entryFromProto(e *filesystem.EntryInfo) sandbox.Entry {
	out := sandbox.Entry{
		Name:          e.GetName(),
		Path:          e.GetPath(),
		Type:          entryType(e.GetType()),
		Size:          e.GetSize(),
		Mode:          e.GetMode(),
		Permissions:   e.GetPermissions(),
		Owner:         e.GetOwner(),
		Group:         e.GetGroup(),
		SymlinkTarget: e.GetSymlinkTarget(),
	}
	if ts := e.GetModifiedTime(); ts != nil && ts.IsValid() {
		out.ModTime = ts.AsTime()
	}
	// envd may report a symlink with its target's type; symlink_target is set only for symlinks, and
	// sandbox.Entry describes the link itself.
	if e.SymlinkTarget != nil {
		out.Type = sandbox.TypeSymlink
	}
	return out
}

func entryType(t filesystem.FileType) sandbox.EntryType {
	switch t {
	case filesystem.FileType_FILE_TYPE_FILE:
		return sandbox.TypeFile
	case filesystem.FileType_FILE_TYPE_DIRECTORY:
		return sandbox.TypeDir
	case filesystem.FileType_FILE_TYPE_SYMLINK:
		return sandbox.TypeSymlink
	}
	return sandbox.TypeOther
}

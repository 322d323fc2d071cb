package filesapi

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd/internal/users"
)

// download serves GET /files?path=: the file's bytes, gzip-encoded when the client prefers it.
// Range and conditional requests are answered by http.ServeContent, unencoded.
func (h *Handler) download(w http.ResponseWriter, r *http.Request, u users.User) {
	world, err := abs(r.URL.Query().Get("path"), u)
	if err != nil {
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("invalid path: %v", err))
		return
	}
	f, err := h.cfg.Root.OpenFile(world, unix.O_RDONLY, 0)
	if err != nil {
		status := statusOf(err)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			jsonError(w, http.StatusNotFound, fmt.Sprintf("path '%s' does not exist", world))
			return
		}
		jsonError(w, status, fmt.Sprintf("opening '%s': %v", world, err))
		return
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		jsonError(w, http.StatusInternalServerError, fmt.Sprintf("stat '%s': %v", world, err))
		return
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("path '%s' is a directory", world))
		return
	default:
		jsonError(w, http.StatusBadRequest, fmt.Sprintf("path '%s' is not a regular file", world))
		return
	}

	encoding := negotiate(r.Header.Get("Accept-Encoding"))
	if r.Header.Get("Range") != "" || r.Header.Get("If-Modified-Since") != "" ||
		r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Range") != "" {
		// ServeContent's partial and not-modified answers describe the identity bytes.
		if !identityAcceptable(r.Header.Get("Accept-Encoding")) {
			jsonError(w, http.StatusNotAcceptable, "identity encoding not acceptable for a range or conditional request")
			return
		}
		encoding = "identity"
	}
	if encoding == "" {
		jsonError(w, http.StatusNotAcceptable, "no acceptable content encoding; supported: gzip, identity")
		return
	}
	name := path.Base(world)
	hdr := w.Header()
	hdr.Set("Vary", "Accept-Encoding")
	hdr.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": name}))
	modTime := time.Unix(st.Mtim.Sec, st.Mtim.Nsec)

	if encoding == "identity" {
		http.ServeContent(w, r, name, modTime, f)
		return
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	hdr.Set("Content-Type", ctype)
	hdr.Set("Content-Encoding", "gzip")
	hdr.Set("Last-Modified", modTime.UTC().Format(http.TimeFormat))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	gw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	// The struct hides *os.File's WriterTo so the pooled buffer is used.
	if _, err := io.CopyBuffer(gw, struct{ io.Reader }{f}, *bp); err != nil {
		h.log.Debug("gzip download interrupted", "path", world, "err", err)
		return
	}
	if err := gw.Close(); err != nil {
		h.log.Debug("gzip download interrupted", "path", world, "err", err)
	}
}

// codings parses an Accept-Encoding value into coding → q (the first mention of a coding counts).
func codings(header string) map[string]float64 {
	q := map[string]float64{}
	for n, part := range strings.Split(header, ",") {
		if n >= 64 {
			break // bound the work on a hostile header
		}
		name, params, _ := strings.Cut(part, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		v := 1.0
		for _, p := range strings.Split(params, ";") {
			k, val, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && f >= 0 && f <= 1 {
					v = f
				}
			}
		}
		if _, dup := q[name]; !dup {
			q[name] = v
		}
	}
	return q
}

// qualities returns the q of gzip and of identity under an Accept-Encoding header (RFC 9110
// §12.5.3: identity is acceptable unless excluded, explicitly or by "*;q=0"), and whether identity
// was named.
func qualities(header string) (gz, ident float64, identNamed bool) {
	if strings.TrimSpace(header) == "" {
		return 0, 1, false
	}
	q := codings(header)
	star, hasStar := q["*"]
	ident, identNamed = q["identity"]
	if !identNamed {
		ident = 1
		if hasStar && star == 0 {
			ident = 0
		}
	}
	gz, ok := q["gzip"]
	if !ok {
		gz, ok = q["x-gzip"]
	}
	if !ok && hasStar && ident == 0 {
		gz = star // "*" picks gzip only when plain bytes are refused
	}
	return gz, ident, identNamed
}

// negotiate picks "gzip" or "identity" for a download, or "" when neither is acceptable. Like envd,
// a named gzip wins over identity that is only implicitly acceptable.
func negotiate(header string) string {
	gz, ident, identNamed := qualities(header)
	switch {
	case gz > 0 && (!identNamed || gz >= ident):
		return "gzip"
	case ident > 0:
		return "identity"
	}
	return ""
}

func identityAcceptable(header string) bool {
	_, ident, _ := qualities(header)
	return ident > 0
}

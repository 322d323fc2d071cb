package report

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentrun/agent/report/results"
)

// ServeOptions configure Handler.
type ServeOptions struct {
	// SeedsRoot is where spec files may be read for the seed diffs (see results.LoadSeeds);
	// empty skips the diffs against seeds.
	SeedsRoot string
	// Limits bound what is read per request.
	Limits results.Limits
	// Logger receives request errors (default slog.Default()).
	Logger *slog.Logger
}

// maxListedRuns bounds the runs listed on the index page.
const maxListedRuns = 1000

// Handler serves reports for browsing runs. dir is a results directory (its report is served at
// /) or a directory of results directories such as runs/ (an index at /, each run's report at
// /run/NAME/). Reports are rendered from the results on every request, so a run still in progress
// shows its progress. Only the report pages are served — never the files a task produced — and
// every response forbids scripts and loading anything (Content-Security-Policy).
func Handler(dir string, opt ServeOptions) http.Handler {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	h := &handler{dir: dir, opt: opt}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("GET /run/{name}/{$}", h.run)
	mux.HandleFunc("GET /run/{name}/report.xml", h.junit)
	mux.HandleFunc("GET /report.xml", h.junit)
	return secureHeaders(mux)
}

type handler struct {
	dir string
	opt ServeOptions
}

func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// isResults reports whether dir holds a run's or an eval's results.
func isResults(dir string) bool {
	for _, f := range []string{results.EvalFile, results.RunFile} {
		if st, err := os.Lstat(filepath.Join(dir, f)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// runs lists the results directories directly below h.dir, newest name first (run directories
// are named by their start time).
func (h *handler) runs() ([]string, error) {
	ents, err := os.ReadDir(h.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Type()&fs.ModeSymlink == 0 && !strings.HasPrefix(e.Name(), ".") && isResults(filepath.Join(h.dir, e.Name())) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	if len(out) > maxListedRuns {
		out = out[:maxListedRuns]
	}
	return out, nil
}

// resolve maps a run name from a URL to its directory; only names the listing holds are served.
func (h *handler) resolve(name string) (string, bool) {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." || strings.HasPrefix(name, ".") {
		return "", false
	}
	dir := filepath.Join(h.dir, name)
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() || !isResults(dir) {
		return "", false
	}
	return dir, true
}

var indexTmpl = template.Must(template.New("index").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>agent runs</title>
<style>body{font:14px/1.45 system-ui,sans-serif;max-width:900px;margin:24px auto;padding:0 16px}table{border-collapse:collapse;width:100%}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}th{background:#f6f8fa}.n{text-align:right}</style>
</head><body><h1>Runs in {{.Dir}}</h1>
{{if .Runs}}<table><tr><th>run</th><th>kind</th><th class="n">passed</th><th class="n">failed</th><th class="n">errored</th></tr>
{{range .Runs}}<tr><td><a href="run/{{.Name}}/">{{.Name}}</a></td><td>{{.Kind}}</td><td class="n">{{.Passed}}</td><td class="n">{{.Failed}}</td><td class="n">{{.Errored}}</td></tr>
{{end}}</table>{{else}}<p>No results directories here yet.</p>{{end}}
</body></html>
`))

type indexRow struct {
	Name, Kind              string
	Passed, Failed, Errored int
}

func (h *handler) index(w http.ResponseWriter, r *http.Request) {
	if isResults(h.dir) {
		h.render(w, h.dir)
		return
	}
	names, err := h.runs()
	if err != nil {
		h.fail(w, "listing runs", err)
		return
	}
	var rows []indexRow
	lim := h.opt.Limits
	lim.SkipContent = true
	for _, n := range names {
		row := indexRow{Name: n}
		if res, err := results.Load(filepath.Join(h.dir, n), lim); err == nil {
			row.Kind = res.Run.Command
			row.Passed, row.Failed, row.Errored = res.Totals()
		}
		rows = append(rows, row)
	}
	var b bytes.Buffer
	if err := indexTmpl.Execute(&b, map[string]any{"Dir": filepath.Base(h.dir), "Runs": rows}); err != nil {
		h.fail(w, "rendering the index", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

func (h *handler) run(w http.ResponseWriter, r *http.Request) {
	dir, ok := h.resolve(r.PathValue("name"))
	if !ok {
		http.NotFound(w, r)
		return
	}
	h.render(w, dir)
}

func (h *handler) load(dir string) (*results.Results, error) {
	res, err := results.Load(dir, h.opt.Limits)
	if err != nil {
		return nil, err
	}
	if h.opt.SeedsRoot != "" {
		res.LoadSeeds(h.opt.SeedsRoot, h.opt.Limits)
	}
	return res, nil
}

func (h *handler) render(w http.ResponseWriter, dir string) {
	res, err := h.load(dir)
	if err != nil {
		h.fail(w, "reading the results", err)
		return
	}
	var b bytes.Buffer
	if err := HTML(&b, res); err != nil {
		h.fail(w, "rendering the report", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

func (h *handler) junit(w http.ResponseWriter, r *http.Request) {
	dir := h.dir
	if name := r.PathValue("name"); name != "" {
		var ok bool
		if dir, ok = h.resolve(name); !ok {
			http.NotFound(w, r)
			return
		}
	}
	lim := h.opt.Limits
	lim.SkipContent = true
	res, err := results.Load(dir, lim)
	if err != nil {
		h.fail(w, "reading the results", err)
		return
	}
	var b bytes.Buffer
	if err := JUnit(&b, res); err != nil {
		h.fail(w, "rendering JUnit XML", err)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Write(b.Bytes())
}

func (h *handler) fail(w http.ResponseWriter, doing string, err error) {
	h.opt.Logger.Warn("report server: "+doing, "err", err)
	status := http.StatusInternalServerError
	if errors.Is(err, results.ErrNotResults) || errors.Is(err, fs.ErrNotExist) {
		status = http.StatusNotFound
	}
	http.Error(w, fmt.Sprintf("%s: %v", doing, err), status)
}

// NewServer returns an HTTP server for Handler with timeouts on every phase of a request.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

package serve

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentrun/agent/sandbox"
	"github.com/agentrun/agent/sandbox/e2b/e2bapi"
	"github.com/agentrun/agent/sandbox/netpolicy"
)

// Default and largest page of GET /v2/sandboxes, as E2B's.
const (
	defaultListLimit = 100
	maxListLimit     = 100
)

// controlPrefixes are the paths of the control plane: a request to one of them is never proxied to
// a sandbox, even when it carries a routing header (e2b-py 2.7–2.25 sends E2b-Sandbox-Id with
// POST /sandboxes/{id}/connect).
var controlPrefixes = []string{"/sandboxes", "/v2/", "/v3/", "/templates", "/snapshots", "/volumes", "/secrets", "/teams"}

func isControlPath(p string) bool {
	for _, pre := range controlPrefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func (s *Server) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	api := func(pattern string, h func(http.ResponseWriter, *http.Request) *apiError) {
		mux.Handle(pattern, s.authenticated(h))
	}
	api("POST /sandboxes", func(w http.ResponseWriter, r *http.Request) *apiError { return s.create(w, r, false) })
	api("POST /v2/sandboxes", func(w http.ResponseWriter, r *http.Request) *apiError { return s.create(w, r, true) })
	api("GET /sandboxes", s.listV1)
	api("GET /v2/sandboxes", s.listV2)
	api("GET /sandboxes/{id}", s.withSandbox(s.detail))
	api("DELETE /sandboxes/{id}", s.kill)
	api("POST /sandboxes/{id}/timeout", s.withSandbox(s.setTimeout))
	api("POST /sandboxes/{id}/refreshes", s.withSandbox(s.refresh))
	api("POST /sandboxes/{id}/connect", s.withSandbox(s.connect))
	api("POST /v2/sandboxes/{id}/connect", s.withSandbox(s.connect))
	api("POST /sandboxes/{id}/resume", s.withSandbox(s.resume))
	api("POST /sandboxes/{id}/pause", s.withSandbox(s.pause))
	api("GET /sandboxes/{id}/metrics", s.withSandbox(s.metrics))
	for _, p := range []string{
		"POST /sandboxes/{id}/snapshots", "POST /sandboxes/{id}/fork", "PUT /sandboxes/{id}/network",
		"GET /sandboxes/{id}/logs", "GET /v2/sandboxes/{id}/logs", "GET /sandboxes/metrics", "GET /snapshots",
	} {
		api(p, func(w http.ResponseWriter, r *http.Request) *apiError {
			return errorf(http.StatusNotImplemented, "%s %s is not supported by agent serve", r.Method, r.Pattern[strings.IndexByte(r.Pattern, ' ')+1:])
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "no such endpoint: %s %s", r.Method, truncate(r.URL.Path, 128)))
	})
	return mux
}

// authenticated checks X-API-KEY, then runs h and answers its error.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request) *apiError) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(e2bapi.HeaderAPIKey)
		if key == "" {
			writeError(w, errorf(http.StatusUnauthorized, "missing API key: send it as %s", e2bapi.HeaderAPIKey))
			return
		}
		if !s.checkKey(key) {
			writeError(w, errorf(http.StatusUnauthorized, "invalid API key"))
			return
		}
		if aerr := h(w, r); aerr != nil {
			writeError(w, aerr)
		}
	})
}

// withSandbox resolves {id} to a live sandbox.
func (s *Server) withSandbox(h func(http.ResponseWriter, *http.Request, *entry) *apiError) func(http.ResponseWriter, *http.Request) *apiError {
	return func(w http.ResponseWriter, r *http.Request) *apiError {
		e, aerr := s.lookup(r.PathValue("id"))
		if aerr != nil {
			return aerr
		}
		return h(w, r, e)
	}
}

func (s *Server) lookup(raw string) (*entry, *apiError) {
	id, err := e2bapi.ParseID(raw)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "%v", err)
	}
	if e, ok := s.get(id); ok {
		return e, nil
	}
	if why := s.gone.reason(id); why != "" {
		return nil, errorf(http.StatusNotFound, "sandbox %s not found: it ended (%s)", id, why)
	}
	return nil, errorf(http.StatusNotFound, "sandbox %s not found", id)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, v2 bool) *apiError {
	body, aerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		return aerr
	}
	req, aerr := decodeNewSandbox(body, v2, s.cfg.MaxLifetime)
	if aerr != nil {
		return aerr
	}
	tpl, ok := s.resolveTemplate(req.templateID)
	if !ok {
		return errorf(http.StatusNotFound, "template %q not found", truncate(req.templateID, 64))
	}
	switch err := s.reserve(); {
	case errors.Is(err, errCapacity):
		w.Header().Set("Retry-After", "1")
		return errorf(http.StatusTooManyRequests, "the maximum number of concurrent sandboxes (%d) is reached", s.cfg.MaxSandboxes)
	case err != nil:
		return errorf(http.StatusServiceUnavailable, "%v", err)
	}
	reserved := true
	defer func() {
		if reserved {
			s.unreserve()
		}
	}()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CreateTimeout)
	defer cancel()
	started := time.Now()
	network := string(netpolicy.None)
	if s.cfg.AllowInternet {
		network = req.network
	} else if req.network != network {
		s.log.Debug("network refused: agent serve runs without --allow-internet", "asked", truncate(req.network, 128))
	}
	inst, err := s.cfg.Provider.Create(ctx, Spec{
		Template: tpl, Env: req.env, Network: network,
		// The provider's own backstop, just after the longest life this server allows.
		Lifetime: s.cfg.MaxLifetime + time.Minute,
	})
	if err != nil {
		if errors.Is(err, sandbox.ErrNotFound) {
			return errorf(http.StatusNotFound, "template %q not found", truncate(req.templateID, 64))
		}
		if errors.Is(err, errors.ErrUnsupported) {
			return errorf(http.StatusNotImplemented, "network %s is not available on this server (its OCI runtime cannot provide it)", truncate(network, 64))
		}
		s.log.Error("creating a sandbox", "template", tpl, "err", err)
		if ctx.Err() != nil && r.Context().Err() == nil {
			return errorf(http.StatusGatewayTimeout, "creating the sandbox took longer than %s", s.cfg.CreateTimeout)
		}
		return errorf(http.StatusInternalServerError, "creating the sandbox failed (the server log has the details)")
	}
	token := inst.AccessToken()
	if token == "" {
		// envd is exposed beyond this process: never without a token.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer kcancel()
		_ = inst.Kill(kctx)
		s.log.Error("creating a sandbox: the provider gave it no access token", "id", inst.ID())
		return errorf(http.StatusInternalServerError, "creating the sandbox failed (the server log has the details)")
	}
	e := s.newEntry(inst, token, req, tpl, started)
	e.network, e.internet = network, network == string(netpolicy.Internet)
	reserved = false
	if err := s.register(e, req.timeout); err != nil {
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer kcancel()
		_ = inst.Kill(kctx)
		return errorf(http.StatusServiceUnavailable, "%v", err)
	}
	if r.Context().Err() != nil {
		// The client is gone and will never learn the id: do not keep the sandbox for nobody.
		kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer kcancel()
		if err := s.end(kctx, e, "its creator disconnected"); err != nil {
			s.log.Error("ending an unclaimed sandbox", "id", e.id, "err", err)
		}
		return nil
	}
	s.log.Info("sandbox created", "id", e.id, "template", tpl, "timeout", req.timeout, "network", network, "path", r.URL.Path,
		"user_agent", truncate(r.Header.Get("User-Agent"), 64))
	writeJSON(w, http.StatusCreated, s.sandboxBody(e))
	return nil
}

// resolveTemplate maps an E2B template name to a provider template.
func (s *Server) resolveTemplate(name string) (string, bool) {
	if t, ok := s.cfg.TemplateAliases[name]; ok {
		return t, true
	}
	if s.cfg.Provider.HasTemplate(name) {
		return name, true
	}
	switch name {
	case "base", "code-interpreter-v1", "code-interpreter", "desktop":
		// The SDKs' default templates: commands and files work; no Jupyter or desktop server runs.
		return s.cfg.DefaultTemplate, true
	}
	return "", false
}

func (s *Server) sandboxBody(e *entry) e2bapi.Sandbox {
	out := e2bapi.Sandbox{
		TemplateID: e.templateID, SandboxID: e.id, ClientID: e2bapi.ClientID, EnvdVersion: EnvdVersion,
		EnvdAccessToken: e.token, Domain: s.domain(),
	}
	if e.template != e.templateID {
		out.Alias = e.templateID
	}
	return out
}

func (s *Server) domain() *string {
	if s.cfg.Domain == "" {
		return nil
	}
	d := s.cfg.Domain
	return &d
}

func (s *Server) detail(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	internet := e.internet
	d := e2bapi.SandboxDetail{
		TemplateID: e.templateID, SandboxID: e.id, ClientID: e2bapi.ClientID, StartedAt: e.started.UTC(),
		EndAt: e.endAt().UTC(), EnvdVersion: EnvdVersion, EnvdAccessToken: e.token, Domain: s.domain(),
		AllowInternetAccess: &internet, Network: networkConfig(e.network),
		Metadata: e.metadata, State: e.state(),
		Lifecycle: &e2bapi.Lifecycle{AutoResume: e.autoResume, OnTimeout: "kill"},
	}
	if e.autoPause {
		d.Lifecycle.OnTimeout = "pause"
	}
	d.CPUCount, d.MemoryMB, d.DiskSizeMB = resourceFigures(e.res)
	if e.template != e.templateID {
		d.Alias = e.templateID
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func resourceFigures(r Resources) (cpus, memMB, diskMB int32) {
	return int32(math.Ceil(r.CPUs)), int32(r.MemoryBytes >> 20), int32(r.DiskBytes >> 20)
}

func (s *Server) listed(e *entry) e2bapi.ListedSandbox {
	l := e2bapi.ListedSandbox{
		TemplateID: e.templateID, SandboxID: e.id, ClientID: e2bapi.ClientID, StartedAt: e.started.UTC(),
		EndAt: e.endAt().UTC(), Metadata: e.metadata, State: e.state(), EnvdVersion: EnvdVersion,
	}
	l.CPUCount, l.MemoryMB, l.DiskSizeMB = resourceFigures(e.res)
	if e.template != e.templateID {
		l.Alias = e.templateID
	}
	return l
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request) *apiError {
	e, aerr := s.lookup(r.PathValue("id"))
	if aerr != nil {
		return aerr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*time.Minute)
	defer cancel()
	if err := s.end(ctx, e, "it was killed"); err != nil {
		s.log.Error("killing a sandbox", "id", e.id, "err", err)
		return errorf(http.StatusInternalServerError, "killing sandbox %s failed (the server log has the details)", e.id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) setTimeout(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	body, aerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		return aerr
	}
	t, aerr := decodeTimeout(body, s.cfg.MaxLifetime)
	if aerr != nil {
		return aerr
	}
	s.setEnd(e, time.Now().Add(t), false)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	body, aerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		return aerr
	}
	var rr e2bapi.RefreshRequest
	if aerr := decodeJSON(body, &rr, true); aerr != nil {
		return aerr
	}
	if rr.Duration < 0 || rr.Duration > 3600 {
		return errorf(http.StatusBadRequest, "duration must be 0-3600 seconds")
	}
	s.setEnd(e, time.Now().Add(time.Duration(rr.Duration)*time.Second), true)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// connect resumes a paused sandbox with the requested timeout (201), or answers 200 for a running
// one, moving its end later when the requested timeout reaches beyond it (never earlier), as E2B
// does.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	resumed, t, aerr := s.resumeAsked(w, r, e)
	if aerr != nil {
		return aerr
	}
	if resumed {
		writeJSON(w, http.StatusCreated, s.sandboxBody(e))
		return nil
	}
	s.setEnd(e, time.Now().Add(t), true)
	writeJSON(w, http.StatusOK, s.sandboxBody(e))
	return nil
}

// resume is the legacy POST /sandboxes/{id}/resume (1.x SDKs): 201 when the sandbox was paused,
// 409 when it runs.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	resumed, _, aerr := s.resumeAsked(w, r, e)
	if aerr != nil {
		return aerr
	}
	if !resumed {
		return errorf(http.StatusConflict, "sandbox %s is already running", e.id)
	}
	writeJSON(w, http.StatusCreated, s.sandboxBody(e))
	return nil
}

// resumeAsked reads a connect or resume request's body and resumes e if it is paused, with the
// timeout the body asks for; resumed is false when e was running.
func (s *Server) resumeAsked(w http.ResponseWriter, r *http.Request, e *entry) (resumed bool, timeout time.Duration, aerr *apiError) {
	body, aerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		return false, 0, aerr
	}
	if timeout, aerr = decodeConnect(body, s.cfg.MaxLifetime); aerr != nil {
		return false, 0, aerr
	}
	resumed, aerr = s.resumeEntry(r.Context(), e, timeout)
	return resumed, timeout, aerr
}

// resumeEntry resumes e if it is paused, with timeout to live; resumed is false when it was
// running.
func (s *Server) resumeEntry(ctx context.Context, e *entry, timeout time.Duration) (resumed bool, aerr *apiError) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	e.op.Lock()
	defer e.op.Unlock()
	if cur, ok := s.get(e.id); !ok || cur != e {
		return false, errorf(http.StatusNotFound, "sandbox %s not found", e.id)
	}
	switch err := s.resumeLocked(ctx, e, timeout); {
	case errors.Is(err, errNotPaused):
		return false, nil
	case err != nil:
		s.log.Error("resuming a sandbox", "id", e.id, "err", err)
		go s.reap(e)
		return false, errorf(http.StatusInternalServerError, "resuming sandbox %s failed (the server log has the details)", e.id)
	}
	s.log.Info("sandbox resumed", "id", e.id, "timeout", timeout)
	return true, nil
}

// pause freezes a running sandbox: 204, or 409 when it is already paused (the SDKs then answer
// false). Its memory and processes are kept whatever the body's memory says, and its clock stops.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	body, aerr := readBody(w, r, s.cfg.MaxBodyBytes)
	if aerr != nil {
		return aerr
	}
	var pr e2bapi.PauseRequest
	if aerr := decodeJSON(body, &pr, true); aerr != nil {
		return aerr
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer cancel()
	e.op.Lock()
	defer e.op.Unlock()
	if cur, ok := s.get(e.id); !ok || cur != e {
		return errorf(http.StatusNotFound, "sandbox %s not found", e.id)
	}
	switch err := s.pauseLocked(ctx, e); {
	case errors.Is(err, errAlreadyPaused):
		return errorf(http.StatusConflict, "sandbox %s is already paused", e.id)
	case err != nil:
		s.log.Error("pausing a sandbox", "id", e.id, "err", err)
		go s.reap(e)
		return errorf(http.StatusInternalServerError, "pausing sandbox %s failed (the server log has the details)", e.id)
	}
	s.log.Info("sandbox paused", "id", e.id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// networkConfig describes a network mode as E2B's network config (nil for none and internet,
// which allowInternetAccess tells).
func networkConfig(mode string) *e2bapi.NetworkConfig {
	pol, err := netpolicy.Parse(mode)
	if err != nil || pol.Mode != netpolicy.Allow {
		return nil
	}
	nc := &e2bapi.NetworkConfig{AllowOut: slices.Clone(pol.Domains), DenyOut: []string{allTraffic}}
	for _, c := range pol.CIDRs {
		nc.AllowOut = append(nc.AllowOut, c.String())
	}
	return nc
}

// metrics answers one sample taken now (E2B answers a series sampled every few seconds); the CPU
// figure is the average since the previous sample, or since the start.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request, e *entry) *apiError {
	q, aerr := strictQuery(r)
	if aerr != nil {
		return aerr
	}
	var start, end int64
	for name, dst := range map[string]*int64{"start": &start, "end": &end} {
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return errorf(http.StatusBadRequest, "%s must be a Unix time in seconds", name)
			}
			*dst = n
		}
	}
	u, err := e.inst.Usage()
	if err != nil {
		s.log.Warn("sampling sandbox usage", "id", e.id, "err", err)
	}
	now := time.Now()
	if (start > 0 && now.Unix() < start) || (end > 0 && now.Unix() > end) {
		writeJSON(w, http.StatusOK, []e2bapi.SandboxMetric{})
		return nil
	}
	e.mu.Lock()
	since, prev := e.lastSample, e.lastCPU
	if since.IsZero() {
		since = e.started
	}
	e.lastSample, e.lastCPU = now, u.CPU
	e.mu.Unlock()
	pct := 0.0
	if wall := now.Sub(since); wall > 0 && e.res.CPUs > 0 {
		pct = min(100, max(0, 100*float64(u.CPU-prev)/float64(wall)/e.res.CPUs))
	}
	cpus, _, _ := resourceFigures(e.res)
	writeJSON(w, http.StatusOK, []e2bapi.SandboxMetric{{
		Timestamp: now.UTC(), TimestampUnix: now.Unix(), CPUCount: cpus, CPUUsedPct: float32(pct),
		MemUsed: u.MemoryBytes, MemTotal: e.res.MemoryBytes, DiskUsed: u.DiskUsed, DiskTotal: u.DiskTotal,
	}})
	return nil
}

// strictQuery parses the query string, refusing malformed escapes (which URL.Query drops silently).
func strictQuery(r *http.Request) (url.Values, *apiError) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "malformed query string")
	}
	return q, nil
}

// listFilter selects sandboxes for a list.
type listFilter struct {
	metadata        map[string]string
	running, paused bool
	template        string
	startedAfter    time.Time
}

func (f listFilter) match(e *entry) bool {
	if paused := e.isPaused(); (paused && !f.paused) || (!paused && !f.running) {
		return false
	}
	if f.template != "" && f.template != e.templateID && f.template != e.template {
		return false
	}
	if !f.startedAfter.IsZero() && e.started.Before(f.startedAfter) {
		return false
	}
	for k, v := range f.metadata {
		if got, ok := e.metadata[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// parseMetadataQuery decodes the metadata filter as the SDKs send it: a query string whose keys and
// values are themselves percent-encoded ("k=v&k2=v2" with each part encodeURIComponent'd).
func parseMetadataQuery(raw string) (map[string]string, *apiError) {
	out := map[string]string{}
	if raw == "" {
		return out, nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "metadata filter is not a query string")
	}
	if len(vals) > maxMetadataEntries {
		return nil, errorf(http.StatusBadRequest, "metadata filter has too many keys")
	}
	for k, vs := range vals {
		key, err1 := url.PathUnescape(k)
		val, err2 := url.PathUnescape(vs[len(vs)-1])
		if err1 != nil || err2 != nil {
			return nil, errorf(http.StatusBadRequest, "metadata filter has a malformed escape")
		}
		out[key] = val
	}
	return out, nil
}

func parseListFilter(q url.Values, withState bool) (listFilter, *apiError) {
	// Without a state filter GET /v2/sandboxes lists both states; the deprecated GET /sandboxes
	// only running ones.
	f := listFilter{running: true, paused: withState}
	md, aerr := parseMetadataQuery(q.Get("metadata"))
	if aerr != nil {
		return f, aerr
	}
	f.metadata = md
	if withState && q.Has("state") {
		f.running, f.paused = false, false
		for _, v := range q["state"] {
			for _, st := range strings.Split(v, ",") {
				switch strings.TrimSpace(st) {
				case e2bapi.StateRunning:
					f.running = true
				case e2bapi.StatePaused:
					f.paused = true
				default:
					return f, errorf(http.StatusBadRequest, "state %q: want running or paused", truncate(st, 32))
				}
			}
		}
	}
	f.template = q.Get("template")
	if v := q.Get("startedAfter"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, errorf(http.StatusBadRequest, "startedAfter must be an RFC 3339 time")
		}
		f.startedAfter = t
	}
	return f, nil
}

// listV1 is the deprecated GET /sandboxes: every running sandbox, no pagination.
func (s *Server) listV1(w http.ResponseWriter, r *http.Request) *apiError {
	q, aerr := strictQuery(r)
	if aerr != nil {
		return aerr
	}
	f, aerr := parseListFilter(q, false)
	if aerr != nil {
		return aerr
	}
	out := []e2bapi.ListedSandbox{}
	for _, e := range s.sorted(false) {
		if f.match(e) {
			out = append(out, s.listed(e))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listV2 is GET /v2/sandboxes: filtered, ordered by start time (newest first unless order=asc),
// paginated with an opaque X-Next-Token cursor.
func (s *Server) listV2(w http.ResponseWriter, r *http.Request) *apiError {
	q, aerr := strictQuery(r)
	if aerr != nil {
		return aerr
	}
	f, aerr := parseListFilter(q, true)
	if aerr != nil {
		return aerr
	}
	limit := defaultListLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListLimit {
			return errorf(http.StatusBadRequest, "limit must be 1-%d", maxListLimit)
		}
		limit = n
	}
	asc := false
	switch q.Get("order") {
	case "", "desc":
	case "asc":
		asc = true
	default:
		return errorf(http.StatusBadRequest, "order must be asc or desc")
	}
	var after *cursor
	if v := q.Get("nextToken"); v != "" {
		c, err := parseCursor(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "nextToken is not a token this server issued")
		}
		after = &c
	}
	out := []e2bapi.ListedSandbox{}
	var last *entry
	more := false
	for _, e := range s.sorted(asc) {
		if !f.match(e) || (after != nil && !after.before(e, asc)) {
			continue
		}
		if len(out) == limit {
			more = true
			break
		}
		out = append(out, s.listed(e))
		last = e
	}
	if more && last != nil {
		w.Header().Set(e2bapi.HeaderNextToken, cursor{started: last.started.UnixNano(), id: last.id}.String())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sorted returns the live sandboxes by start time (then id).
func (s *Server) sorted(asc bool) []*entry {
	all := s.live()
	slices.SortFunc(all, func(a, b *entry) int {
		c := cmpEntry(a, b)
		if !asc {
			c = -c
		}
		return c
	})
	return all
}

func cmpEntry(a, b *entry) int {
	if x, y := a.started.UnixNano(), b.started.UnixNano(); x != y {
		if x < y {
			return -1
		}
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// cursor is the position after which the next page starts.
type cursor struct {
	started int64
	id      string
}

func (c cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.started, 10) + "." + c.id))
}

func parseCursor(s string) (cursor, error) {
	if len(s) > 200 {
		return cursor{}, errors.New("too long")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, err
	}
	ts, id, ok := strings.Cut(string(b), ".")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || !e2bapi.ValidID(id) {
		return cursor{}, errors.New("malformed")
	}
	return cursor{started: n, id: id}, nil
}

// before tells whether e comes after the cursor in the list's order.
func (c cursor) before(e *entry, asc bool) bool {
	k := e.started.UnixNano()
	cmp := 0
	switch {
	case k < c.started:
		cmp = -1
	case k > c.started:
		cmp = 1
	default:
		cmp = strings.Compare(e.id, c.id)
	}
	if asc {
		return cmp > 0
	}
	return cmp < 0
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, e2bapi.Error{Code: e.status, Message: e.msg})
}

// newEntry builds the registry entry and the proxy of a created sandbox.
func (s *Server) newEntry(inst Instance, token string, req createRequest, tpl string, started time.Time) *entry {
	e := &entry{
		id: inst.ID(), token: token, templateID: req.templateID, template: tpl, metadata: req.metadata,
		started: started, inst: inst, res: inst.Resources(), timeout: req.timeout,
		autoPause: req.autoPause, autoResume: req.autoResume,
	}
	e.transport, e.proxy = s.newProxy(e)
	return e
}

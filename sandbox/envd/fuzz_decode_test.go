package envd_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/envdtest"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
	"github.com/agentrun/agent/sandbox/envd/spec/process/processconnect"
)

// fuzzProcedures are the RPCs whose request decoding is fuzzed. Procedures that start processes
// or signal them are left out: standalone envd runs commands as host processes, and a fuzzer
// that decodes a valid StartRequest would run one.
var fuzzProcedures = []string{
	filesystemconnect.FilesystemStatProcedure,
	filesystemconnect.FilesystemMakeDirProcedure,
	filesystemconnect.FilesystemMoveProcedure,
	filesystemconnect.FilesystemListDirProcedure,
	filesystemconnect.FilesystemRemoveProcedure,
	filesystemconnect.FilesystemCreateWatcherProcedure,
	filesystemconnect.FilesystemGetWatcherEventsProcedure,
	filesystemconnect.FilesystemRemoveWatcherProcedure,
	processconnect.ProcessListProcedure,
}

var fuzzContentTypes = []string{"application/json", "application/proto", "application/connect+json",
	"application/connect+proto", "application/grpc", "text/plain", ""}

// FuzzConnectDecoding sends hostile bodies, content types and /files queries to envd's handler:
// every request must be answered (no panic, no hang) with a well-formed HTTP status.
func FuzzConnectDecoding(f *testing.F) {
	_, hs := envdtest.Start(f, envd.Config{})
	h := hs.Config.Handler
	f.Add(uint8(0), uint8(0), []byte(`{"path":"/"}`), "path=/etc/passwd")
	f.Add(uint8(3), uint8(1), []byte{0x0a, 0x01, 0x2f}, "path=../../x&username=root")
	f.Add(uint8(8), uint8(3), []byte{0, 0, 0, 0, 5, 1, 2, 3, 4, 5}, "")
	f.Add(uint8(2), uint8(2), []byte(`{"source":"/a","destination":"/../../b"}`), "path=%00")
	f.Fuzz(func(t *testing.T, proc, ct uint8, body []byte, query string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p := fuzzProcedures[int(proc)%len(fuzzProcedures)]
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "http://envd"+p, bytes.NewReader(body))
		if c := fuzzContentTypes[int(ct)%len(fuzzContentTypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("%s: status %d", p, rec.Code)
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			r := httptest.NewRequestWithContext(ctx, m, "http://envd/files?"+q.Encode(), bytes.NewReader(body))
			r.Header.Set("Content-Type", "multipart/form-data; boundary=x")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code < 100 || rec.Code > 599 {
				t.Fatalf("/files %s: status %d", m, rec.Code)
			}
		}
	})
}

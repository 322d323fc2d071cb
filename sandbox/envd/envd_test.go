package envd_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/envdtest"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res, b
}

func TestAccessToken(t *testing.T) {
	_, hs := envdtest.Start(t, envd.Config{AccessToken: "s3cret"})
	// /health stays open.
	if res, _ := get(t, hs.URL+"/health", nil); res.StatusCode != http.StatusNoContent {
		t.Errorf("/health without token: %d", res.StatusCode)
	}
	// /files needs the token, and answers envd's JSON error.
	for _, tok := range []string{"", "wrong", "s3cret-but-longer"} {
		res, body := get(t, hs.URL+"/files?path=/etc/passwd", map[string]string{"X-Access-Token": tok})
		var e struct{ Code int }
		_ = json.Unmarshal(body, &e)
		if res.StatusCode != http.StatusUnauthorized || e.Code != 401 {
			t.Errorf("/files with token %q: %d %s", tok, res.StatusCode, body)
		}
	}
	if res, body := get(t, hs.URL+"/files?path=/etc/passwd", map[string]string{"X-Access-Token": "s3cret"}); res.StatusCode != 200 || !strings.Contains(string(body), "user:x:1000") {
		t.Errorf("/files with the token: %d %s", res.StatusCode, body)
	}
	// RPCs too, with Connect's unauthenticated code.
	client := filesystemconnect.NewFilesystemClient(http.DefaultClient, hs.URL, connect.WithProtoJSON())
	_, err := client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "/"}))
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("Stat without token: %v", err)
	}
	req := connect.NewRequest(&filesystem.StatRequest{Path: "/"})
	req.Header().Set("X-Access-Token", "s3cret")
	if _, err := client.Stat(ctx(t), req); err != nil {
		t.Errorf("Stat with the token: %v", err)
	}
	// A stream refused for the token still ends with a proper end-stream error.
	stream, err := client.WatchDir(ctx(t), connect.NewRequest(&filesystem.WatchDirRequest{Path: "/tmp"}))
	if err == nil {
		if stream.Receive() {
			t.Error("WatchDir without token sent a message")
		}
		err = stream.Err()
		stream.Close()
	}
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("WatchDir without token: %v", err)
	}
}

func TestUsers(t *testing.T) {
	_, hs := envdtest.Start(t, envd.Config{})
	client := filesystemconnect.NewFilesystemClient(http.DefaultClient, hs.URL, connect.WithProtoJSON())
	stat := func(auth string) (string, error) {
		req := connect.NewRequest(&filesystem.StatRequest{Path: "~"})
		if auth != "" {
			req.Header().Set("Authorization", auth)
		}
		res, err := client.Stat(ctx(t), req)
		if err != nil {
			return "", err
		}
		return res.Msg.GetEntry().GetPath(), nil
	}
	basic := func(u string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(u+":")) }
	for auth, want := range map[string]string{"": "/home/user", basic("user"): "/home/user", basic("root"): "/root", basic(""): "/home/user"} {
		if got, err := stat(auth); err != nil || got != want {
			t.Errorf("Authorization %q: home %q, %v; want %q", auth, got, err, want)
		}
	}
	for _, auth := range []string{basic("nobody"), "Basic !!!", "Bearer x"} {
		if _, err := stat(auth); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("Authorization %q: %v, want unauthenticated", auth, err)
		}
	}
	if res, _ := get(t, hs.URL+"/files?path=/etc/passwd&username=nobody", nil); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("/files as unknown user: %d", res.StatusCode)
	}
}

// TestDefaultUserRoot: a world without "user" runs requests as root.
func TestDefaultUserRoot(t *testing.T) {
	w := envdtest.NewWorld(t)
	if err := os.WriteFile(filepath.Join(w, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, hs := envdtest.Start(t, envd.Config{Root: w})
	if srv.DefaultUser() != "root" {
		t.Errorf("default user %q", srv.DefaultUser())
	}
	client := filesystemconnect.NewFilesystemClient(http.DefaultClient, hs.URL, connect.WithProtoJSON())
	res, err := client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "~"}))
	if err != nil || res.Msg.GetEntry().GetPath() != "/root" {
		t.Errorf("home = %v, %v", res, err)
	}
}

func TestVersionHeader(t *testing.T) {
	_, hs := envdtest.Start(t, envd.Config{AccessToken: "t"})
	for _, p := range []string{"/health", "/files?path=x", "/nonexistent"} {
		if res, _ := get(t, hs.URL+p, nil); res.Header.Get("X-Envd-Version") != envd.Version {
			t.Errorf("%s: X-Envd-Version %q, want %q", p, res.Header.Get("X-Envd-Version"), envd.Version)
		}
	}
}

// TestServeHTTP1AndH2C runs Serve on a loopback listener and calls it over HTTP/1.1 and over
// cleartext HTTP/2, then shuts it down through the context.
func TestServeHTTP1AndH2C(t *testing.T) {
	srv, err := envd.New(envd.Config{Root: envdtest.NewWorld(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(c, ln) }()
	base := "http://" + ln.Addr().String()

	for _, proto := range []string{"http1", "h2c"} {
		tr := &http.Transport{}
		var p http.Protocols
		if proto == "h2c" {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		tr.Protocols = &p
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		client := filesystemconnect.NewFilesystemClient(hc, base, connect.WithProtoJSON())
		res, err := client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "/etc/passwd"}))
		if err != nil || res.Msg.GetEntry().GetSize() == 0 {
			t.Errorf("%s: %v %v", proto, res, err)
		}
		req, _ := http.NewRequest(http.MethodGet, base+"/health", nil)
		hres, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s health: %v", proto, err)
		}
		hres.Body.Close()
		want := 1
		if proto == "h2c" {
			want = 2
		}
		if hres.ProtoMajor != want || hres.StatusCode != http.StatusNoContent {
			t.Errorf("%s: proto %s status %d", proto, hres.Proto, hres.StatusCode)
		}
		tr.CloseIdleConnections()
	}
	cancel()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}

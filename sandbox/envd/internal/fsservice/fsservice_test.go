package fsservice_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/sys/unix"

	"github.com/agentrun/agent/sandbox/envd"
	"github.com/agentrun/agent/sandbox/envd/internal/envdtest"
	"github.com/agentrun/agent/sandbox/envd/internal/fsroot"
	"github.com/agentrun/agent/sandbox/envd/internal/fsservice"
	"github.com/agentrun/agent/sandbox/envd/internal/users"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem"
	"github.com/agentrun/agent/sandbox/envd/spec/filesystem/filesystemconnect"
)

type env struct {
	world  string
	base   string
	client filesystemconnect.FilesystemClient // JSON codec, as the SDKs use
	proto  filesystemconnect.FilesystemClient // binary codec
}

func newEnv(t *testing.T) *env {
	t.Helper()
	w := envdtest.NewWorld(t)
	_, hs := envdtest.Start(t, envd.Config{Root: w})
	return &env{
		world:  w,
		base:   hs.URL,
		client: filesystemconnect.NewFilesystemClient(hs.Client(), hs.URL, connect.WithProtoJSON()),
		proto:  filesystemconnect.NewFilesystemClient(hs.Client(), hs.URL),
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// asRoot sets the Authorization header the SDKs send for user "root".
func asRoot[T any](req *connect.Request[T]) *connect.Request[T] {
	req.Header().Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("root:")))
	return req
}

func (e *env) host(world string) string { return filepath.Join(e.world, world) }

func (e *env) write(t *testing.T, world, data string) {
	t.Helper()
	p := e.host(world)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code connect.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error, got success", code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("want %v, got %v (%v)", code, got, err)
	}
}

func owner(t *testing.T, p string) (uint32, uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Uid, st.Gid
}

func TestStat(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/file.txt", "test")
	if os.Geteuid() == 0 {
		if err := os.Chown(e.host("/home/user/file.txt"), 1000, 1000); err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	if err := os.Chtimes(e.host("/home/user/file.txt"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	for _, client := range []filesystemconnect.FilesystemClient{e.client, e.proto} {
		for _, p := range []string{"file.txt", "~/file.txt", "/home/user/file.txt", "/home/user/../user/./file.txt"} {
			res, err := client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: p}))
			if err != nil {
				t.Fatalf("Stat(%q): %v", p, err)
			}
			en := res.Msg.GetEntry()
			if en.GetName() != "file.txt" || en.GetPath() != "/home/user/file.txt" || en.GetType() != filesystem.FileType_FILE_TYPE_FILE ||
				en.GetSize() != 4 || en.GetMode() != 0o644 || en.GetPermissions() != "-rw-r--r--" || en.SymlinkTarget != nil {
				t.Fatalf("Stat(%q) = %+v", p, en)
			}
			if !en.GetModifiedTime().AsTime().Equal(mtime) {
				t.Errorf("modified time %v, want %v", en.GetModifiedTime().AsTime(), mtime)
			}
			if os.Geteuid() == 0 && (en.GetOwner() != "user" || en.GetGroup() != "user") {
				t.Errorf("owner %s:%s, want user:user", en.GetOwner(), en.GetGroup())
			}
		}
	}
	// Directory.
	res, err := e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "/etc"}))
	if err != nil {
		t.Fatal(err)
	}
	if en := res.Msg.GetEntry(); en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || en.GetMode() != 0o755 ||
		en.GetPermissions() != "drwxr-xr-x" || en.GetOwner() != "root" || en.GetName() != "etc" {
		t.Errorf("Stat(/etc) = %+v", en)
	}
	// The root.
	res, err = e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "/"}))
	if err != nil || res.Msg.GetEntry().GetName() != "/" || res.Msg.GetEntry().GetPath() != "/" {
		t.Errorf("Stat(/) = %+v, %v", res, err)
	}
	// Empty path is the home directory.
	res, err = e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: ""}))
	if err != nil || res.Msg.GetEntry().GetPath() != "/home/user" {
		t.Errorf("Stat(\"\") = %+v, %v", res, err)
	}
	// As root, relative paths are relative to /root.
	e.write(t, "/root/r.txt", "r")
	res, err = e.client.Stat(ctx(t), asRoot(connect.NewRequest(&filesystem.StatRequest{Path: "r.txt"})))
	if err != nil || res.Msg.GetEntry().GetPath() != "/root/r.txt" {
		t.Errorf("Stat(r.txt) as root = %+v, %v", res, err)
	}
	_, err = e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "missing"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "~other/x"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: "file.txt/x"}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestStatSymlinks(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/target.txt", "hello")
	must(t, os.Symlink("target.txt", e.host("/home/user/rel")))
	must(t, os.Symlink("/home/user", e.host("/home/user/dirlink")))
	must(t, os.Symlink("nowhere", e.host("/home/user/broken")))
	must(t, os.Symlink("/../../../../etc/passwd", e.host("/home/user/climb")))
	cases := []struct {
		path, target string
		typ          filesystem.FileType
		mode         uint32
	}{
		{"rel", "/home/user/target.txt", filesystem.FileType_FILE_TYPE_FILE, 0o644},
		{"dirlink", "/home/user", filesystem.FileType_FILE_TYPE_DIRECTORY, 0o755},
		{"broken", "/home/user/broken", filesystem.FileType_FILE_TYPE_SYMLINK, 0},
		{"climb", "/etc/passwd", filesystem.FileType_FILE_TYPE_FILE, 0o644},
	}
	for _, c := range cases {
		res, err := e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: c.path}))
		if err != nil {
			t.Fatalf("Stat(%s): %v", c.path, err)
		}
		en := res.Msg.GetEntry()
		if en.GetSymlinkTarget() != c.target || en.GetType() != c.typ || en.GetMode() != c.mode ||
			en.GetName() != c.path || !strings.HasPrefix(en.GetPermissions(), "L") {
			t.Errorf("Stat(%s) = %+v", c.path, en)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestMakeDir(t *testing.T) {
	e := newEnv(t)
	res, err := e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: "a/b/c"}))
	if err != nil {
		t.Fatal(err)
	}
	if en := res.Msg.GetEntry(); en.GetPath() != "/home/user/a/b/c" || en.GetType() != filesystem.FileType_FILE_TYPE_DIRECTORY || en.GetMode() != 0o755 {
		t.Errorf("MakeDir entry = %+v", en)
	}
	if os.Geteuid() == 0 {
		for _, p := range []string{"a", "a/b", "a/b/c"} {
			if uid, gid := owner(t, e.host("/home/user/"+p)); uid != 1000 || gid != 1000 {
				t.Errorf("%s owned by %d:%d, want 1000:1000", p, uid, gid)
			}
		}
		if res.Msg.GetEntry().GetOwner() != "user" {
			t.Errorf("entry owner %q", res.Msg.GetEntry().GetOwner())
		}
		// As root: root-owned.
		if _, err := e.client.MakeDir(ctx(t), asRoot(connect.NewRequest(&filesystem.MakeDirRequest{Path: "/opt/x"}))); err != nil {
			t.Fatal(err)
		}
		if uid, _ := owner(t, e.host("/opt/x")); uid != 0 {
			t.Errorf("/opt/x owned by %d, want root", uid)
		}
	}
	_, err = e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: "a/b"}))
	wantCode(t, err, connect.CodeAlreadyExists)
	e.write(t, "/home/user/f", "x")
	_, err = e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: "f"}))
	wantCode(t, err, connect.CodeInvalidArgument)
	_, err = e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: "f/sub"}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestMove(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/src.txt", "data")
	res, err := e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: "src.txt", Destination: "new/dir/dst.txt"}))
	if err != nil {
		t.Fatal(err)
	}
	if en := res.Msg.GetEntry(); en.GetPath() != "/home/user/new/dir/dst.txt" || en.GetName() != "dst.txt" || en.GetSize() != 4 {
		t.Errorf("Move entry = %+v", en)
	}
	if b, err := os.ReadFile(e.host("/home/user/new/dir/dst.txt")); err != nil || string(b) != "data" {
		t.Fatalf("moved file = %q, %v", b, err)
	}
	if _, err := os.Stat(e.host("/home/user/src.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("source still exists")
	}
	if os.Geteuid() == 0 {
		if uid, _ := owner(t, e.host("/home/user/new/dir")); uid != 1000 {
			t.Errorf("created parent owned by %d", uid)
		}
	}
	_, err = e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: "missing", Destination: "x"}))
	wantCode(t, err, connect.CodeNotFound)
	if _, err := os.Stat(e.host("/home/user/x")); err == nil {
		t.Error("destination created for a missing source")
	}
	// Moving a directory onto a non-empty one fails, the tree survives.
	must(t, os.MkdirAll(e.host("/home/user/d1/x"), 0o755))
	must(t, os.MkdirAll(e.host("/home/user/d2/y"), 0o755))
	_, err = e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: "d1", Destination: "d2"}))
	if err == nil {
		t.Fatal("move onto a non-empty directory succeeded")
	}
	_, err = e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: "/", Destination: "/x"}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestListDir(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"subdir1/subdir1_1", "subdir1/subdir1_2", "subdir2/subdir2_1", "subdir2/subdir2_2/deeper"} {
		must(t, os.MkdirAll(e.host("/home/user/test_directory/"+d), 0o755))
	}
	e.write(t, "/home/user/test_directory/file1.txt", "Hello, world!")
	must(t, os.Symlink("/home/user/test_directory/subdir2", e.host("/home/user/test_directory/subdir1/link")))
	must(t, os.Symlink("/home/user/test_directory", e.host("/home/user/dirlink")))

	list := func(p string, depth uint32) []string {
		t.Helper()
		res, err := e.client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: p, Depth: depth}))
		if err != nil {
			t.Fatalf("ListDir(%s, %d): %v", p, depth, err)
		}
		var out []string
		for _, en := range res.Msg.GetEntries() {
			out = append(out, fmt.Sprintf("%s|%s|%s", en.GetPath(), en.GetName(), strings.TrimPrefix(en.GetType().String(), "FILE_TYPE_")))
		}
		return out
	}
	d := "/home/user/test_directory"
	want1 := []string{d + "/file1.txt|file1.txt|FILE", d + "/subdir1|subdir1|DIRECTORY", d + "/subdir2|subdir2|DIRECTORY"}
	for _, depth := range []uint32{0, 1} {
		if got := list("test_directory", depth); strings.Join(got, " ") != strings.Join(want1, " ") {
			t.Errorf("depth %d:\n got %v\nwant %v", depth, got, want1)
		}
	}
	want2 := []string{
		d + "/file1.txt|file1.txt|FILE",
		d + "/subdir1|subdir1|DIRECTORY",
		d + "/subdir1/link|link|DIRECTORY", // a symlink reports its target's type …
		d + "/subdir1/subdir1_1|subdir1_1|DIRECTORY",
		d + "/subdir1/subdir1_2|subdir1_2|DIRECTORY",
		d + "/subdir2|subdir2|DIRECTORY",
		d + "/subdir2/subdir2_1|subdir2_1|DIRECTORY",
		d + "/subdir2/subdir2_2|subdir2_2|DIRECTORY",
	}
	if got := list("test_directory", 2); strings.Join(got, " ") != strings.Join(want2, " ") {
		t.Errorf("depth 2:\n got %v\nwant %v", got, want2)
	}
	// … but is never descended into.
	got := list("test_directory", 10)
	if len(got) != len(want2)+1 || !strings.Contains(strings.Join(got, " "), "subdir2_2/deeper") {
		t.Errorf("depth 10: %v", got)
	}
	for _, g := range got {
		if strings.Contains(g, "link/") {
			t.Errorf("descended into a symlinked directory: %s", g)
		}
	}
	// Through a symlink, paths stay below the requested path.
	if got := list("dirlink", 1); len(got) != 3 || !strings.HasPrefix(got[0], "/home/user/dirlink/file1.txt|") {
		t.Errorf("via symlink: %v", got)
	}
	// Entry details.
	res, err := e.client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: "test_directory"}))
	must(t, err)
	if en := res.Msg.GetEntries()[0]; en.GetMode() != 0o644 || en.GetPermissions() != "-rw-r--r--" || en.GetSize() != 13 || en.GetModifiedTime() == nil {
		t.Errorf("file entry = %+v", en)
	}

	_, err = e.client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: "missing"}))
	wantCode(t, err, connect.CodeNotFound)
	_, err = e.client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: "test_directory/file1.txt"}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

func TestListDirBounded(t *testing.T) {
	w := envdtest.NewWorld(t)
	must(t, os.MkdirAll(filepath.Join(w, "big"), 0o755))
	for i := range 50 {
		must(t, os.WriteFile(filepath.Join(w, "big", fmt.Sprint(i)), nil, 0o644))
	}
	// envd.Config does not expose the bound: the service is served on its own.
	client := startService(t, w, func(c *fsservice.Config) { c.MaxListEntries = 10 })
	_, err := client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: "/big"}))
	wantCode(t, err, connect.CodeResourceExhausted)
}

func TestRemove(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/tree/a/b/f", "x")
	e.write(t, "/home/user/keep/k", "k")
	must(t, os.Symlink("/home/user/keep", e.host("/home/user/tree/link")))
	e.write(t, "/home/user/file", "x")
	for _, p := range []string{"file", "tree", "does-not-exist", "missing/parent/x"} {
		if _, err := e.client.Remove(ctx(t), connect.NewRequest(&filesystem.RemoveRequest{Path: p})); err != nil {
			t.Fatalf("Remove(%s): %v", p, err)
		}
	}
	for _, p := range []string{"file", "tree"} {
		if _, err := os.Lstat(e.host("/home/user/" + p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists", p)
		}
	}
	if _, err := os.Stat(e.host("/home/user/keep/k")); err != nil {
		t.Errorf("symlink target removed: %v", err)
	}
	_, err := e.client.Remove(ctx(t), connect.NewRequest(&filesystem.RemoveRequest{Path: "/"}))
	wantCode(t, err, connect.CodeInvalidArgument)
}

// TestSymlinkEscapesRefused plants symlinks that name host paths outside the world and climb out
// with "..": every RPC stays inside the world.
func TestSymlinkEscapesRefused(t *testing.T) {
	e := newEnv(t)
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644))
	must(t, os.Symlink(outside, e.host("/home/user/host")))
	must(t, os.Symlink("../../../../../../../../"+outside, e.host("/home/user/climb")))
	paths := []string{"host/secret", "climb/secret", "/../../" + outside + "/secret", "../../../../" + outside + "/secret"}
	for _, p := range paths {
		_, err := e.client.Stat(ctx(t), connect.NewRequest(&filesystem.StatRequest{Path: p}))
		wantCode(t, err, connect.CodeNotFound)
		_, err = e.client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: filepath.Dir(p)}))
		wantCode(t, err, connect.CodeNotFound)
	}
	for _, p := range paths {
		_, _ = e.client.Remove(ctx(t), connect.NewRequest(&filesystem.RemoveRequest{Path: p}))
		_, _ = e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: p, Destination: "stolen"}))
		e.write(t, "/home/user/movable", "m")
		_, _ = e.client.Move(ctx(t), connect.NewRequest(&filesystem.MoveRequest{Source: "movable", Destination: p}))
		_, _ = e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: p + "/newdir"}))
	}
	ents, err := os.ReadDir(outside)
	must(t, err)
	if len(ents) != 1 || ents[0].Name() != "secret" {
		t.Fatalf("outside directory changed: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host" {
		t.Fatal("outside file changed")
	}
	// What was written went to the same path inside the world.
	if b, err := os.ReadFile(e.host(outside + "/secret")); err != nil || string(b) != "m" {
		t.Errorf("moved file inside the world = %q, %v", b, err)
	}
}

func TestMalformedJSON(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{`{"path":`, `{"path": 5}`, `[1,2]`, "\x00\x01"} {
		req, _ := http.NewRequest(http.MethodPost, e.base+"/filesystem.Filesystem/Stat", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
		res, err := http.DefaultClient.Do(req)
		must(t, err)
		var out struct{ Code string }
		_ = json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&out)
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest || out.Code != "invalid_argument" {
			t.Errorf("body %q: status %d code %q, want 400 invalid_argument", body, res.StatusCode, out.Code)
		}
	}
	// Unknown fields are ignored, as the SDKs' own clients do.
	req, _ := http.NewRequest(http.MethodPost, e.base+"/filesystem.Filesystem/Stat", bytes.NewReader([]byte(`{"path":"/etc","future":1}`)))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	must(t, err)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("unknown field: status %d", res.StatusCode)
	}
}

// startService serves a bare fsservice (with adjusted bounds) as the world's "user", for the bounds
// envd.Config does not expose.
func startService(t *testing.T, world string, adjust func(*fsservice.Config)) filesystemconnect.FilesystemClient {
	t.Helper()
	root, err := fsroot.Open(world)
	must(t, err)
	db := users.NewDB(root)
	u, err := db.Lookup("user")
	must(t, err)
	cfg := fsservice.Config{Root: root, Users: db}
	adjust(&cfg)
	svc := fsservice.New(cfg)
	path, h := filesystemconnect.NewFilesystemHandler(svc)
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(users.WithUser(r.Context(), u)))
	}))
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		hs.Close()
		must(t, svc.Close())
		must(t, root.Close())
	})
	return filesystemconnect.NewFilesystemClient(hs.Client(), hs.URL, connect.WithProtoJSON())
}

// TestNonUTF8Names: a file whose name is not UTF-8 (possible on Linux, not in protobuf strings)
// must not break a listing; it is reported with U+FFFD.
func TestNonUTF8Names(t *testing.T) {
	e := newEnv(t)
	e.write(t, "/home/user/odd/bad\xffname", "x")
	e.write(t, "/home/user/odd/good", "x")
	for _, client := range []filesystemconnect.FilesystemClient{e.client, e.proto} {
		res, err := client.ListDir(ctx(t), connect.NewRequest(&filesystem.ListDirRequest{Path: "odd"}))
		must(t, err)
		if n := res.Msg.GetEntries(); len(n) != 2 || n[0].GetName() != "bad\uFFFDname" || n[0].GetPath() != "/home/user/odd/bad\uFFFDname" {
			t.Errorf("entries %v", n)
		}
	}
}

func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting tmpfs needs root")
	}
	e := newEnv(t)
	dir := e.host("/small")
	must(t, os.MkdirAll(dir, 0o755))
	must(t, unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "nr_inodes=3"))
	t.Cleanup(func() { must(t, unix.Unmount(dir, unix.MNT_DETACH)) })
	var err error
	for i := 0; i < 10 && err == nil; i++ {
		_, err = e.client.MakeDir(ctx(t), connect.NewRequest(&filesystem.MakeDirRequest{Path: fmt.Sprintf("/small/d%d", i)}))
	}
	wantCode(t, err, connect.CodeResourceExhausted)
}

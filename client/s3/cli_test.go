package s3_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/client/s3"
)

// The tests of this file run real S3 programs (the aws CLI and rclone)
// against a gateway: they speak S3 the way people's tools do, with
// behaviour no hand-written request exercises (multipart thresholds,
// sync's size and time comparisons, listing parsers).

// requireTool returns the path of the program name, from the Debian
// package pkg. A missing program skips the test, except under
// CAIRN_REQUIRE_TOOLS=1 (as CI runs), where it fails it: there the
// programs are installed, and a skip would hide that nothing ran.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed (apt-get install %s): %v", name, pkg, err)
	if os.Getenv("CAIRN_REQUIRE_TOOLS") == "1" {
		t.Fatal(msg + "; CAIRN_REQUIRE_TOOLS=1 requires it")
	}
	t.Skip(msg)
	return ""
}

// startGateway runs an s3.Server, as cmd/s3gateway does, in front of the
// shared cluster for one test, and returns its URL.
func startGateway(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := runGateway(t, s3.ServerConfig{
		Listener: ln,
		Client:   client.ClientConfig{Masters: shared.masters, IOTimeout: time.Minute},
		Handler: s3.Config{
			Credentials: []s3.Credential{{AccessKey: testAccessKey, SecretKey: testSecretKey}},
			Logger:      slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		},
	})
	// Run dials the cluster before it serves: wait for an answer (an
	// AccessDenied does), so that a test ending early does not stop
	// the gateway in the middle of its dial.
	u := "http://" + srv.Addr()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := oneShot.Get(u)
		if err == nil {
			resp.Body.Close()
			return u
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway at %s does not answer: %v", u, err)
		}
	}
}

// oneShot is the HTTP client of the tests' own requests to gateways: a
// connection per request, so that none is left idle (and its goroutines
// running) once a gateway stops.
var oneShot = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// testLogWriter sends the gateway's log lines to the test's log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// program runs one S3 program in an environment of its own: a temporary
// HOME and configuration, and the test's keys, so that neither the
// user's configuration nor the user's credentials are ever used.
type program struct {
	t    *testing.T
	bin  string
	env  []string
	args []string // before every command's own
}

// cleanEnv returns the process environment without anything that
// configures AWS tools or rclone, with HOME (and XDG_CONFIG_HOME) set to
// home.
func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "RCLONE_") || k == "HOME" || k == "XDG_CONFIG_HOME" || k == "XDG_CACHE_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"), "XDG_CACHE_HOME="+filepath.Join(home, ".cache"))
}

// newAWS returns the aws CLI configured for a new gateway.
func newAWS(t *testing.T) *program {
	bin := requireTool(t, "aws", "awscli")
	endpoint := startGateway(t)
	home := t.TempDir()
	cfg := filepath.Join(home, "aws-config")
	// Path-style addressing: the gateway serves buckets as path
	// segments (the endpoint is an IP address anyway). Signature
	// Version 4 everywhere: the aws CLI v1 presigns with Version 2
	// unless told otherwise, which the gateway does not accept.
	writeFile(t, cfg, []byte("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n    signature_version = s3v4\n"))
	creds := filepath.Join(home, "aws-credentials")
	writeFile(t, creds, []byte("[default]\naws_access_key_id = "+testAccessKey+"\naws_secret_access_key = "+testSecretKey+"\n"))
	env := append(cleanEnv(home),
		"AWS_CONFIG_FILE="+cfg,
		"AWS_SHARED_CREDENTIALS_FILE="+creds,
		"AWS_ACCESS_KEY_ID="+testAccessKey,
		"AWS_SECRET_ACCESS_KEY="+testSecretKey,
		"AWS_DEFAULT_REGION=us-east-1",
		"AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_PAGER=",
		"AWS_CLI_AUTO_PROMPT=off",
		// No retries: a request the gateway fails must fail the test,
		// not be hidden by a second attempt that succeeds.
		"AWS_MAX_ATTEMPTS=1",
		"AWS_RETRY_MODE=standard",
	)
	return &program{t: t, bin: bin, env: env, args: []string{"--endpoint-url", endpoint, "--region", "us-east-1"}}
}

// newRclone returns rclone with the remote "cairn:" configured, through
// environment variables only, for a new gateway.
func newRclone(t *testing.T) *program {
	bin := requireTool(t, "rclone", "rclone")
	endpoint := startGateway(t)
	home := t.TempDir()
	conf := filepath.Join(home, "rclone.conf")
	writeFile(t, conf, nil)
	env := append(cleanEnv(home),
		"RCLONE_CONFIG="+conf,
		"RCLONE_CONFIG_CAIRN_TYPE=s3",
		"RCLONE_CONFIG_CAIRN_PROVIDER=Other",
		"RCLONE_CONFIG_CAIRN_ENV_AUTH=false",
		"RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID="+testAccessKey,
		"RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY="+testSecretKey,
		"RCLONE_CONFIG_CAIRN_ENDPOINT="+endpoint,
		"RCLONE_CONFIG_CAIRN_REGION=us-east-1",
		"RCLONE_CONFIG_CAIRN_FORCE_PATH_STYLE=true",
		// As with the aws CLI: a failure must show, not be retried away.
		"RCLONE_RETRIES=1",
		"RCLONE_LOW_LEVEL_RETRIES=1",
		"RCLONE_CACHE_DIR="+filepath.Join(home, "cache"),
	)
	return &program{t: t, bin: bin, env: env}
}

// try runs the program with args, returning its standard output, or an
// error carrying everything it printed.
func (p *program) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	args = append(slices.Clip(p.args), args...)
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = p.env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(p.bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// run runs the program and fails the test if it fails.
func (p *program) run(args ...string) string {
	p.t.Helper()
	out, err := p.try(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cliTree is the small tree of files the programs copy around: nested
// directories, an empty file and names that need encoding in URLs and
// in XML.
func cliTree() map[string][]byte {
	return map[string][]byte{
		"a.txt":                  []byte("hello from a real S3 program\n"),
		"empty":                  {},
		"dir/b.bin":              pattern(300<<10, 3),
		"dir/sub/c.txt":          []byte("third level\n"),
		"dir/sub/d & e+f.txt":    []byte("a name with blanks, '&' and '+'\n"),
		"ünïcödé/ß <xml>.txt":    []byte("a name outside ASCII, with XML markup\n"),
		"percent%20literal.data": pattern(1000, 9),
	}
}

// changeTree changes one file of the tree in dir, adds one and removes
// one, in files and on disk; the other files keep their times, as sync
// compares them.
func changeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	files["a.txt"] = []byte("changed, and longer than before\n")
	files["new/file"] = []byte("new\n")
	delete(files, "dir/sub/c.txt")
	writeFile(t, filepath.Join(dir, "a.txt"), files["a.txt"])
	writeFile(t, filepath.Join(dir, "new", "file"), files["new/file"])
	if err := os.Remove(filepath.Join(dir, "dir", "sub", "c.txt")); err != nil {
		t.Fatal(err)
	}
}

func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		writeFile(t, filepath.Join(dir, filepath.FromSlash(rel)), data)
	}
}

// readTree returns every regular file below dir by slash-separated
// relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sameTree fails the test unless got holds exactly want's files.
func sameTree(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: %q missing", what, k)
		case !bytes.Equal(g, w):
			t.Errorf("%s: %q has %d bytes that differ from the %d sent", what, k, len(g), len(w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q", what, k)
		}
	}
}

// readCairn reads a file through the client library: what the gateway
// stored is what every other front end sees.
func readCairn(t *testing.T, p string) []byte {
	t.Helper()
	f, err := shared.cl.Open(ctxT(t), p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return data
}

// checkCairnTree fails the test unless the namespace holds want's files
// below dir.
func checkCairnTree(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	for rel, data := range want {
		if got := readCairn(t, dir+"/"+rel); !bytes.Equal(got, data) {
			t.Errorf("%s/%s through the client: %d bytes that differ from the %d sent", dir, rel, len(got), len(data))
		}
	}
}

// cleanupBucket removes a bucket the programs made, whatever state the
// test left it in.
func cleanupBucket(t *testing.T, name string) {
	t.Cleanup(func() {
		if err := shared.cl.RemoveAll(context.Background(), "/"+name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("remove bucket %s: %v", name, err)
		}
	})
}

// lsLine is one line of `aws s3 ls`: "2024-01-02 03:04:05  123 key" for
// an object, "PRE prefix/" for a common prefix.
var lsLine = regexp.MustCompile(`^(?:\S+ \S+\s+(\d+) (.+)|\s*PRE (.+))$`)

// parseLS returns the keys (objects) and prefixes `aws s3 ls` printed.
func parseLS(t *testing.T, out string) (objects map[string]string, prefixes []string) {
	t.Helper()
	objects = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		m := lsLine.FindStringSubmatch(sc.Text())
		switch {
		case m == nil:
			t.Fatalf("unexpected aws s3 ls line %q", sc.Text())
		case m[3] != "":
			prefixes = append(prefixes, m[3])
		default:
			objects[m[2]] = m[1]
		}
	}
	slices.Sort(prefixes)
	return objects, prefixes
}

func TestAWSCLI(t *testing.T) {
	aws := newAWS(t)
	const b = "cli-aws"
	cleanupBucket(t, b)
	aws.run("s3", "mb", "s3://"+b)
	files := cliTree()
	src := t.TempDir()
	writeTree(t, src, files)

	// cp --recursive up: every file arrives intact, as the client
	// library reads it.
	aws.run("s3", "cp", "--recursive", "--no-progress", src, "s3://"+b+"/up/")
	checkCairnTree(t, "/"+b+"/up", files)

	// ls: the bucket list, one level with its prefixes, everything.
	if out := aws.run("s3", "ls"); !regexp.MustCompile(`(?m)^\S+ \S+ ` + b + `$`).MatchString(out) {
		t.Errorf("aws s3 ls does not list bucket %s:\n%s", b, out)
	}
	objs, prefixes := parseLS(t, aws.run("s3", "ls", "s3://"+b+"/up/"))
	if want := []string{"dir/", "ünïcödé/"}; !slices.Equal(prefixes, want) {
		t.Errorf("aws s3 ls prefixes = %q, want %q", prefixes, want)
	}
	if want := map[string]string{"a.txt": fmt.Sprint(len(files["a.txt"])), "empty": "0", "percent%20literal.data": "1000"}; !mapsEqual(objs, want) {
		t.Errorf("aws s3 ls objects = %q, want %q", objs, want)
	}
	objs, _ = parseLS(t, aws.run("s3", "ls", "--recursive", "s3://"+b+"/"))
	wantAll := map[string]string{}
	for k, v := range files {
		wantAll["up/"+k] = fmt.Sprint(len(v))
	}
	if !mapsEqual(objs, wantAll) {
		t.Errorf("aws s3 ls --recursive = %q, want %q", objs, wantAll)
	}

	// cp --recursive down.
	down := t.TempDir()
	aws.run("s3", "cp", "--recursive", "--no-progress", "s3://"+b+"/up/", down)
	sameTree(t, "cp --recursive down", readTree(t, down), files)

	// Ranged GETs, through s3api: the first bytes, a middle range, the
	// tail and a suffix range.
	key := "up/dir/b.bin"
	data := files["dir/b.bin"]
	for _, r := range []struct {
		spec     string
		off, end int // the bytes expected, [off, end)
	}{
		{"bytes=0-0", 0, 1},
		{"bytes=1000-99999", 1000, 100000},
		{fmt.Sprintf("bytes=%d-", len(data)-10), len(data) - 10, len(data)},
		{"bytes=-4096", len(data) - 4096, len(data)},
	} {
		out := filepath.Join(t.TempDir(), "range")
		res := aws.run("s3api", "get-object", "--bucket", b, "--key", key, "--range", r.spec, out)
		var meta struct {
			ContentLength int64
			ContentRange  string
			ETag          string
		}
		if err := json.Unmarshal([]byte(res), &meta); err != nil {
			t.Fatalf("get-object %s output %q: %v", r.spec, res, err)
		}
		wantRange := fmt.Sprintf("bytes %d-%d/%d", r.off, r.end-1, len(data))
		if meta.ContentRange != wantRange || meta.ContentLength != int64(r.end-r.off) || meta.ETag != md5ETag(data) {
			t.Errorf("get-object --range %s: %+v, want ContentRange %q, length %d, ETag %s", r.spec, meta, wantRange, r.end-r.off, md5ETag(data))
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, data[r.off:r.end]) {
			t.Errorf("get-object --range %s: %d bytes (%v), not the range's", r.spec, len(got), err)
		}
	}

	// head-object and put-object with metadata, through s3api.
	res := aws.run("s3api", "put-object", "--bucket", b, "--key", "meta/obj.json", "--body", filepath.Join(src, "a.txt"),
		"--content-type", "application/json", "--metadata", "origin=cli,n=1")
	var put struct{ ETag string }
	if err := json.Unmarshal([]byte(res), &put); err != nil || put.ETag != md5ETag(files["a.txt"]) {
		t.Errorf("put-object = %q (%v), want ETag %s", res, err, md5ETag(files["a.txt"]))
	}
	res = aws.run("s3api", "head-object", "--bucket", b, "--key", "meta/obj.json")
	var head struct {
		ContentLength int64
		ContentType   string
		ETag          string
		Metadata      map[string]string
	}
	if err := json.Unmarshal([]byte(res), &head); err != nil {
		t.Fatalf("head-object output %q: %v", res, err)
	}
	if head.ContentLength != int64(len(files["a.txt"])) || head.ContentType != "application/json" || head.ETag != md5ETag(files["a.txt"]) ||
		!mapsEqual(head.Metadata, map[string]string{"origin": "cli", "n": "1"}) {
		t.Errorf("head-object = %+v", head)
	}
	if _, err := aws.try("s3api", "head-object", "--bucket", b, "--key", "meta/missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("head-object of a missing key: %v, want a 404", err)
	}

	// Server-side copy and move (CopyObject), and a presigned URL
	// fetched without the CLI.
	aws.run("s3", "cp", "s3://"+b+"/up/dir/b.bin", "s3://"+b+"/copied/b.bin")
	aws.run("s3", "mv", "s3://"+b+"/copied/b.bin", "s3://"+b+"/moved/b.bin")
	if got := readCairn(t, "/"+b+"/moved/b.bin"); !bytes.Equal(got, data) {
		t.Errorf("copied and moved object: %d bytes that differ from the %d sent", len(got), len(data))
	}
	if _, err := shared.cl.Stat(ctxT(t), "/"+b+"/copied"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("mv left its source: %v", err)
	}
	presigned := strings.TrimSpace(aws.run("s3", "presign", "--expires-in", "600", "s3://"+b+"/up/a.txt"))
	if resp, err := oneShot.Get(presigned); err != nil {
		t.Errorf("presigned GET: %v", err)
	} else {
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, files["a.txt"]) {
			t.Errorf("presigned GET %s = %d %q (%v)", presigned, resp.StatusCode, got, err)
		}
	}
	aws.run("s3", "rm", "s3://"+b+"/moved/b.bin")

	// sync up, twice: the second finds nothing to do. Then a changed
	// file and a new one travel, and --delete removes what is gone.
	aws.run("s3", "sync", "--no-progress", src, "s3://"+b+"/sync/")
	checkCairnTree(t, "/"+b+"/sync", files)
	if out := aws.run("s3", "sync", "--no-progress", src, "s3://"+b+"/sync/"); strings.TrimSpace(out) != "" {
		t.Errorf("second sync up transferred:\n%s", out)
	}
	changeTree(t, src, files)
	out := aws.run("s3", "sync", "--no-progress", "--delete", src, "s3://"+b+"/sync/")
	for _, want := range []string{"upload: ", "a.txt", "new/file", "delete: s3://" + b + "/sync/dir/sub/c.txt"} {
		if !strings.Contains(out, want) {
			t.Errorf("sync of changes: no %q in\n%s", want, out)
		}
	}
	if strings.Count(out, "upload: ") != 2 {
		t.Errorf("sync of changes uploaded other files:\n%s", out)
	}
	checkCairnTree(t, "/"+b+"/sync", files)
	if _, err := shared.cl.Stat(ctxT(t), "/"+b+"/sync/dir/sub/c.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file sync --delete removed is still there: %v", err)
	}

	// sync down, twice.
	syncDown := t.TempDir()
	aws.run("s3", "sync", "--no-progress", "s3://"+b+"/sync/", syncDown)
	sameTree(t, "sync down", readTree(t, syncDown), files)
	if out := aws.run("s3", "sync", "--no-progress", "s3://"+b+"/sync/", syncDown); strings.TrimSpace(out) != "" {
		t.Errorf("second sync down transferred:\n%s", out)
	}

	// rm --recursive: the keys go, and with them the directories.
	aws.run("s3", "rm", "--recursive", "s3://"+b+"/up/")
	// ls exits with 1 when it finds nothing, which is what is expected.
	if out, _ := aws.try("s3", "ls", "--recursive", "s3://"+b+"/up/"); strings.TrimSpace(out) != "" {
		t.Errorf("keys left after rm --recursive:\n%s", out)
	}
	if _, err := shared.cl.Stat(ctxT(t), "/"+b+"/up"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("directory left after rm --recursive: %v", err)
	}
	if objs, _ := parseLS(t, aws.run("s3", "ls", "--recursive", "s3://"+b+"/")); len(objs) != len(files)+1 {
		t.Errorf("rm --recursive of up/ left %d keys, want %d: %q", len(objs), len(files)+1, objs)
	}

	// rb --force empties the bucket and removes it.
	aws.run("s3", "rb", "--force", "s3://"+b)
	if _, err := shared.cl.Stat(ctxT(t), "/"+b); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bucket left after rb --force: %v", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// writeRandomFile writes size pseudo-random bytes (the same for a given
// seed) to p and returns their SHA-256.
func writeRandomFile(t *testing.T, p string, size int64, seed uint64) [32]byte {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	if _, err := io.CopyN(w, rng, size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// sha256Of returns the SHA-256 and length of what r holds.
func sha256Of(t *testing.T, r io.Reader) ([32]byte, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil)), n
}

// TestAWSCLIMultipart sends a 200 MiB file with aws s3 cp, which splits
// anything above 8 MiB into 8 MiB parts sent in parallel.
func TestAWSCLIMultipart(t *testing.T) {
	aws := newAWS(t)
	const (
		b    = "cli-multipart"
		size = 200 << 20
		part = 8 << 20 // the CLI's default multipart_chunksize
	)
	cleanupBucket(t, b)
	aws.run("s3", "mb", "s3://"+b)
	dir := t.TempDir() // removed, with the 200 MiB, when the test ends
	local := filepath.Join(dir, "big.bin")
	sum := writeRandomFile(t, local, size, 200)
	aws.run("s3", "cp", "--no-progress", local, "s3://"+b+"/big/object.bin")

	// The object is whole, under a multipart ETag (25 parts).
	var head struct {
		ContentLength int64
		ETag          string
	}
	res := aws.run("s3api", "head-object", "--bucket", b, "--key", "big/object.bin")
	if err := json.Unmarshal([]byte(res), &head); err != nil {
		t.Fatalf("head-object output %q: %v", res, err)
	}
	if head.ContentLength != size || !strings.HasSuffix(head.ETag, fmt.Sprintf(`-%d"`, size/part)) {
		t.Errorf("head-object = %+v, want %d bytes and a %d-part ETag", head, size, size/part)
	}
	f, err := shared.cl.Open(ctxT(t), "/"+b+"/big/object.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, n := sha256Of(t, f)
	f.Close()
	if got != sum || n != size {
		t.Fatalf("through the client: %d bytes with another SHA-256 than the %d sent", n, size)
	}

	// Ranged GETs across the parts' boundaries compare with the local
	// file's bytes.
	lf, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	for _, r := range [][2]int64{{part - 100, part + 100}, {3*part - 1, 3*part + 1}, {size - 5000, size}, {0, 1 << 20}} {
		out := filepath.Join(dir, "range")
		aws.run("s3api", "get-object", "--bucket", b, "--key", "big/object.bin", "--range", fmt.Sprintf("bytes=%d-%d", r[0], r[1]-1), out)
		want := make([]byte, r[1]-r[0])
		if _, err := lf.ReadAt(want, r[0]); err != nil {
			t.Fatal(err)
		}
		if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, want) {
			t.Errorf("range %d-%d: %d bytes (%v) that are not the file's", r[0], r[1]-1, len(got), err)
		}
	}
	lf.Close()
	os.Remove(local) // room for the download

	// Back down with the CLI (ranged GETs in parallel, again).
	back := filepath.Join(dir, "back.bin")
	aws.run("s3", "cp", "--no-progress", "s3://"+b+"/big/object.bin", back)
	bf, err := os.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	got, n = sha256Of(t, bf)
	bf.Close()
	os.Remove(back)
	if got != sum || n != size {
		t.Errorf("aws s3 cp down: %d bytes with another SHA-256 than the %d sent", n, size)
	}
	aws.run("s3", "rm", "s3://"+b+"/big/object.bin")
	aws.run("s3", "rb", "s3://"+b)
}

// rcloneLS parses `rclone ls` lines ("   123 path") into sizes by path.
func rcloneLS(t *testing.T, out string) map[string]string {
	t.Helper()
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		size, name, ok := strings.Cut(strings.TrimLeft(l, " "), " ")
		if !ok {
			t.Fatalf("unexpected rclone ls line %q", l)
		}
		res[name] = size
	}
	return res
}

func TestRclone(t *testing.T) {
	rc := newRclone(t)
	const b = "cli-rclone"
	cleanupBucket(t, b)
	rc.run("mkdir", "cairn:"+b)
	files := cliTree()
	src := t.TempDir()
	writeTree(t, src, files)

	// copy, then check: sizes and hashes (MD5 against the ETags).
	rc.run("copy", src, "cairn:"+b+"/copy")
	checkCairnTree(t, "/"+b+"/copy", files)
	rc.run("check", src, "cairn:"+b+"/copy")
	sizes := rcloneLS(t, rc.run("ls", "cairn:"+b+"/copy"))
	want := map[string]string{}
	for k, v := range files {
		want[k] = fmt.Sprint(len(v))
	}
	if !mapsEqual(sizes, want) {
		t.Errorf("rclone ls = %q, want %q", sizes, want)
	}
	top := strings.Split(strings.TrimRight(rc.run("lsf", "cairn:"+b+"/copy"), "\n"), "\n")
	slices.Sort(top)
	if w := []string{"a.txt", "dir/", "empty", "percent%20literal.data", "ünïcödé/"}; !slices.Equal(top, w) {
		t.Errorf("rclone lsf = %q, want %q", top, w)
	}
	var wantAll []string
	for k := range files {
		wantAll = append(wantAll, k)
	}
	slices.Sort(wantAll)
	// rclone lists with ListObjects V1 for "Other" providers; V2 too.
	for _, v := range []string{"1", "2"} {
		all := strings.Split(strings.TrimRight(rc.run("lsf", "-R", "--files-only", "--s3-list-version", v, "cairn:"+b+"/copy"), "\n"), "\n")
		slices.Sort(all)
		if !slices.Equal(all, wantAll) {
			t.Errorf("rclone lsf -R (ListObjects V%s) = %q, want %q", v, all, wantAll)
		}
	}
	// md5sum reads the ETags.
	sums := map[string]string{}
	for _, l := range strings.Split(strings.TrimRight(rc.run("md5sum", "cairn:"+b+"/copy"), "\n"), "\n") {
		sum, name, _ := strings.Cut(l, "  ")
		sums[name] = sum
	}
	for k, v := range files {
		if want := strings.Trim(md5ETag(v), `"`); sums[k] != want {
			t.Errorf("rclone md5sum %q = %q, want %s", k, sums[k], want)
		}
	}

	// A file changed on one side fails check.
	changed := t.TempDir()
	writeTree(t, changed, files)
	writeFile(t, filepath.Join(changed, "dir", "b.bin"), pattern(300<<10, 4))
	if _, err := rc.try("check", changed, "cairn:"+b+"/copy"); err == nil {
		t.Error("rclone check passed with a file that differs")
	}

	// copy down.
	down := t.TempDir()
	rc.run("copy", "cairn:"+b+"/copy", down)
	sameTree(t, "rclone copy down", readTree(t, down), files)

	// sync, twice: the second copies nothing. Then changes travel and
	// what is gone locally goes remotely.
	rc.run("sync", src, "cairn:"+b+"/sync")
	if out, err := rc.try("sync", "-v", src, "cairn:"+b+"/sync"); err != nil || strings.Contains(out, "Copied") {
		t.Errorf("second rclone sync: %v\n%s", err, out)
	}
	changeTree(t, src, files)
	rc.run("sync", src, "cairn:"+b+"/sync")
	rc.run("check", src, "cairn:"+b+"/sync")
	checkCairnTree(t, "/"+b+"/sync", files)
	if _, err := shared.cl.Stat(ctxT(t), "/"+b+"/sync/dir/sub/c.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a file rclone sync removed is still there: %v", err)
	}

	// A multipart upload: rclone's own part size and concurrency.
	big := filepath.Join(t.TempDir(), "big.bin")
	sum := writeRandomFile(t, big, 12<<20, 12)
	rc.run("copyto", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", big, "cairn:"+b+"/multi/big.bin")
	f, err := shared.cl.Open(ctxT(t), "/"+b+"/multi/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, n := sha256Of(t, f)
	f.Close()
	if got != sum || n != 12<<20 {
		t.Errorf("rclone multipart upload: %d bytes with another SHA-256", n)
	}
	// A multipart object's ETag is no MD5: check compares the MD5 rclone
	// keeps in the object's metadata (x-amz-meta-md5chksum).
	rc.run("check", filepath.Dir(big), "cairn:"+b+"/multi")
	bigData, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	if out, want := rc.run("md5sum", "cairn:"+b+"/multi"), strings.Trim(md5ETag(bigData), `"`)+"  big.bin\n"; out != want {
		t.Errorf("rclone md5sum of the multipart object = %q, want %q", out, want)
	}

	// delete with a filter removes the matching files only; purge
	// removes the rest and the bucket.
	rc.run("delete", "--include", "*.txt", "cairn:"+b+"/copy")
	left := rcloneLS(t, rc.run("ls", "cairn:"+b+"/copy"))
	for k := range files {
		_, there := left[k]
		if k == "new/file" {
			continue // never copied there
		}
		if strings.HasSuffix(k, ".txt") == there {
			t.Errorf("after rclone delete --include *.txt: %q there = %v", k, there)
		}
	}
	rc.run("purge", "cairn:"+b)
	if _, err := shared.cl.Stat(ctxT(t), "/"+b); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bucket left after rclone purge: %v", err)
	}
}

// TestSignatureV2Refused checks that a URL presigned with Signature
// Version 2, what the aws CLI v1 makes unless configured for s3v4, gets
// an error that says why rather than a bare AccessDenied.
func TestSignatureV2Refused(t *testing.T) {
	resp, err := oneShot.Get(shared.srv.URL + "/some-bucket/key?AWSAccessKeyId=" + testAccessKey + "&Signature=c2lnbmF0dXJl&Expires=4102444800")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || errorCode(t, resp) != "InvalidRequest" {
		t.Errorf("Signature Version 2 presigned GET = %d, want 400 InvalidRequest", resp.StatusCode)
	}
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dfs runs one command and returns its exit status, stdout and stderr.
func dfs(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func mustDfs(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	code, out, errs := dfs(t, stdin, args...)
	if code != 0 {
		t.Fatalf("dfs %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// TestDfs runs `dfs up` and drives the cluster through the other
// commands, as a user would from another terminal.
func TestDfs(t *testing.T) {
	dir := t.TempDir()
	ctx, stop := context.WithCancel(context.Background())
	upOut := &syncBuffer{}
	upErr := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--dir", dir, "--chunkservers", "3", "--s3", "127.0.0.1:0"}, nil, upOut, upErr)
	}()
	defer func() {
		stop()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("dfs up: exit %d: %s", code, upErr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("dfs up did not stop")
		}
		if _, err := os.Stat(filepath.Join(dir, mastersFile)); !os.IsNotExist(err) {
			t.Errorf("masters file left behind: %v", err)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(upOut.String(), "Ctrl-C") {
		if time.Now().After(deadline) || strings.Contains(upErr.String(), "dfs: up") {
			t.Fatalf("dfs up did not come up: %s %s", upOut.String(), upErr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := "--dir=" + dir

	data := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	local := filepath.Join(t.TempDir(), "data.bin")
	if err := os.WriteFile(local, data, 0o644); err != nil {
		t.Fatal(err)
	}

	mustDfs(t, nil, "mkdir", d, "-p", "/x/y")
	mustDfs(t, nil, "put", d, local, "/x/y")
	mustDfs(t, []byte("hello\n"), "put", d, "-", "/x/hello.txt")
	if out := mustDfs(t, nil, "cat", d, "/x/hello.txt"); out != "hello\n" {
		t.Fatalf("cat: %q", out)
	}
	if out := mustDfs(t, nil, "get", d, "/x/y/data.bin", "-"); out != string(data) {
		t.Fatalf("get -: %d bytes, want %d", len(out), len(data))
	}
	back := filepath.Join(t.TempDir(), "back.bin")
	mustDfs(t, nil, "get", d, "/x/y/data.bin", back)
	if got, err := os.ReadFile(back); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("get to a file: %d bytes, %v", len(got), err)
	}
	if out := mustDfs(t, nil, "ls", d, "/x"); out != "hello.txt\ny\n" {
		t.Fatalf("ls: %q", out)
	}
	if out := mustDfs(t, nil, "ls", d, "-l", "/x/y"); !strings.Contains(out, "3158073") || !strings.Contains(out, "data.bin") {
		t.Fatalf("ls -l: %q", out)
	}
	mustDfs(t, nil, "mv", d, "/x/hello.txt", "/x/y")
	if out := mustDfs(t, nil, "stat", d, "/x/y/hello.txt"); !strings.Contains(out, "Size: 6") {
		t.Fatalf("stat: %q", out)
	}
	if out := mustDfs(t, nil, "status", d); !strings.Contains(out, "cs3") || !strings.Contains(out, "leader") {
		t.Fatalf("status: %q", out)
	}

	// Links and du: a hard link shares the inode (du counts it once), a
	// symbolic link keeps its target as given.
	mustDfs(t, nil, "ln", d, "/x/y/data.bin", "/x/hard")
	mustDfs(t, nil, "ln", d, "-s", "y/data.bin", "/x/soft")
	if out := mustDfs(t, nil, "stat", d, "/x/hard"); !strings.Contains(out, "Links: 2") {
		t.Fatalf("stat of a hard link: %q", out)
	}
	if out := mustDfs(t, nil, "cat", d, "/x/soft"); out != string(data) {
		t.Fatalf("cat through a symlink: %d bytes", len(out))
	}
	if out := mustDfs(t, nil, "du", d, "/x"); out != fmt.Sprintf("%d\t/x\n", len(data)+6) {
		t.Fatalf("du: %q", out)
	}
	// The front ends dfs up started: the mount shows the same files, and
	// the S3 gateway answers (refusing an unsigned request, in S3's XML).
	if fuseAvailable() == nil {
		got, err := os.ReadFile(filepath.Join(dir, "mnt", "x", "y", "hello.txt"))
		if err != nil || string(got) != "hello\n" {
			t.Fatalf("through the mount: %q %v\n%s", got, err, upOut.String())
		}
	} else if !strings.Contains(upOut.String(), "mount:   none") {
		t.Fatalf("dfs up without FUSE does not say so: %s", upOut.String())
	}
	var s3URL string
	for _, line := range strings.Split(upOut.String(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "s3:" {
			s3URL = f[1]
		}
	}
	resp, err := http.Get(s3URL + "/")
	if err != nil {
		t.Fatalf("s3 gateway at %q: %v", s3URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "<Error>") {
		t.Fatalf("unsigned S3 request: %d %s", resp.StatusCode, body)
	}

	// One slice: nothing to compact. A directory is not compacted.
	if out := mustDfs(t, nil, "compact", d, "/x/y/data.bin"); out != "/x/y/data.bin: 0 chunks compacted\n" {
		t.Fatalf("compact: %q", out)
	}
	if code, _, errs := dfs(t, nil, "compact", d, "/x"); code != 1 || errs != "dfs: compact /x: invalid argument\n" {
		t.Fatalf("compact of a directory: %d %q", code, errs)
	}

	if code, _, errs := dfs(t, nil, "ln", d, "/x/nope", "/x/n2"); code != 1 || !strings.Contains(errs, "no such file") {
		t.Fatalf("ln of a missing file: %d %q", code, errs)
	}

	// Errors: exit 1 and a message naming the command and operand.
	code, _, errs := dfs(t, nil, "cat", d, "/nope")
	if code != 1 || errs != "dfs: cat /nope: no such file or directory\n" {
		t.Fatalf("cat missing: %d %q", code, errs)
	}
	if code, _, errs := dfs(t, nil, "rm", d, "/x"); code != 1 || !strings.Contains(errs, "dfs: rm /x:") {
		t.Fatalf("rm of a directory: %d %q", code, errs)
	}
	if code, _, _ := dfs(t, nil, "frobnicate"); code != 1 {
		t.Fatalf("unknown command: exit %d", code)
	}

	// --master works as well as --dir.
	addrs, err := os.ReadFile(filepath.Join(dir, mastersFile))
	if err != nil {
		t.Fatal(err)
	}
	m := "--master=" + strings.ReplaceAll(strings.TrimSpace(string(addrs)), "\n", ",")
	mustDfs(t, nil, "rm", m, "-r", "/x")
	if out := mustDfs(t, nil, "ls", m, "/"); out != "" {
		t.Fatalf("ls after rm -r: %q", out)
	}
}

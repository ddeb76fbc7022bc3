package proto

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeFresh regenerates the Go code from the .proto files in a
// scratch copy of the module and fails when it differs from what is
// committed, so a .proto change cannot land without its generated code.
func TestGeneratedCodeFresh(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("protoc is not installed; .ci/run must install protobuf-compiler")
		}
		t.Skip("protoc not installed (Debian: protobuf-compiler); CI runs this check")
	}
	scratch := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum"} {
		copyFile(t, filepath.Join("..", f), filepath.Join(scratch, f))
	}
	var committed []string
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch {
		case strings.HasSuffix(p, ".pb.go"):
			committed = append(committed, p)
		case strings.HasSuffix(p, ".proto"), p == "gen.sh":
			copyFile(t, p, filepath.Join(scratch, "proto", p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join(scratch, "proto", "gen.sh"))
	cmd.Dir = scratch
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen.sh: %v\n%s", err, out)
	}
	for _, p := range committed {
		want, err := os.ReadFile(filepath.Join(scratch, "proto", p))
		if err != nil {
			t.Errorf("%s is committed but no longer generated: %v", p, err)
			continue
		}
		got, _ := os.ReadFile(p)
		if !bytes.Equal(got, want) {
			t.Errorf("proto/%s is stale: run go generate ./proto/...", p)
		}
	}
	if len(committed) == 0 {
		t.Fatal("no generated files found")
	}
	filepath.WalkDir(filepath.Join(scratch, "proto"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".pb.go") {
			rel, _ := filepath.Rel(filepath.Join(scratch, "proto"), p)
			if _, err := os.Stat(rel); err != nil {
				t.Errorf("proto/%s is generated but not committed: run go generate ./proto/...", rel)
			}
		}
		return nil
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

package shardstore

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestIngestManifestFailure: a MANIFEST write failing inside a large
// shard's ingest is fatal to Pebble. The Commit reports ErrFailed (never
// success), Close still works, and after reopening the shard is absent.
func TestIngestManifestFailure(t *testing.T) {
	var armed atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if armed.Load() && strings.Contains(op.Path, "MANIFEST") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileWrite) {
			armed.Store(false)
			return errors.New("injected manifest failure")
		}
		return nil
	}))
	s, err := Open(Options{Dir: "/s", FS: fs, BallastSize: -1, LargeShardThreshold: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := newBenchData(64<<10, 16<<10)
	armed.Store(true)
	_, err = d.write(s, ID{Slice: 1})
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("commit with a failing MANIFEST: %v, want ErrFailed", err)
	}
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	s, err = Open(Options{Dir: "/s", FS: fs, BallastSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Stat(ID{Slice: 1}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stat after reopen: %v, want ErrNotFound", err)
	}
	if _, err := d.write(s, ID{Slice: 1}); err != nil {
		t.Fatal(err)
	}
}

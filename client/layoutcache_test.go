package client

import "testing"

func TestLayoutCache(t *testing.T) {
	c := newLayoutCache(2)
	lay := func(ino, v uint64) *fileLayout { return &fileLayout{inode: ino, version: v} }
	steps := []struct {
		op       string
		ino, v   uint64
		wantHit  bool
		wantSize int
	}{
		{"put", 1, 3, false, 1},
		{"get", 1, 3, true, 1},
		{"get", 1, 4, false, 1}, // another version: a miss
		{"get", 1, 0, false, 1}, // version unknown: never trusted
		{"put", 1, 2, false, 1}, // older than what is cached: ignored
		{"get", 1, 3, true, 1},
		{"put", 2, 1, false, 2},
		{"get", 1, 3, true, 2},  // 1 is now the most recent
		{"put", 3, 1, false, 2}, // evicts 2
		{"get", 2, 1, false, 2},
		{"get", 1, 3, true, 2},
		{"drop", 1, 0, false, 1},
		{"get", 1, 3, false, 1},
		{"put", 4, 0, false, 1}, // no version: not cached
	}
	for i, s := range steps {
		switch s.op {
		case "put":
			c.put(lay(s.ino, s.v))
		case "drop":
			c.drop(s.ino)
		case "get":
			got := c.get(s.ino, s.v)
			if (got != nil) != s.wantHit || (got != nil && (got.inode != s.ino || got.version != s.v)) {
				t.Fatalf("step %d: get(%d, %d) = %v, want hit %v", i, s.ino, s.v, got, s.wantHit)
			}
		}
		if c.lru.Len() != s.wantSize || len(c.index) != s.wantSize {
			t.Fatalf("step %d: %d entries (%d indexed), want %d", i, c.lru.Len(), len(c.index), s.wantSize)
		}
	}
}

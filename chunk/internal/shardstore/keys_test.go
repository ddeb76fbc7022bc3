package shardstore

import (
	"bytes"
	"testing"
	"time"
)

func TestKeyOrderAndSpans(t *testing.T) {
	ids := []ID{{0, 0}, {0, 1}, {0, ^uint32(0)}, {1, 0}, {1 << 40, 7}, {^uint64(0), ^uint32(0) - 1}, {^uint64(0), ^uint32(0)}}
	for i, id := range ids {
		start, end := cellSpan(tagLarge, id)
		for _, c := range []uint32{0, 1, ^uint32(0)} {
			k := cellKey(tagLarge, id, c)
			if bytes.Compare(k, start) < 0 || bytes.Compare(k, end) >= 0 {
				t.Fatalf("cell %d of %v outside its span", c, id)
			}
			if got, ok := parseCellKey(k, tagLarge, id); !ok || got != c {
				t.Fatalf("parseCellKey(%x) = %d, %v", k, got, ok)
			}
		}
		if got, ok := parseIDKey(idKey(tagMeta, id), tagMeta); !ok || got != id {
			t.Fatalf("parseIDKey round trip of %v: %v %v", id, got, ok)
		}
		if i+1 < len(ids) {
			next := ids[i+1]
			if !id.Less(next) || bytes.Compare(idKey(tagMeta, id), idKey(tagMeta, next)) >= 0 {
				t.Fatalf("%v and %v out of order", id, next)
			}
			// Spans of different shards do not overlap.
			if nstart, _ := cellSpan(tagLarge, next); bytes.Compare(end, nstart) > 0 {
				t.Fatalf("span of %v overlaps %v", id, next)
			}
			if n, ok := id.next(); ok && n == next {
				if ns, _ := cellSpan(tagLarge, n); !bytes.Equal(ns, end) {
					t.Fatalf("span end of %v is not the start of %v", id, n)
				}
			}
		}
	}
	if _, ok := (ID{^uint64(0), ^uint32(0)}).next(); ok {
		t.Fatal("the largest ID has a successor")
	}
	if s := (ID{17, 3}).String(); s != "17/3" {
		t.Fatalf("String() = %q", s)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	m := meta{large: true, length: 5<<20 + 3, cellSize: 1 << 20, created: time.Unix(1700000000, 123)}
	m.digest[0], m.digest[31] = 1, 2
	got, err := decodeMeta(m.encode())
	if err != nil || got != m {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", m, got, err)
	}
	if _, err := decodeMeta(m.encode()[:10]); err == nil {
		t.Fatal("decoded a truncated record")
	}
	f := m
	f.file, f.gen = true, 1<<40+7
	enc := f.encode()
	if len(enc) != metaLenFile || enc[0] != metaVersionFile {
		t.Fatalf("file-backed record: %d bytes, version %d", len(enc), enc[0])
	}
	if got, err := decodeMeta(enc); err != nil || got != f {
		t.Fatalf("decode(encode(%+v)) = %+v, %v", f, got, err)
	}
	if _, err := decodeMeta(enc[:metaLen]); err == nil {
		t.Fatal("decoded a truncated file-backed record")
	}
}

func TestFileName(t *testing.T) {
	id := ID{Slice: 1<<63 + 5, Index: 1<<32 - 1}
	got, gen, ok := parseFileName(fileName(id, 42))
	if !ok || got != id || gen != 42 {
		t.Fatalf("parseFileName(fileName(%v, 42)) = %v, %d, %v", id, got, gen, ok)
	}
	for _, bad := range []string{"", "1-2-3", "1-2.cells", "1-2-x.cells", "1-2-3-4.cells", "1-99999999999-3.cells"} {
		if _, _, ok := parseFileName(bad); ok {
			t.Errorf("parseFileName(%q) accepted it", bad)
		}
	}
}

func TestCellLen(t *testing.T) {
	for _, c := range []struct {
		length   uint64
		cellSize uint32
		lens     []uint32
	}{
		{0, 4, nil}, {1, 4, []uint32{1}}, {4, 4, []uint32{4}}, {5, 4, []uint32{4, 1}}, {8, 4, []uint32{4, 4}},
	} {
		n := cells(c.length, c.cellSize)
		if n != uint64(len(c.lens)) {
			t.Fatalf("cells(%d, %d) = %d", c.length, c.cellSize, n)
		}
		for i, want := range c.lens {
			if got := cellLen(c.length, c.cellSize, uint32(i)); got != want {
				t.Fatalf("cellLen(%d, %d, %d) = %d, want %d", c.length, c.cellSize, i, got, want)
			}
		}
	}
}

package erasure_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cairnfs/cairn/erasure"
)

// A writer encodes and checksums one stripe row at a time; a reader that
// lost shards rebuilds the slice from the rest.
func Example() {
	layout := erasure.RS(4, 2).WithCellSize(4096)
	coder, err := erasure.NewCoder(layout)
	if err != nil {
		panic(err)
	}
	slice := bytes.Repeat([]byte("cairn"), 5000) // 25000 bytes: one full row and a partial one
	shards := coder.Split(slice)
	for i, s := range shards {
		fmt.Printf("shard %d: %d bytes\n", i, len(s))
	}

	shards[0], shards[5] = nil, nil // two chunkservers are down
	got, err := coder.Join(shards, int64(len(slice)))
	fmt.Println(bytes.Equal(got, slice), err)

	shards[2] = nil // one more is too many
	_, err = coder.Join(shards, int64(len(slice)))
	fmt.Println(errors.Is(err, erasure.ErrTooFewShards), err)
	// Output:
	// shard 0: 8192 bytes
	// shard 1: 8192 bytes
	// shard 2: 4520 bytes
	// shard 3: 4096 bytes
	// shard 4: 8192 bytes
	// shard 5: 8192 bytes
	// true <nil>
	// true erasure: RS(4,2)/4KiB needs 4 shards, have 3: missing [0 2 5]
}

// Extents says which shard bytes to read for a byte range of a slice.
func ExampleLayout_Extents() {
	layout := erasure.RS(4, 2).WithCellSize(10)
	exts, err := layout.Extents(95, 38, 14)
	if err != nil {
		panic(err)
	}
	for _, e := range exts {
		fmt.Printf("shard %d row %d: %d bytes at %d -> buf[%d:]\n", e.Shard, e.Row, e.Length, e.Offset, e.BufOffset)
	}
	// Output:
	// shard 3 row 0: 2 bytes at 8 -> buf[0:]
	// shard 0 row 1: 10 bytes at 10 -> buf[2:]
	// shard 1 row 1: 2 bytes at 10 -> buf[12:]
}

func ExampleParseLayout() {
	for _, s := range []string{"RS(6,3)", "Replicated(3)/4KiB", "RS(2,4)"} {
		l, err := erasure.ParseLayout(s)
		fmt.Println(l, err)
	}
	// Output:
	// RS(6,3) <nil>
	// Replicated(3)/4KiB <nil>
	// Layout(0x0) erasure: parse layout "RS(2,4)": erasure: invalid layout RS(2,4): 4 parity shards exceed the 2 data shards
}

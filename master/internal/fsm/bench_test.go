package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// BenchmarkApplyCreate applies create commands (each with a request ID, as
// client mutations carry) in entries of 1, 16 and 256, on a real-disk
// Pebble, and reports creates/s. Files spread over 100 directories.
func BenchmarkApplyCreate(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f, err := Open(b.TempDir(), vfs.Default)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			index := uint64(0)
			apply := func(cmds ...*fsmpb.Command) {
				index++
				data, err := EncodeEntry(cmds...)
				if err != nil {
					b.Fatal(err)
				}
				res, err := f.Apply(index, data)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			for i := 0; i < 100; i++ {
				apply(&fsmpb.Command{NowUnixNano: t0, Op: &fsmpb.Command_Mkdir{Mkdir: &fsmpb.Mkdir{Parent: RootInode, Name: fmt.Sprint("d", i), Mode: 0o755}}})
			}
			entries := (b.N + batch - 1) / batch
			encoded := make([][]byte, entries)
			n := 0
			for e := range encoded {
				cmds := make([]*fsmpb.Command, 0, batch)
				for j := 0; j < batch; j++ {
					cmds = append(cmds, &fsmpb.Command{
						NowUnixNano: t0 + int64(n)*50_000,
						ClientId:    "bench",
						RequestId:   fmt.Appendf(nil, "req-%d", n),
						Op: &fsmpb.Command_Create{Create: &fsmpb.Create{
							Parent: 2 + uint64(n%100), Name: fmt.Sprintf("file-%09d", n), Mode: 0o644, Exclusive: true,
						}},
					})
					n++
				}
				if encoded[e], err = EncodeEntry(cmds...); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for _, data := range encoded {
				index++
				if _, err := f.Apply(index, data); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(entries*batch)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// BenchmarkGetAttr reads the attributes of random inodes among 20,000.
func BenchmarkGetAttr(b *testing.B) {
	f, err := Open(b.TempDir(), vfs.Default)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const files = 20000
	for e := 0; e < files/250; e++ {
		var cmds []*fsmpb.Command
		for j := 0; j < 250; j++ {
			cmds = append(cmds, &fsmpb.Command{NowUnixNano: t0, Op: &fsmpb.Command_Create{Create: &fsmpb.Create{
				Parent: RootInode, Name: fmt.Sprintf("f%06d-%d", e, j), Mode: 0o644}}})
		}
		data, _ := EncodeEntry(cmds...)
		if _, err := f.Apply(uint64(e+1), data); err != nil {
			b.Fatal(err)
		}
	}
	r := rand.New(rand.NewPCG(1, 1))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.GetAttr(2 + uint64(r.IntN(files))); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "getattrs/s")
}

package fsm

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// TestScale creates CAIRN_FSM_SCALE files (e.g. 2000000) on disk in
// entries of 256 over 1,000 directories, then reports the create rate, the
// Go heap in use (which must not grow with the namespace) and read
// latencies. It is skipped unless the variable is set: it takes minutes.
func TestScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CAIRN_FSM_SCALE"))
	if n == 0 {
		t.Skip("set CAIRN_FSM_SCALE=N to create N files")
	}
	f, err := Open(t.TempDir(), vfs.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	index := uint64(0)
	apply := func(cmds []*fsmpb.Command) {
		index++
		data, err := EncodeEntry(cmds...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.Apply(index, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Err != nil {
				t.Fatal(r.Err)
			}
		}
	}
	const dirs = 1000
	var cmds []*fsmpb.Command
	for i := 0; i < dirs; i++ {
		cmds = append(cmds, &fsmpb.Command{NowUnixNano: t0, Op: &fsmpb.Command_Mkdir{Mkdir: &fsmpb.Mkdir{Parent: RootInode, Name: fmt.Sprint("d", i), Mode: 0o755}}})
	}
	apply(cmds)
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	start := time.Now()
	next := n / 4
	for i := 0; i < n; {
		cmds = cmds[:0]
		for j := 0; j < 256 && i < n; j, i = j+1, i+1 {
			cmds = append(cmds, &fsmpb.Command{
				NowUnixNano: t0 + int64(i)*50_000, ClientId: "scale", RequestId: fmt.Appendf(nil, "%d", i),
				Op: &fsmpb.Command_Create{Create: &fsmpb.Create{Parent: 2 + uint64(i%dirs), Name: fmt.Sprintf("file-%09d", i), Mode: 0o644}},
			})
		}
		apply(cmds)
		if i >= next {
			next += n / 4
			t.Logf("%d files: %.0f creates/s, heap in use %d MiB", i, float64(i)/time.Since(start).Seconds(), heap()>>20)
		}
	}
	st, _ := f.StatFS()
	t.Logf("statfs: %v", st)
	start = time.Now()
	const reads = 100000
	for i := 0; i < reads; i++ {
		if _, err := f.GetAttr(uint64(dirs + 2 + (i*7919)%n)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("getattr: %v each", time.Since(start)/reads)
	start = time.Now()
	for i := 0; i < reads; i++ {
		if _, err := f.Lookup(2+uint64(i%dirs), fmt.Sprintf("file-%09d", (i*7919)%n/dirs*dirs+i%dirs)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("lookup: %v each", time.Since(start)/reads)
	start = time.Now()
	es, _, err := f.ReadDir(2, "", 1000, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("readdirplus of %d entries: %v", len(es), time.Since(start))
}

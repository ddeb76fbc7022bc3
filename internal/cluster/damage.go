package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// CorruptShards flips one byte in each of up to n shards stored as files
// by chunkserver i (0-based; shards of 1 MiB and more are kept in files of
// their own, "<slice>-<index>-<gen>.cells"), chosen with seed among the
// shards of the slices ok accepts (nil: any), behind the store's back, as
// a failing disk would. A test damaging several servers uses ok to keep
// each slice within the losses its layout bears. It returns the names of
// the damaged files. The chunkserver may be running: its scrubber, or a
// reader, finds the damage.
func (c *Cluster) CorruptShards(i, n int, seed uint64, ok func(slice uint64) bool) ([]string, error) {
	dir := filepath.Join(c.ChunkserverDir(i), "shards")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cluster: corrupt shards of chunkserver %d: %w", i, err)
	}
	var files []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".cells") {
			continue
		}
		first, _, _ := strings.Cut(e.Name(), "-")
		if slice, err := strconv.ParseUint(first, 10, 64); err == nil && (ok == nil || ok(slice)) {
			files = append(files, e.Name())
		}
	}
	slices.Sort(files)
	rng := rand.New(rand.NewPCG(seed, uint64(i)))
	rng.Shuffle(len(files), func(a, b int) { files[a], files[b] = files[b], files[a] })
	var done []string
	for _, name := range files {
		if len(done) == n {
			break
		}
		err := flipByte(filepath.Join(dir, name), rng)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Deleted since the listing (garbage collected): pick another.
		case err != nil:
			return nil, fmt.Errorf("cluster: corrupt %s: %w", name, err)
		default:
			done = append(done, name)
		}
	}
	return done, nil
}

func flipByte(path string, rng *rand.Rand) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return nil
	}
	off := rng.Int64N(st.Size())
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		return err
	}
	return f.Sync()
}

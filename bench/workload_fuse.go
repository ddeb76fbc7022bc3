package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"
)

// runFUSE drives the file system through the kernel on the mount
// directory: sequential write (then fsync) and read of cfg.Clients files
// of Size/Clients bytes in 1 MiB calls, then cfg.Ops random 4 KiB reads
// and cfg.Ops random 4 KiB writes (then fsync) at aligned offsets of those
// files, cfg.Clients at a time, then cfg.Ops small files written as tar
// writes them. Before each read phase the files are evicted from the
// kernel's page cache, so reads reach the file system.
func runFUSE(ctx context.Context, e *env) ([]Result, error) {
	if e.mount == "" {
		return nil, notAvailable("%v", e.mountErr)
	}
	dir, err := os.MkdirTemp(e.mount, "cairn-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	n := e.cfg.Clients
	size := e.cfg.Size / int64(n)
	size -= size % fourKiB
	paths := make([]string, n)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("seq-%d", i))
	}
	var out []Result

	bar := e.prog.start("fuse: sequential write", size*int64(n), "B")
	wall, err := concurrently(n, func(i int) error {
		f, err := os.Create(paths[i])
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, len(e.block))
		for off, blk := int64(0), int64(0); off < size; off, blk = off+int64(len(buf)), blk+1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(int64(len(buf)), size-off)]
			stampBlock(b, e.block, int64(i), blk)
			if _, err := f.Write(b); err != nil {
				return err
			}
			bar.add(int64(len(b)))
		}
		if err := f.Sync(); err != nil {
			return err
		}
		return f.Close()
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("sequential write: %w", err)
	}
	out = append(out, bytesResult("fuse", "seq write", size*int64(n), wall, baseDiskWrite))

	files := make([]*os.File, n)
	for i := range files {
		if files[i], err = os.OpenFile(paths[i], os.O_RDWR, 0); err != nil {
			return out, err
		}
		defer files[i].Close()
		evict(files[i])
	}
	bar = e.prog.start("fuse: sequential read", size*int64(n), "B")
	wall, err = concurrently(n, func(i int) error {
		buf := make([]byte, len(e.block))
		for off, blk := int64(0), int64(0); off < size; off, blk = off+int64(len(buf)), blk+1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(int64(len(buf)), size-off)]
			if _, err := files[i].ReadAt(b, off); err != nil && err != io.EOF {
				return err
			}
			if err := checkBlock(b, e.block, int64(i), blk); err != nil {
				return err
			}
			bar.add(int64(len(b)))
		}
		return nil
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("sequential read: %w", err)
	}
	out = append(out, bytesResult("fuse", "seq read", size*int64(n), wall, baseDiskRead))

	// Random I/O: worker w uses file w % n; offsets are 4 KiB aligned.
	pages := size / fourKiB
	for _, f := range files {
		evict(f)
	}
	lat := &latencies{}
	bar = e.prog.start("fuse: random 4KiB read", int64(e.cfg.Ops), "ops")
	wall, err = parallel(ctx, n, e.cfg.Ops, lat, bar, func(ctx context.Context, w, i int) error {
		rng := rand.New(rand.NewPCG(uint64(i), 1))
		page := rng.Int64N(pages)
		off := page * fourKiB
		buf := make([]byte, fourKiB)
		if _, err := files[w%n].ReadAt(buf, off); err != nil {
			return err
		}
		// Every aligned 4 KiB page lies inside one 1 MiB stamped block.
		blk := off / int64(len(e.block))
		within := off % int64(len(e.block))
		want := make([]byte, fourKiB)
		copy(want, e.block[within:])
		if within == 0 {
			stampBlock(want, e.block, int64(w%n), blk)
		}
		if !bytes.Equal(buf, want) {
			return fmt.Errorf("random read of %s at %d: wrong bytes", paths[w%n], off)
		}
		return nil
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("random read: %w", err)
	}
	out = append(out, opsResult("fuse", "rand read 4KiB", int64(e.cfg.Ops), wall, lat, baseTCPRTT))

	lat = &latencies{}
	bar = e.prog.start("fuse: random 4KiB write", int64(e.cfg.Ops), "ops")
	buf := e.block[:fourKiB]
	wall, err = parallel(ctx, n, e.cfg.Ops, lat, bar, func(ctx context.Context, w, i int) error {
		rng := rand.New(rand.NewPCG(uint64(i), 2))
		_, err := files[w%n].WriteAt(buf, rng.Int64N(pages)*fourKiB)
		return err
	})
	if err == nil {
		// Durability is part of the cost: the written pages are not
		// acknowledged until fsync.
		var synced span
		synced, err = concurrently(n, func(i int) error { return files[i].Sync() })
		wall = wall.plus(synced)
	}
	bar.done()
	if err != nil {
		return out, fmt.Errorf("random write: %w", err)
	}
	r := opsResult("fuse", "rand write 4KiB", int64(e.cfg.Ops), wall, lat, baseFsync)
	r.Note = "fsync at the end included in the rate, not in latencies"
	if e.cluster != nil && wall.disk >= 0 {
		// The local cluster runs in this process, so its disk writes are
		// the process's: replicas, the stores' logs, the master's log.
		r.Note += fmt.Sprintf("; the cluster wrote %.1fx the bytes to disk (before compaction)", float64(wall.disk)/float64(int64(e.cfg.Ops)*fourKiB))
	}
	out = append(out, r)

	// Small files as tar and cp -a write them: create, write, set mode and
	// times through the descriptor, close; each worker in a directory of
	// its own (the kernel serialises creates in one directory).
	lat = &latencies{}
	bar = e.prog.start("fuse: small files", int64(e.cfg.Ops), "ops")
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	for w := range n {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("small-%d", w)), 0o755); err != nil {
			return out, err
		}
	}
	small := func(w, i int) string { return filepath.Join(dir, fmt.Sprintf("small-%d", w), fmt.Sprintf("f%d", i)) }
	wall, err = parallel(ctx, n, e.cfg.Ops, lat, bar, func(ctx context.Context, w, i int) error {
		f, err := os.OpenFile(small(w, i), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := f.Write(buf); err != nil {
			return err
		}
		if err := f.Chmod(0o644); err != nil {
			return err
		}
		if err := os.Chtimes(f.Name(), mtime, mtime); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		// What tar and cp -a set must be what stays.
		fi, err := os.Stat(f.Name())
		if err == nil && (fi.Mode().Perm() != 0o644 || !fi.ModTime().Equal(mtime) || fi.Size() != int64(len(buf))) {
			err = fmt.Errorf("%s: mode %v, mtime %v, size %d after close", f.Name(), fi.Mode(), fi.ModTime(), fi.Size())
		}
		return err
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("small files: %w", err)
	}
	r = opsResult("fuse", "small files 4KiB", int64(e.cfg.Ops), wall, lat, baseFsync)
	r.Note = "create, write, chmod, utimes, close, stat; a directory per client"
	out = append(out, r)
	return out, nil
}

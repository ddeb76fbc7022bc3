package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cairnfs/cairn/proto/masterpb"
)

// stampBlock fills buf from the pattern block and writes (file, block)
// into its first 16 bytes, so a read can tell a misplaced block from a
// right one.
func stampBlock(buf, pattern []byte, file, block int64) {
	copy(buf, pattern)
	if len(buf) >= 16 {
		binary.LittleEndian.PutUint64(buf[0:8], uint64(file))
		binary.LittleEndian.PutUint64(buf[8:16], uint64(block))
	}
}

// checkBlock verifies a block written by stampBlock.
func checkBlock(got, pattern []byte, file, block int64) error {
	ok := bytes.Equal(got, pattern[:len(got)])
	if len(got) >= 16 {
		ok = binary.LittleEndian.Uint64(got[0:8]) == uint64(file) &&
			binary.LittleEndian.Uint64(got[8:16]) == uint64(block) &&
			bytes.Equal(got[16:], pattern[16:len(got)])
	}
	if !ok {
		return fmt.Errorf("file %d block %d: wrong bytes read back", file, block)
	}
	return nil
}

// concurrently runs f(i) for i in [0, n) on n goroutines and returns the
// span and the first error.
func concurrently(n int, f func(i int) error) (span, error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := startSpan()
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	sp := start.end()
	for _, err := range errs {
		if err != nil {
			return sp, err
		}
	}
	return sp, nil
}

// writeSeq writes cfg.Clients files of Size/Clients bytes, one per client
// in parallel, in 1 MiB writes, and closes them (which commits). It
// records them in e.seq for the workloads that read them.
func (e *env) writeSeq(ctx context.Context, name string) (Result, error) {
	n := e.cfg.Clients
	size := e.cfg.Size / int64(n)
	paths := make([]string, n)
	for i := range paths {
		paths[i] = fmt.Sprintf("%s/seq-%d", e.base, i)
	}
	bar := e.prog.start(name, size*int64(n), "B")
	wall, err := concurrently(n, func(i int) error {
		f, err := e.client(i).Create(ctx, paths[i])
		if err != nil {
			return err
		}
		buf := make([]byte, len(e.block))
		for off, blk := int64(0), int64(0); off < size; off, blk = off+int64(len(buf)), blk+1 {
			if err := ctx.Err(); err != nil {
				f.Close()
				return err
			}
			b := buf[:min(int64(len(buf)), size-off)]
			stampBlock(b, e.block, int64(i), blk)
			if _, err := f.Write(b); err != nil {
				f.Close()
				return fmt.Errorf("write %s at %d: %w", paths[i], off, err)
			}
			bar.add(int64(len(b)))
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("close %s: %w", paths[i], err)
		}
		return nil
	})
	bar.done()
	if err != nil {
		return Result{}, err
	}
	e.seq, e.seqSize = paths, size
	return bytesResult("seq", "write", size*int64(n), wall, baseDiskWrite), nil
}

// ensureSeq writes the sequential files unless they exist.
func (e *env) ensureSeq(ctx context.Context) error {
	if e.seq != nil {
		return nil
	}
	_, err := e.writeSeq(ctx, "writing files to read")
	return err
}

// readSeq reads every sequential file in parallel in 1 MiB reads and
// checks each block.
func (e *env) readSeq(ctx context.Context, name string) (int64, span, error) {
	e.evictChunkservers()
	bar := e.prog.start(name, e.seqSize*int64(len(e.seq)), "B")
	defer bar.done()
	wall, err := concurrently(len(e.seq), func(i int) error {
		f, err := e.client(i).Open(ctx, e.seq[i])
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, len(e.block))
		for off, blk := int64(0), int64(0); off < e.seqSize; off, blk = off+int64(len(buf)), blk+1 {
			if err := ctx.Err(); err != nil {
				return err
			}
			b := buf[:min(int64(len(buf)), e.seqSize-off)]
			if _, err := io.ReadFull(f, b); err != nil {
				return fmt.Errorf("read %s at %d: %w", e.seq[i], off, err)
			}
			if err := checkBlock(b, e.block, int64(i), blk); err != nil {
				return fmt.Errorf("%s: %w", e.seq[i], err)
			}
			bar.add(int64(len(b)))
		}
		return nil
	})
	return e.seqSize * int64(len(e.seq)), wall, err
}

// runSeq writes large files sequentially, then reads them back.
func runSeq(ctx context.Context, e *env) ([]Result, error) {
	w, err := e.writeSeq(ctx, "seq: write")
	if err != nil {
		return nil, err
	}
	n, wall, err := e.readSeq(ctx, "seq: read")
	if err != nil {
		return []Result{w}, err
	}
	return []Result{w, bytesResult("seq", "read", n, wall, baseDiskRead)}, nil
}

// runDegraded stops one chunkserver of the local cluster and reads the
// sequential files, so that every slice with a data shard there is
// rebuilt on the fly from parity; then it restarts the chunkserver.
func runDegraded(ctx context.Context, e *env) ([]Result, error) {
	if e.cluster == nil {
		return nil, notAvailable("needs --local (stops a chunkserver)")
	}
	if err := e.ensureSeq(ctx); err != nil {
		return nil, err
	}
	victim := e.dataHolder(ctx, 0)
	if err := e.cluster.KillChunkserver(victim); err != nil {
		return nil, err
	}
	n, wall, err := e.readSeq(ctx, "degraded: read")
	if rerr := e.restartChunkserver(ctx, victim); err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	r := bytesResult("degraded", "read", n, wall, baseDiskRead)
	r.Note = fmt.Sprintf("chunkserver %d of %d stopped", victim, len(e.cluster.Chunkservers()))
	return []Result{r}, nil
}

// dataHolder returns the index of the local chunkserver holding data
// shard 0 of the first slice of the first sequential file, so that
// stopping it certainly affects the files; fallback if the layout does not
// say (the file is inline, or the master's answer names no known server).
func (e *env) dataHolder(ctx context.Context, fallback int) int {
	cl := e.clients[0]
	fi, err := cl.Stat(ctx, e.seq[0])
	if err != nil {
		return fallback
	}
	var lay *masterpb.GetLayoutResponse
	err = cl.Conn().Do(ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		var err error
		lay, err = mc.GetLayout(ctx, &masterpb.GetLayoutRequest{Inode: fi.Inode()})
		return err
	})
	if err != nil || len(lay.Slices) == 0 || len(lay.Slices[0].Shards) == 0 {
		return fallback
	}
	id := lay.Slices[0].Shards[0].ChunkserverId
	for i, cs := range e.cluster.Chunkservers() {
		if cs.ID == id && cs.Running {
			return i
		}
	}
	return fallback
}

// restartChunkserver starts chunkserver i again and waits until the
// master sees it.
func (e *env) restartChunkserver(ctx context.Context, i int) error {
	if err := e.cluster.RestartChunkserver(ctx, i); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return e.cluster.WaitReady(wctx)
}

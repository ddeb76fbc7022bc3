package main

import (
	"context"
	"fmt"
	"io"
)

// runSmall creates cfg.Files files of 4 KiB (create, write, close: the
// close commits, so each is durable), reads each back whole (open, read,
// close) and removes them, cfg.Clients at a time.
func runSmall(ctx context.Context, e *env) ([]Result, error) {
	dir := e.base + "/small"
	if err := e.clients[0].Mkdir(ctx, dir, 0o755); err != nil {
		return nil, err
	}
	n, workers := e.cfg.Files, e.cfg.Clients
	name := func(i int) string { return fmt.Sprintf("%s/f%06d", dir, i) }
	var out []Result

	lat := &latencies{}
	bar := e.prog.start("small: create 4KiB", int64(n), "files")
	wall, err := parallel(ctx, workers, n, lat, bar, func(ctx context.Context, w, i int) error {
		buf := make([]byte, fourKiB)
		stampBlock(buf, e.block, int64(i), 0)
		f, err := e.client(w).Create(ctx, name(i))
		if err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("create: %w", err)
	}
	out = append(out, opsResult("small", "create 4KiB", int64(n), wall, lat, baseFsync))

	lat = &latencies{}
	bar = e.prog.start("small: read 4KiB", int64(n), "files")
	wall, err = parallel(ctx, workers, n, lat, bar, func(ctx context.Context, w, i int) error {
		f, err := e.client(w).Open(ctx, name(i))
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, fourKiB+1)
		k, err := io.ReadFull(f, buf)
		if err != io.ErrUnexpectedEOF || k != fourKiB {
			return fmt.Errorf("read %s: %d bytes, %v", name(i), k, err)
		}
		return checkBlock(buf[:k], e.block, int64(i), 0)
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("read: %w", err)
	}
	out = append(out, opsResult("small", "read 4KiB", int64(n), wall, lat, baseTCPRTT))

	lat = &latencies{}
	bar = e.prog.start("small: delete", int64(n), "files")
	wall, err = parallel(ctx, workers, n, lat, bar, func(ctx context.Context, w, i int) error {
		return e.client(w).Remove(ctx, name(i))
	})
	bar.done()
	if err != nil {
		return out, fmt.Errorf("delete: %w", err)
	}
	out = append(out, opsResult("small", "delete", int64(n), wall, lat, baseFsync))
	return out, nil
}

// runMeta times namespace operations, cfg.Ops of each kind, cfg.Clients
// at a time: mkdir of Ops directories; create (and close) of Ops empty
// files spread ten to a directory; stat of each file; readdir of the
// directories holding them (ten entries each); rename of each file within
// its directory; unlink of each.
func runMeta(ctx context.Context, e *env) ([]Result, error) {
	root := e.base + "/meta"
	if err := e.clients[0].Mkdir(ctx, root, 0o755); err != nil {
		return nil, err
	}
	n, workers := e.cfg.Ops, e.cfg.Clients
	full := max(1, n/10) // directories that receive files
	dir := func(i int) string { return fmt.Sprintf("%s/d%06d", root, i) }
	file := func(i int) string { return fmt.Sprintf("%s/f%06d", dir(i%full), i) }
	moved := func(i int) string { return fmt.Sprintf("%s/g%06d", dir(i%full), i) }

	ops := []struct {
		name, baseline string
		op             func(ctx context.Context, w, i int) error
	}{
		{"mkdir", baseFsync, func(ctx context.Context, w, i int) error {
			return e.client(w).Mkdir(ctx, dir(i), 0o755)
		}},
		{"create", baseFsync, func(ctx context.Context, w, i int) error {
			f, err := e.client(w).Create(ctx, file(i))
			if err != nil {
				return err
			}
			return f.Close()
		}},
		{"stat", baseTCPRTT, func(ctx context.Context, w, i int) error {
			fi, err := e.client(w).Stat(ctx, file(i))
			if err == nil && (fi.IsDir() || fi.Size() != 0) {
				err = fmt.Errorf("stat %s: dir %v size %d", file(i), fi.IsDir(), fi.Size())
			}
			return err
		}},
		{"readdir", baseTCPRTT, func(ctx context.Context, w, i int) error {
			ents, err := e.client(w).ReadDir(ctx, dir(i%full))
			if err == nil && len(ents) == 0 {
				err = fmt.Errorf("readdir %s: empty", dir(i%full))
			}
			return err
		}},
		{"rename", baseFsync, func(ctx context.Context, w, i int) error {
			return e.client(w).Rename(ctx, file(i), moved(i))
		}},
		{"unlink", baseFsync, func(ctx context.Context, w, i int) error {
			return e.client(w).Remove(ctx, moved(i))
		}},
	}
	var out []Result
	for _, o := range ops {
		lat := &latencies{}
		bar := e.prog.start("meta: "+o.name, int64(n), "ops")
		wall, err := parallel(ctx, workers, n, lat, bar, o.op)
		bar.done()
		if err != nil {
			return out, fmt.Errorf("%s: %w", o.name, err)
		}
		out = append(out, opsResult("meta", o.name, int64(n), wall, lat, o.baseline))
	}
	return out, nil
}

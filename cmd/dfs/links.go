package main

import (
	"fmt"
	"io/fs"
	"path"

	"github.com/cairnfs/cairn/client"
)

// ln makes dst a hard link to src, or with symbolic a symbolic link whose
// target is src as given; like ln(1), a dst that is a directory receives
// the link under src's base name.
func (e *env) ln(cl *client.Client, src, dst string, symbolic bool) int {
	if fi, err := cl.Stat(e.ctx, dst); err == nil && fi.IsDir() {
		dst = path.Join(dst, path.Base(src))
	}
	var err error
	if symbolic {
		err = cl.Symlink(e.ctx, src, dst)
	} else {
		err = cl.Link(e.ctx, src, dst)
	}
	if err != nil {
		return e.fail(dst, err)
	}
	return 0
}

// du prints the bytes under each operand, like du -s -b: the sum of the
// sizes of the regular files below it, each inode counted once.
func (e *env) du(cl *client.Client, paths []string) int {
	status := 0
	for _, p := range paths {
		seen := make(map[uint64]bool)
		total, err := e.duWalk(cl, p, seen)
		if err != nil {
			status = e.fail(p, err)
			continue
		}
		fmt.Fprintf(e.stdout, "%d\t%s\n", total, p)
	}
	return status
}

func (e *env) duWalk(cl *client.Client, p string, seen map[uint64]bool) (int64, error) {
	fi, err := cl.Lstat(e.ctx, p)
	if err != nil {
		return 0, err
	}
	if ino := fi.Attr().Inode; seen[ino] {
		return 0, nil
	} else {
		seen[ino] = true
	}
	switch {
	case fi.Mode().IsRegular():
		return fi.Size(), nil
	case !fi.IsDir():
		return 0, nil
	}
	entries, err := cl.ReadDir(e.ctx, p)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, en := range entries {
		if en.Type()&fs.ModeSymlink != 0 {
			continue
		}
		n, err := e.duWalk(cl, path.Join(p, en.Name()), seen)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

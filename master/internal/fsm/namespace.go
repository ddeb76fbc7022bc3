package fsm

import (
	"math"
	"syscall"

	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// maxDepth bounds the walk up the directory tree in rename's loop check;
// only a corrupt tree is deeper.
const maxDepth = 1 << 16

func (t *txn) mkdir(c *fsmpb.Mkdir) (Result, error) {
	const op = "mkdir"
	obj := objName(c.Parent, c.Name)
	if err := checkName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	if c.Layout != nil && layoutWidth(c.Layout) == 0 {
		return Result{}, newErr(op, obj, errInval, "invalid layout")
	}
	dir, err := t.dir(op, obj, c.Parent)
	if err != nil {
		return Result{}, err
	}
	if err := t.absent(op, obj, c.Parent, c.Name); err != nil {
		return Result{}, err
	}
	if dir.Nlink == math.MaxUint32 {
		return Result{}, newErr(op, obj, syscall.EMLINK, "")
	}
	layout := c.Layout
	if layout == nil {
		layout = dir.Layout
	}
	n := &fsmpb.Inode{
		Type:   typeDir,
		Mode:   c.Mode & 0o7777,
		Uid:    c.Uid,
		Gid:    c.Gid,
		Nlink:  2,
		Parent: c.Parent,
		Layout: cloneLayout(layout),
	}
	ino := t.newInode(n)
	dir.Nlink++
	t.touchDir(c.Parent, dir)
	if err := t.setDentry(c.Parent, c.Name, ino, typeDir); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(ino, n), Created: true}, nil
}

// absent returns EEXIST if parent has an entry name.
func (t *txn) absent(op, obj string, parent uint64, name string) error {
	ino, _, err := t.dentry(parent, name)
	if err != nil {
		return err
	}
	if ino != 0 {
		return newErr(op, obj, errExist, "")
	}
	return nil
}

func (t *txn) create(c *fsmpb.Create) (Result, error) {
	res, err := t.createOnly(c)
	if err != nil || c.OpenForClient == "" || res.Attr.GetType() != masterpb.FileType_FILE_TYPE_REGULAR {
		return res, err
	}
	opened, err := t.openHandle(&fsmpb.OpenHandle{Inode: res.Attr.Inode, ClientId: c.OpenForClient})
	if err != nil {
		return Result{}, err
	}
	res.Handle = opened.Handle
	return res, nil
}

func (t *txn) createOnly(c *fsmpb.Create) (Result, error) {
	const op = "create"
	obj := objName(c.Parent, c.Name)
	if err := checkName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	dir, err := t.dir(op, obj, c.Parent)
	if err != nil {
		return Result{}, err
	}
	ino, _, err := t.dentry(c.Parent, c.Name)
	if err != nil {
		return Result{}, err
	}
	if ino != 0 {
		if c.Exclusive {
			return Result{}, newErr(op, obj, errExist, "")
		}
		n, err := t.existing(ino)
		if err != nil {
			return Result{}, err
		}
		if n.Type == typeDir {
			return Result{}, newErr(op, obj, errIsDir, "")
		}
		if c.Truncate && n.Type == typeRegular {
			if err := t.setSize(ino, n, 0); err != nil {
				return Result{}, err
			}
			n.MtimeUnixNano = t.now
			t.touch(ino, n)
		}
		return Result{Attr: attrOf(ino, n)}, nil
	}
	n := &fsmpb.Inode{
		Type:   typeRegular,
		Mode:   c.Mode & 0o7777,
		Uid:    c.Uid,
		Gid:    c.Gid,
		Nlink:  1,
		Layout: cloneLayout(dir.Layout),
	}
	return t.addEntry(c.Parent, dir, c.Name, n)
}

// addEntry creates the inode n named name in dir.
func (t *txn) addEntry(parent uint64, dir *fsmpb.Inode, name string, n *fsmpb.Inode) (Result, error) {
	ino := t.newInode(n)
	t.touchDir(parent, dir)
	if err := t.setDentry(parent, name, ino, n.Type); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(ino, n), Created: true}, nil
}

// existing reads an inode a dentry names; its absence is corruption.
func (t *txn) existing(ino uint64) (*fsmpb.Inode, error) {
	n, err := t.inode(ino)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, corrupt("namespace", inodeKey(ino), errDangling)
	}
	return n, nil
}

func (t *txn) mknod(c *fsmpb.Mknod) (Result, error) {
	const op = "mknod"
	obj := objName(c.Parent, c.Name)
	if err := checkName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	rdev := uint32(0)
	switch c.Type {
	case typeRegular, masterpb.FileType_FILE_TYPE_FIFO, masterpb.FileType_FILE_TYPE_SOCKET:
	case masterpb.FileType_FILE_TYPE_CHAR_DEVICE, masterpb.FileType_FILE_TYPE_BLOCK_DEVICE:
		rdev = c.Rdev
	default:
		return Result{}, newErr(op, obj, errInval, "mknod of type "+c.Type.String())
	}
	dir, err := t.dir(op, obj, c.Parent)
	if err != nil {
		return Result{}, err
	}
	if err := t.absent(op, obj, c.Parent, c.Name); err != nil {
		return Result{}, err
	}
	n := &fsmpb.Inode{
		Type:  c.Type,
		Mode:  c.Mode & 0o7777,
		Uid:   c.Uid,
		Gid:   c.Gid,
		Nlink: 1,
		Rdev:  rdev,
	}
	if c.Type == typeRegular {
		n.Layout = cloneLayout(dir.Layout)
	}
	return t.addEntry(c.Parent, dir, c.Name, n)
}

func (t *txn) symlink(c *fsmpb.Symlink) (Result, error) {
	const op = "symlink"
	obj := objName(c.Parent, c.Name)
	if err := checkName(op, obj, c.Name); err != nil {
		return Result{}, err
	}
	switch {
	case c.Target == "":
		return Result{}, newErr(op, obj, errNoEnt, "empty target")
	case len(c.Target) > MaxSymlinkLen:
		return Result{}, newErr(op, obj, syscall.ENAMETOOLONG, "target too long")
	}
	for i := 0; i < len(c.Target); i++ {
		if c.Target[i] == 0 {
			return Result{}, newErr(op, obj, errInval, "target contains NUL")
		}
	}
	dir, err := t.dir(op, obj, c.Parent)
	if err != nil {
		return Result{}, err
	}
	if err := t.absent(op, obj, c.Parent, c.Name); err != nil {
		return Result{}, err
	}
	n := &fsmpb.Inode{
		Type:          typeSymlink,
		Mode:          0o777,
		Uid:           c.Uid,
		Gid:           c.Gid,
		Nlink:         1,
		Size:          uint64(len(c.Target)),
		SymlinkTarget: c.Target,
	}
	return t.addEntry(c.Parent, dir, c.Name, n)
}

func (t *txn) link(c *fsmpb.Link) (Result, error) {
	const op = "link"
	obj := objName(c.NewParent, c.NewName)
	if err := checkName(op, obj, c.NewName); err != nil {
		return Result{}, err
	}
	n, err := t.inode(c.Inode)
	if err != nil {
		return Result{}, err
	}
	if n == nil {
		return Result{}, newErr(op, obj, errNoEnt, "no inode "+objIno(c.Inode))
	}
	if n.Type == typeDir {
		return Result{}, newErr(op, obj, syscall.EPERM, "hard link to a directory")
	}
	dir, err := t.dir(op, obj, c.NewParent)
	if err != nil {
		return Result{}, err
	}
	if err := t.absent(op, obj, c.NewParent, c.NewName); err != nil {
		return Result{}, err
	}
	if n.Nlink == math.MaxUint32 {
		return Result{}, newErr(op, obj, syscall.EMLINK, "")
	}
	n.Nlink++
	t.touch(c.Inode, n)
	t.touchDir(c.NewParent, dir)
	if err := t.setDentry(c.NewParent, c.NewName, c.Inode, n.Type); err != nil {
		return Result{}, err
	}
	return Result{Attr: attrOf(c.Inode, n)}, nil
}

func (t *txn) unlink(c *fsmpb.Unlink) (Result, error) {
	const op = "unlink"
	obj := objName(c.Parent, c.Name)
	dir, ino, n, err := t.entry(op, obj, c.Parent, c.Name)
	if err != nil {
		return Result{}, err
	}
	if n.Type == typeDir {
		return Result{}, newErr(op, obj, errIsDir, "")
	}
	t.touchDir(c.Parent, dir)
	if err := t.delDentry(c.Parent, c.Name); err != nil {
		return Result{}, err
	}
	return Result{}, t.dropLink(ino, n)
}

// entry resolves the existing entry name in directory parent for unlink,
// rmdir and concat: the parent directory's inode, and the entry's inode number and
// inode, or the error the operation must return.
func (t *txn) entry(op, obj string, parent uint64, name string) (dir *fsmpb.Inode, ino uint64, n *fsmpb.Inode, err error) {
	if err := checkName(op, obj, name); err != nil {
		return nil, 0, nil, err
	}
	if dir, err = t.dir(op, obj, parent); err != nil {
		return nil, 0, nil, err
	}
	if ino, _, err = t.dentry(parent, name); err != nil {
		return nil, 0, nil, err
	}
	if ino == 0 {
		return nil, 0, nil, newErr(op, obj, errNoEnt, "")
	}
	if n, err = t.existing(ino); err != nil {
		return nil, 0, nil, err
	}
	return dir, ino, n, nil
}

// dropLink removes one link to a non-directory; with its last the inode
// goes too, or becomes an orphan while it is open (see handles.go).
func (t *txn) dropLink(ino uint64, n *fsmpb.Inode) error {
	n.Nlink--
	if n.Nlink > 0 {
		t.touch(ino, n)
		return nil
	}
	return t.orphanOrRemove(ino, n)
}

func (t *txn) rmdir(c *fsmpb.Rmdir) (Result, error) {
	const op = "rmdir"
	obj := objName(c.Parent, c.Name)
	dir, ino, n, err := t.entry(op, obj, c.Parent, c.Name)
	if err != nil {
		return Result{}, err
	}
	if n.Type != typeDir {
		return Result{}, newErr(op, obj, errNotDir, "")
	}
	if err := t.checkEmpty(op, obj, ino); err != nil {
		return Result{}, err
	}
	dir.Nlink--
	t.touchDir(c.Parent, dir)
	if err := t.delDentry(c.Parent, c.Name); err != nil {
		return Result{}, err
	}
	return Result{}, t.removeInode(ino, n)
}

func (t *txn) checkEmpty(op, obj string, ino uint64) error {
	empty, err := dirEmpty(t.b, ino)
	if err != nil {
		return err
	}
	if !empty {
		return newErr(op, obj, syscall.ENOTEMPTY, "")
	}
	return nil
}

// within reports whether dir d is a, or lies below it.
func (t *txn) within(d, a uint64) (bool, error) {
	for i := 0; i < maxDepth; i++ {
		if d == a {
			return true, nil
		}
		if d == RootInode {
			return false, nil
		}
		n, err := t.existing(d)
		if err != nil {
			return false, err
		}
		d = n.Parent
	}
	return false, corrupt("directory tree", inodeKey(d), errTooDeep)
}

func (t *txn) rename(c *fsmpb.Rename) (Result, error) {
	const op = "rename"
	obj := objRename(c.OldParent, c.OldName, c.NewParent, c.NewName)
	if err := checkName(op, obj, c.OldName); err != nil {
		return Result{}, err
	}
	if err := checkName(op, obj, c.NewName); err != nil {
		return Result{}, err
	}
	mode := c.Mode
	switch mode {
	case masterpb.RenameRequest_MODE_REPLACE, masterpb.RenameRequest_MODE_NOREPLACE, masterpb.RenameRequest_MODE_EXCHANGE:
	default:
		return Result{}, newErr(op, obj, errInval, "unknown mode")
	}
	odir, err := t.dir(op, obj, c.OldParent)
	if err != nil {
		return Result{}, err
	}
	ndir, err := t.dir(op, obj, c.NewParent)
	if err != nil {
		return Result{}, err
	}
	sIno, sTyp, err := t.dentry(c.OldParent, c.OldName)
	if err != nil {
		return Result{}, err
	}
	if sIno == 0 {
		return Result{}, newErr(op, obj, errNoEnt, "")
	}
	dIno, dTyp, err := t.dentry(c.NewParent, c.NewName)
	if err != nil {
		return Result{}, err
	}
	switch {
	case mode == masterpb.RenameRequest_MODE_EXCHANGE && dIno == 0:
		return Result{}, newErr(op, obj, errNoEnt, "nothing to exchange with")
	case mode == masterpb.RenameRequest_MODE_NOREPLACE && dIno != 0:
		return Result{}, newErr(op, obj, errExist, "")
	}
	s, err := t.existing(sIno)
	if err != nil {
		return Result{}, err
	}
	// Moving a directory into itself or below it would detach a loop.
	if s.Type == typeDir {
		loop, err := t.within(c.NewParent, sIno)
		if err != nil {
			return Result{}, err
		}
		if loop {
			return Result{}, newErr(op, obj, errInval, "directory into its own subtree")
		}
	}
	var d *fsmpb.Inode
	if dIno != 0 {
		if d, err = t.existing(dIno); err != nil {
			return Result{}, err
		}
	}
	if mode == masterpb.RenameRequest_MODE_EXCHANGE && d.Type == typeDir {
		loop, err := t.within(c.OldParent, dIno)
		if err != nil {
			return Result{}, err
		}
		if loop {
			return Result{}, newErr(op, obj, errInval, "directory into its own subtree")
		}
	}
	if sIno == dIno {
		// Two names of one inode: POSIX says rename does nothing.
		return Result{}, nil
	}
	if mode == masterpb.RenameRequest_MODE_EXCHANGE {
		return Result{}, t.exchange(c, odir, ndir, sIno, sTyp, s, dIno, dTyp, d)
	}
	if d != nil {
		switch {
		case s.Type == typeDir && d.Type != typeDir:
			return Result{}, newErr(op, obj, errNotDir, "")
		case s.Type != typeDir && d.Type == typeDir:
			return Result{}, newErr(op, obj, errIsDir, "")
		case d.Type == typeDir:
			if err := t.checkEmpty(op, obj, dIno); err != nil {
				return Result{}, err
			}
		}
	}

	// Write phase.
	if d != nil {
		if d.Type == typeDir {
			ndir.Nlink--
			if err := t.removeInode(dIno, d); err != nil {
				return Result{}, err
			}
		} else if err := t.dropLink(dIno, d); err != nil {
			return Result{}, err
		}
	}
	if s.Type == typeDir && c.OldParent != c.NewParent {
		s.Parent = c.NewParent
		odir.Nlink--
		ndir.Nlink++
	}
	t.touch(sIno, s)
	t.touchDir(c.OldParent, odir)
	t.touchDir(c.NewParent, ndir)
	if err := t.delDentry(c.OldParent, c.OldName); err != nil {
		return Result{}, err
	}
	return Result{}, t.setDentry(c.NewParent, c.NewName, sIno, sTyp)
}

// exchange swaps two validated entries (RENAME_EXCHANGE).
func (t *txn) exchange(c *fsmpb.Rename, odir, ndir *fsmpb.Inode, sIno uint64, sTyp masterpb.FileType, s *fsmpb.Inode, dIno uint64, dTyp masterpb.FileType, d *fsmpb.Inode) error {
	if c.OldParent != c.NewParent {
		if s.Type == typeDir {
			s.Parent = c.NewParent
			odir.Nlink--
			ndir.Nlink++
		}
		if d.Type == typeDir {
			d.Parent = c.OldParent
			ndir.Nlink--
			odir.Nlink++
		}
	}
	t.touch(sIno, s)
	t.touch(dIno, d)
	t.touchDir(c.OldParent, odir)
	t.touchDir(c.NewParent, ndir)
	if err := t.setDentry(c.OldParent, c.OldName, dIno, dTyp); err != nil {
		return err
	}
	return t.setDentry(c.NewParent, c.NewName, sIno, sTyp)
}

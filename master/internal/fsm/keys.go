package fsm

import (
	"encoding/binary"
)

// Table prefixes; see the key layout in the package doc.
const (
	tMeta    = 'M'
	tRestore = 'R'
	tInode   = 'i'
	tDentry  = 'd'
	tXattr   = 'x'
	tChunk   = 'c'
	tSlice   = 's'
	tExpiry  = 'e'
	tGarbage = 'g'
	tRequest = 'r'
	tReqTime = 't'
	tMaster  = 'm'
)

// metaKey and restoreKey are single-byte keys.
func metaKey() []byte    { return []byte{tMeta} }
func restoreKey() []byte { return []byte{tRestore} }

func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// sortableTime maps an int64 time to a uint64 that sorts the same way.
func sortableTime(t int64) uint64 { return uint64(t) ^ (1 << 63) }

func unsortableTime(u uint64) int64 { return int64(u ^ (1 << 63)) }

func inodeKey(ino uint64) []byte { return appendU64([]byte{tInode}, ino) }

func dentryPrefix(parent uint64) []byte { return appendU64([]byte{tDentry}, parent) }

func dentryKey(parent uint64, name string) []byte {
	k := make([]byte, 0, 9+len(name))
	return append(appendU64(append(k, tDentry), parent), name...)
}

func xattrPrefix(ino uint64) []byte { return appendU64([]byte{tXattr}, ino) }

func xattrKey(ino uint64, name string) []byte {
	return append(xattrPrefix(ino), name...)
}

func chunkPrefix(ino uint64) []byte { return appendU64([]byte{tChunk}, ino) }

func chunkKey(ino, idx uint64) []byte { return appendU64(chunkPrefix(ino), idx) }

func sliceKey(id uint64) []byte { return appendU64([]byte{tSlice}, id) }

func masterKey(id string) []byte { return append([]byte{tMaster}, id...) }

func garbageKey(id uint64) []byte { return appendU64([]byte{tGarbage}, id) }

func expiryKey(exp int64, id uint64) []byte {
	return appendU64(appendU64([]byte{tExpiry}, sortableTime(exp)), id)
}

// requestSuffix identifies a request: uvarint length of the client ID, the
// client ID, the request ID (length-prefixing keeps ("ab","c") and ("a","bc")
// apart).
func requestSuffix(client string, req []byte) []byte {
	k := binary.AppendUvarint(make([]byte, 0, 2+len(client)+len(req)), uint64(len(client)))
	return append(append(k, client...), req...)
}

func requestKey(suffix []byte) []byte { return append([]byte{tRequest}, suffix...) }

func reqTimeKey(t int64, suffix []byte) []byte {
	return append(appendU64([]byte{tReqTime}, sortableTime(t)), suffix...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// u64At decodes the big-endian uint64 at b[off:], or 0 if b is short.
func u64At(b []byte, off int) uint64 {
	if len(b) < off+8 {
		return 0
	}
	return binary.BigEndian.Uint64(b[off:])
}

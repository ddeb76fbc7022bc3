package client

import (
	"math/bits"
	"sync"
)

// bufPool recycles large byte buffers (slice buffers, parity cells,
// read-ahead windows) in power-of-two size classes. Fresh memory costs a
// page fault per 4 KiB on first touch, which for 64 MiB slices is a large
// share of a core at disk speed; reused buffers are already mapped.
//
// Unlike a sync.Pool it keeps buffers across garbage collections, up to
// maxIdle bytes in total; beyond that, returned buffers are dropped for the
// collector. It is safe for concurrent use.
type bufPool struct {
	maxIdle int64

	mu struct {
		sync.Mutex
		idle    int64
		classes map[int][][]byte // class (log2 of capacity) -> free buffers
	}
}

func newBufPool(maxIdle int64) *bufPool {
	p := &bufPool{maxIdle: maxIdle}
	p.mu.classes = make(map[int][][]byte)
	return p
}

// minClass is the smallest class handed out: 64 KiB.
const minClass = 16

func class(n int) int {
	if n <= 1<<minClass {
		return minClass
	}
	return bits.Len(uint(n - 1))
}

// get returns a buffer of length n whose contents are undefined.
func (p *bufPool) get(n int) []byte {
	c := class(n)
	p.mu.Lock()
	free := p.mu.classes[c]
	if len(free) > 0 {
		b := free[len(free)-1]
		p.mu.classes[c] = free[:len(free)-1]
		p.mu.idle -= int64(cap(b))
		p.mu.Unlock()
		return b[:n]
	}
	p.mu.Unlock()
	return make([]byte, n, 1<<c)
}

// put returns b, which the caller must not use afterwards. Buffers not
// made by get (capacity not a class size) are dropped.
func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c < 1<<minClass || c&(c-1) != 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.idle+int64(c) > p.maxIdle {
		return
	}
	k := bits.Len(uint(c)) - 1
	p.mu.classes[k] = append(p.mu.classes[k], b[:0])
	p.mu.idle += int64(c)
}

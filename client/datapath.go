package client

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// DataPath moves file bytes between callers and chunkservers. Create one
// per process (or per mounted cluster) with New and open Writers and
// Readers from it; it is safe for concurrent use.
//
// It owns the chunkserver connections, the buffer pools, one erasure.Coder
// per layout seen, and one background goroutine that reports bad shards to
// the master. Close stops that goroutine and closes the connections; close
// Writers and Readers first.
type DataPath struct {
	meta  Metadata
	cfg   Config
	log   *slog.Logger
	conns *ConnPool
	bufs  *bufPool
	// layouts caches files' layouts by version (layoutcache.go).
	layouts *layoutCache

	reports   chan *masterpb.ReportBadShardRequest
	stop      context.CancelFunc
	stopped   context.Context
	reporterD chan struct{}

	mu struct {
		sync.Mutex
		coders   map[erasure.Layout]*erasure.Coder
		reported map[shardKey]bool
	}
}

type shardKey struct {
	slice uint64
	index uint32
}

// New returns a DataPath that asks meta for metadata. cfg is validated
// and defaulted (see Config).
func New(meta Metadata, cfg Config) (*DataPath, error) {
	if meta == nil {
		return nil, fmt.Errorf("client: no Metadata")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &DataPath{
		meta:      meta,
		cfg:       cfg,
		log:       cfg.Logger,
		conns:     NewConnPool(cfg.DialOptions...),
		bufs:      newBufPool(cfg.IdleBuffers),
		layouts:   newLayoutCache(cfg.LayoutCache),
		reports:   make(chan *masterpb.ReportBadShardRequest, 64),
		reporterD: make(chan struct{}),
	}
	d.mu.coders = make(map[erasure.Layout]*erasure.Coder)
	d.mu.reported = make(map[shardKey]bool)
	d.stopped, d.stop = context.WithCancel(context.Background())
	go d.reporter()
	return d, nil
}

// Close stops the bad-shard reporter (reports still queued are dropped:
// the chunkservers' scrubbers and the next reader find the damage again)
// and closes every chunkserver connection. Writers and Readers opened from
// d must be closed first; their later calls fail. Close is idempotent.
func (d *DataPath) Close() error {
	d.stop()
	<-d.reporterD
	return d.conns.Close()
}

// coder returns the shared Coder for l, which must be valid.
func (d *DataPath) coder(l erasure.Layout) (*erasure.Coder, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.mu.coders[l]; ok {
		return c, nil
	}
	c, err := erasure.NewCoder(l)
	if err != nil {
		return nil, err
	}
	d.mu.coders[l] = c
	return c, nil
}

// header returns a RequestHeader with a fresh request ID.
func (d *DataPath) header() *masterpb.RequestHeader {
	return &masterpb.RequestHeader{RequestId: newRequestID(), ClientId: d.cfg.ClientID}
}

// newRequestID returns a fresh request ID: the time in nanoseconds, big
// endian, then 8 random bytes. The random half makes it unique; the time
// half makes one client's IDs ascend, so the master's check for a retried
// request (a lookup in its request table, keyed by client and ID, on every
// mutation) lands next to the client's previous one, in memory the lookup
// just touched, instead of at a random place in a large table.
func newRequestID() []byte {
	id := make([]byte, 16)
	binary.BigEndian.PutUint64(id, uint64(time.Now().UnixNano()))
	rand.Read(id[8:]) // never fails (crypto/rand panics rather than return an error)
	return id
}

// reportBad queues a report of a missing or corrupt shard for the master.
// It never blocks: when the queue is full the report is dropped, since the
// damage will be seen again by the next reader or the scrubber. Each shard
// is reported once per DataPath (until the memory of reports is reset).
func (d *DataPath) reportBad(slice uint64, index uint32, chunkserver, reason string) {
	d.mu.Lock()
	k := shardKey{slice, index}
	if d.mu.reported[k] {
		d.mu.Unlock()
		return
	}
	if len(d.mu.reported) >= 10000 {
		// Bounded memory; re-reporting now and then is harmless.
		clear(d.mu.reported)
	}
	d.mu.reported[k] = true
	d.mu.Unlock()
	req := &masterpb.ReportBadShardRequest{SliceId: slice, Index: index, ChunkserverId: chunkserver, Reason: reason}
	select {
	case d.reports <- req:
	case <-d.stopped.Done():
	default:
		d.log.Warn("bad-shard report dropped: queue full", "slice", slice, "index", index)
	}
}

// reporter sends queued reports until Close. It is the DataPath's one
// long-lived goroutine.
func (d *DataPath) reporter() {
	defer close(d.reporterD)
	for {
		select {
		case <-d.stopped.Done():
			return
		case req := <-d.reports:
			ctx, cancel := context.WithTimeout(d.stopped, 10*time.Second)
			if _, err := d.meta.ReportBadShard(ctx, req); err != nil {
				d.log.Warn("reporting bad shard", "slice", req.SliceId, "index", req.Index, "chunkserver", req.ChunkserverId, "err", err)
			}
			cancel()
		}
	}
}

package chunk

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cairnfs/cairn/chunk/internal/shardstore"
	"github.com/cairnfs/cairn/erasure"
	"github.com/cairnfs/cairn/proto/chunkpb"
)

// scrubber re-reads every stored cell and compares it with its checksum, a
// pass over the whole store at a time, paced to rate bytes per second so it
// never competes seriously with client I/O. Corruption at rest (a flipped
// bit, a torn sector) is otherwise found only when a client reads the shard,
// which may be after its other shards are gone too.
type scrubber struct {
	store     *shardstore.Store
	rate      uint64
	interval  time.Duration
	onCorrupt func([]*chunkpb.ShardID)
	metrics   *metrics
	log       *slog.Logger
}

// run scrubs until ctx is done.
func (sc *scrubber) run(ctx context.Context) {
	for {
		sc.pass(ctx)
		if ctx.Err() != nil {
			return
		}
		sc.metrics.scrubPasses.Inc()
		select {
		case <-ctx.Done():
			return
		case <-time.After(sc.interval):
		}
	}
}

// pass verifies every shard once. Shards are listed in batches so a pass
// over millions of shards holds little memory and sees shards written while
// it runs, if they sort after its position.
func (sc *scrubber) pass(ctx context.Context) {
	start := time.Now()
	var done uint64 // bytes verified this pass, for pacing
	next := shardstore.ID{}
	for ctx.Err() == nil {
		var batch []shardstore.Info
		err := sc.store.List(next, 256, func(i shardstore.Info) error {
			batch = append(batch, i)
			return nil
		})
		if err != nil {
			if !errors.Is(err, shardstore.ErrClosed) {
				sc.log.Warn("scrub: listing shards", "err", err)
			}
			return
		}
		if len(batch) == 0 {
			return
		}
		var corrupt []*chunkpb.ShardID
		for _, info := range batch {
			if ctx.Err() != nil {
				return
			}
			bad, n := sc.verify(ctx, info, start, &done)
			sc.metrics.scrubShards.Inc()
			sc.metrics.scrubBytes.Add(float64(n))
			if bad {
				sc.metrics.scrubCorrupt.Inc()
				corrupt = append(corrupt, &chunkpb.ShardID{SliceId: info.ID.Slice, Index: info.ID.Index})
			}
		}
		if len(corrupt) > 0 && sc.onCorrupt != nil {
			sc.onCorrupt(corrupt)
		}
		var ok bool
		if next, ok = after(batch[len(batch)-1].ID); !ok {
			return
		}
	}
}

// verify checks one shard's cells, pacing against the pass's start. It
// reports whether the shard is corrupt and how many bytes it read.
func (sc *scrubber) verify(ctx context.Context, info shardstore.Info, start time.Time, done *uint64) (corrupt bool, n uint64) {
	err := sc.store.ReadCells(info.ID, 0, 0, func(cell uint32, data []byte, sum [32]byte) error {
		if erasure.Checksum(data) != sum {
			corrupt = true
			sc.log.Error("scrub: checksum mismatch", "shard", info.ID, "cell", cell)
			return errStopScrub
		}
		n += uint64(len(data))
		*done += uint64(len(data))
		// Sleep until the bytes verified so far are due at the configured rate.
		due := start.Add(time.Duration(float64(*done) / float64(sc.rate) * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errStopScrub), errors.Is(err, context.Canceled):
	case errors.Is(err, shardstore.ErrNotFound):
		// Deleted while the pass ran.
	case errors.Is(err, shardstore.ErrCorrupt), errors.Is(err, shardstore.ErrChecksum):
		// The store's own block checksums caught it first.
		corrupt = true
		sc.log.Error("scrub: stored data corrupt", "shard", info.ID, "err", err)
	default:
		sc.log.Warn("scrub: reading shard", "shard", info.ID, "err", err)
	}
	return corrupt, n
}

var errStopScrub = errors.New("stop scrubbing this shard")

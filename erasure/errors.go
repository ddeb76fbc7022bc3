package erasure

import (
	"errors"
	"fmt"
)

// ErrTooFewShards is matched (errors.Is) by every *TooFewShardsError, for
// callers that only need to know that data was unrecoverable.
var ErrTooFewShards = errors.New("erasure: too few shards")

// ErrChecksum is wrapped by every error reporting bytes that do not match
// their SHA-256 checksum. Callers treat such bytes as lost: a cell or shard
// that fails verification is dropped and rebuilt from the other shards.
var ErrChecksum = errors.New("erasure: checksum mismatch")

// TooFewShardsError reports that more shards are missing than the layout
// tolerates, so the requested bytes cannot be rebuilt. Missing lists the
// missing shard indexes in increasing order; Need is how many shards
// decoding requires (k, or 1 for a replicated layout) and Have how many
// were present.
type TooFewShardsError struct {
	Layout  Layout
	Missing []int
	Need    int
	Have    int
}

// Error names the layout and the missing shards, e.g.
// "erasure: RS(4,2) needs 4 shards, have 3: missing [1 4 5]".
func (e *TooFewShardsError) Error() string {
	noun := "shards"
	if e.Need == 1 {
		noun = "shard"
	}
	return fmt.Sprintf("erasure: %s needs %d %s, have %d: missing %v", e.Layout, e.Need, noun, e.Have, e.Missing)
}

// Is makes errors.Is(err, ErrTooFewShards) true.
func (e *TooFewShardsError) Is(target error) bool { return target == ErrTooFewShards }

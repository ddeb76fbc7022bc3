package placement

import (
	"errors"
	"strconv"
	"strings"
)

// ErrTooFewServers is matched (errors.Is) by every *TooFewServersError, for
// callers that only need to know that the cluster cannot take the slice now.
var ErrTooFewServers = errors.New("placement: too few eligible chunkservers")

// TooFewServersError reports that a slice, or one shard of it, cannot be
// placed because too few chunkservers are eligible. The counts say why each
// other server in the view was passed over; each server is counted once,
// under the first reason that applies in the order the fields are listed.
type TooFewServersError struct {
	// Layout is Spec.Layout.
	Layout string
	// Shard is the index being replaced (Replace), or -1 (Place).
	Shard int
	// Need is how many servers were needed: n for Place, 1 for Replace.
	Need int
	// Eligible is how many servers could have been chosen.
	Eligible int

	Unknown  int // status unknown
	Suspect  int // missed recent heartbeats
	Dead     int // silent past the grace period
	Draining int // being emptied by an operator
	InUse    int // hold another shard of the slice (Replace only)
	Excluded int // on Spec.Exclude, or the server being replaced
	Full     int // free space below shard size plus reserve
}

// Error names the layout, the need and the reasons, e.g.
// "placement: RS(4,2) needs 6 chunkservers, 4 are eligible (2 dead, 1
// draining, 1 full)" or "placement: RS(4,2) shard 3 needs a substitute
// chunkserver, 0 are eligible (5 hold other shards, 1 dead)".
func (e *TooFewServersError) Error() string {
	var b strings.Builder
	b.WriteString("placement: ")
	if e.Layout != "" {
		b.WriteString(e.Layout)
	} else {
		b.WriteString("slice")
	}
	if e.Shard >= 0 {
		b.WriteString(" shard ")
		b.WriteString(strconv.Itoa(e.Shard))
		b.WriteString(" needs a substitute chunkserver")
	} else {
		b.WriteString(" needs ")
		b.WriteString(plural(e.Need, "chunkserver", "chunkservers"))
	}
	b.WriteString(", ")
	b.WriteString(strconv.Itoa(e.Eligible))
	if e.Eligible == 1 {
		b.WriteString(" is eligible")
	} else {
		b.WriteString(" are eligible")
	}
	var why []string
	add := func(n int, s string) {
		if n > 0 {
			why = append(why, strconv.Itoa(n)+" "+s)
		}
	}
	if e.InUse == 1 {
		add(e.InUse, "holds another shard")
	} else {
		add(e.InUse, "hold other shards")
	}
	add(e.Unknown, "unknown")
	add(e.Suspect, "suspect")
	add(e.Dead, "dead")
	add(e.Draining, "draining")
	add(e.Excluded, "excluded")
	add(e.Full, "full")
	if len(why) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(why, ", "))
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrTooFewServers) true.
func (e *TooFewServersError) Is(target error) bool { return target == ErrTooFewServers }

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

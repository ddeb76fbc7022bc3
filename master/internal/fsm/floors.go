package fsm

import "bytes"

// Scan floors.
//
// After every entry applyEntry expires pending slices and prunes old
// request records, each a scan from the front of its time-ordered table
// (e and t). The keys those scans and commits delete stay behind as
// tombstones until Pebble compacts them away, and a scan from the table's
// start steps over every one of them: under a steady stream of creates
// that cost a quarter of the master's CPU. A floor remembers where the
// table's first live key is, so a scan starts there, or is skipped when
// that key is not due yet.
//
// A floor is a hint held in memory, not state: it only ever names a key at
// or below the table's first live key (inserting a key lowers it; a scan
// raises it to the first key it leaves), so a scan from it finds exactly
// what a scan from the start would, and a replica that restarts with no
// floor reaches the same state.

// floor is a lower bound on the first live key of one table.
type floor struct {
	// known is false until a scan has run: scans start at the table's
	// start.
	known bool
	// key, when known, sorts at or below every live key of the table;
	// nil means the table is empty.
	key []byte
}

// lower records that key was inserted into the table.
func (fl *floor) lower(key []byte) {
	if fl.known && (fl.key == nil || bytes.Compare(key, fl.key) < 0) {
		fl.key = bytes.Clone(key)
	}
}

// due reports whether a scan for keys whose time (the 8 bytes after the
// table byte) passes isDue could find any.
func (fl *floor) due(isDue func(time int64) bool) bool {
	if !fl.known {
		return true
	}
	return fl.key != nil && isDue(unsortableTime(u64At(fl.key, 1)))
}

// start is where a scan of the table whose keys begin with prefix starts.
func (fl *floor) start(prefix []byte) []byte {
	if fl.known && fl.key != nil {
		return fl.key
	}
	return prefix
}

// scanFloors are the floors of the expiry (e) and request-time (t)
// tables. The Apply goroutine owns them; a txn works on a copy that
// replaces them once its batch has committed.
type scanFloors struct {
	expiry, reqTime floor
}

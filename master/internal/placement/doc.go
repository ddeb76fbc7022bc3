// Package placement decides which chunkservers receive the shards of a
// slice. It is pure: functions of a cluster view, a description of the slice
// and an injected random source, with no clock, no I/O, no goroutines and no
// package-level state, so the same inputs and the same seed always give the
// same answer.
//
// # Rules
//
// A chunkserver is eligible for a shard when it is Live (not suspect, dead,
// draining or of unknown status), not on the caller's exclusion list, not
// already holding another shard of the same slice, and has room: its free
// bytes cover the shard's size plus a reserve (Reserve), so that no server
// is filled to the last byte.
//
// Among eligible servers the shards of one slice go to distinct servers —
// always; an answer never puts two shards of a stripe on one server — and are
// spread over racks as evenly as the eligible servers allow: shards are
// added one at a time to a rack holding the fewest shards so far among the
// racks that still have an unused eligible server (water-filling). That
// minimises the largest number of shards in any one rack; in particular
// with R racks that each have enough eligible servers no rack receives more
// than ceil(N/R) of N shards. Servers with an empty Rack form one rack of
// their own ("unknown rack"), as HDFS's default rack does.
//
// Within the racks that may take the next shard, a server is chosen at
// random with probability proportional to its free bytes, so emptier
// servers fill faster and the cluster evens out over time, while no single
// emptiest server attracts every write.
//
// When fewer eligible servers exist than the slice needs, Place and Replace
// return a *TooFewServersError that says how many servers were needed, how
// many were eligible, and why the others were not.
package placement

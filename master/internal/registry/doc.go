// Package registry is the master's soft state about chunkservers: who they
// are, where they listen, how full they are, whether they are alive, and
// which shards each one reports holding.
//
// Like GFS's chunk locations, none of this is written to the Raft log. A new
// leader starts with an empty Registry; a chunkserver whose heartbeat is
// answered with ErrUnknown registers again and sends a full report, and the
// registry is whole again within one heartbeat interval plus the time to
// send the reports. Until then a server missing from the registry is simply
// unknown, not dead; the caller decides how long to wait before acting on
// that. Warm tells the caller when the registry has refilled: every
// chunkserver it expects (the master's replicated directory) is back and
// reported, or long enough has passed.
//
// # Liveness
//
// Liveness is never stored: it is computed from the injected Clock whenever
// a server is read. With e the time since the server last registered or
// heartbeated:
//
//	e < SuspectAfter              Live
//	SuspectAfter <= e < DeadAfter Suspect
//	DeadAfter <= e                Dead
//
// A heartbeat from a Suspect or Dead server makes it Live again. Draining is
// separate and administrative: a draining server keeps its liveness state
// but takes no new shards (see Server.Candidate).
//
// # Inventory
//
// A chunkserver may hold about a million shards. Each server's inventory is
// a sorted slice of 12-byte keys (the slice ID split into two uint32 halves,
// and the shard index) built from its last full report, plus two small maps
// of the changes its heartbeats reported since, merged into the slice once
// they exceed an eighth of it: about 12–16 bytes per shard, where a Go map
// would take 25–56. Lookups are a binary search. While a full report is
// being received its batches are held as well, so a server's memory doubles
// for the duration of its report. Holders does one lookup per registered
// server rather than keeping a second, cluster-wide index that would double
// the memory for good.
//
// # Concurrency
//
// A Registry is safe for concurrent use; every method takes one mutex for
// its whole duration and never calls out while holding it, and every value it
// returns is a copy the caller owns.
package registry

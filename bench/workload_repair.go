package main

import (
	"context"
	"fmt"
	"time"
)

// repairPoll is how often the repair workload asks the master for the
// cluster's redundancy.
const repairPoll = 250 * time.Millisecond

// runRepair stops one chunkserver of the local cluster for good and times
// how long the cluster takes to be back at full redundancy: from the stop
// until the master reports no degraded or lost slice and no repair bytes
// left. That includes the master's grace period before it declares the
// server dead, which is part of what a user waits for.
//
// A master that never reports degraded slices cannot be timed: the
// workload is then not available rather than instantly done.
func runRepair(ctx context.Context, e *env) ([]Result, error) {
	if e.cluster == nil {
		return nil, notAvailable("needs --local (stops a chunkserver)")
	}
	if err := e.ensureSeq(ctx); err != nil {
		return nil, err
	}
	victim := e.dataHolder(ctx, len(e.cluster.Chunkservers())-1)
	cl := e.clients[0]
	if err := e.cluster.KillChunkserver(victim); err != nil {
		return nil, err
	}
	sp := startSpan()
	start := sp.wall
	// Bring the server back for whatever runs next. The figure does not
	// depend on it, and a failed restart shows in the cluster's log.
	defer e.restartChunkserver(context.WithoutCancel(ctx), victim)

	bar := e.prog.start("repair: waiting for the master to notice", int64(e.cfg.RepairNotice/time.Millisecond), "ms")
	var maxLeft uint64
	noticed := false
	for !noticed {
		st, err := cl.Status(ctx)
		if err != nil {
			bar.done()
			return nil, err
		}
		maxLeft = max(maxLeft, st.RepairBytesLeft)
		noticed = st.SlicesDegraded+st.SlicesLost > 0 || st.RepairBytesLeft > 0
		if !noticed && time.Since(start) > e.cfg.RepairNotice {
			bar.done()
			return nil, notAvailable("the master reported no degraded slice within %s of stopping a chunkserver: the cluster does not repair shards yet (or --repair-notice is too short)", e.cfg.RepairNotice)
		}
		bar.n.Store(int64(time.Since(start) / time.Millisecond))
		if err := sleep(ctx, repairPoll); err != nil {
			bar.done()
			return nil, err
		}
	}
	bar.done()

	bar = e.prog.start("repair: rebuilding", int64(e.cfg.RepairTimeout/time.Millisecond), "ms")
	defer bar.done()
	// rebuildStart is when the master first reported bytes to rebuild:
	// the rebuild rate counts from there, leaving out the grace.
	var rebuildStart spanStart
	for {
		st, err := cl.Status(ctx)
		if err != nil {
			return nil, err
		}
		if st.RepairBytesLeft > 0 && rebuildStart.wall.IsZero() {
			rebuildStart = startSpan()
		}
		maxLeft = max(maxLeft, st.RepairBytesLeft)
		if st.SlicesLost > 0 {
			return nil, fmt.Errorf("%d slices lost after stopping one chunkserver", st.SlicesLost)
		}
		if st.SlicesDegraded == 0 && st.RepairBytesLeft == 0 {
			break
		}
		if time.Since(start) > e.cfg.RepairTimeout {
			return nil, fmt.Errorf("not at full redundancy %s after stopping a chunkserver: %d slices degraded, %d bytes to repair", e.cfg.RepairTimeout, st.SlicesDegraded, st.RepairBytesLeft)
		}
		bar.n.Store(int64(time.Since(start) / time.Millisecond))
		if err := sleep(ctx, repairPoll); err != nil {
			return nil, err
		}
	}
	end := sp.end()
	wall := end.wall
	out := []Result{{Workload: "repair", Op: "time to full redundancy", Status: statusOK, Value: wall.Seconds(), Unit: "s", Seconds: wall.Seconds(), CPUSeconds: end.cpu.Seconds(),
		Note: fmt.Sprintf("chunkserver %d stopped, %s of files, %s grace included", victim, human(e.seqSize*int64(len(e.seq))), e.cfg.DeadAfter)}}
	if maxLeft > 0 && !rebuildStart.wall.IsZero() {
		// Against the disk write: a rebuild ends in writing the shard, while
		// its reads are spread over the other servers.
		r := bytesResult("repair", "rebuild", int64(maxLeft), rebuildStart.end(), baseDiskWrite)
		r.Note = "bytes the master reported to rebuild, from that report to full redundancy"
		out = append(out, r)
	}
	return out, nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package master

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/internal/wirelayout"
	"github.com/cairnfs/cairn/master/internal/fsm"
	"github.com/cairnfs/cairn/master/internal/registry"
	"github.com/cairnfs/cairn/master/internal/repair"
	"github.com/cairnfs/cairn/proto/chunkpb"
	"github.com/cairnfs/cairn/proto/fsmpb"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// Defaults for RepairConfig fields left zero.
const (
	DefaultRepairInterval     = 5 * time.Second
	DefaultRepairPerServer    = 2
	DefaultRepairMaxOrders    = 256
	DefaultRepairOrderTimeout = 10 * time.Minute
	DefaultMissingGrace       = 2 * time.Minute
	DefaultGCBatch            = 1024
	// minKickGap is the least time between scans that finished orders
	// trigger ahead of the interval.
	minKickGap = 200 * time.Millisecond
	// maxCorruptMarks bounds the shards marked corrupt and not yet
	// rebuilt (see reportBad).
	maxCorruptMarks = 1 << 16
	// backlogPerServer is how many rebuilds the master keeps planned per
	// target beyond the PerServer it runs, as multiples of PerServer: a
	// chunkserver that finishes one picks up the next with its immediate
	// heartbeat instead of idling until a scan has planned more and its
	// next periodic heartbeat has fetched it.
	backlogPerServer = 2
	// resendAfter is how long an order handed out without an answer waits
	// before it goes out again with the next heartbeat: the response that
	// carried it may have been lost. A chunkserver still running it
	// ignores the repeat.
	resendAfter = 30 * time.Second
)

// RepairConfig tunes self-healing: rebuilding lost shards, deleting
// garbage and surplus shards, and emptying draining chunkservers. Zero
// fields take the defaults above.
type RepairConfig struct {
	// Interval is the pause between repair scans.
	Interval time.Duration
	// BytesPerSecond bounds the rebuild bandwidth of one chunkserver:
	// each of its at most PerServer concurrent rebuilds is throttled to
	// BytesPerSecond/PerServer. 0 means unthrottled.
	BytesPerSecond uint64
	// PerServer bounds the rebuilds one chunkserver runs at once.
	PerServer int
	// MaxOrders bounds the orders (rebuilds and deletions) in flight in
	// the whole cluster.
	MaxOrders int
	// OrderTimeout is how long an order may go unreported before it is
	// forgotten and its work planned again.
	OrderTimeout time.Duration
	// MissingGrace is how long a shard may be absent from its server's
	// inventory (after that server's full report) before it counts as
	// lost. Negative turns the check off.
	MissingGrace time.Duration
	// GCBatch bounds the garbage slices collected per scan.
	GCBatch int
	// Disabled turns repair, garbage collection and draining off.
	Disabled bool
}

func (c RepairConfig) withDefaults() RepairConfig {
	if c.Interval <= 0 {
		c.Interval = DefaultRepairInterval
	}
	if c.PerServer <= 0 {
		c.PerServer = DefaultRepairPerServer
	}
	if c.MaxOrders <= 0 {
		c.MaxOrders = DefaultRepairMaxOrders
	}
	if c.OrderTimeout <= 0 {
		c.OrderTimeout = DefaultRepairOrderTimeout
	}
	if c.MissingGrace == 0 {
		c.MissingGrace = DefaultMissingGrace
	}
	if c.GCBatch <= 0 {
		c.GCBatch = DefaultGCBatch
	}
	return c
}

// repairer is the leader's self-healing engine. Its state is soft, like
// the registry's: it belongs to one leadership epoch and starts empty at
// the next (orders the previous leader issued finish or fail on their own;
// what they left behind is found again by the next scans). What must
// survive a leader change goes through Raft: new shard locations
// (MoveShard), drain marks (SetDrain), collected garbage (AckGarbage).
//
// run is its only goroutine, owned by Server.run. The gRPC handlers call
// ordersFor, done, reportBad and forget; everything they share is under mu.
type repairer struct {
	s   *Server
	cfg RepairConfig
	rng *rand.Rand // run's goroutine only
	// kick asks run for a scan before the interval is up: a finished
	// rebuild frees a slot that the next scan fills, and waiting a whole
	// Interval for it left servers idle between rounds.
	kick chan struct{}

	mu struct {
		sync.Mutex
		epoch  uint64
		nextID uint64
		orders map[uint64]*order
		// busy maps every shard with an order in flight to the order.
		busy map[repair.Key]uint64
		// corrupt maps shards reported unreadable to the server that
		// holds the bad copy.
		corrupt map[repair.Key]string
		// missing is when each shard was first seen absent from the
		// inventory of the server it is recorded on.
		missing map[repair.Key]time.Time
		// last is the latest scan's result.
		last scanResult
		// rebuilt counts the bytes of shards rebuilt this epoch.
		rebuilt uint64
		// windowStart and windowBytes measure the rebuild rate since work
		// last began (the window restarts once nothing is left to do).
		windowStart time.Time
		windowBytes uint64
	}
}

// order is one piece of work handed to a chunkserver.
type order struct {
	id     uint64
	server string
	key    repair.Key
	task   *repair.Task // nil for a deletion
	pb     *masterpb.Order
	sent   time.Time // zero until handed out
	issued time.Time
}

// scanResult is what a scan found, for Status, fsck and metrics.
type scanResult struct {
	at      time.Time
	summary repair.Summary
	// holding counts recorded shards per draining server.
	holding map[string]int
}

func newRepairer(s *Server) *repairer {
	r := &repairer{s: s, cfg: s.cfg.Repair.withDefaults(), rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)),
		kick: make(chan struct{}, 1)}
	r.resetLocked(0)
	return r
}

func (r *repairer) resetLocked(epoch uint64) {
	r.mu.epoch = epoch
	r.mu.orders = map[uint64]*order{}
	r.mu.busy = map[repair.Key]uint64{}
	r.mu.corrupt = map[repair.Key]string{}
	r.mu.missing = map[repair.Key]time.Time{}
	r.mu.last = scanResult{}
	r.mu.rebuilt = 0
	r.mu.windowStart, r.mu.windowBytes = time.Time{}, 0
}

// run scans every Interval while this master leads, until ctx ends.
func (r *repairer) run(ctx context.Context) {
	if r.cfg.Disabled {
		return
	}
	unregister := r.registerMetrics()
	defer unregister()
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	var last time.Time
	var took time.Duration // the last scan's duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
			// Kicked scans come at most every minKickGap, so a burst
			// of small finished orders does not turn into a scan each,
			// and leave at least four times a scan's duration idle, so
			// that on a large namespace they take at most a fifth of
			// the leader's time.
			if wait := max(minKickGap, 5*took) - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		took = 0
		lead := r.s.leadership()
		r.mu.Lock()
		if r.mu.epoch != lead.epoch {
			r.resetLocked(lead.epoch)
		}
		r.mu.Unlock()
		if !r.s.IsLeader() || !r.s.warm() {
			continue
		}
		if err := r.scan(ctx, lead); err != nil && ctx.Err() == nil {
			r.s.log.Warn("repair scan failed", "err", err)
		}
		took = time.Since(last)
	}
}

// scan plans and queues one round of work.
func (r *repairer) scan(ctx context.Context, lead leadership) error {
	s := r.s
	reg := s.registry()
	now := s.now()
	r.expire(now)
	if err := r.syncDrains(reg); err != nil {
		return err
	}
	servers := reg.Servers()
	states := make(map[string]repair.State, len(servers))
	reported := make(map[string]bool, len(servers))
	res := scanResult{at: now, holding: map[string]int{}}
	for _, sv := range servers {
		states[sv.ID] = stateOf(sv)
		reported[sv.ID] = sv.Reported
		if sv.Draining {
			res.holding[sv.ID] = 0
		}
	}
	r.dropDead(states)
	// A server the new leader has not heard from is not dead until it
	// has been silent for the grace period under this leader too.
	unknown := repair.Unsure
	if now.Sub(reg.Started()) >= s.regCfg.DeadAfter {
		unknown = repair.Down
	}

	r.mu.Lock()
	view := repair.View{Servers: states, Bad: map[repair.Key]bool{}, Busy: make(map[repair.Key]bool, len(r.mu.busy))}
	for k := range r.mu.busy {
		view.Busy[k] = true
	}
	corrupt := make(map[repair.Key]string, len(r.mu.corrupt))
	for k, v := range r.mu.corrupt {
		corrupt[k] = v
	}
	r.mu.Unlock()

	var degraded []repair.Slice
	seenMissing := map[repair.Key]bool{}
	stillCorrupt := map[repair.Key]bool{}
	err := s.eachCommittedSlice(ctx, func(sl *fsmpb.Slice) {
		rs, err := repairSlice(sl)
		if err != nil {
			s.log.Error("repair: slice with a bad layout", "slice", sl.Id, "err", err)
			return
		}
		for _, loc := range rs.Shards {
			k := repair.Key{Slice: rs.ID, Index: loc.Index}
			st, known := states[loc.Server]
			if !known {
				states[loc.Server] = unknown
				continue
			}
			if st == repair.Draining {
				res.holding[loc.Server]++
			}
			if corrupt[k] == loc.Server {
				view.Bad[k] = true
				stillCorrupt[k] = true
				continue
			}
			if (st == repair.Up || st == repair.Draining) && reported[loc.Server] && r.cfg.MissingGrace > 0 &&
				!view.Busy[k] && !reg.Holds(loc.Server, registry.ShardID{Slice: k.Slice, Index: k.Index}) {
				seenMissing[k] = true
				if r.missingFor(k, now) >= r.cfg.MissingGrace {
					view.Bad[k] = true
				}
			}
		}
		res.summary.Slices++
		if h := repair.Assess(rs, view); len(h.Lost) > 0 || len(h.Moving) > 0 {
			degraded = append(degraded, rs)
		}
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	for k := range r.mu.missing {
		if !seenMissing[k] {
			delete(r.mu.missing, k)
		}
	}
	for k, srv := range r.mu.corrupt {
		// A mark whose shard has moved on (or whose slice is gone) has
		// done its work; marks made during the scan wait for the next.
		if corrupt[k] == srv && !stillCorrupt[k] {
			delete(r.mu.corrupt, k)
		}
	}
	inFlight := map[string]int{}
	for _, o := range r.mu.orders {
		if o.task != nil {
			inFlight[o.server]++
		}
	}
	budget := r.cfg.MaxOrders - len(r.mu.orders)
	r.mu.Unlock()

	tasks, sum, err := repair.Plan(degraded, view, reg.View(), repair.Limits{
		MaxTasks: max(budget, 0), PerTarget: backlogPerServer * r.cfg.PerServer, InFlight: inFlight, Reserve: s.cfg.Reserve,
	}, r.rng)
	if err != nil {
		return err
	}
	sum.Slices = res.summary.Slices
	res.summary = sum
	for i := range tasks {
		r.queueRebuild(&tasks[i], now)
	}
	r.mu.Lock()
	r.mu.last = res
	if sum.BytesLeft == 0 {
		r.mu.windowStart, r.mu.windowBytes = time.Time{}, 0
	}
	r.mu.Unlock()
	if err := r.collectGarbage(ctx, reg, states, now); err != nil {
		return err
	}
	return r.removeSurplus(reg, servers, now)
}

func stateOf(sv registry.Server) repair.State {
	switch {
	case sv.State == registry.Dead:
		return repair.Down
	case sv.State == registry.Suspect:
		return repair.Unsure
	case sv.Draining:
		return repair.Draining
	}
	return repair.Up
}

// missingFor records that k is missing now and returns since when.
func (r *repairer) missingFor(k repair.Key, now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	first, ok := r.mu.missing[k]
	if !ok {
		r.mu.missing[k] = now
		return 0
	}
	return now.Sub(first)
}

// eachCommittedSlice calls fn with every committed slice, in ID order, a
// page at a time, until ctx ends.
func (s *Server) eachCommittedSlice(ctx context.Context, fn func(*fsmpb.Slice)) error {
	for after := uint64(0); ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		page, err := s.fsm.ListSlices(after, 1024)
		if err != nil || len(page) == 0 {
			return err
		}
		after = page[len(page)-1].Id
		for _, sl := range page {
			if sl.Committed {
				fn(sl)
			}
		}
	}
}

func repairSlice(sl *fsmpb.Slice) (repair.Slice, error) {
	l, err := wirelayout.FromProto(sl.Layout)
	if err != nil {
		return repair.Slice{}, err
	}
	rs := repair.Slice{ID: sl.Id, Layout: l, Length: sl.Length}
	for _, sh := range sl.Shards {
		rs.Shards = append(rs.Shards, repair.Location{Index: sh.Index, Server: sh.ChunkserverId})
	}
	return rs, nil
}

// syncDrains makes the registry's drain marks those recorded in Raft.
func (r *repairer) syncDrains(reg *registry.Registry) error {
	drains, err := r.s.fsm.Drains()
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, id := range drains {
		want[id] = true
		reg.Drain(id)
	}
	for _, sv := range reg.Servers() {
		if sv.Draining && !want[sv.ID] {
			reg.Undrain(sv.ID)
		}
	}
	return nil
}

// expire forgets orders unreported for longer than OrderTimeout.
func (r *repairer) expire(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.mu.orders {
		if now.Sub(o.issued) > r.cfg.OrderTimeout {
			r.dropLocked(id)
			r.s.log.Warn("repair order timed out", "order", id, "chunkserver", o.server, "slice", o.key.Slice, "index", o.key.Index)
		}
	}
}

// dropDead forgets the orders of servers declared dead, sent or not, so
// that their shards are planned again at once rather than after
// OrderTimeout. Should such a server return and finish a rebuild, its
// report names an unknown order and the shard is found as surplus.
func (r *repairer) dropDead(states map[string]repair.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.mu.orders {
		if states[o.server] == repair.Down {
			r.dropLocked(id)
		}
	}
}

func (r *repairer) dropLocked(id uint64) {
	if o, ok := r.mu.orders[id]; ok {
		delete(r.mu.orders, id)
		if r.mu.busy[o.key] == id {
			delete(r.mu.busy, o.key)
		}
	}
}

// queueRebuild turns a planned task into an order for its target.
func (r *repairer) queueRebuild(t *repair.Task, now time.Time) {
	s := r.s
	req := &chunkpb.ReconstructShardRequest{
		Shard:       &chunkpb.ShardID{SliceId: t.Slice, Index: t.Index},
		Layout:      wirelayout.ToProto(t.Layout),
		SliceLength: t.Length,
		// The token is minted when the order is handed out (sendLocked).
	}
	if r.cfg.BytesPerSecond > 0 {
		req.BytesPerSecond = max(1, r.cfg.BytesPerSecond/uint64(r.cfg.PerServer))
	}
	for _, src := range t.Sources {
		if addr := s.addressOf(src.Server); addr != "" {
			req.Sources = append(req.Sources, &chunkpb.ShardSource{Index: src.Index, Address: addr})
		}
	}
	r.queue(t.Target, repair.Key{Slice: t.Slice, Index: t.Index}, t, &masterpb.Order{Work: &masterpb.Order_Reconstruct{Reconstruct: req}}, now)
}

// queueDelete orders server to delete a shard, unless the shard is busy.
func (r *repairer) queueDelete(server string, k repair.Key, now time.Time) bool {
	tok := r.s.signer.Mint(chunkpb.TokenOp_TOKEN_OP_DELETE, k.Slice, k.Index, 0, now.Add(r.s.cfg.TokenTTL))
	return r.queue(server, k, nil, &masterpb.Order{Work: &masterpb.Order_Delete{Delete: &chunkpb.DeleteShardRequest{
		Shard: &chunkpb.ShardID{SliceId: k.Slice, Index: k.Index}, Token: tok,
	}}}, now)
}

func (r *repairer) queue(server string, k repair.Key, t *repair.Task, pb *masterpb.Order, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, busy := r.mu.busy[k]; busy {
		return false
	}
	r.mu.nextID++
	pb.Id = r.mu.nextID
	o := &order{id: pb.Id, server: server, key: k, task: t, pb: pb, issued: now}
	r.mu.orders[o.id] = o
	r.mu.busy[k] = o.id
	return true
}

// ordersFor returns the orders to hand to server with its heartbeat
// response: those not handed out yet, and those handed out resendAfter
// ago without an answer. A chunkserver reports an order done before its
// next heartbeat; one never answered is forgotten after OrderTimeout.
//
// Rebuilds go out at most PerServer at a time, oldest first (plans put
// the least redundant stripes first); the rest wait here as the server's
// backlog. Deletions are cheap and all go out at once.
func (r *repairer) ordersFor(server string) []*masterpb.Order {
	now := r.s.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*masterpb.Order
	var waiting []*order
	running := 0
	for _, o := range r.mu.orders {
		switch {
		case o.server != server:
		case o.task != nil && o.sent.IsZero():
			waiting = append(waiting, o)
		case o.sent.IsZero() || now.Sub(o.sent) >= resendAfter:
			if o.task != nil {
				running++
			}
			out = append(out, r.sendLocked(o, now))
		case o.task != nil:
			running++
		}
	}
	slices.SortFunc(waiting, func(a, b *order) int { return cmp.Compare(a.id, b.id) })
	for _, o := range waiting[:min(len(waiting), max(r.cfg.PerServer-running, 0))] {
		out = append(out, r.sendLocked(o, now))
	}
	return out
}

// sendLocked marks o handed out now and returns it to send. A rebuild
// goes with a write token minted now, on a copy (an earlier reply may
// still be marshalling the order): it may have waited in the backlog for
// a while, and a token minted when it was planned could run out before
// it starts.
func (r *repairer) sendLocked(o *order, now time.Time) *masterpb.Order {
	o.sent = now
	t, rc := o.task, o.pb.GetReconstruct()
	if t == nil || rc == nil {
		return o.pb
	}
	rc = proto.CloneOf(rc)
	rc.Token = r.s.mintWrite(t.Slice, t.Layout, t.Length, t.Index, now)
	return &masterpb.Order{Id: o.pb.Id, Work: &masterpb.Order_Reconstruct{Reconstruct: rc}}
}

// forget drops the orders of a chunkserver that registered again: a
// restarted process lost them.
func (r *repairer) forget(server string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, o := range r.mu.orders {
		if o.server == server && !o.sent.IsZero() {
			r.dropLocked(id)
		}
	}
}

// reportBad marks shards unreadable on server (the scrubber's or a
// reader's finding); the next scan rebuilds them elsewhere.
//
// At most maxCorruptMarks are kept: scans prune marks whose shards have
// moved on, but with repair off no scan runs, and reports (clients send
// them too) must not grow the leader's memory without bound. A shard not
// marked for lack of room is reported again by the next scrub or read.
func (r *repairer) reportBad(server string, keys []repair.Key) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dropped := 0
	for _, k := range keys {
		if _, ok := r.mu.corrupt[k]; !ok && len(r.mu.corrupt) >= maxCorruptMarks {
			dropped++
			continue
		}
		r.mu.corrupt[k] = server
	}
	if dropped > 0 {
		r.s.log.Warn("repair: too many shards marked corrupt; reports dropped", "chunkserver", server, "dropped", dropped, "marked", len(r.mu.corrupt))
	}
}

// done handles a chunkserver's OrderDone. A rebuilt shard's new location
// is recorded through Raft, after which the copy it replaces (corrupt, or
// on a draining server) is deleted; a rebuild whose slice moved on meanwhile
// is deleted as surplus.
func (r *repairer) done(ctx context.Context, server string, id uint64, failure string) error {
	s := r.s
	r.mu.Lock()
	o, ok := r.mu.orders[id]
	if !ok || o.server != server {
		r.mu.Unlock()
		return nil // an order of an earlier leadership, or timed out
	}
	if o.task == nil || failure != "" {
		r.dropLocked(id)
	}
	r.mu.Unlock()
	// Whatever the outcome, a slot is free: plan the next work now.
	select {
	case r.kick <- struct{}{}:
	default:
	}
	if failure != "" {
		s.log.Warn("repair order failed", "order", id, "chunkserver", server, "slice", o.key.Slice, "index", o.key.Index, "err", failure)
		return nil
	}
	if o.task == nil {
		return nil
	}
	t := o.task
	loc := &masterpb.ShardLocation{Index: t.Index, ChunkserverId: t.Target, Address: s.addressOf(t.Target)}
	_, err := s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_MoveShard{MoveShard: &fsmpb.MoveShard{
		SliceId: t.Slice, Shard: loc, From: t.From,
	}}})
	now := s.now()
	r.mu.Lock()
	r.dropLocked(id)
	if err == nil {
		r.mu.rebuilt += t.Bytes
		if r.mu.windowStart.IsZero() || o.issued.Before(r.mu.windowStart) {
			r.mu.windowStart = o.issued
		}
		r.mu.windowBytes += t.Bytes
		delete(r.mu.missing, o.key)
	}
	r.mu.Unlock()
	switch {
	case err == nil:
		if t.From != "" {
			if sv, ok := s.registry().Get(t.From); ok && sv.State != registry.Dead {
				r.queueDelete(t.From, o.key, now)
			}
		}
		s.log.Info("shard rebuilt", "slice", t.Slice, "index", t.Index, "from", t.From, "to", t.Target, "bytes", t.Bytes)
	case masterpb.ErrnoOf(err) == syscall.ESTALE || masterpb.ErrnoOf(err) == syscall.ENOENT:
		r.queueDelete(t.Target, o.key, now)
	default:
		return err
	}
	return nil
}

// collectGarbage orders the deletion of garbage slices' shards wherever
// they are known to be, then drops the slices from the garbage list.
// Shards on servers that cannot be reached now are found later as
// surplus, when their servers report them.
func (r *repairer) collectGarbage(ctx context.Context, reg *registry.Registry, states map[string]repair.State, now time.Time) error {
	s := r.s
	garbage, err := s.fsm.ListGarbage(0, r.cfg.GCBatch)
	if err != nil || len(garbage) == 0 {
		return err
	}
	var acked []uint64
	for _, sl := range garbage {
		width := 0
		if l, err := wirelayout.FromProto(sl.Layout); err == nil {
			width = l.Shards()
		}
		holders := map[repair.Key]map[string]bool{}
		add := func(k repair.Key, srv string) {
			if holders[k] == nil {
				holders[k] = map[string]bool{}
			}
			holders[k][srv] = true
		}
		for _, sh := range sl.Shards {
			add(repair.Key{Slice: sl.Id, Index: sh.Index}, sh.ChunkserverId)
		}
		for i := range uint32(width) {
			for _, srv := range reg.Holders(registry.ShardID{Slice: sl.Id, Index: i}) {
				add(repair.Key{Slice: sl.Id, Index: i}, srv)
			}
		}
		queued := true
		for k, srvs := range holders {
			for srv := range srvs {
				if st := states[srv]; st == repair.Up || st == repair.Draining {
					queued = r.queueDelete(srv, k, now) && queued
				}
			}
		}
		if queued {
			acked = append(acked, sl.Id)
		}
	}
	if len(acked) == 0 {
		return nil
	}
	_, err = s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_AckGarbage{AckGarbage: &fsmpb.AckGarbage{SliceIds: acked}}})
	return err
}

// removeSurplus orders live servers to delete the shards they hold that
// no committed slice records there: shards of collected slices, and copies
// rebuilt elsewhere while their server was away or moved off by a drain.
func (r *repairer) removeSurplus(reg *registry.Registry, servers []registry.Server, now time.Time) error {
	s := r.s
	lookup := func(id uint64) (repair.Slice, repair.Record, error) {
		sl, err := s.fsm.GetSlice(id)
		if err != nil {
			var fe *fsm.Error
			if errors.As(err, &fe) && fe.Errno == syscall.ENOENT {
				return repair.Slice{}, repair.Gone, nil
			}
			return repair.Slice{}, repair.Gone, err
		}
		if !sl.Committed {
			return repair.Slice{}, repair.Pending, nil
		}
		rs, err := repairSlice(sl)
		return rs, repair.Committed, err
	}
	for _, sv := range servers {
		if sv.State != registry.Live || !sv.Reported {
			continue
		}
		r.mu.Lock()
		budget := r.cfg.MaxOrders - len(r.mu.orders)
		busy := make(map[repair.Key]bool, len(r.mu.busy))
		for k := range r.mu.busy {
			busy[k] = true
		}
		r.mu.Unlock()
		if budget <= 0 {
			return nil
		}
		held, err := reg.ShardsOn(sv.ID)
		if err != nil {
			continue // removed meanwhile
		}
		keys := make([]repair.Key, len(held))
		for i, h := range held {
			keys[i] = repair.Key{Slice: h.Slice, Index: h.Index}
		}
		surplus, err := repair.Surplus(sv.ID, keys, busy, lookup)
		if err != nil {
			return err
		}
		for _, k := range surplus[:min(len(surplus), budget)] {
			r.queueDelete(sv.ID, k, now)
		}
	}
	return nil
}

// status returns the latest scan's summary, per draining server how many
// recorded shards it still holds, and the rebuild rate in bytes per
// second since work last began (0 if unknown).
func (r *repairer) status() (repair.Summary, map[string]int, float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rate := 0.0
	if el := r.s.now().Sub(r.mu.windowStart).Seconds(); !r.mu.windowStart.IsZero() && el > 0 {
		rate = float64(r.mu.windowBytes) / el
	}
	return r.mu.last.summary, r.mu.last.holding, rate
}

// registerMetrics exports the repair progress; the returned function
// unregisters it.
func (r *repairer) registerMetrics() func() {
	labels := prometheus.Labels{"master": r.s.cfg.ID}
	get := func(fn func(sum repair.Summary, rate float64) float64) func() float64 {
		return func() float64 {
			sum, _, rate := r.status()
			return fn(sum, rate)
		}
	}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "repair", Name: "shards_at_risk",
			Help: "Shards to rebuild, at the latest repair scan.", ConstLabels: labels},
			get(func(s repair.Summary, _ float64) float64 { return float64(s.AtRisk) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "repair", Name: "bytes_left",
			Help: "Bytes of shards to rebuild or move, at the latest repair scan.", ConstLabels: labels},
			get(func(s repair.Summary, _ float64) float64 { return float64(s.BytesLeft) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "repair", Name: "slices_degraded",
			Help: "Slices missing shards but readable.", ConstLabels: labels},
			get(func(s repair.Summary, _ float64) float64 { return float64(s.Degraded) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "repair", Name: "slices_lost",
			Help: "Slices with fewer readable shards than a read needs.", ConstLabels: labels},
			get(func(s repair.Summary, _ float64) float64 { return float64(s.Lost) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "cairn", Subsystem: "repair", Name: "seconds_to_full_redundancy",
			Help: "Estimated time to full redundancy at the recent rebuild rate (-1: unknown).", ConstLabels: labels},
			get(func(s repair.Summary, rate float64) float64 { return eta(s.BytesLeft, rate) })),
	}
	var done []prometheus.Collector
	for _, c := range cs {
		if err := r.s.cfg.Registerer.Register(c); err == nil {
			done = append(done, c)
		}
	}
	return func() {
		for _, c := range done {
			r.s.cfg.Registerer.Unregister(c)
		}
	}
}

// eta is the estimated seconds to rebuild left bytes at rate, 0 when
// nothing is left and -1 when the rate is unknown.
func eta(left uint64, rate float64) float64 {
	switch {
	case left == 0:
		return 0
	case rate <= 0:
		return -1
	}
	return float64(left) / rate
}

// registryWarm refuses placement while the registry is refilling after a
// leader change: an empty registry would answer ENOSPC, or pick a layout
// for a cluster of no servers. Unavailable makes clients retry.
func (s *Server) registryWarm(op string) error {
	if s.warm() {
		return nil
	}
	return status.Errorf(codes.Unavailable, "master: %s: chunkserver registry refilling after a leader change; retry", op)
}

// fsckView is the cluster as repair sees it now, for fsck.
type fsckView struct {
	repair.View
	// corrupt maps shards reported unreadable to the server holding the
	// bad copy.
	corrupt map[repair.Key]string
	// unknown is the state of servers this leader has not heard from:
	// Unsure, or Down once silent for the dead-server grace under it.
	unknown repair.State
}

func (r *repairer) view() fsckView {
	reg := r.s.registry()
	v := fsckView{View: repair.View{Servers: map[string]repair.State{}, Bad: map[repair.Key]bool{}}, corrupt: map[repair.Key]string{}, unknown: repair.Unsure}
	for _, sv := range reg.Servers() {
		v.Servers[sv.ID] = stateOf(sv)
	}
	r.mu.Lock()
	for k, srv := range r.mu.corrupt {
		v.corrupt[k] = srv
	}
	r.mu.Unlock()
	if r.s.now().Sub(reg.Started()) >= r.s.regCfg.DeadAfter {
		v.unknown = repair.Down
	}
	return v
}

// warm reports whether the leader's registry has refilled: every
// chunkserver in the directory registered and reported, or the wait is
// over (see registry.Warm).
func (s *Server) warm() bool {
	reg := s.registry()
	if reg.IsWarm() {
		return true
	}
	dir, err := s.fsm.Chunkservers()
	if err != nil {
		return false
	}
	ids := make([]string, len(dir))
	for i, rec := range dir {
		ids[i] = rec.Id
	}
	return reg.Warm(ids)
}

// recordChunkserver adds a chunkserver to the directory in the replicated
// state (or updates its address), so that later leaders wait for it.
func (s *Server) recordChunkserver(ctx context.Context, id, addr string) error {
	dir, err := s.fsm.Chunkservers()
	if err != nil {
		return err
	}
	for _, rec := range dir {
		if rec.Id == id && rec.Address == addr {
			return nil
		}
	}
	_, err = s.propose(ctx, nil, &fsmpb.Command{Op: &fsmpb.Command_SetChunkserver{SetChunkserver: &fsmpb.SetChunkserver{Id: id, Address: addr}}})
	return err
}

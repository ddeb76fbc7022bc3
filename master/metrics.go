package master

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cairnfs/cairn/master/internal/registry"
)

// metrics are one master's Prometheus metrics, registered with
// Config.Registerer and labelled with the master's ID, so several masters
// in one process (tests, dfs up) keep theirs apart.
type metrics struct {
	commitSeconds prometheus.Histogram
	applySeconds  prometheus.Histogram
	batchSize     prometheus.Histogram
	readSeconds   prometheus.Histogram
	rpcs          *prometheus.CounterVec
	registered    []prometheus.Collector
}

func newMetrics(s *Server) (*metrics, error) {
	labels := prometheus.Labels{"master": s.cfg.ID}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "cairn", Subsystem: "master", Name: name, Help: help, ConstLabels: labels}
	}
	hist := func(name, help string, buckets []float64) prometheus.Histogram {
		o := opts(name, help)
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: o.Namespace, Subsystem: o.Subsystem,
			Name: o.Name, Help: o.Help, ConstLabels: o.ConstLabels, Buckets: buckets})
	}
	latency := prometheus.ExponentialBuckets(50e-6, 2, 16) // 50 µs .. 1.6 s
	m := &metrics{
		commitSeconds: hist("commit_seconds", "Time from proposing a group-commit entry to its results (leader).", latency),
		applySeconds:  hist("apply_seconds", "Time to apply one log entry to the state machine.", latency),
		batchSize:     hist("proposals_per_entry", "Commands per group-commit entry.", prometheus.ExponentialBuckets(1, 2, 11)),
		readSeconds:   hist("read_index_seconds", "Time a linearizable read waits for its read-index round.", latency),
		rpcs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "cairn", Subsystem: "master", Name: "rpcs_total",
			Help: "gRPC calls served, by method and status code.", ConstLabels: labels}, []string{"method", "code"}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		o := opts(name, help)
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts(o), f)
	}
	stat := func(pick func(st *statsView) uint64) func() float64 {
		return func() float64 {
			st, err := s.fsm.StatFS()
			if err != nil {
				return 0
			}
			return float64(pick(&statsView{st.Inodes, st.Directories, st.RegularFiles, st.LogicalBytes, st.CommittedSlices, st.PendingSlices, st.GarbageSlices}))
		}
	}
	liveness := func(want registry.State) func() float64 {
		return func() float64 {
			n := 0
			for _, sv := range s.registry().Servers() {
				if sv.State == want {
					n++
				}
			}
			return float64(n)
		}
	}
	collectors := []prometheus.Collector{
		m.commitSeconds, m.applySeconds, m.batchSize, m.readSeconds, m.rpcs,
		gauge("raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 {
			if r := s.raftNode(); r != nil {
				return float64(r.State())
			}
			return float64(raft.Shutdown)
		}),
		gauge("raft_term", "Current Raft term.", func() float64 {
			if r := s.raftNode(); r != nil {
				return float64(r.CurrentTerm())
			}
			return 0
		}),
		gauge("raft_commit_index", "Raft commit index.", func() float64 {
			if r := s.raftNode(); r != nil {
				return float64(r.CommitIndex())
			}
			return 0
		}),
		gauge("applied_index", "Highest log index the state machine has processed.", func() float64 { return float64(s.rfsm.lastIndex()) }),
		gauge("inodes", "Inodes in the namespace.", stat(func(v *statsView) uint64 { return v.inodes })),
		gauge("directories", "Directories in the namespace.", stat(func(v *statsView) uint64 { return v.dirs })),
		gauge("regular_files", "Regular files in the namespace.", stat(func(v *statsView) uint64 { return v.files })),
		gauge("logical_bytes", "Sum of regular files' sizes.", stat(func(v *statsView) uint64 { return v.bytes })),
		gauge("committed_slices", "Committed slices.", stat(func(v *statsView) uint64 { return v.committed })),
		gauge("pending_slices", "Allocated, uncommitted slices.", stat(func(v *statsView) uint64 { return v.pending })),
		gauge("garbage_slices", "Slices awaiting garbage collection.", stat(func(v *statsView) uint64 { return v.garbage })),
		gauge("chunkservers_live", "Registered chunkservers heartbeating on time (leader only).", liveness(registry.Live)),
		gauge("chunkservers_suspect", "Registered chunkservers that missed heartbeats (leader only).", liveness(registry.Suspect)),
		gauge("chunkservers_dead", "Registered chunkservers silent past the grace period (leader only).", liveness(registry.Dead)),
	}
	for _, c := range collectors {
		if err := s.cfg.Registerer.Register(c); err != nil {
			m.unregister(s.cfg.Registerer)
			return nil, fmt.Errorf("master: register metrics: %w", err)
		}
		m.registered = append(m.registered, c)
	}
	return m, nil
}

// unregister removes the master's collectors, so that a stopped master's
// gauges no longer read its closed stores and a restarted master in the
// same process can register its own.
func (m *metrics) unregister(reg prometheus.Registerer) {
	for _, c := range m.registered {
		reg.Unregister(c)
	}
	m.registered = nil
}

type statsView struct {
	inodes, dirs, files, bytes, committed, pending, garbage uint64
}

// unaryInterceptor counts calls by method and code.
func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	m.rpcs.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

func seconds(d time.Duration) float64 { return d.Seconds() }

package chunk

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one chunkserver's Prometheus collectors. Each Server has its
// own, registered with Config.Registerer, so several chunkservers can live in
// one process (tests, dfs up) without sharing counters.
type metrics struct {
	bytesIn      prometheus.Counter
	bytesOut     prometheus.Counter
	ops          *prometheus.CounterVec   // op, code
	latency      *prometheus.HistogramVec // op
	activeWrites prometheus.Gauge
	scrubBytes   prometheus.Counter
	scrubShards  prometheus.Counter
	scrubCorrupt prometheus.Counter
	scrubPasses  prometheus.Counter
	// rebuiltBytes counts bytes of shards stored by ReconstructShard.
	rebuiltBytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, id string) (*metrics, error) {
	labels := prometheus.Labels{"chunkserver": id}
	m := &metrics{
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "bytes_in_total",
			Help: "Shard bytes received by WriteShard.", ConstLabels: labels,
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "bytes_out_total",
			Help: "Shard bytes sent by ReadShard.", ConstLabels: labels,
		}),
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "ops_total",
			Help: "RPCs served, by operation and gRPC status code.", ConstLabels: labels,
		}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "op_seconds",
			Help: "RPC latency by operation.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"op"}),
		activeWrites: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "active_writes",
			Help: "WriteShard streams in progress.", ConstLabels: labels,
		}),
		scrubBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "scrub_bytes_total",
			Help: "Bytes re-verified by the scrubber.", ConstLabels: labels,
		}),
		scrubShards: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "scrub_shards_total",
			Help: "Shards re-verified by the scrubber.", ConstLabels: labels,
		}),
		scrubCorrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "scrub_corrupt_shards_total",
			Help: "Shards the scrubber found corrupt.", ConstLabels: labels,
		}),
		scrubPasses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "scrub_passes_total",
			Help: "Completed scrub passes over the whole store.", ConstLabels: labels,
		}),
		rebuiltBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "cairn", Subsystem: "chunk", Name: "rebuilt_bytes_total",
			Help: "Bytes of shards rebuilt or copied here by repair.", ConstLabels: labels,
		}),
	}
	for _, c := range []prometheus.Collector{m.bytesIn, m.bytesOut, m.ops, m.latency, m.activeWrites, m.scrubBytes, m.scrubShards, m.scrubCorrupt, m.scrubPasses, m.rebuiltBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// reportVersion is bumped when the JSON form changes incompatibly;
// --compare refuses reports of another version.
const reportVersion = 1

// Report is everything one run measured. It is written as JSON and
// rendered as the table and the HTML report.
type Report struct {
	Version int       `json:"version"`
	Started time.Time `json:"started"`
	// Seconds is the run's wall time, cluster start and clean-up included.
	Seconds float64 `json:"seconds"`
	Command string  `json:"command"`
	// Target describes the cluster driven ("local: 1 master, 7
	// chunkservers" or the masters' addresses) and Layout the layout
	// policy of the benchmark directory.
	Target    string     `json:"target"`
	Layout    string     `json:"layout"`
	Clients   int        `json:"clients"`
	Machine   Machine    `json:"machine"`
	Baselines []Baseline `json:"baselines"`
	Results   []Result   `json:"results"`
}

// Baseline is one measurement of the machine without Cairn.
type Baseline struct {
	// Name is the key results refer to ("disk-write").
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Note says what exactly was measured.
	Note string `json:"note"`
}

// Result statuses.
const (
	statusOK = "ok"
	// statusNA marks a workload that could not run here (a front end not
	// wired, a feature the cluster lacks, a flag not given); Note says why.
	statusNA = "n/a"
	// statusFailed marks a workload that ran and failed; Note holds the
	// error. A run with a failure exits non-zero.
	statusFailed = "failed"
)

// Result is one figure of one workload.
type Result struct {
	Workload string `json:"workload"`
	Op       string `json:"op"`
	Status   string `json:"status"`
	// Value is the throughput in Unit ("MB/s", "ops/s", or "s" for the
	// repair time).
	Value float64 `json:"value,omitempty"`
	Unit  string  `json:"unit,omitempty"`
	// Count and Bytes are the operations and bytes behind Value, done in
	// Seconds of wall time.
	Count   int64   `json:"count,omitempty"`
	Bytes   int64   `json:"bytes,omitempty"`
	Seconds float64 `json:"seconds,omitempty"`
	// CPUSeconds is the CPU time the bench process used meanwhile: the
	// client's, and with --local the whole cluster's too.
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// Latency percentiles of single operations, for per-operation
	// workloads.
	Latency *Latency `json:"latency,omitempty"`
	// Baseline names the baseline Value is compared with, and Percent is
	// Value as a percentage of it.
	Baseline string  `json:"baseline,omitempty"`
	Percent  float64 `json:"percent,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// Cores is the CPU time per wall second the figure cost, or "-".
func (r Result) Cores() string {
	if r.Seconds <= 0 || r.CPUSeconds <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", r.CPUSeconds/r.Seconds)
}

// Key identifies a figure across runs.
func (r Result) Key() string { return r.Workload + "/" + r.Op }

// Latency holds percentiles in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P95 float64 `json:"p95_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

// baseline returns the baseline named name, if measured.
func (r *Report) baseline(name string) (Baseline, bool) {
	for _, b := range r.Baselines {
		if b.Name == name && b.Value > 0 {
			return b, true
		}
	}
	return Baseline{}, false
}

// relate fills in every result's Percent from its baseline.
func (r *Report) relate() {
	for i := range r.Results {
		res := &r.Results[i]
		if b, ok := r.baseline(res.Baseline); ok && res.Status == statusOK && res.Unit == b.Unit {
			res.Percent = 100 * res.Value / b.Value
		}
	}
}

// failed returns the figures that failed.
func (r *Report) failed() []Result {
	var out []Result
	for _, res := range r.Results {
		if res.Status == statusFailed {
			out = append(out, res)
		}
	}
	return out
}

// writeJSON writes r to path.
func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// readReport reads a JSON report written by writeJSON.
func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Version != reportVersion {
		return nil, fmt.Errorf("%s: report version %d, want %d", path, r.Version, reportVersion)
	}
	return &r, nil
}

// writeTable prints the machine, the baselines and the results.
func (r *Report) writeTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "Cairn benchmark  %s  (%s)\n", r.Started.UTC().Format(time.RFC3339), r.Command)
	fmt.Fprintf(w, "target   %s; layout %s; %d clients\n", r.Target, r.Layout, r.Clients)
	fmt.Fprintf(w, "machine  %s, %d cores (%s), %s RAM, kernel %s, %s, commit %s\n",
		m.CPUModel, m.Cores, strings.Join(m.KeyFlags, " "), human(m.MemoryBytes), m.Kernel, m.GoVersion, m.Commit)
	fmt.Fprintf(w, "disk     %s\n\n", m.Disk)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BASELINE\tRESULT\tWHAT")
	for _, b := range r.Baselines {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", b.Name, formatValue(b.Value, b.Unit), b.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)

	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKLOAD\tOP\tRESULT\tp50 ms\tp95 ms\tp99 ms\tCORES\tOF BASELINE")
	for _, res := range r.Results {
		if res.Status != statusOK {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t%s\n", res.Workload, res.Op, res.Status, res.Note)
			continue
		}
		p50, p95, p99 := "-", "-", "-"
		if l := res.Latency; l != nil {
			p50, p95, p99 = fmtMs(l.P50), fmtMs(l.P95), fmtMs(l.P99)
		}
		var rel []string
		if b, ok := r.baseline(res.Baseline); ok && res.Percent > 0 {
			rel = append(rel, fmt.Sprintf("%.1f%% of %s (%s)", res.Percent, b.Name, formatValue(b.Value, b.Unit)))
		}
		if res.Note != "" {
			rel = append(rel, res.Note)
		}
		if len(rel) == 0 {
			rel = append(rel, "-")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Workload, res.Op, formatValue(res.Value, res.Unit), p50, p95, p99, res.Cores(), strings.Join(rel, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nCORES: CPU seconds per second this process used during the figure (%s), of %d.\n", r.cpuScope(), m.Cores)
	return err
}

// cpuScope says whose CPU time CPUSeconds counts.
func (r *Report) cpuScope() string {
	if strings.HasPrefix(r.Target, "local") {
		return "the clients and the whole local cluster"
	}
	return "the clients only"
}

// formatValue writes a figure with a sensible number of digits.
func formatValue(v float64, unit string) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f", ms)
	case ms >= 1:
		return fmt.Sprintf("%.2f", ms)
	}
	return fmt.Sprintf("%.3f", ms)
}

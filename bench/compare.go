package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// figure is one comparable number of a report.
type figure struct {
	key   string
	value float64
	unit  string
	// lowerIsBetter marks latencies and durations, where a drop is an
	// improvement.
	lowerIsBetter bool
}

// figures lists every number of r that runs can be compared on:
// baselines, throughputs and latency percentiles of the figures that ran.
func figures(r *Report) []figure {
	var out []figure
	for _, b := range r.Baselines {
		out = append(out, figure{key: "baseline/" + b.Name, value: b.Value, unit: b.Unit})
	}
	for _, res := range r.Results {
		if res.Status != statusOK {
			continue
		}
		out = append(out, figure{key: res.Key(), value: res.Value, unit: res.Unit, lowerIsBetter: res.Unit == "s"})
		if l := res.Latency; l != nil {
			out = append(out,
				figure{key: res.Key() + " p50", value: l.P50, unit: "ms", lowerIsBetter: true},
				figure{key: res.Key() + " p95", value: l.P95, unit: "ms", lowerIsBetter: true},
				figure{key: res.Key() + " p99", value: l.P99, unit: "ms", lowerIsBetter: true})
		}
	}
	return out
}

// writeComparison prints, for every figure of cur, the old value, the new
// one and the change in percent, marked better or worse; figures only one
// of the reports has are listed as such.
func writeComparison(w io.Writer, old, cur *Report) error {
	prev := map[string]figure{}
	for _, f := range figures(old) {
		prev[f.key] = f
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tOLD\tNEW\tCHANGE")
	seen := map[string]bool{}
	for _, f := range figures(cur) {
		seen[f.key] = true
		p, ok := prev[f.key]
		switch {
		case !ok:
			fmt.Fprintf(tw, "%s\t-\t%s\tnew\n", f.key, formatValue(f.value, f.unit))
		case p.unit != f.unit:
			fmt.Fprintf(tw, "%s\t%s\t%s\tunits differ\n", f.key, formatValue(p.value, p.unit), formatValue(f.value, f.unit))
		default:
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.key, formatValue(p.value, p.unit), formatValue(f.value, f.unit), change(p.value, f.value, f.lowerIsBetter))
		}
	}
	for _, f := range figures(old) {
		if !seen[f.key] {
			fmt.Fprintf(tw, "%s\t%s\t-\tnot measured now\n", f.key, formatValue(f.value, f.unit))
		}
	}
	return tw.Flush()
}

// change formats the relative change from old to cur.
func change(old, cur float64, lowerIsBetter bool) string {
	if old == 0 {
		return "n/a (old is 0)"
	}
	pct := 100 * (cur - old) / old
	verdict := ""
	switch better := (pct > 0) != lowerIsBetter; {
	case pct == 0:
	case better:
		verdict = " better"
	default:
		verdict = " worse"
	}
	return fmt.Sprintf("%+.1f%%%s", pct, verdict)
}

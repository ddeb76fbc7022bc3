package main

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"os"
	"strings"
	"time"
)

// writeHTML writes r as one self-contained HTML page: tables and inline
// SVG charts, no script, no style sheet or font from the network.
func writeHTML(path string, r *Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	data := struct {
		R                       *Report
		Started                 string
		Throughput, Rates, Lat  template.HTML
		Durations               template.HTML
		HasThroughput, HasRates bool
		HasLatency, HasDuration bool
		PercentOf               func(Result) string
		Fmt                     func(float64, string) string
		Ms                      func(float64) string
		KeyFlags, AllFlags, Mem string
		WallTime, CPUScope      string
	}{R: r, Started: r.Started.UTC().Format(time.RFC3339), Fmt: formatValue, Ms: fmtMs,
		KeyFlags: strings.Join(r.Machine.KeyFlags, " "), AllFlags: strings.Join(r.Machine.CPUFlags, " "),
		Mem: human(r.Machine.MemoryBytes), WallTime: fmt.Sprintf("%.0f s", r.Seconds), CPUScope: r.cpuScope()}
	data.PercentOf = func(res Result) string {
		if b, ok := r.baseline(res.Baseline); ok && res.Percent > 0 {
			return fmt.Sprintf("%.1f%% of %s (%s)", res.Percent, b.Name, formatValue(b.Value, b.Unit))
		}
		return ""
	}
	var mb, ops, lat, dur []chartRow
	for _, res := range r.Results {
		if res.Status != statusOK {
			continue
		}
		label := res.Workload + " " + res.Op
		marker := 0.0
		if b, ok := r.baseline(res.Baseline); ok && b.Unit == res.Unit {
			marker = b.Value
		}
		switch res.Unit {
		case "MB/s":
			mb = append(mb, chartRow{label: label, workload: res.Workload, values: []float64{res.Value}, marker: marker})
		case "ops/s":
			ops = append(ops, chartRow{label: label, workload: res.Workload, values: []float64{res.Value}, marker: marker})
		case "s":
			// Repair's time to full redundancy: the figure a fast
			// rebuild may leave as the workload's only one.
			dur = append(dur, chartRow{label: label, workload: res.Workload, values: []float64{res.Value}})
		}
		if l := res.Latency; l != nil {
			lat = append(lat, chartRow{label: label, workload: res.Workload, values: []float64{l.P50, l.P95, l.P99}})
		}
	}
	one := []chartSeries{{name: "result", color: "#3b6ea5"}}
	data.Throughput = template.HTML(hbarSVG("Throughput (MB/s); the grey line is the figure's baseline", "MB/s", one, mb, false))
	data.Rates = template.HTML(hbarSVG("Operations per second (log scale); the grey line is the figure's baseline", "ops/s", one, ops, true))
	data.Lat = template.HTML(hbarSVG("Latency percentiles (ms, log scale)", "ms",
		[]chartSeries{{"p50", "#5b9bd5"}, {"p95", "#ed7d31"}, {"p99", "#c0392b"}}, lat, true))
	data.Durations = template.HTML(hbarSVG("Durations (s)", "s", one, dur, false))
	data.HasThroughput, data.HasRates, data.HasLatency, data.HasDuration = len(mb) > 0, len(ops) > 0, len(lat) > 0, len(dur) > 0
	if err := pageTemplate().Execute(f, data); err != nil {
		f.Close()
		return fmt.Errorf("html report: %w", err)
	}
	return f.Close()
}

// chartSeries is one value column of a chart (one bar per row).
type chartSeries struct{ name, color string }

// chartRow is one labelled group of bars, with an optional marker (the
// baseline) drawn as a vertical line.
type chartRow struct {
	label, workload string
	values          []float64
	marker          float64
}

// hbarSVG draws a horizontal bar chart. With logScale the axis runs over
// whole powers of ten, so that figures orders of magnitude apart stay
// readable side by side.
func hbarSVG(title, unit string, series []chartSeries, rows []chartRow, logScale bool) string {
	const (
		labelW, plotW, valueW = 230, 440, 90
		barH, gap, top        = 13, 9, 42
	)
	if len(rows) == 0 {
		return ""
	}
	lo, hi := math.Inf(1), 0.0
	for _, r := range rows {
		for _, v := range r.values {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		hi = max(hi, r.marker)
	}
	if hi <= 0 {
		hi, lo = 1, 1
	}
	var scale func(float64) float64
	var ticks []float64
	if logScale {
		l, h := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if h <= l {
			h = l + 1
		}
		scale = func(v float64) float64 {
			if v <= 0 {
				return 0
			}
			return max(0, (math.Log10(v)-l)/(h-l)) * plotW
		}
		for e := l; e <= h; e++ {
			ticks = append(ticks, math.Pow(10, e))
		}
	} else {
		step := niceStep(hi / 5)
		top := math.Ceil(hi/step) * step
		scale = func(v float64) float64 { return v / top * plotW }
		for t := 0.0; t <= top+step/2; t += step {
			ticks = append(ticks, t)
		}
	}
	rowH := len(series)*barH + gap
	legendH := 0
	if len(series) > 1 {
		legendH = 18
	}
	height := top + legendH + len(rows)*rowH + 24
	width := labelW + plotW + valueW
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`, width, height, width, height, html.EscapeString(title))
	fmt.Fprintf(&b, `<text x="0" y="16" font-size="14" font-weight="bold">%s</text>`, html.EscapeString(title))
	if legendH > 0 {
		for i, s := range series {
			x := labelW + i*80
			fmt.Fprintf(&b, `<rect x="%d" y="26" width="12" height="12" fill="%s"/><text x="%d" y="36" font-size="12">%s</text>`, x, s.color, x+16, html.EscapeString(s.name))
		}
	}
	y0 := top + legendH
	plotBottom := y0 + len(rows)*rowH
	for _, t := range ticks {
		x := float64(labelW) + scale(t)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, x, y0-4, x, plotBottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle" fill="#555">%s</text>`, x, plotBottom+14, tickLabel(t))
	}
	for i, r := range rows {
		y := y0 + i*rowH
		fmt.Fprintf(&b, `<g data-workload="%s">`, html.EscapeString(r.workload))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="end">%s</text>`, labelW-8, y+len(series)*barH/2+4, html.EscapeString(r.label))
		for j, v := range r.values {
			s := series[j%len(series)]
			by := y + j*barH
			w := scale(v)
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`,
				labelW, by, w, barH-2, s.color, html.EscapeString(r.label), html.EscapeString(s.name), html.EscapeString(formatValue(v, unit)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" fill="#333">%s</text>`, float64(labelW)+w+4, by+barH-3, html.EscapeString(formatValue(v, unit)))
		}
		if r.marker > 0 {
			x := float64(labelW) + scale(r.marker)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#777" stroke-width="2"><title>baseline %s</title></line>`,
				x, y-2, x, y+len(series)*barH, html.EscapeString(formatValue(r.marker, unit)))
		}
		b.WriteString(`</g>`)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

// pageTemplate is the report page.
func pageTemplate() *template.Template {
	return template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Cairn benchmark {{.Started}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; font-size: 13px; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.na td, tr.failed td { color: #888; }
tr.failed td.status { color: #c0392b; font-weight: bold; }
code { font-size: 12px; }
details { font-size: 12px; }
</style>
</head>
<body>
<h1>Cairn benchmark</h1>
<p>Run {{.Started}}, {{.WallTime}}: <code>{{.R.Command}}</code></p>
<h2>Machine and target</h2>
<table>
<tr><th>target</th><td>{{.R.Target}}</td></tr>
<tr><th>layout</th><td>{{.R.Layout}}; {{.R.Clients}} clients</td></tr>
<tr><th>CPU</th><td>{{.R.Machine.CPUModel}}, {{.R.Machine.Cores}} cores; {{.KeyFlags}}<details><summary>all flags</summary>{{.AllFlags}}</details></td></tr>
<tr><th>memory</th><td>{{.Mem}}</td></tr>
<tr><th>disk</th><td>{{.R.Machine.Disk}}</td></tr>
<tr><th>kernel</th><td>{{.R.Machine.Kernel}} ({{.R.Machine.OS}})</td></tr>
<tr><th>Go</th><td>{{.R.Machine.GoVersion}}</td></tr>
<tr><th>commit</th><td>{{.R.Machine.Commit}}</td></tr>
</table>
<h2>Baselines</h2>
<table>
<tr><th>baseline</th><th>result</th><th>what was measured</th></tr>
{{range .R.Baselines}}<tr><td>{{.Name}}</td><td class="num">{{call $.Fmt .Value .Unit}}</td><td>{{.Note}}</td></tr>
{{end}}</table>
<h2>Results</h2>
<table>
<tr><th>workload</th><th>op</th><th>status</th><th>result</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>cores</th><th>of baseline</th><th>note</th></tr>
{{range .R.Results}}<tr class="{{if eq .Status "ok"}}ok{{else if eq .Status "n/a"}}na{{else}}failed{{end}}" data-workload="{{.Workload}}"><td>{{.Workload}}</td><td>{{.Op}}</td><td class="status">{{.Status}}</td>
{{- if eq .Status "ok"}}<td class="num">{{call $.Fmt .Value .Unit}}</td>{{with .Latency}}<td class="num">{{call $.Ms .P50}}</td><td class="num">{{call $.Ms .P95}}</td><td class="num">{{call $.Ms .P99}}</td>{{else}}<td></td><td></td><td></td>{{end}}<td class="num">{{.Cores}}</td><td>{{call $.PercentOf .}}</td>{{else}}<td></td><td></td><td></td><td></td><td></td><td></td>{{end}}<td>{{.Note}}</td></tr>
{{end}}</table>
<p>cores: CPU seconds per second the benchmark process used during the figure ({{.CPUScope}}), of {{.R.Machine.Cores}}.</p>
<h2>Charts</h2>
{{if .HasThroughput}}<figure>{{.Throughput}}</figure>{{end}}
{{if .HasRates}}<figure>{{.Rates}}</figure>{{end}}
{{if .HasLatency}}<figure>{{.Lat}}</figure>{{end}}
{{if .HasDuration}}<figure>{{.Durations}}</figure>{{end}}
</body>
</html>
`))
}

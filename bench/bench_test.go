package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/html"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/internal/cluster"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeS3 is the smallest S3 server the S3 workload needs: path-style
// buckets and objects, PUT, GET and DELETE, no authentication. It records
// what is left so the test can check the workload cleans up.
type fakeS3 struct {
	mu struct {
		sync.Mutex
		buckets map[string]map[string][]byte
	}
}

func newFakeS3() *fakeS3 {
	f := &fakeS3{}
	f.mu.buckets = map[string]map[string][]byte{}
	return f
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	objs, ok := f.mu.buckets[bucket]
	switch {
	case r.Method == http.MethodPut && key == "":
		f.mu.buckets[bucket] = map[string][]byte{}
	case !ok:
		http.Error(w, "<Error><Code>NoSuchBucket</Code></Error>", http.StatusNotFound)
	case r.Method == http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		objs[key] = b
	case r.Method == http.MethodGet && key != "":
		b, ok := objs[key]
		if !ok {
			http.Error(w, "<Error><Code>NoSuchKey</Code></Error>", http.StatusNotFound)
			return
		}
		w.Write(b)
	case r.Method == http.MethodDelete && key != "":
		delete(objs, key)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodDelete:
		if len(objs) > 0 {
			http.Error(w, "<Error><Code>BucketNotEmpty</Code></Error>", http.StatusConflict)
			return
		}
		delete(f.mu.buckets, bucket)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "not implemented", http.StatusNotImplemented)
	}
}

func (f *fakeS3) bucketCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.mu.buckets)
}

// TestTinyRun runs every workload in miniature on a local cluster, with a
// plain directory standing in for the FUSE mount and a fake S3 server,
// and checks the three outputs and that nothing written is left behind.
func TestTinyRun(t *testing.T) {
	// The local run mounts its cluster through FUSE and starts an S3
	// gateway on it, so the front-end workloads run against the real
	// thing.
	// The report directory does not exist yet: run makes it.
	out, work := filepath.Join(t.TempDir(), "reports", "tiny"), t.TempDir()
	cfg := Config{
		Local: true, Size: 3 << 20, Clients: 2, Files: 12, Ops: 12,
		WorkDir: work, OutDir: out, BaselineSize: 1 << 20, FsyncDuration: 50 * time.Millisecond,
		RepairNotice: 10 * time.Second, RepairTimeout: time.Minute, DeadAfter: 2 * time.Second, Command: "bench test",
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, log bytes.Buffer
	rep, err := run(ctx, cfg, &stdout, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stdout.String())
	}
	t.Logf("table:\n%s", stdout.String())

	// JSON: parses, has every workload, nothing failed, percentages set.
	b, err := os.ReadFile(filepath.Join(out, DefaultOutName+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if len(got.Results) != len(rep.Results) || len(got.Baselines) != 7 {
		t.Errorf("JSON has %d results and %d baselines, run returned %d results", len(got.Results), len(got.Baselines), len(rep.Results))
	}
	byWorkload := map[string][]Result{}
	for _, r := range got.Results {
		byWorkload[r.Workload] = append(byWorkload[r.Workload], r)
		if r.Status == statusFailed {
			t.Errorf("%s failed: %s", r.Key(), r.Note)
		}
		if r.Status == statusOK && r.Baseline != "" && r.Percent <= 0 {
			t.Errorf("%s: no percentage of baseline %s", r.Key(), r.Baseline)
		}
		if r.Status == statusOK && r.Value <= 0 {
			t.Errorf("%s: value %v", r.Key(), r.Value)
		}
	}
	for _, w := range workloadNames() {
		rs := byWorkload[w]
		if len(rs) == 0 {
			t.Errorf("JSON report lacks workload %s", w)
			continue
		}
		// Repair is the only workload this cluster may lack.
		if w != "repair" && rs[0].Status != statusOK {
			t.Errorf("workload %s: %s %s", w, rs[0].Status, rs[0].Note)
		}
	}
	smallFiles := false
	for _, r := range byWorkload["fuse"] {
		smallFiles = smallFiles || (r.Op == "small files 4KiB" && r.Status == statusOK)
		if r.Op == "rand write 4KiB" {
			// Every byte reaches the disk at least once (three times as
			// replicas), and the local cluster's writes are the process's.
			var amp float64
			if i := strings.Index(r.Note, "the cluster wrote "); i < 0 {
				t.Errorf("fuse rand write: no write amplification in %q", r.Note)
			} else if _, err := fmt.Sscanf(r.Note[i:], "the cluster wrote %fx", &amp); err != nil || amp < 1 {
				t.Errorf("fuse rand write: amplification %v (%v) in %q", amp, err, r.Note)
			}
		}
	}
	if !smallFiles {
		t.Error("no fuse small-files figure")
	}
	for _, op := range []string{"mkdir", "create", "stat", "readdir", "rename", "unlink"} {
		found := false
		for _, r := range byWorkload["meta"] {
			if r.Op == op {
				found = true
				if l := r.Latency; l == nil || l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max {
					t.Errorf("meta %s: latencies %+v", op, r.Latency)
				}
			}
		}
		if !found {
			t.Errorf("no meta %s figure", op)
		}
	}

	// HTML: parses, names each workload in the results table and in a
	// chart, and its SVG charts are well-formed XML.
	hb, err := os.ReadFile(filepath.Join(out, DefaultOutName+".html"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(bytes.NewReader(hb))
	if err != nil {
		t.Fatalf("HTML report: %v", err)
	}
	rows, charted := map[string]bool{}, map[string]bool{}
	for n := range doc.Descendants() {
		for _, a := range n.Attr {
			if a.Key == "data-workload" {
				switch n.Data {
				case "tr":
					rows[a.Val] = true
				case "g":
					charted[a.Val] = true
				}
			}
		}
	}
	for w, rs := range byWorkload {
		if !rows[w] {
			t.Errorf("HTML results table lacks %s", w)
		}
		if rs[0].Status == statusOK && !charted[w] {
			t.Errorf("HTML charts lack %s", w)
		}
	}
	svgs := 0
	for rest := string(hb); ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated <svg>")
		}
		svg := rest[i : i+j+len("</svg>")]
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("SVG chart %d: %v", svgs, err)
			}
		}
		svgs++
		rest = rest[i+j:]
	}
	// Durations come from repair alone, which this cluster may lack.
	wantSVGs := 3
	for _, r := range byWorkload["repair"] {
		if r.Status == statusOK && r.Unit == "s" {
			wantSVGs = 4
		}
	}
	if svgs != wantSVGs {
		t.Errorf("%d SVG charts, want %d (throughput, rates, latency, and durations if repair ran)", svgs, wantSVGs)
	}
	if strings.Contains(string(hb), "http://") && strings.Count(string(hb), "http://") != strings.Count(string(hb), `xmlns="http://www.w3.org/2000/svg"`) {
		t.Error("HTML report refers to the network")
	}

	// Table on stdout names every workload.
	for _, w := range workloadNames() {
		if !strings.Contains(stdout.String(), "\n"+w+" ") {
			t.Errorf("table lacks %s:\n%s", w, stdout.String())
		}
	}

	// Nothing left behind.
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("%s left behind: %v", work, ents)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {95, 95 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0.5, time.Millisecond}} {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
	var l latencies
	if l.summary() != nil {
		t.Error("summary of nothing is not nil")
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "4KiB": 4096, "1G": 1 << 30, "2MB": 2e6, "100": 100, "1.5GiB": 3 << 29} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1MiB", "lots"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

func TestValidate(t *testing.T) {
	for name, cfg := range map[string]Config{
		"neither":   {},
		"both":      {Local: true, Masters: []string{"a:1"}},
		"workload":  {Local: true, Workloads: []string{"seq", "bogus"}},
		"layout":    {Local: true, Layout: "RS(40,2)"},
		"s3 no key": {Local: true, S3URL: "http://x"},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cfg := Config{Masters: []string{"a:1"}, Layout: "rs(6,3)"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Layout != "RS(6,3)" || cfg.Size != DefaultSize || len(cfg.Workloads) != len(workloadNames()) {
		t.Errorf("defaults not filled: %+v", cfg)
	}
}

// TestOutIsAFile: a report directory that cannot be made fails the run
// at once, before anything is measured.
func TestOutIsAFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "taken")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Local: true, OutDir: file, WorkDir: t.TempDir()}
	start := time.Now()
	var stdout bytes.Buffer
	_, err := run(context.Background(), cfg, &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--out") {
		t.Fatalf("run with a file as --out: %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("the run started anyway (%s), output:\n%s", time.Since(start), stdout.String())
	}
}

func TestCompare(t *testing.T) {
	old := &Report{
		Baselines: []Baseline{{Name: baseDiskWrite, Value: 100, Unit: "MB/s"}},
		Results: []Result{
			{Workload: "seq", Op: "write", Status: statusOK, Value: 50, Unit: "MB/s"},
			{Workload: "meta", Op: "stat", Status: statusOK, Value: 1000, Unit: "ops/s", Latency: &Latency{P50: 2, P95: 4, P99: 8}},
			{Workload: "gone", Op: "x", Status: statusOK, Value: 1, Unit: "MB/s"},
		},
	}
	cur := &Report{
		Baselines: []Baseline{{Name: baseDiskWrite, Value: 100, Unit: "MB/s"}},
		Results: []Result{
			{Workload: "seq", Op: "write", Status: statusOK, Value: 75, Unit: "MB/s"},
			{Workload: "meta", Op: "stat", Status: statusOK, Value: 500, Unit: "ops/s", Latency: &Latency{P50: 1, P95: 4, P99: 16}},
			{Workload: "fresh", Op: "y", Status: statusOK, Value: 3, Unit: "ops/s"},
		},
	}
	var b strings.Builder
	if err := writeComparison(&b, old, cur); err != nil {
		t.Fatal(err)
	}
	lines := map[string]string{}
	for l := range strings.SplitSeq(b.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[strings.Join(f[:min(2, len(f))], " ")] = l
		}
	}
	for key, want := range map[string]string{
		"seq/write 50.0":          "+50.0% better",
		"meta/stat 1000":          "-50.0% worse",
		"meta/stat p50":           "-50.0% better",
		"meta/stat p99":           "+100.0% worse",
		"baseline/disk-write 100": "+0.0%",
		"fresh/y -":               "new",
		"gone/x 1.00":             "not measured now",
	} {
		if !strings.Contains(lines[key], want) {
			t.Errorf("comparison line %q = %q, want it to contain %q\n%s", key, lines[key], want, b.String())
		}
	}
}

func TestPatternReaderSeek(t *testing.T) {
	pattern := patternBlock()
	r := newPatternReader(pattern, 3, 3<<20+5)
	all, err := io.ReadAll(r)
	if err != nil || len(all) != 3<<20+5 {
		t.Fatalf("read %d bytes, %v", len(all), err)
	}
	if err := checkBlock(all[1<<20:2<<20], pattern, 3, 1); err != nil {
		t.Error(err)
	}
	if _, err := r.Seek(2<<20+7, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if !bytes.Equal(rest, all[2<<20+7:]) {
		t.Error("read after seek differs")
	}
	if _, err := (&verifyWriter{want: newPatternReader(pattern, 3, int64(len(all)))}).Write(all); err != nil {
		t.Error(err)
	}
	all[100] ^= 1
	if _, err := (&verifyWriter{want: newPatternReader(pattern, 3, int64(len(all)))}).Write(all); err == nil {
		t.Error("verifyWriter accepted a flipped byte")
	}
}

// TestRunningCluster drives a cluster the run did not start (--master):
// the workloads that must stop a chunkserver are reported as not
// available, the others run, a failing workload (an S3 endpoint that
// refuses every request) is recorded as failed and fails the run with the
// reports still written, and the run's directory is removed from the
// namespace afterwards.
func TestRunningCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := cluster.Start(ctx, cluster.Config{Dir: t.TempDir(), Chunkservers: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, "<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
	}))
	defer refuse.Close()
	out := t.TempDir()
	cfg := Config{
		Masters: c.MasterAddrs(), Workloads: []string{"seq", "degraded", "meta", "fuse", "s3", "repair"},
		Size: 1 << 20, Clients: 1, Ops: 5, WorkDir: t.TempDir(), OutDir: out,
		S3URL: refuse.URL, S3AccessKey: "k", S3SecretKey: "s",
		BaselineSize: 1 << 20, FsyncDuration: 20 * time.Millisecond,
	}
	rep, err := run(ctx, cfg, io.Discard, io.Discard)
	refuse.CloseClientConnections()
	if err == nil || !strings.Contains(err.Error(), "s3") {
		t.Errorf("run with a failing S3 workload: %v", err)
	}
	if rep == nil {
		t.Fatal("no report")
	}
	if _, err := readReport(filepath.Join(out, DefaultOutName+".json")); err != nil {
		t.Errorf("JSON report of a failed run: %v", err)
	}
	status := map[string]Result{}
	for _, r := range rep.Results {
		if _, seen := status[r.Workload]; !seen {
			status[r.Workload] = r
		}
	}
	for w, want := range map[string]string{"seq": statusOK, "meta": statusOK, "degraded": statusNA, "repair": statusNA, "fuse": statusNA, "s3": statusFailed} {
		if got := status[w]; got.Status != want {
			t.Errorf("%s: %s (%s), want %s", w, got.Status, got.Note, want)
		}
	}
	if !strings.Contains(status["fuse"].Note, "--mount") || !strings.Contains(status["degraded"].Note, "--local") {
		t.Errorf("unavailable workloads do not say why: %q, %q", status["fuse"].Note, status["degraded"].Note)
	}
	cl, err := client.Dial(ctx, client.ClientConfig{Masters: c.MasterAddrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ents, err := cl.ReadDir(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("left in the namespace: %v", ents)
	}
}

func TestProgress(t *testing.T) {
	var term, log bytes.Buffer
	p := &progress{on: true, out: &term, log: &log}
	b := p.start("seq: write", 100, "B")
	b.add(40)
	b.done()
	if !strings.Contains(term.String(), "seq: write") || !strings.Contains(term.String(), "[") || !strings.HasSuffix(term.String(), "\r") {
		t.Errorf("terminal output %q", term.String())
	}
	if log.Len() != 0 {
		t.Errorf("log written while drawing bars: %q", log.String())
	}

	term.Reset()
	p = &progress{on: false, out: &term, log: &log}
	b = p.start("seq: read", 100, "B")
	b.add(100)
	b.done()
	if term.Len() != 0 || log.String() != "bench: seq: read\n" {
		t.Errorf("without a terminal: stdout %q, log %q", term.String(), log.String())
	}
}

func TestChartEdgeCases(t *testing.T) {
	one := []chartSeries{{"result", "#000"}}
	if s := hbarSVG("t", "MB/s", one, nil, false); s != "" {
		t.Errorf("chart of nothing: %q", s)
	}
	for _, logScale := range []bool{false, true} {
		s := hbarSVG("t <&>", "ops/s", one, []chartRow{{label: "a<b", workload: "w", values: []float64{0}}, {label: "c", workload: "w", values: []float64{0.001}, marker: 5e4}}, logScale)
		if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
			t.Errorf("log %v: chart has NaN or Inf: %s", logScale, s)
		}
		dec := xml.NewDecoder(strings.NewReader(s))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("log %v: %v\n%s", logScale, err, s)
			}
		}
	}
}

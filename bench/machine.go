package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine describes the computer a run measured, so that figures from
// different runs can be told apart.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	// CPUFlags are every flag /proc/cpuinfo lists; KeyFlags the ones that
	// decide Cairn's CPU-bound speeds (SIMD for Reed-Solomon, SHA-NI).
	CPUFlags    []string `json:"cpu_flags"`
	KeyFlags    []string `json:"key_flags"`
	Cores       int      `json:"cores"`
	MemoryBytes int64    `json:"memory_bytes"`
	// Disk describes the file system and device holding the work
	// directory (where the local cluster and the disk baseline write).
	Disk      string `json:"disk"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	GoVersion string `json:"go_version"`
	// Commit is the source revision, "+dirty" when it had local changes.
	Commit   string `json:"commit"`
	Hostname string `json:"hostname"`
}

// keyFlags are the CPU flags worth showing next to the results.
func keyFlags() []string {
	return []string{"sse4_2", "avx", "avx2", "avx512f", "avx512bw", "gfni", "sha_ni", "aes", "pclmulqdq", "asimd", "sha2"}
}

// probeMachine gathers what it can; a missing piece reads "unknown"
// rather than failing the run.
func probeMachine(ctx context.Context, workDir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoVersion: runtime.Version(), CPUModel: "unknown", Kernel: "unknown"}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPUModel, m.CPUFlags = parseCPUInfo(b)
	}
	for _, f := range keyFlags() {
		if slices.Contains(m.CPUFlags, f) {
			m.KeyFlags = append(m.KeyFlags, f)
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m.MemoryBytes = parseMemTotal(b)
	}
	var u syscall.Utsname
	if err := syscall.Uname(&u); err == nil {
		m.Kernel = utsString(u.Sysname[:]) + " " + utsString(u.Release[:])
	}
	m.Disk = describeDisk(workDir)
	m.Commit = commit(ctx)
	return m
}

func parseCPUInfo(b []byte) (model string, flags []string) {
	model = "unknown"
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "model name", "Model", "cpu model":
			if model == "unknown" {
				model = strings.TrimSpace(v)
			}
		case "flags", "Features":
			if flags == nil {
				flags = strings.Fields(v)
			}
		}
	}
	return model, flags
}

func parseMemTotal(b []byte) int64 {
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func utsString(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

// describeDisk names the mount holding dir: device, file system type,
// size, and the device's model and whether it spins, when sysfs says.
func describeDisk(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "unknown"
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown"
	}
	var dev, mnt, fstype string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		if (abs == f[1] || strings.HasPrefix(abs, strings.TrimSuffix(f[1], "/")+"/")) && len(f[1]) >= len(mnt) {
			dev, mnt, fstype = f[0], f[1], f[2]
		}
	}
	if dev == "" {
		return "unknown"
	}
	desc := fmt.Sprintf("%s on %s (%s)", dev, mnt, fstype)
	var st syscall.Statfs_t
	if syscall.Statfs(abs, &st) == nil {
		desc += fmt.Sprintf(", %s of which %s free", human(int64(st.Blocks)*st.Bsize), human(int64(st.Bavail)*st.Bsize))
	}
	name := filepath.Base(dev)
	if real, err := filepath.EvalSymlinks(dev); err == nil {
		name = filepath.Base(real)
	}
	sys := "/sys/class/block/" + name
	if _, err := os.Stat(sys + "/partition"); err == nil {
		// A partition: the model and rotational flag sit on its disk.
		if p, err := filepath.EvalSymlinks(sys); err == nil {
			sys = filepath.Dir(p)
		}
	}
	if model, err := os.ReadFile(sys + "/device/model"); err == nil && len(bytes.TrimSpace(model)) > 0 {
		desc += ", model " + string(bytes.TrimSpace(model))
	}
	if rot, err := os.ReadFile(sys + "/queue/rotational"); err == nil {
		if strings.TrimSpace(string(rot)) == "1" {
			desc += ", rotational"
		} else {
			desc += ", non-rotational"
		}
	}
	return desc
}

// commit returns the source revision: from the build info when the binary
// was stamped, else from git in the working directory.
func commit(ctx context.Context) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			return shortRev(rev) + dirty
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := shortRev(strings.TrimSpace(string(out)))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += "+dirty"
	}
	return rev
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

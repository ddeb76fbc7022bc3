// Package layering holds the test that enforces the dependency direction in
// the design: erasure imports nothing of Cairn's; chunk and master never see
// each other or the client; only cmd, internal/cluster and bench see
// everything.
package layering

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cairnfs/cairn"

// External test packages (path ending in _test) are exempt on purpose: a
// client test may start real chunkservers, as internal/cluster does.

// rule forbids packages under from importing anything under the listed
// prefixes (paths relative to the module root; "" means the package itself
// and everything below it).
type rule struct {
	from      string
	forbidden []string
}

var rules = []rule{
	{"erasure", []string{""}}, // nothing of ours at all
	{"proto", []string{"chunk", "master", "client", "erasure", "internal", "cmd", "bench"}},
	{"internal/token", []string{"chunk", "master", "client", "internal/cluster", "cmd", "bench"}},
	{"chunk", []string{"master", "client", "internal/cluster", "cmd", "bench"}},
	{"master", []string{"chunk", "client", "internal/cluster", "cmd", "bench"}},
	{"client", []string{"chunk", "master", "internal/cluster", "cmd", "bench"}},
}

func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-test", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		pkg := rel(strings.Fields(strings.Split(fields[0], " [")[0])[0])
		if strings.HasSuffix(pkg, "_test") {
			continue // an external test package (see above)
		}
		for _, r := range rules {
			if !under(pkg, r.from) {
				continue
			}
			checked++
			for _, imp := range fields[1:] {
				if !strings.HasPrefix(imp, module) {
					continue
				}
				ip := rel(imp)
				if under(ip, r.from) && r.forbidden[0] != "" {
					continue // within its own tree
				}
				for _, f := range r.forbidden {
					if f == "" && ip != pkg && !strings.HasPrefix(ip, r.from+"/") {
						t.Errorf("%s imports %s: %s must import nothing of Cairn's", pkg, ip, r.from)
					}
					if f != "" && under(ip, f) {
						t.Errorf("%s imports %s: %s must not depend on %s", pkg, ip, r.from, f)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package matched any rule; is the module path right?")
	}
}

func rel(p string) string {
	p = strings.TrimPrefix(p, module)
	return strings.TrimPrefix(p, "/")
}

func under(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

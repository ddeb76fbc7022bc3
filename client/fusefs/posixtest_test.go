package fusefs_test

import (
	"os"
	"sort"
	"testing"

	"github.com/hanwen/go-fuse/v2/posixtest"
)

// posixSkips are cases of the suite that test go-fuse's loopback file
// system rather than POSIX.
var posixSkips = map[string]string{
	"FcntlFlockLocksFile": "expects a process's second descriptor to conflict with its first one's F_SETLK lock; " +
		"POSIX record locks belong to the process, so ext4 grants it, and so does Cairn",
}

// TestPosixSuite runs go-fuse's POSIX conformance suite on one mount,
// each case in a directory of its own.
func TestPosixSuite(t *testing.T) {
	c := startCluster(t, 1, 3)
	dir, _ := mount(t, c, mountConfig{})
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if reason, ok := posixSkips[name]; ok {
				t.Skip(reason)
			}
			sub := dir + "/" + name
			if err := os.Mkdir(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, sub)
		})
	}
}

package master

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "m1", Dir: "/x", ClusterKey: testKey}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.RaftAddr != DefaultRaftAddr || ok.MaxBatch != DefaultMaxBatch || ok.RaftHeartbeatTimeout != DefaultRaftHeartbeatTimeout || ok.Clock == nil || ok.Registerer == nil || ok.Gatherer == nil {
		t.Fatalf("defaults not filled: %+v", ok)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Dir: "/x", ClusterKey: testKey}, "ID is required"},
		{Config{ID: "m1", ClusterKey: testKey}, "Dir is required"},
		{Config{ID: "m1", Dir: "/x"}, "ClusterKey"},
		{Config{ID: "m1", Dir: "/x", ClusterKey: testKey, Peers: []Peer{{ID: "m2", RaftAddr: "h:1"}}}, "must include this master"},
		{Config{ID: "m1", Dir: "/x", ClusterKey: testKey, Join: true, Peers: []Peer{{ID: "m1", RaftAddr: "h:1"}}}, "exclude each other"},
		{Config{ID: "m1", Dir: "/x", ClusterKey: testKey, DefaultLayout: "RS(1,5)"}, "DefaultLayout"},
		{Config{ID: "m 1", Dir: "/x", ClusterKey: testKey}, "blanks"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParsePeers(t *testing.T) {
	p, err := ParsePeers("m1=127.0.0.1:7001, m2=127.0.0.1:7011")
	if err != nil || len(p) != 2 || p[1] != (Peer{ID: "m2", RaftAddr: "127.0.0.1:7011"}) {
		t.Fatalf("%v %v", p, err)
	}
	if _, err := ParsePeers("m1"); err == nil {
		t.Fatal("accepted a peer without an address")
	}
	if p, err := ParsePeers(""); err != nil || p != nil {
		t.Fatalf("empty: %v %v", p, err)
	}
}

package fsm

import (
	"errors"
	"syscall"
	"testing"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

func TestMasterDirectory(t *testing.T) {
	d := newDriver(t, true)
	set := func(m *fsmpb.SetMaster) Result {
		t.Helper()
		return d.entry(&fsmpb.Command{Op: &fsmpb.Command_SetMaster{SetMaster: m}})[0]
	}
	if r := set(&fsmpb.SetMaster{Id: "m2", GrpcAddress: "h2:1"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := set(&fsmpb.SetMaster{Id: "m1", GrpcAddress: "h1:1", HttpAddress: "h1:2"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := set(&fsmpb.SetMaster{Id: "m2", GrpcAddress: "h2:9"}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := set(&fsmpb.SetMaster{}); !errors.Is(r.Err, syscall.EINVAL) {
		t.Fatalf("empty ID: %v, want EINVAL", r.Err)
	}
	ms, err := d.f.Masters()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Id != "m1" || ms[0].HttpAddress != "h1:2" || ms[1].GrpcAddress != "h2:9" {
		t.Fatalf("Masters = %v", ms)
	}
	if r := set(&fsmpb.SetMaster{Id: "m1", Remove: true}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if ms, _ := d.f.Masters(); len(ms) != 1 || ms[0].Id != "m2" {
		t.Fatalf("after remove: %v", ms)
	}
}

package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairnfs/cairn/client/fusefs"
)

func TestParseMountOptions(t *testing.T) {
	var opts fusefs.Options
	err := parseMountOptions([]string{"allow_other", "ro", "root_squash", "entry_timeout=2.5", "attr_timeout=0", "fsname=pool", "noatime"}, &opts)
	if err != nil {
		t.Fatal(err)
	}
	if !opts.AllowOther || !opts.ReadOnly || !opts.RootSquash || opts.FSName != "pool" {
		t.Errorf("flags not applied: %+v", opts)
	}
	if opts.EntryTimeout != 2500*time.Millisecond {
		t.Errorf("entry_timeout=2.5 gave %v", opts.EntryTimeout)
	}
	if opts.AttrTimeout >= 0 {
		t.Errorf("attr_timeout=0 gave %v, want a negative value (no caching)", opts.AttrTimeout)
	}
	if len(opts.MountOptions) != 1 || opts.MountOptions[0] != "noatime" {
		t.Errorf("unknown options not passed on: %v", opts.MountOptions)
	}
	if err := parseMountOptions([]string{"entry_timeout=soon"}, &opts); err == nil {
		t.Error("a bad number of seconds was accepted")
	}
}

func TestRunUsage(t *testing.T) {
	t.Setenv("CAIRN_MASTERS", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"/mnt"}, "--master is required"},
		{[]string{"/mnt", "extra", "--master", "127.0.0.1:1"}, "unexpected arguments"},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
}

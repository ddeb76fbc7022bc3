package shardstore_test

import (
	"testing"

	"github.com/cairnfs/cairn/chunk/storetest"
	"go.uber.org/goleak"
)

// TestMain checks that every goroutine a Store starts is gone after the
// tests (each test closes its stores).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The conformance suite on each kind of storage.
func TestDisk(t *testing.T)         { storetest.Run(t, storetest.Disk()) }
func TestCrashableMem(t *testing.T) { storetest.Run(t, storetest.CrashableMem()) }
func TestFaulty(t *testing.T)       { storetest.Run(t, storetest.Faulty()) }

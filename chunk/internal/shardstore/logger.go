package shardstore

import (
	"fmt"
	"log/slog"
)

// pebbleLogger routes Pebble's log lines to the store's slog.Logger.
//
// Pebble calls Fatalf when it cannot go on (a failed WAL sync or MANIFEST
// write): its default logger exits the process. This one panics with a
// *fatalError instead. The store's calls into Pebble recover that panic
// (see Store.guard) and turn it into ErrFailed for the caller and for every
// later call; a Fatalf on one of Pebble's own background goroutines still
// ends the process, as with Pebble's default logger, and a restart recovers
// from what was synced.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Info(fmt.Sprintf(format, args...), "source", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "source", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "source", "pebble", "fatal", true)
	fe := &fatalError{msg: msg}
	for _, a := range args {
		if err, ok := a.(error); ok {
			fe.cause = err
			break
		}
	}
	panic(fe)
}

// fatalError is the panic value of pebbleLogger.Fatalf.
type fatalError struct {
	msg   string
	cause error
}

func (e *fatalError) Error() string { return "pebble: fatal: " + e.msg }
func (e *fatalError) Unwrap() error { return e.cause }

// recoverFatal converts a *fatalError panic into an error; other panics
// propagate.
func recoverFatal(r any) error {
	fe, ok := r.(*fatalError)
	if !ok {
		panic(r)
	}
	return fe
}

// Package profiling serves Go's runtime profiles over HTTP for Cairn's
// daemons, as etcd and Prometheus serve them: how an operator finds where
// a busy master, chunkserver or mount spends its CPU and memory
// (go tool pprof http://ADDR/debug/pprof/profile).
//
// The handlers are added to the daemon's own mux rather than to
// http.DefaultServeMux, so nothing is served unless the daemon was given an
// HTTP address.
package profiling

import (
	"net/http"
	"net/http/pprof"
)

// Register adds the profile handlers under /debug/pprof/ to mux.
func Register(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

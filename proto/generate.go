// Package proto holds Cairn's wire definitions. The generated Go code in
// chunkpb and masterpb is committed; regenerate it with
//
//	go generate ./proto/...
//
// which needs protoc (Debian: protobuf-compiler) on PATH. The Go plugins are
// pinned as tools in go.mod.
package proto

//go:generate sh gen.sh

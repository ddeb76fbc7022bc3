#!/bin/sh
# Regenerates chunkpb, masterpb and fsmpb from their .proto files with the plugin
# versions pinned in go.mod. Run from anywhere: go generate ./proto/...
set -eu
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$bin/protoc-gen-go-grpc" google.golang.org/grpc/cmd/protoc-gen-go-grpc
PATH="$bin:$PATH" protoc -I . \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  proto/chunkpb/chunk.proto proto/masterpb/master.proto \
  proto/fsmpb/fsm.proto

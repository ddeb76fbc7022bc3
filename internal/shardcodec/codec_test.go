package shardcodec

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/chunkpb"
)

// split cuts b into buffers of at most n bytes, as HTTP/2 frames arrive.
func split(b []byte, n int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(b) > 0 {
		k := min(n, len(b))
		s = append(s, mem.SliceBuffer(append([]byte(nil), b[:k]...)))
		b = b[k:]
	}
	return s
}

func testMessages() []proto.Message {
	data := bytes.Repeat([]byte("cairn"), 50_000)
	return []proto.Message{
		&chunkpb.WriteShardRequest{},
		&chunkpb.WriteShardRequest{
			Header: &chunkpb.WriteShardHeader{
				Shard: &chunkpb.ShardID{SliceId: 9, Index: 2}, Length: 1 << 30, CellSize: 1 << 20,
				Token: &chunkpb.Token{Op: chunkpb.TokenOp_TOKEN_OP_WRITE, SliceId: 9, Mac: []byte("mac")},
			},
			Data: data, Sha256: bytes.Repeat([]byte{7}, 32),
		},
		&chunkpb.WriteShardRequest{Data: []byte{1}},
		&chunkpb.ReadShardResponse{ShardLength: 12345678, CellSize: 4096, Offset: 8192, Data: data, Sha256: []byte("0123456789abcdef0123456789abcdef")},
		&chunkpb.ReadShardResponse{Offset: 1},
		&chunkpb.ReadShardRequest{Shard: &chunkpb.ShardID{SliceId: 1}, Offset: 3, Length: 4},
	}
}

func TestRoundTripMatchesProto(t *testing.T) {
	c := New()
	for _, m := range testMessages() {
		out, err := c.Marshal(m)
		if err != nil {
			t.Fatalf("Marshal(%T): %v", m, err)
		}
		got := out.Materialize()
		out.Free()
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// Field order is the same as the generated code's, so the bytes match.
		if !bytes.Equal(got, want) {
			t.Errorf("%T: codec bytes differ from proto.Marshal", m)
		}
		for _, frame := range []int{1, 7, 16384, 1 << 30} {
			back := m.ProtoReflect().New().Interface()
			if err := c.Unmarshal(split(want, frame), back); err != nil {
				t.Fatalf("Unmarshal(%T) in %d-byte frames: %v", m, frame, err)
			}
			if !proto.Equal(back, m) {
				t.Errorf("%T in %d-byte frames: round trip changed the message", m, frame)
			}
		}
	}
}

func TestUnmarshalRejectsTruncation(t *testing.T) {
	c := New()
	want, _ := proto.Marshal(testMessages()[1])
	for _, n := range []int{1, 3, len(want) / 2, len(want) - 1} {
		err := c.Unmarshal(split(want[:n], 1000), &chunkpb.WriteShardRequest{})
		if err == nil {
			t.Errorf("truncated to %d bytes: no error", n)
		} else if !errors.Is(err, ErrMalformed) && !bytes.Contains([]byte(err.Error()), []byte("proto")) {
			t.Errorf("truncated to %d bytes: %v", n, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	for _, m := range testMessages() {
		b, _ := proto.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x0b})
	c := New()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range []proto.Message{&chunkpb.WriteShardRequest{}, &chunkpb.ReadShardResponse{}} {
			if err := c.Unmarshal(split(b, 5), m); err != nil {
				continue
			}
			ref := m.ProtoReflect().New().Interface()
			// The codec drops unknown fields, as proto does with DiscardUnknown.
			if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, ref); err != nil {
				t.Fatalf("codec accepted what proto rejects (%v)", err)
			}
			if !proto.Equal(ref, m) {
				t.Fatalf("codec and proto disagree on %d bytes decoded as %T", len(b), m)
			}
		}
	})
}

// TestHandOff checks that Pooled and Borrowed messages marshal to the same
// bytes as the plain message, without copying Data, and that a Pooled
// buffer goes back to the pool only when gRPC frees what it sent.
func TestHandOff(t *testing.T) {
	c := New()
	for _, wrap := range []func(any) any{
		func(m any) any { return Pooled{Msg: m} },
		func(m any) any { return &Borrowed{Msg: m} },
	} {
		for _, mk := range []func([]byte) any{
			func(d []byte) any {
				return &chunkpb.ReadShardResponse{Offset: 4096, Data: d, Sha256: bytes.Repeat([]byte{1}, 32)}
			},
			func(d []byte) any { return &chunkpb.WriteShardRequest{Data: d, Sha256: bytes.Repeat([]byte{2}, 32)} },
		} {
			data := c.Get(1 << 20)
			for i := range data {
				data[i] = byte(i)
			}
			want, err := proto.Marshal(mk(bytes.Clone(data)).(proto.Message))
			if err != nil {
				t.Fatal(err)
			}
			out, err := c.Marshal(wrap(mk(data)))
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Materialize(); !bytes.Equal(got, want) {
				t.Fatalf("%T: marshaled %d bytes, not the %d of the plain message", wrap(nil), len(got), len(want))
			}
			shared := false
			for _, b := range out {
				if d := b.ReadOnlyData(); len(d) == len(data) && &d[0] == &data[0] {
					shared = true
				}
			}
			if !shared {
				t.Errorf("%T: Data was copied", wrap(nil))
			}
			out.Free()
		}
	}
	if _, err := c.Marshal(Pooled{Msg: &chunkpb.ReadShardRequest{}}); err == nil {
		t.Error("Pooled accepted a message without bulk data")
	}
}

// TestDirtyPool checks the pool's size classes.
func TestDirtyPool(t *testing.T) {
	p := &dirtyPool{}
	for _, n := range []int{0, 1, 255, 256, 257, 4096, 1 << 20, 1<<20 + 1, 1 << 24, 1<<24 + 1} {
		b := p.Get(n)
		if len(*b) != n {
			t.Fatalf("Get(%d) has length %d", n, len(*b))
		}
		if n <= 1<<24 && (cap(*b) < n || cap(*b)&(cap(*b)-1) != 0) {
			t.Fatalf("Get(%d) has capacity %d, want a power of two", n, cap(*b))
		}
		p.Put(b)
	}
}

func TestInto(t *testing.T) {
	c := New()
	data := bytes.Repeat([]byte("shard"), 1000)
	msg := &chunkpb.ReadShardResponse{Offset: 4096, Data: data, Sha256: bytes.Repeat([]byte{1}, 32)}
	wire, err := proto.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	// The data twice in one message: the second occurrence wins.
	twice := append(append([]byte(nil), wire...), protowire.AppendBytes(protowire.AppendTag(nil, 4, protowire.BytesType), bytes.Repeat([]byte("x"), len(data)))...)
	for _, tc := range []struct {
		name       string
		wire       []byte
		dst        int
		wantFilled bool
		wantData   []byte
	}{
		{"fits", wire, len(data), true, data},
		{"too large", wire, len(data) + 1, false, data},
		{"too small", wire, len(data) - 1, false, data},
		{"no buffer", wire, 0, false, data},
		{"repeated field", twice, len(data), true, bytes.Repeat([]byte("x"), len(data))},
		{"no data", []byte{0x18, 0x01}, len(data), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([]byte, tc.dst)
			in := &Into{Msg: &chunkpb.ReadShardResponse{Data: []byte("stale")}, Dst: dst, Filled: true}
			if err := c.Unmarshal(split(tc.wire, 1000), in); err != nil {
				t.Fatal(err)
			}
			if in.Filled != tc.wantFilled {
				t.Errorf("Filled = %v, want %v", in.Filled, tc.wantFilled)
			}
			if !bytes.Equal(in.Msg.Data, tc.wantData) {
				t.Errorf("data differs")
			}
			aliased := len(in.Msg.Data) > 0 && len(dst) > 0 && &in.Msg.Data[0] == &dst[0]
			if aliased != tc.wantFilled {
				t.Errorf("data in the caller's buffer: %v, want %v", aliased, tc.wantFilled)
			}
		})
	}
}

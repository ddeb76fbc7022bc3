package fsm

import (
	"strconv"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/cairnfs/cairn/proto/fsmpb"
)

// MaxMasterField bounds a master directory record's ID and addresses.
const MaxMasterField = 256

// setMaster records or forgets one master's addresses. The directory is
// not the Raft membership (Raft keeps that); it only says where each
// member serves gRPC, so that a follower can point clients at the leader.
func (t *txn) setMaster(c *fsmpb.SetMaster) (Result, error) {
	const op = "setmaster"
	obj := "master " + strconv.Quote(c.Id)
	switch {
	case c.Id == "":
		return Result{}, newErr(op, obj, errInval, "empty master ID")
	case len(c.Id) > MaxMasterField || len(c.GrpcAddress) > MaxMasterField || len(c.HttpAddress) > MaxMasterField:
		return Result{}, newErr(op, obj, errInval, "ID or address too long")
	}
	if c.Remove {
		return Result{}, t.b.Delete(masterKey(c.Id), nil)
	}
	return Result{}, setProto(t.b, masterKey(c.Id), &fsmpb.MasterRecord{
		Id:          c.Id,
		GrpcAddress: c.GrpcAddress,
		HttpAddress: c.HttpAddress,
	})
}

// Masters returns the master directory in ID order. Safe from any
// goroutine; it reads the applied state without a linearizability check,
// which is what a follower redirecting a client needs.
func (f *FSM) Masters() (out []*fsmpb.MasterRecord, err error) {
	v, err := f.view(true)
	if err != nil {
		return nil, err
	}
	defer v.close()
	p := []byte{tMaster}
	it, err := v.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	for ok := it.First(); ok; ok = it.Next() {
		rec := new(fsmpb.MasterRecord)
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			_ = it.Close()
			return nil, corrupt("master record", it.Key(), err)
		}
		out = append(out, rec)
	}
	return out, it.Close()
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairnfs/cairn/client"
	"github.com/cairnfs/cairn/proto/masterpb"
)

// df prints each chunkserver's space and the cluster's total.
func (e *env) df(cl *client.Client) int {
	st, err := cl.Status(e.ctx)
	if err != nil {
		return e.fail("", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHUNKSERVER\tSTATE\tSIZE\tUSED\tFREE\tUSE%\tSHARDS")
	var size, free uint64
	for _, c := range st.Chunkservers {
		used := c.CapacityBytes - min(c.FreeBytes, c.CapacityBytes)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", c.Id, c.State, human(c.CapacityBytes), human(used), human(c.FreeBytes), percent(used, c.CapacityBytes), c.Shards)
		if c.State != "dead" {
			size += c.CapacityBytes
			free += min(c.FreeBytes, c.CapacityBytes)
		}
	}
	fmt.Fprintf(tw, "total\t\t%s\t%s\t%s\t%s\t\n", human(size), human(size-free), human(free), percent(size-free, size))
	tw.Flush()
	return 0
}

func percent(part, whole uint64) string {
	if whole == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(whole))
}

// fsck prints the files under the operand (default /) that are not
// healthy, with their problems, and a summary. Its exit status is 0 when
// every file is healthy, 1 when some are degraded (or fsck failed), and 2
// when any is lost.
func (e *env) fsck(cl *client.Client, operands []string) int {
	p := "/"
	if len(operands) == 1 {
		p = operands[0]
	}
	var healthy, degraded, lost int
	minTolerable := -1
	err := cl.Conn().Do(e.ctx, func(ctx context.Context, mc masterpb.MasterClient) error {
		healthy, degraded, lost, minTolerable = 0, 0, 0, -1
		stream, err := mc.Fsck(ctx, &masterpb.FsckRequest{Path: p})
		if err != nil {
			return err
		}
		for {
			r, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			if !r.NoShards && (minTolerable < 0 || int(r.TolerableLosses) < minTolerable) {
				minTolerable = int(r.TolerableLosses)
			}
			switch r.Health {
			case masterpb.FsckResponse_HEALTH_HEALTHY:
				healthy++
				continue
			case masterpb.FsckResponse_HEALTH_DEGRADED:
				degraded++
				fmt.Fprintf(e.stdout, "%s: degraded, can bear %d more losses\n", r.Path, r.TolerableLosses)
			default:
				lost++
				fmt.Fprintf(e.stdout, "%s: LOST\n", r.Path)
			}
			for _, pr := range r.Problems {
				fmt.Fprintf(e.stdout, "  %s\n", pr)
			}
		}
	})
	if err != nil {
		return e.fail(p, err)
	}
	fmt.Fprintf(e.stdout, "%d files: %d healthy, %d degraded, %d lost", healthy+degraded+lost, healthy, degraded, lost)
	if minTolerable >= 0 {
		fmt.Fprintf(e.stdout, "; every file can bear %d more shard losses", minTolerable)
	}
	fmt.Fprintln(e.stdout)
	switch {
	case lost > 0:
		return 2
	case degraded > 0:
		return 1
	}
	return 0
}

// admin runs an operator command on the master leader.
func (e *env) admin(masters []string, verb, id string) int {
	var call func(ctx context.Context, ac masterpb.AdminClient) error
	switch verb {
	case "drain":
		call = func(ctx context.Context, ac masterpb.AdminClient) error {
			_, err := ac.Drain(ctx, &masterpb.DrainRequest{ChunkserverId: id})
			return err
		}
	case "undrain":
		call = func(ctx context.Context, ac masterpb.AdminClient) error {
			_, err := ac.Undrain(ctx, &masterpb.UndrainRequest{ChunkserverId: id})
			return err
		}
	case "remove":
		call = func(ctx context.Context, ac masterpb.AdminClient) error {
			_, err := ac.RemoveChunkserver(ctx, &masterpb.RemoveChunkserverRequest{ChunkserverId: id})
			return err
		}
	default:
		fmt.Fprintf(e.stderr, "dfs: admin: unknown command %q (want drain, undrain or remove)\n", verb)
		return 1
	}
	if err := onLeader(e.ctx, masters, call); err != nil {
		return e.fail(verb+" "+id, err)
	}
	switch verb {
	case "drain":
		fmt.Fprintf(e.stdout, "draining %s; `dfs status` shows it \"drained\" once it holds nothing needed\n", id)
	case "remove":
		fmt.Fprintf(e.stdout, "removed %s\n", id)
	}
	return 0
}

// onLeader runs fn against the master leader, following NotLeader
// answers, for the Admin service (which client.MasterConn does not carry).
func onLeader(ctx context.Context, masters []string, fn func(ctx context.Context, ac masterpb.AdminClient) error) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	addr := masters[0]
	var last error
	for i := 1; i <= 4*len(masters)+4; i++ {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		err = fn(ctx, masterpb.NewAdminClient(cc))
		cc.Close()
		if err == nil {
			return nil
		}
		last = err
		if leader, ok := masterpb.LeaderAddressOf(err); ok && leader != "" && !strings.EqualFold(leader, addr) {
			addr = leader
			continue
		}
		addr = masters[i%len(masters)]
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
	return last
}

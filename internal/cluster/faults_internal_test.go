package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// netPair is a network of two masters and one chunkserver with a
// listener for each.
type netPair struct {
	n    *network
	lis  map[Node]net.Listener
	addr map[Node]string
}

func newNetPair(t *testing.T) *netPair {
	t.Helper()
	p := &netPair{n: newNetwork(2, 1), lis: map[Node]net.Listener{}, addr: map[Node]string{}}
	for _, node := range []Node{Master(0), Master(1), Chunkserver(0)} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.lis[node] = p.n.listen(node, l)
		p.addr[node] = l.Addr().String()
		t.Cleanup(func() { p.lis[node].Close() })
	}
	return p
}

// connect dials from → to and returns both ends (the accepted one after
// its first byte, so that it knows its peer).
func (p *netPair) connect(t *testing.T, from, to Node) (dialed, accepted net.Conn) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := p.lis[to].Accept()
		ch <- res{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialed, err := p.n.dialer(from)(ctx, p.addr[to])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { r.c.Close() })
	roundTrip(t, dialed, r.c, "hello")
	return dialed, r.c
}

// roundTrip sends msg from a to b and back.
func roundTrip(t *testing.T, a, b net.Conn, msg string) {
	t.Helper()
	for _, d := range [][2]net.Conn{{a, b}, {b, a}} {
		if _, err := d[0].Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(d[1], got); err != nil {
			t.Fatal(err)
		}
		if string(got) != msg {
			t.Fatalf("got %q, want %q", got, msg)
		}
	}
}

// TestPauseHoldsTraffic checks that a paused node's connection end holds
// what it would send and receive, delivers it after Resume, and that its
// listener holds new connections until then.
func TestPauseHoldsTraffic(t *testing.T) {
	p := newNetPair(t)
	m0, m1 := Master(0), Master(1)
	a, b := p.connect(t, m0, m1) // a is m0's end, b m1's
	for _, tc := range []struct {
		name     string
		paused   Node
		from, to net.Conn
		// senderPaused: the Write itself is held, not only the Read.
		senderPaused bool
	}{
		{"accepting end receives", m1, a, b, false},
		{"accepting end sends", m1, b, a, true},
		{"dialing end receives", m0, b, a, false},
		{"dialing end sends", m0, a, b, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.n.setPaused(tc.paused, true)
			got := make(chan string, 1)
			go func() {
				buf := make([]byte, 5)
				if _, err := io.ReadFull(tc.to, buf); err != nil {
					got <- err.Error()
					return
				}
				got <- string(buf)
			}()
			wrote := make(chan error, 1)
			go func() {
				_, err := tc.from.Write([]byte("held!"))
				wrote <- err
			}()
			if !tc.senderPaused {
				// The bytes reach the kernel and wait there.
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
			}
			select {
			case b := <-got:
				t.Fatalf("received %q while paused", b)
			default:
			}
			p.n.setPaused(tc.paused, false)
			if tc.senderPaused {
				if err := <-wrote; err != nil {
					t.Fatal(err)
				}
			}
			if b := <-got; b != "held!" {
				t.Fatalf("received %q after resume, want %q", b, "held!")
			}
		})
	}

	t.Run("listener", func(t *testing.T) {
		p.n.setPaused(m1, true)
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := p.lis[m1].Accept()
			if err != nil {
				t.Error(err)
			}
			accepted <- c
		}()
		raw, err := net.Dial("tcp", p.addr[m1]) // completes in the backlog
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		if _, err := raw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-accepted:
			t.Fatal("a paused node accepted a connection")
		default:
		}
		p.n.setPaused(m1, false)
		c := <-accepted
		if c == nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 1)
		if _, err := io.ReadFull(c, buf); err != nil || buf[0] != 'x' {
			t.Fatalf("read %q, %v after resume", buf, err)
		}
		if fc := c.(*faultConn); fc.peer != Outside() {
			t.Fatalf("a connection from the test process is attributed to %v", fc.peer)
		}
	})
}

// TestPartitionCutsAndRefuses checks that a partition resets the
// connections it separates, refuses new ones, spares the rest and
// Outside, and that Heal lets nodes connect again.
func TestPartitionCutsAndRefuses(t *testing.T) {
	p := newNetPair(t)
	m0, m1, cs0 := Master(0), Master(1), Chunkserver(0)
	cut0, cut1 := p.connect(t, cs0, m0)
	kept0, kept1 := p.connect(t, m1, m0)
	if fc := cut1.(*faultConn); fc.peer != cs0 {
		t.Fatalf("the accepted end is attributed to %v, want %v", fc.peer, cs0)
	}

	p.n.partition(map[Node]int{cs0: 1})
	for _, c := range []net.Conn{cut0, cut1} {
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read on a cut connection: %v, want ECONNRESET", err)
		}
		if _, err := c.Write([]byte("x")); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("write on a cut connection: %v, want ECONNRESET", err)
		}
	}
	roundTrip(t, kept0, kept1, "still here")
	ctx := context.Background()
	for _, tc := range []struct{ from, to Node }{{cs0, m0}, {m0, cs0}, {m1, cs0}} {
		if c, err := p.n.dialer(tc.from)(ctx, p.addr[tc.to]); !errors.Is(err, syscall.ECONNREFUSED) {
			if c != nil {
				c.Close()
			}
			t.Fatalf("dial %v → %v across the partition: %v, want ECONNREFUSED", tc.from, tc.to, err)
		}
	}
	p.connect(t, m1, m0)

	// Outside reaches everyone unless named.
	raw, err := net.Dial("tcp", p.addr[cs0])
	if err != nil {
		t.Fatal(err)
	}
	raw.Close()
	p.n.partition(map[Node]int{cs0: 1, Outside(): 2})
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := p.lis[m0].Accept()
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	raw, err = net.Dial("tcp", p.addr[m0])
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	if c != nil {
		defer c.Close()
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("a partitioned-off Outside connection read: %v, want ECONNRESET", err)
		}
	}

	p.n.partition(nil)
	a, b := p.connect(t, cs0, m0)
	roundTrip(t, a, b, "healed")
}

// TestPartitionValidates checks that Partition refuses nodes the cluster
// lacks or names twice, and that Pause refuses Outside.
func TestPartitionValidates(t *testing.T) {
	c := &Cluster{net: newNetwork(1, 2), masters: []*masterNode{{}}, chunks: []*chunkNode{{}, {}}}
	for _, tc := range []struct {
		name   string
		groups [][]Node
		ok     bool
	}{
		{"one chunkserver", [][]Node{{Chunkserver(1)}}, true},
		{"two groups and outside", [][]Node{{Master(0), Outside()}, {Chunkserver(0)}}, true},
		{"no groups", nil, true},
		{"unknown master", [][]Node{{Master(1)}}, false},
		{"negative index", [][]Node{{Chunkserver(-1)}}, false},
		{"zero node", [][]Node{{{}}}, false},
		{"named twice", [][]Node{{Master(0)}, {Chunkserver(0), Master(0)}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Partition(tc.groups...); (err == nil) != tc.ok {
				t.Fatalf("Partition(%v) = %v", tc.groups, err)
			}
		})
	}
	if err := c.Pause(Outside()); err == nil {
		t.Fatal("Pause(Outside()) succeeded")
	}
	if err := c.Pause(Master(0)); err == nil {
		t.Fatal("paused a master that is not running")
	}
	c.Heal()
	for node, want := range map[Node]string{Master(0): "m1", Chunkserver(1): "cs2", Outside(): "outside"} {
		if node.String() != want {
			t.Errorf("%#v is %q, want %q", node, node, want)
		}
	}
}

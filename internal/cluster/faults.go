package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// This file is the cluster's fault-injecting network: every listener a
// node serves on and every connection a node dials (the masters' Raft
// transport through master.Config.Dial, the chunkservers' rebuild sources
// through chunk.Config.Dial, the heartbeat loops through
// heartbeat.Config.Dial) is wrapped, so that each end of a connection
// knows the node that owns it and the node at the other end. Pause and
// Partition act on those ends; nothing here starts a goroutine: a held
// Read, Write, Accept or Dial waits in the goroutine that called it.
//
// An accepted connection learns its peer when its first bytes arrive:
// the dialing end registers its local address before it returns the
// connection to its node, so by then the address identifies the dialer,
// and an address no node registered belongs to the test process
// (Outside). The clients Cairn's nodes run all speak first (gRPC's
// preface, Raft's requests), so no connection between nodes stays
// unattributed.

// Node names a member of a Cluster for Pause and Partition: a master, a
// chunkserver, or the test process outside the cluster. Make one with
// Master, Chunkserver or Outside; Nodes are comparable.
type Node struct {
	kind  nodeKind
	index int
}

type nodeKind uint8

const (
	kindNone nodeKind = iota // the zero Node names nothing
	kindMaster
	kindChunkserver
	kindOutside
)

// Master names master i (0-based, as for KillMaster).
func Master(i int) Node { return Node{kind: kindMaster, index: i} }

// Chunkserver names chunkserver i (0-based, as for KillChunkserver).
func Chunkserver(i int) Node { return Node{kind: kindChunkserver, index: i} }

// Outside names the test process: every connection a Cluster did not
// dial itself (clients, WaitReady, tools) comes from Outside. Partition
// leaves Outside able to reach every node unless a group names it.
func Outside() Node { return Node{kind: kindOutside} }

// String returns the node's ID ("m1", "cs3") or "outside".
func (n Node) String() string {
	switch n.kind {
	case kindMaster:
		return masterID(n.index)
	case kindChunkserver:
		return chunkID(n.index)
	case kindOutside:
		return "outside"
	default:
		return "no node"
	}
}

// nodeState is what a node's connection ends consult on every Read and
// Write: paused is read without the network's lock on the fast path and
// written with it held.
type nodeState struct {
	paused atomic.Bool
}

// network is the fault-injecting network of one Cluster.
type network struct {
	// nodes holds every master and chunkserver; fixed at creation.
	nodes map[Node]*nodeState

	mu sync.Mutex
	// addrs maps every address a node listens on to the node.
	addrs map[string]Node
	// dialed maps the local address of every live connection a node
	// dialed to that node, for the accepting end to attribute it.
	dialed map[string]Node
	// conns are the live connection ends of every node.
	conns map[*faultConn]struct{}
	// groups is the partition in force (nil: none): the group of each
	// node named by Partition, numbered from 1; unnamed nodes are in
	// group 0, and an unnamed Outside reaches everyone.
	groups map[Node]int
	// changed is closed and replaced whenever a node is paused or
	// resumed, waking the ends that wait.
	changed chan struct{}
}

func newNetwork(masters, chunkservers int) *network {
	n := &network{
		nodes:   map[Node]*nodeState{},
		addrs:   map[string]Node{},
		dialed:  map[string]Node{},
		conns:   map[*faultConn]struct{}{},
		changed: make(chan struct{}),
	}
	for i := range masters {
		n.nodes[Master(i)] = &nodeState{}
	}
	for i := range chunkservers {
		n.nodes[Chunkserver(i)] = &nodeState{}
	}
	return n
}

// setAddr records that node listens on addr.
func (n *network) setAddr(addr string, node Node) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.addrs[addr] = node
}

// nodeAt returns the node listening on addr, or Outside.
func (n *network) nodeAt(addr string) Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if node, ok := n.addrs[addr]; ok {
		return node
	}
	return Outside()
}

// broadcastLocked wakes every waiting end; n.mu must be held.
func (n *network) broadcastLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// reachLocked reports whether a and b can talk under the partition in
// force; n.mu must be held.
func (n *network) reachLocked(a, b Node) bool {
	if n.groups == nil || a == b {
		return true
	}
	ga, namedA := n.groups[a]
	gb, namedB := n.groups[b]
	if (a.kind == kindOutside && !namedA) || (b.kind == kindOutside && !namedB) {
		return true
	}
	return ga == gb
}

// setPaused pauses or resumes node.
func (n *network) setPaused(node Node, paused bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[node].paused.Store(paused)
	n.broadcastLocked()
}

func (n *network) paused(node Node) bool {
	st, ok := n.nodes[node]
	return ok && st.paused.Load()
}

// reset resumes node and resets every connection end it owns, as the
// kernel does to the sockets of a process that is killed.
func (n *network) reset(node Node) {
	n.mu.Lock()
	n.nodes[node].paused.Store(false)
	n.broadcastLocked()
	var cut []*faultConn
	for c := range n.conns {
		if c.self == node {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.sever()
	}
}

// partition puts groups in force (nil heals) and resets every
// connection between nodes that can no longer reach each other.
func (n *network) partition(groups map[Node]int) {
	n.mu.Lock()
	n.groups = groups
	var cut []*faultConn
	for c := range n.conns {
		if c.peerKnown.Load() && !n.reachLocked(c.self, c.peer) {
			cut = append(cut, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cut {
		c.sever()
	}
}

// waitResumed blocks while node is paused, until ctx ends or stop is
// closed; it reports whether node is running (not paused).
func (n *network) waitResumed(ctx context.Context, node Node, stop <-chan struct{}) bool {
	st := n.nodes[node]
	for st.paused.Load() {
		n.mu.Lock()
		ch := n.changed
		paused := st.paused.Load()
		n.mu.Unlock()
		if !paused {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// dialer returns the Dial hook of node self: it waits while self is
// paused (a stopped process cannot connect), refuses at once a node it
// is partitioned from, and wraps the connection it makes.
func (n *network) dialer(self Node) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if !n.waitResumed(ctx, self, nil) {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
		}
		peer := n.nodeAt(addr)
		n.mu.Lock()
		ok := n.reachLocked(self, peer)
		n.mu.Unlock()
		if !ok {
			return nil, refused(addr)
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := newFaultConn(n, raw, self)
		c.peer = peer
		c.peerKnown.Store(true)
		n.mu.Lock()
		if !n.reachLocked(self, peer) {
			n.mu.Unlock()
			c.sever()
			return nil, refused(addr)
		}
		c.local = raw.LocalAddr().String()
		n.dialed[c.local] = self
		n.conns[c] = struct{}{}
		n.mu.Unlock()
		return c, nil
	}
}

func refused(addr string) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: tcpAddr(addr), Err: syscall.ECONNREFUSED}
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil
	}
	return a
}

// listen wraps l, on which node self serves.
func (n *network) listen(self Node, l net.Listener) net.Listener {
	n.setAddr(l.Addr().String(), self)
	return &faultListener{Listener: l, n: n, self: self, done: make(chan struct{})}
}

// faultListener holds the connections a paused node would accept: they
// complete in the kernel's backlog, and Accept hands them over only once
// the node is resumed.
type faultListener struct {
	net.Listener
	n    *network
	self Node
	done chan struct{}
	once sync.Once
}

func (l *faultListener) Accept() (net.Conn, error) {
	if !l.n.waitResumed(context.Background(), l.self, l.done) {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	// Paused while Accept waited: hold the connection until resumed.
	if !l.n.waitResumed(context.Background(), l.self, l.done) {
		raw.Close()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
	c := newFaultConn(l.n, raw, l.self)
	l.n.mu.Lock()
	l.n.conns[c] = struct{}{}
	l.n.mu.Unlock()
	return c, nil
}

func (l *faultListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// faultConn is one node's end of a connection.
type faultConn struct {
	net.Conn
	n     *network
	self  Node
	state *nodeState
	// peer is the node at the other end, valid once peerKnown is set
	// (at once for a dialed connection, with the first bytes received
	// for an accepted one); it does not change after.
	peer      Node
	peerKnown atomic.Bool
	// local is the key in network.dialed of a dialed connection.
	local string
	// cut is set when the connection was reset by a partition or a kill.
	cut  atomic.Bool
	done chan struct{} // closed by Close or sever
	once sync.Once
}

func newFaultConn(n *network, raw net.Conn, self Node) *faultConn {
	return &faultConn{Conn: raw, n: n, self: self, state: n.nodes[self], done: make(chan struct{})}
}

// hold waits while the owning node is paused; it fails once the
// connection is reset.
func (c *faultConn) hold(op string) error {
	if !c.state.paused.Load() && !c.cut.Load() {
		return nil
	}
	c.n.waitResumed(context.Background(), c.self, c.done)
	if c.cut.Load() {
		return c.resetErr(op)
	}
	return nil
}

func (c *faultConn) Read(b []byte) (int, error) {
	if err := c.hold("read"); err != nil {
		return 0, err
	}
	k, err := c.Conn.Read(b)
	if k > 0 && !c.peerKnown.Load() {
		c.attribute()
	}
	// Bytes that arrived while the node was paused are held too.
	if herr := c.hold("read"); herr != nil {
		return 0, herr
	}
	if err != nil && c.cut.Load() {
		return k, c.resetErr("read")
	}
	return k, err
}

func (c *faultConn) Write(b []byte) (int, error) {
	if err := c.hold("write"); err != nil {
		return 0, err
	}
	k, err := c.Conn.Write(b)
	if err != nil && c.cut.Load() {
		return k, c.resetErr("write")
	}
	return k, err
}

// attribute learns the peer of an accepted connection from the dialing
// end's registration, and resets the connection if a partition
// separates them.
func (c *faultConn) attribute() {
	n := c.n
	n.mu.Lock()
	if c.peerKnown.Load() {
		n.mu.Unlock()
		return
	}
	peer, ok := n.dialed[c.Conn.RemoteAddr().String()]
	if !ok {
		peer = Outside()
	}
	c.peer = peer
	c.peerKnown.Store(true)
	cut := !n.reachLocked(c.self, peer)
	n.mu.Unlock()
	if cut {
		c.sever()
	}
}

func (c *faultConn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	if c.local != "" && c.n.dialed[c.local] == c.self {
		delete(c.n.dialed, c.local)
	}
	c.n.mu.Unlock()
	c.once.Do(func() { close(c.done) })
	err := c.Conn.Close()
	if c.cut.Load() {
		return nil // already closed by sever
	}
	return err
}

// sever resets the connection: the peer sees a TCP reset, and this end's
// calls fail with ECONNRESET. The owner still calls Close.
func (c *faultConn) sever() {
	c.cut.Store(true)
	c.once.Do(func() { close(c.done) })
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Conn.Close()
}

func (c *faultConn) resetErr(op string) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: syscall.ECONNRESET}
}

// checkNode reports a Node that does not name a member of the cluster.
func (c *Cluster) checkNode(node Node) error {
	switch node.kind {
	case kindMaster:
		if node.index >= 0 && node.index < len(c.masters) {
			return nil
		}
	case kindChunkserver:
		if node.index >= 0 && node.index < len(c.chunks) {
			return nil
		}
	case kindOutside:
		return nil
	}
	return fmt.Errorf("cluster: %v (index %d) is not a node of this cluster", node, node.index)
}

// PauseMaster pauses master i; see Pause.
func (c *Cluster) PauseMaster(i int) error { return c.Pause(Master(i)) }

// ResumeMaster resumes master i; see Resume.
func (c *Cluster) ResumeMaster(i int) error { return c.Resume(Master(i)) }

// PauseChunkserver pauses chunkserver i; see Pause.
func (c *Cluster) PauseChunkserver(i int) error { return c.Pause(Chunkserver(i)) }

// ResumeChunkserver resumes chunkserver i; see Resume.
func (c *Cluster) ResumeChunkserver(i int) error { return c.Resume(Chunkserver(i)) }

// Pause makes a running node behave, on the network, like a process
// stopped with SIGSTOP, so that tests can see what a hung (not crashed)
// master or chunkserver does to the others: the node keeps its state and
// its open connections, but nothing it sends or receives moves. Bytes in
// both directions are held, not dropped — what the node writes waits in
// its Write calls, what others send waits in the kernel's buffers (and
// then the senders' Writes) — and connections to it complete in the
// kernel's backlog but are not accepted; the node's own dials wait too.
// Resume lets all of it flow again, in order.
//
// Unlike SIGSTOP, the node's goroutines keep running: its timers fire (a
// Raft leader steps down when it hears from no quorum, election timers
// run, RPC deadlines expire and cancel what they bound), and it reads
// and writes its disk. Only its network stands still. Closing a
// connection is not held: a deadline that fires on the paused node may
// close its connections.
//
// Killing a paused node resumes it and resets its connections first, as
// a killed process's sockets are reset. Pausing a stopped node, or
// Outside, is an error; pausing a paused node does nothing.
func (c *Cluster) Pause(node Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(node); err != nil {
		return err
	}
	if !c.runningLocked(node) {
		return fmt.Errorf("cluster: pause %v: not running", node)
	}
	c.net.setPaused(node, true)
	return nil
}

// Resume undoes Pause: the traffic held for node flows again and its
// listeners accept the connections waiting in their backlogs. Resuming a
// node that is not paused does nothing.
func (c *Cluster) Resume(node Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkLocked(node); err != nil {
		return err
	}
	c.net.setPaused(node, false)
	return nil
}

// Paused reports whether node is paused.
func (c *Cluster) Paused(node Node) bool { return c.net.paused(node) }

// checkLocked checks that node is a master or chunkserver of a cluster
// that is not closed; c.mu must be held.
func (c *Cluster) checkLocked(node Node) error {
	if c.closed {
		return errors.New("cluster: closed")
	}
	if node.kind == kindOutside {
		return errors.New("cluster: the test process (Outside) cannot be paused")
	}
	return c.checkNode(node)
}

func (c *Cluster) runningLocked(node Node) bool {
	switch node.kind {
	case kindMaster:
		return c.masters[node.index].srv != nil
	case kindChunkserver:
		return c.chunks[node.index].srv != nil
	}
	return false
}

// Partition splits the cluster's network into groups that cannot reach
// each other, so that tests can isolate a master from the others or a
// chunkserver from the masters. Every master and chunkserver not named in
// a group belongs to one more group, of the rest; the test process
// (Outside) reaches every node unless a group names it, so a test can
// still talk to both sides (a client in one group is Outside named
// there).
//
// Connections between nodes of different groups are reset at once (both
// ends see ECONNRESET, or the peer a TCP reset), and new ones are refused:
// a node's dial to a node of another group fails with ECONNREFUSED, and a
// connection from a partitioned-off Outside is reset when its first bytes
// arrive. Refusing rather than black-holing makes the separation quick to
// notice (no connect timeouts), which keeps tests short; a black hole is
// what Pause models.
//
// A partition replaces the one in force (Partition with no groups heals,
// as Heal does) and outlives the nodes' restarts. Naming a node twice, or
// a node the cluster does not have, is an error and changes nothing.
func (c *Cluster) Partition(groups ...[]Node) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("cluster: closed")
	}
	if len(groups) == 0 {
		c.net.partition(nil)
		return nil
	}
	m := map[Node]int{}
	for g, nodes := range groups {
		for _, node := range nodes {
			if err := c.checkNode(node); err != nil {
				return err
			}
			if _, dup := m[node]; dup {
				return fmt.Errorf("cluster: partition: %v is named twice", node)
			}
			m[node] = g + 1
		}
	}
	c.net.partition(m)
	return nil
}

// Heal ends the partition in force: every node can reach every other
// again (connections reset by the partition stay closed; the nodes dial
// anew).
func (c *Cluster) Heal() {
	c.net.partition(nil)
}

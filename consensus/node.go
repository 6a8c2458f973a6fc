package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/flotilla-registry/flotilla/internal/logging"
)

// Config configures one Raft node.
type Config struct {
	// NodeID is the node's stable Raft server id.
	NodeID string
	// DataDir contains the Raft log (raft.db) and snapshots.
	DataDir string
	// Bind is the node-to-node listen address. Empty means a cluster of
	// one on an in-memory transport.
	Bind string
	// Advertise is the address peers dial; it defaults to Bind.
	Advertise string
	// Peers are the advertise addresses of the other nodes, used to
	// bootstrap a new cluster or to join a running one.
	Peers []string
	// BootstrapExpect is how many nodes, this one included, must be
	// reachable before a new cluster bootstraps. 0 or 1 with no peers
	// bootstraps a cluster of one at once.
	BootstrapExpect int
	// TLS is the node's cluster identity. It is required for a
	// network transport: node-to-node traffic is always mutual TLS.
	TLS TLSFiles
	// SnapshotThreshold, SnapshotInterval and TrailingLogs set Raft's
	// options of the same names. Zero keeps the defaults: Raft's for the
	// threshold and the trailing logs, 30 s for the interval.
	SnapshotThreshold int
	SnapshotInterval  time.Duration
	TrailingLogs      int
	Logger            *slog.Logger
}

// Timeouts tuned for a LAN: with heartbeat and election at 500 ms, a new
// leader commits about one second after the old one died (measured on two
// cores with three nodes in one process). A 250 ms leader lease made a
// busy leader on two cores step down without cause, so the lease equals
// the heartbeat timeout.
const (
	heartbeatTimeout   = 500 * time.Millisecond
	electionTimeout    = 500 * time.Millisecond
	leaderLeaseTimeout = 500 * time.Millisecond
	snapshotsRetained  = 2
	// snapshotInterval is how often Raft checks whether enough entries
	// arrived for a snapshot. With Raft's default of two minutes, the log
	// can grow by about 400,000 entries between snapshots at 3,300
	// writes/s, and bolt never shrinks the log file.
	snapshotInterval = 30 * time.Second
)

// Node is one member of the Raft cluster with its state machine.
type Node struct {
	id        string
	raft      *raft.Raft
	fsm       *FSM
	store     *raftboltdb.BoltStore
	transport raft.Transport
	logger    *slog.Logger
	reads     *readBatcher

	advertise       string
	peers           []string
	bootstrapExpect int
	mux             *muxLayer
	rpcServer       *http.Server
	rpcClient       *http.Client

	observations chan raft.Observation
	observer     *raft.Observer
	wg           sync.WaitGroup
	stop         chan struct{}
	closeOnce    sync.Once
}

// Open starts a node from its data folder. On first start, a node without
// peers bootstraps a cluster of one; later starts restore the log and the
// latest snapshot.
func Open(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("open raft node: empty node id")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = logging.Discard()
	}
	logger = logger.With("node_id", cfg.NodeID)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("open raft node: %w", err)
	}

	store, err := raftboltdb.NewBoltStore(filepath.Join(cfg.DataDir, "raft.db"))
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", cfg.DataDir, err)
	}
	hc := logging.HCLog(logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained, hc)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open raft snapshots %s: %w", cfg.DataDir, err)
	}

	n := &Node{
		id:              cfg.NodeID,
		store:           store,
		logger:          logger,
		observations:    make(chan raft.Observation, 16),
		stop:            make(chan struct{}),
		peers:           cfg.Peers,
		bootstrapExpect: cfg.BootstrapExpect,
	}
	addr, transport, err := n.newTransport(cfg, hc)
	if err != nil {
		store.Close()
		return nil, err
	}
	n.transport = transport
	n.advertise = string(addr)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hc
	rc.HeartbeatTimeout = heartbeatTimeout
	rc.ElectionTimeout = electionTimeout
	rc.LeaderLeaseTimeout = leaderLeaseTimeout
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = uint64(cfg.SnapshotThreshold)
	}
	rc.SnapshotInterval = snapshotInterval
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = uint64(cfg.TrailingLogs)
	}

	hasState, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		n.closeTransport()
		store.Close()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	single := len(cfg.Peers) == 0 && cfg.BootstrapExpect <= 1
	if !hasState && single {
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(rc, store, store, snaps, transport, boot); err != nil {
			n.closeTransport()
			store.Close()
			return nil, fmt.Errorf("bootstrap raft cluster: %w", err)
		}
		logger.Info("raft cluster bootstrapped", "addr", addr)
	}

	fsm := NewFSM()
	r, err := raft.NewRaft(rc, fsm, store, store, snaps, transport)
	if err != nil {
		n.closeTransport()
		store.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.fsm = fsm
	n.reads = newReadBatcher(n)
	n.observer = raft.NewObserver(n.observations, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(n.observer)
	n.wg.Add(1)
	go n.watchLeader()
	if n.mux != nil {
		n.startRPC()
	}
	if !hasState && !single {
		n.wg.Add(1)
		go n.discover()
	}
	logger.Info("raft node started", "addr", addr, "restored", hasState, "peers", len(cfg.Peers))
	return n, nil
}

// newTransport returns the in-memory transport of a cluster of one, or the
// mutual TLS network transport when the node has a cluster identity.
func (n *Node) newTransport(cfg Config, hc hclog.Logger) (raft.ServerAddress, raft.Transport, error) {
	if cfg.TLS.Certificate == "" {
		if len(cfg.Peers) > 0 || cfg.BootstrapExpect > 1 {
			return "", nil, errors.New("a cluster of several nodes needs cluster.tls.certificate, cluster.tls.key and cluster.tls.ca: node-to-node traffic is mutual TLS")
		}
		addr, t := raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
		return addr, t, nil
	}
	advertise := cfg.Advertise
	if advertise == "" {
		advertise = cfg.Bind
	}
	mux, err := newMuxLayer(cfg.Bind, advertise, cfg.TLS, n.logger, n.isMember)
	if err != nil {
		return "", nil, err
	}
	n.mux = mux
	t := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  mux,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  hc,
	})
	return raft.ServerAddress(advertise), t, nil
}

func (n *Node) closeTransport() {
	if c, ok := n.transport.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

// watchLeader logs leader changes.
func (n *Node) watchLeader() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case o := <-n.observations:
			if lo, ok := o.Data.(raft.LeaderObservation); ok {
				n.logger.Info("raft leader changed", "leader_id", string(lo.LeaderID), "leader_addr", string(lo.LeaderAddr))
			}
		}
	}
}

// ID returns the node's Raft server id.
func (n *Node) ID() string { return n.id }

// State returns the replicated index. Reads from it are as fresh as this
// node's applied index; call ReadBarrier first for a linearizable read.
func (n *Node) State() *State { return n.fsm.State() }

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's address and id, empty when none is known.
func (n *Node) Leader() (addr, id string) {
	a, i := n.raft.LeaderWithID()
	return string(a), string(i)
}

// Stats returns raft's statistics.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Apply proposes c and waits until it is applied or ctx ends. It fills in
// c.ID and c.Time when they are empty. A follower forwards the encoded
// command to the leader. A failed attempt is retried with the same id
// across leader changes until ctx ends, and the id makes the retry apply
// once.
// The error is either a replication error (ErrNotLeader, ErrNoLeader,
// ErrShutdown, a context error) or the application error carried by the
// result, such as ErrBlobUnknown.
func (n *Node) Apply(ctx context.Context, c *Command) (Result, error) {
	if c.ID == "" {
		c.ID = uuid.NewString()
	}
	if c.Time == 0 {
		c.Time = time.Now().UnixNano()
	}
	data, err := c.Encode()
	if err != nil {
		return Result{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultApplyTimeout)
		defer cancel()
	}
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var res Result
		if n.raft.State() == raft.Leader {
			res, err = n.applyLocal(ctx, data)
		} else if res, err = n.forwardApply(ctx, data); err == nil && res.Index > 0 {
			// Wait until this node has applied the write too, so the
			// client's next request to this node reads it.
			err = n.waitFSM(ctx, res.Index)
		}
		if err == nil {
			return res, res.Err()
		}
		if !retryable(err) {
			return Result{}, err
		}
		if attempt == 1 || attempt%20 == 0 {
			n.logger.Debug("raft apply retry", "op", string(c.Op), "command_id", c.ID, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return Result{}, fmt.Errorf("%w: %v", ErrNoLeader, err)
		case <-n.stop:
			return Result{}, ErrShutdown
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 250*time.Millisecond)
	}
}

// defaultApplyTimeout bounds Apply when ctx has no deadline.
const defaultApplyTimeout = 10 * time.Second

func retryable(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader)
}

// applyLocal applies an encoded command on this node, which must lead.
func (n *Node) applyLocal(ctx context.Context, data []byte) (Result, error) {
	timeout := defaultApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return Result{}, context.DeadlineExceeded
		}
	}
	f := n.raft.Apply(data, timeout)
	if err := waitFuture(ctx, f); err != nil {
		return Result{}, translateRaftError(err)
	}
	res, ok := f.Response().(Result)
	if !ok {
		return Result{}, fmt.Errorf("apply: unexpected response %T", f.Response())
	}
	return res, nil
}

// forwardAttempt bounds one forwarded call, so a request does not stay on
// a leader that died: the retry goes to whichever leader is known then.
const forwardAttempt = 2 * time.Second

// forwardApply sends an encoded command to the leader.
func (n *Node) forwardApply(ctx context.Context, data []byte) (Result, error) {
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return Result{}, ErrNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, forwardAttempt)
	defer cancel()
	var res Result
	if err := n.call(ctx, string(addr), rpcApply, data, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}

func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func translateRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrShutdown
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %v", ErrNoLeader, err)
	default:
		return err
	}
}

// ReadBarrier returns once this node's state reflects every write that was
// acknowledged before the call, or an error: ErrNoLeader or a context
// error when no leader can confirm a read index in time. Concurrent
// callers share one confirmation: on the leader a quorum check, on a
// follower one read-index request to the leader.
func (n *Node) ReadBarrier(ctx context.Context) error {
	_, err := n.reads.wait(ctx)
	return err
}

// Snapshot forces a snapshot now, for tests and operators.
func (n *Node) Snapshot() error {
	return n.raft.Snapshot().Error()
}

// Shutdown stops Raft and closes the log store.
func (n *Node) Shutdown() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		n.reads.close()
		n.raft.DeregisterObserver(n.observer)
		if n.rpcServer != nil {
			_ = n.rpcServer.Close()
		}
		err = n.raft.Shutdown().Error()
		n.wg.Wait()
		n.closeTransport()
		if cerr := n.store.Close(); err == nil {
			err = cerr
		}
		n.logger.Info("raft node stopped")
	})
	return err
}

// waitFSM returns once the state machine has applied index, or when ctx
// ends.
func (n *Node) waitFSM(ctx context.Context, index uint64) error {
	for n.fsm.AppliedIndex() < index {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: index %d not applied on this node: %v", ErrNoLeader, index, ctx.Err())
		case <-n.stop:
			return ErrShutdown
		case <-time.After(200 * time.Microsecond):
		}
	}
	return nil
}

// lastStateEntry returns the index of the last command or configuration
// entry at or below index, because only those reach the state machine. It
// returns 1 when the log contains none, as after compaction into a
// snapshot that the state machine has already restored.
func (n *Node) lastStateEntry(index uint64) uint64 {
	var l raft.Log
	for i := index; i > 0 && index-i < 1024; i-- {
		if err := n.store.GetLog(i, &l); err != nil {
			return 1
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return 1
}

// CaughtUp reports whether this node has a leader and has applied every
// entry the leader had committed at the time of the call. It uses a read
// index from the leader, because a restarted node learns the leader's
// commit index only from its first replicated entries. Its own commit
// index would report it caught up too early.
func (n *Node) CaughtUp(ctx context.Context) bool {
	return n.ReadBarrier(ctx) == nil
}

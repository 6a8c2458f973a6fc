package consensus

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// discoveryInterval is the pause between rounds of asking the peers about
// themselves while a new node bootstraps or joins.
const discoveryInterval = time.Second

// isMember reports whether a certificate names this node, a configured
// peer or a server of the current Raft configuration.
func (n *Node) isMember(id peerIdentity) bool {
	if id.names(n.advertise) {
		return true
	}
	for _, p := range n.peers {
		if id.names(p) {
			return true
		}
	}
	if n.raft == nil {
		return false
	}
	for _, s := range n.servers() {
		if id.names(string(s.Address)) {
			return true
		}
	}
	return false
}

// servers returns the servers of the latest Raft configuration.
func (n *Node) servers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// Info returns this node's view of itself and of the leader.
func (n *Node) Info() NodeInfo {
	addr, id := n.raft.LeaderWithID()
	stats := n.raft.Stats()
	term, _ := strconv.ParseUint(stats["term"], 10, 64)
	snapshot, _ := strconv.ParseUint(stats["last_snapshot_index"], 10, 64)
	first, _ := n.store.FirstIndex()
	return NodeInfo{
		ID:            n.id,
		Address:       n.advertise,
		State:         n.raft.State().String(),
		Bootstrapped:  len(n.servers()) > 0,
		LeaderID:      string(id),
		LeaderAddress: string(addr),
		Term:          term,
		CommitIndex:   n.raft.CommitIndex(),
		AppliedIndex:  n.raft.AppliedIndex(),
		SnapshotIndex: snapshot,
		FirstLogIndex: first,
	}
}

// discover runs on a node started without Raft state and with peers. It
// requests each peer's info until it either joins a running cluster
// (a peer has a leader) or finds BootstrapExpect nodes without a leader,
// which then all bootstrap the same configuration: every node of the set,
// sorted by id.
func (n *Node) discover() {
	defer n.wg.Done()
	for round := 1; ; round++ {
		if len(n.servers()) > 0 {
			if _, id := n.raft.LeaderWithID(); id != "" {
				return
			}
		}
		infos := n.askPeers()
		if n.tryJoin(infos) {
			n.logger.Info("raft cluster joined", "round", round)
			return
		}
		if len(n.servers()) == 0 && n.bootstrapExpect > 1 && len(infos)+1 >= n.bootstrapExpect {
			if n.bootstrap(infos) {
				return
			}
		}
		if round == 1 || round%30 == 0 {
			n.logger.Info("raft cluster forming: waiting for peers", "reachable", len(infos),
				"peers", len(n.peers), "bootstrap_expect", n.bootstrapExpect)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(discoveryInterval):
		}
	}
}

func (n *Node) askPeers() []NodeInfo {
	var (
		mu  sync.Mutex
		out []NodeInfo
		wg  sync.WaitGroup
	)
	for _, p := range n.peers {
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			var info NodeInfo
			if err := n.call(ctx, addr, rpcInfo, nil, &info); err != nil {
				n.logger.Debug("peer not reachable", "peer", addr, "err", err)
				return
			}
			info.Address = addr
			mu.Lock()
			out = append(out, info)
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	return out
}

// tryJoin sends a join request for this node to a peer that has a leader.
func (n *Node) tryJoin(infos []NodeInfo) bool {
	for _, info := range infos {
		if !info.Bootstrapped || info.LeaderID == "" {
			continue
		}
		body, _ := json.Marshal(joinRequest{ID: n.id, Address: n.advertise})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.call(ctx, info.Address, rpcJoin, body, nil)
		cancel()
		if err != nil {
			n.logger.Warn("join request failed", "peer", info.Address, "err", err)
			continue
		}
		return true
	}
	return false
}

func (n *Node) bootstrap(infos []NodeInfo) bool {
	servers := []raft.Server{{ID: raft.ServerID(n.id), Address: raft.ServerAddress(n.advertise)}}
	for _, info := range infos {
		if info.LeaderID != "" {
			return false
		}
		servers = append(servers, raft.Server{ID: raft.ServerID(info.ID), Address: raft.ServerAddress(info.Address)})
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil {
		n.logger.Warn("raft bootstrap failed", "err", err)
		return false
	}
	ids := make([]string, len(servers))
	for i, s := range servers {
		ids[i] = string(s.ID)
	}
	n.logger.Info("raft cluster bootstrapped", "servers", ids)
	return true
}

// AddVoter adds a server to the cluster, on the leader or through it.
func (n *Node) AddVoter(ctx context.Context, id, address string) error {
	if _, _, err := net.SplitHostPort(address); err != nil {
		return fmt.Errorf("server address %q: %w", address, err)
	}
	return n.onLeader(ctx, rpcJoin, joinRequest{ID: id, Address: address}, func(timeout time.Duration) error {
		err := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(address), 0, timeout).Error()
		if err == nil {
			n.logger.Info("raft server added", "server_id", id, "address", address)
		}
		return err
	})
}

// RemoveServer removes a server from the cluster, on the leader or through
// it.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.onLeader(ctx, rpcRemove, joinRequest{ID: id}, func(timeout time.Duration) error {
		err := n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error()
		if err == nil {
			n.logger.Info("raft server removed", "server_id", id)
		}
		return err
	})
}

// onLeader runs a membership change locally when this node leads, or sends
// it to the leader, retrying across leader changes until ctx ends.
func (n *Node) onLeader(ctx context.Context, path string, req joinRequest, local func(time.Duration) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultApplyTimeout)
		defer cancel()
	}
	body, _ := json.Marshal(req)
	for {
		var err error
		if n.raft.State() == raft.Leader {
			dl, _ := ctx.Deadline()
			err = translateRaftError(local(time.Until(dl)))
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			err = n.call(ctx, string(addr), path, body, nil)
		} else {
			err = ErrNoLeader
		}
		if err == nil || !retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNoLeader, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ServerStatus is one server of the cluster as the status reports it.
type ServerStatus struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	// Reachable is false when the server did not respond in time.
	Reachable    bool   `json:"reachable"`
	AppliedIndex uint64 `json:"applied_index"`
	// Lag is how many committed entries the server has yet to apply,
	// measured against this node's commit index.
	Lag uint64 `json:"lag"`
}

// Status is the state of the cluster from this node's view.
type Status struct {
	NodeID        string         `json:"node_id"`
	State         string         `json:"state"`
	LeaderID      string         `json:"leader_id"`
	LeaderAddress string         `json:"leader_address"`
	Term          uint64         `json:"term"`
	CommitIndex   uint64         `json:"commit_index"`
	AppliedIndex  uint64         `json:"applied_index"`
	SnapshotIndex uint64         `json:"snapshot_index"`
	FirstLogIndex uint64         `json:"first_log_index"`
	Servers       []ServerStatus `json:"servers"`
}

// ClusterStatus returns the cluster's leader, indexes and every server with
// its lag. Other servers are asked for their applied index over the
// cluster transport, each within a second.
func (n *Node) ClusterStatus(ctx context.Context) Status {
	self := n.Info()
	st := Status{
		NodeID: self.ID, State: self.State, LeaderID: self.LeaderID, LeaderAddress: self.LeaderAddress,
		Term: self.Term, CommitIndex: self.CommitIndex, AppliedIndex: self.AppliedIndex,
		SnapshotIndex: self.SnapshotIndex, FirstLogIndex: self.FirstLogIndex,
	}
	servers := n.servers()
	st.Servers = make([]ServerStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		st.Servers[i] = ServerStatus{
			ID: string(s.ID), Address: string(s.Address), Suffrage: s.Suffrage.String(),
			Leader: string(s.ID) == self.LeaderID,
		}
		if string(s.ID) == n.id {
			st.Servers[i].Reachable = true
			st.Servers[i].AppliedIndex = self.AppliedIndex
			continue
		}
		wg.Add(1)
		go func(out *ServerStatus) {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			var info NodeInfo
			if err := n.call(cctx, out.Address, rpcInfo, nil, &info); err == nil {
				out.Reachable = true
				out.AppliedIndex = info.AppliedIndex
			}
		}(&st.Servers[i])
	}
	wg.Wait()
	for i := range st.Servers {
		if st.Servers[i].Reachable && st.CommitIndex > st.Servers[i].AppliedIndex {
			st.Servers[i].Lag = st.CommitIndex - st.Servers[i].AppliedIndex
		}
	}
	return st
}

// TransferLeadership hands leadership to a caught-up peer when this node
// leads, so a planned stop costs no election timeout. The target is the
// reachable voter with the highest applied index: a peer that is down
// cannot take over, and a transfer to it would only time out.
func (n *Node) TransferLeadership() error {
	if n.raft.State() != raft.Leader || len(n.servers()) < 2 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var target *ServerStatus
	st := n.ClusterStatus(ctx)
	for i := range st.Servers {
		s := &st.Servers[i]
		if s.ID == n.id || !s.Reachable || s.Suffrage != raft.Voter.String() {
			continue
		}
		if target == nil || s.AppliedIndex > target.AppliedIndex {
			target = s
		}
	}
	if target == nil {
		return fmt.Errorf("leadership transfer: no other voter is reachable")
	}
	if err := n.raft.LeadershipTransferToServer(raft.ServerID(target.ID), raft.ServerAddress(target.Address)).Error(); err != nil {
		return fmt.Errorf("leadership transfer to %s: %w", target.ID, err)
	}
	n.logger.Info("raft leadership transferred", "server_id", target.ID)
	return nil
}

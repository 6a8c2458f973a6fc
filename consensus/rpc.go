package consensus

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// The node-to-node RPCs. They run as HTTP/1.1 over the cluster port's
// mutual TLS, after the protocol byte protoRPC.
const (
	rpcInfo      = "/rpc/info"
	rpcApply     = "/rpc/apply"
	rpcReadIndex = "/rpc/readindex"
	rpcJoin      = "/rpc/join"
	rpcRemove    = "/rpc/remove"
)

// maxRPCBody bounds an RPC request body: a command carries at most one
// manifest (4 MiB by default) plus its encoding.
const maxRPCBody = 64 << 20

// rpcError is the body of a failed RPC.
type rpcError struct {
	Error string `json:"error"`
	// NotLeader is set when the receiver does not lead; the caller finds
	// the leader and retries.
	NotLeader bool `json:"not_leader,omitempty"`
}

// NodeInfo is a node's report of itself to its peers and to the cluster
// status.
type NodeInfo struct {
	ID            string `json:"id"`
	Address       string `json:"address"`
	State         string `json:"state"`
	Bootstrapped  bool   `json:"bootstrapped"`
	LeaderID      string `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	// SnapshotIndex is the last index in this node's newest snapshot, 0
	// before the first one.
	SnapshotIndex uint64 `json:"snapshot_index"`
	// FirstLogIndex is the oldest entry still in this node's log; the
	// entries before it were compacted into a snapshot.
	FirstLogIndex uint64 `json:"first_log_index"`
}

type joinRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

type readIndexResponse struct {
	Index uint64 `json:"index"`
}

type identityKey struct{}

func (n *Node) startRPC() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+rpcInfo, n.handleInfo)
	mux.HandleFunc("POST "+rpcApply, n.memberOnly(n.handleApply))
	mux.HandleFunc("POST "+rpcReadIndex, n.memberOnly(n.handleReadIndex))
	mux.HandleFunc("POST "+rpcJoin, n.handleJoin)
	mux.HandleFunc("POST "+rpcRemove, n.memberOnly(n.handleRemove))
	n.rpcServer = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: handshakeTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if tc, ok := c.(*tls.Conn); ok && len(tc.ConnectionState().PeerCertificates) > 0 {
				return context.WithValue(ctx, identityKey{}, identityOf(tc.ConnectionState().PeerCertificates[0]))
			}
			return ctx
		},
	}
	go func() {
		if err := n.rpcServer.Serve(n.mux.rpc); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.logger.Error("cluster rpc server stopped", "err", err)
		}
	}()
	n.rpcClient = &http.Client{Transport: &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			timeout := 5 * time.Second
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
				timeout = time.Until(dl)
			}
			return n.mux.dial(addr, timeout, protoRPC)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}
}

func peerOf(r *http.Request) (peerIdentity, bool) {
	id, ok := r.Context().Value(identityKey{}).(peerIdentity)
	return id, ok
}

// memberOnly admits callers whose certificate names a cluster member or a
// configured peer.
func (n *Node) memberOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := peerOf(r)
		if !ok || !n.isMember(id) {
			writeRPCError(w, http.StatusForbidden, rpcError{Error: "certificate names no cluster member"})
			return
		}
		h(w, r)
	}
}

func writeRPCError(w http.ResponseWriter, status int, e rpcError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}

func writeRPC(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (n *Node) handleInfo(w http.ResponseWriter, _ *http.Request) {
	writeRPC(w, n.Info())
}

func (n *Node) handleApply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
	if err != nil {
		writeRPCError(w, http.StatusBadRequest, rpcError{Error: err.Error()})
		return
	}
	if n.raft.State() != raft.Leader {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: "not the leader", NotLeader: true})
		return
	}
	res, err := n.applyLocal(r.Context(), data)
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: err.Error(), NotLeader: errors.Is(err, ErrNotLeader)})
		return
	}
	writeRPC(w, res)
}

func (n *Node) handleReadIndex(w http.ResponseWriter, r *http.Request) {
	if n.raft.State() != raft.Leader {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: "not the leader", NotLeader: true})
		return
	}
	idx, err := n.reads.wait(r.Context())
	if err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: err.Error(), NotLeader: errors.Is(err, ErrNotLeader)})
		return
	}
	writeRPC(w, readIndexResponse{Index: idx})
}

// handleJoin adds the caller as a voter. The caller's certificate must name
// the host of the address it joins with, or belong to a member that
// forwards an operator's request.
func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.ID == "" || req.Address == "" {
		writeRPCError(w, http.StatusBadRequest, rpcError{Error: "join needs an id and an address"})
		return
	}
	id, ok := peerOf(r)
	if !ok || (!id.names(req.Address) && !n.isMember(id)) {
		n.logger.Warn("join rejected: certificate does not name the joining address",
			"joining_id", req.ID, "address", req.Address, "names", hostList(id))
		writeRPCError(w, http.StatusForbidden, rpcError{Error: "certificate does not name the joining address"})
		return
	}
	if err := n.AddVoter(r.Context(), req.ID, req.Address); err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || req.ID == "" {
		writeRPCError(w, http.StatusBadRequest, rpcError{Error: "remove needs an id"})
		return
	}
	if err := n.RemoveServer(r.Context(), req.ID); err != nil {
		writeRPCError(w, http.StatusServiceUnavailable, rpcError{Error: err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// call sends one RPC to the node at addr and decodes the JSON response
// into out (when not nil). A not-leader response returns ErrNotLeader; transport
// failures return ErrNoLeader-wrapped errors so callers retry.
func (n *Node) call(ctx context.Context, addr, path string, body []byte, out any) error {
	if n.rpcClient == nil {
		return fmt.Errorf("%w: this node has no cluster transport", ErrNoLeader)
	}
	method := http.MethodPost
	if path == rpcInfo {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := n.rpcClient.Do(req)
	if err != nil {
		return fmt.Errorf("%w: rpc %s to %s: %v", ErrNoLeader, path, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e rpcError
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		if e.NotLeader {
			return fmt.Errorf("%w: %s", ErrNotLeader, e.Error)
		}
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("%w: rpc %s to %s: %s", ErrNoLeader, path, addr, e.Error)
		}
		return fmt.Errorf("rpc %s to %s: %s: %s", path, addr, resp.Status, e.Error)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxRPCBody)).Decode(out); err != nil {
		return fmt.Errorf("rpc %s to %s: decode response: %w", path, addr, err)
	}
	return nil
}

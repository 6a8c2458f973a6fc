package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// readBatcher implements linearizable reads. hashicorp/raft has no
// ReadIndex call, so on the leader a read records the commit index,
// confirms with a quorum that this node still leads (VerifyLeader), and
// waits until the state machine reaches the recorded index. A follower
// requests such a read index from the leader and waits until its own
// state machine reaches it. All readers that arrive while a confirmation
// runs share the next one, so the cost per read falls as load grows.
type readBatcher struct {
	n       *Node
	mu      sync.Mutex
	waiting []chan readResult
	kick    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	// barrierTerm is the term in which a barrier last completed; only
	// the loop goroutine uses it.
	barrierTerm uint64
}

type readResult struct {
	index uint64
	err   error
}

func newReadBatcher(n *Node) *readBatcher {
	b := &readBatcher{n: n, kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

// wait returns the read index once this node has applied it. A failed
// confirmation that a retry may cure (no leader yet, a leader change) is
// retried until ctx ends.
func (b *readBatcher) wait(ctx context.Context) (uint64, error) {
	for {
		idx, err := b.once(ctx)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: read index: %v", ErrNoLeader, err)
		case <-b.done:
			return 0, ErrShutdown
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *readBatcher) once(ctx context.Context) (uint64, error) {
	ch := make(chan readResult, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		return 0, fmt.Errorf("%w: read index: %v", ErrNoLeader, ctx.Err())
	case <-b.done:
		return 0, ErrShutdown
	}
}

func (b *readBatcher) loop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.done:
			return
		case <-b.kick:
		}
		b.mu.Lock()
		batch := b.waiting
		b.waiting = nil
		b.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		idx, err := b.confirm()
		if err == nil {
			err = b.waitApplied(idx)
		}
		for _, ch := range batch {
			ch <- readResult{index: idx, err: err}
		}
	}
}

// confirmTimeout bounds one confirmation; a caller with a shorter deadline
// gives up earlier through its own context.
const confirmTimeout = 5 * time.Second

func (b *readBatcher) confirm() (uint64, error) {
	r := b.n.raft
	if r.State() != raft.Leader {
		return b.remoteIndex()
	}
	readIndex := r.CommitIndex()
	if err := r.VerifyLeader().Error(); err != nil {
		return 0, translateRaftError(err)
	}
	// A new leader's commit index may trail entries that an earlier
	// leader committed, until an entry of the new term commits. One
	// barrier per term closes that gap.
	if term := r.CurrentTerm(); term != b.barrierTerm {
		if err := r.Barrier(confirmTimeout).Error(); err != nil {
			return 0, translateRaftError(err)
		}
		b.barrierTerm = term
		readIndex = max(readIndex, r.AppliedIndex())
	}
	return readIndex, nil
}

// remoteIndex requests a read index from the leader.
func (b *readBatcher) remoteIndex() (uint64, error) {
	addr, _ := b.n.raft.LeaderWithID()
	if addr == "" {
		return 0, ErrNoLeader
	}
	ctx, cancel := context.WithTimeout(context.Background(), forwardAttempt)
	defer cancel()
	go func() {
		select {
		case <-b.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var resp readIndexResponse
	if err := b.n.call(ctx, string(addr), rpcReadIndex, nil, &resp); err != nil {
		return 0, err
	}
	return resp.Index, nil
}

// waitApplied returns once the state machine has processed every entry up
// to index. Entries that never reach the state machine (no-ops, barriers)
// are skipped: the wait is for the last command or configuration entry at
// or below index.
func (b *readBatcher) waitApplied(index uint64) error {
	r := b.n.raft
	deadline := time.Now().Add(confirmTimeout)
	target := uint64(0)
	if b.n.fsm.AppliedIndex() >= index {
		return nil
	}
	for {
		if target == 0 && r.AppliedIndex() >= index {
			target = b.n.lastStateEntry(index)
		}
		if target != 0 && b.n.fsm.AppliedIndex() >= target {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: applied index %d behind read index %d", ErrNoLeader, b.n.fsm.AppliedIndex(), index)
		}
		select {
		case <-b.done:
			return ErrShutdown
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func (b *readBatcher) close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	b.wg.Wait()
}

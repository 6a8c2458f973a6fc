package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// readBatcher implements linearizable reads on the leader. hashicorp/raft
// has no ReadIndex call, so a read records the commit index, confirms with
// a quorum that this node still leads (VerifyLeader), and waits until the
// applied index reaches the recorded one. All readers that arrive while a
// confirmation is running share the next one, so the cost per read falls
// as load grows.
type readBatcher struct {
	n       *Node
	mu      sync.Mutex
	waiting []chan error
	kick    chan struct{}
	// barrierTerm is the term in which a barrier last completed; only
	// the loop goroutine uses it.
	barrierTerm string
	done        chan struct{}
	wg          sync.WaitGroup
}

func newReadBatcher(n *Node) *readBatcher {
	b := &readBatcher{n: n, kick: make(chan struct{}, 1), done: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

func (b *readBatcher) wait(ctx context.Context) error {
	ch := make(chan error, 1)
	b.mu.Lock()
	b.waiting = append(b.waiting, ch)
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.done:
		return ErrShutdown
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
		err := b.confirm()
		for _, ch := range batch {
			ch <- err
		}
	}
}

// confirmTimeout bounds one leadership check; a caller with a shorter
// deadline gives up earlier through its own context.
const confirmTimeout = 5 * time.Second

func (b *readBatcher) confirm() error {
	r := b.n.raft
	if r.State() != raft.Leader {
		if addr, _ := r.LeaderWithID(); addr == "" {
			return ErrNoLeader
		}
		return ErrNotLeader
	}
	readIndex := r.CommitIndex()
	if err := r.VerifyLeader().Error(); err != nil {
		return translateRaftError(err)
	}
	// A new leader's commit index may trail entries that an earlier
	// leader committed, until an entry of the new term commits. One
	// barrier per term closes that gap.
	if term := r.Stats()["term"]; term != b.barrierTerm {
		if err := r.Barrier(confirmTimeout).Error(); err != nil {
			return translateRaftError(err)
		}
		b.barrierTerm = term
		readIndex = r.AppliedIndex()
	}
	deadline := time.Now().Add(confirmTimeout)
	for r.AppliedIndex() < readIndex {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: applied index %d behind read index %d", ErrNoLeader, r.AppliedIndex(), readIndex)
		}
		select {
		case <-b.done:
			return ErrShutdown
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

func (b *readBatcher) close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	b.wg.Wait()
}

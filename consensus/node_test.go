package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func openNode(t *testing.T, dir string) *Node {
	t.Helper()
	n, err := Open(Config{NodeID: "n1", DataDir: dir})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	waitLeader(t, n)
	return n
}

func waitLeader(t *testing.T, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !n.IsLeader() {
		select {
		case <-ctx.Done():
			t.Fatal("node did not become leader within 10s")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestNodeRestartKeepsState(t *testing.T) {
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			n := openNode(t, dir)
			for _, c := range []*Command{commitBlob("a", "l1"), putManifest("a", "v1", "m1", dg("l1"))} {
				if _, err := n.Apply(ctx, c); err != nil {
					t.Fatalf("apply %s: %v", c.Op, err)
				}
			}
			if snapshot {
				if err := n.Snapshot(); err != nil {
					t.Fatalf("snapshot: %v", err)
				}
			}
			if err := n.Shutdown(); err != nil {
				t.Fatalf("shutdown: %v", err)
			}

			n = openNode(t, dir)
			defer n.Shutdown()
			if err := n.ReadBarrier(ctx); err != nil {
				t.Fatalf("read barrier: %v", err)
			}
			m, err := n.State().ManifestByTag("a", "v1")
			if err != nil {
				t.Fatalf("tag after restart: %v", err)
			}
			if m.Digest != dg("m1") {
				t.Fatalf("tag points to %s", m.Digest)
			}
		})
	}
}

func TestNodeApplyReturnsApplicationError(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.Apply(ctx, putManifest("a", "v1", "m1", dg("missing")))
	if !errors.Is(err, ErrManifestBlobUnknown) {
		t.Fatalf("err = %v, want ErrManifestBlobUnknown", err)
	}
}

func TestReadBarrierConcurrent(t *testing.T) {
	n := openNode(t, t.TempDir())
	defer n.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tag := fmt.Sprintf("t%d", i)
			if _, err := n.Apply(ctx, putManifest("r", tag, "m")); err != nil {
				errs <- err
				return
			}
			if err := n.ReadBarrier(ctx); err != nil {
				errs <- err
				return
			}
			if _, err := n.State().ManifestByTag("r", tag); err != nil {
				errs <- fmt.Errorf("tag %s not visible after barrier: %w", tag, err)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestApplyAfterShutdown(t *testing.T) {
	n := openNode(t, t.TempDir())
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	_, err := n.Apply(context.Background(), commitBlob("a", "x"))
	if !errors.Is(err, ErrShutdown) {
		t.Fatalf("err = %v, want ErrShutdown", err)
	}
	if err := n.ReadBarrier(context.Background()); !errors.Is(err, ErrShutdown) {
		t.Fatalf("read barrier err = %v, want ErrShutdown", err)
	}
}

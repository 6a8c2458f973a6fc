package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/config"
	"github.com/flotilla-registry/flotilla/internal/htpasswd"
	"github.com/flotilla-registry/flotilla/internal/logging"
)

func TestStartUsers(t *testing.T) {
	dir := t.TempDir()
	rn, err := consensus.Open(consensus.Config{NodeID: "t", DataDir: filepath.Join(dir, "raft")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rn.Shutdown() })
	path := filepath.Join(dir, "htpasswd")
	hash, err := htpasswd.Hash("DockerRules", 4)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("moby:"+hash+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A stop during the wait ends the start with the context's error
	// rather than with an authenticator that holds no user yet.
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if a, err := startUsers(stopped, rn, path, logging.Discard()); err == nil || a != nil {
		t.Fatalf("startUsers after a stop: %v, %v; want no authenticator and an error", a, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := startUsers(ctx, rn, path, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rn.State().User("moby"); !ok || a == nil {
		t.Fatal("startUsers returned before the htpasswd users were imported")
	}
}

func TestLocalURL(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{":5000", "http://127.0.0.1:5000/healthz"},
		{"0.0.0.0:5443", "http://127.0.0.1:5443/healthz"},
		{"[::]:5000", "http://[::1]:5000/healthz"},
		{"[::1]:5001", "http://[::1]:5001/healthz"},
		{"127.0.0.7:5002", "http://127.0.0.7:5002/healthz"},
		{"registry.local:5003", "http://127.0.0.1:5003/healthz"},
	} {
		cfg := config.Default()
		cfg.HTTP.Addr = tc.addr
		if got := localURL(cfg); got != tc.want {
			t.Errorf("localURL(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

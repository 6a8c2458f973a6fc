package node

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/auth"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

// benchNode is a Server on a Raft cluster of one with a filesystem
// store, called through its handler without a network.
type benchNode struct {
	b       *testing.B
	handler http.Handler
}

// newBenchNode starts a node with user alice at bcrypt cost 5, the cost
// bench/compare.sh uses.
func newBenchNode(b *testing.B, staleReads bool) *benchNode {
	b.Helper()
	dir := b.TempDir()
	rn, err := consensus.Open(consensus.Config{NodeID: "bench", DataDir: dir + "/raft"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rn.Shutdown() })

	deadline := time.Now().Add(10 * time.Second)
	for !rn.IsLeader() {
		if time.Now().After(deadline) {
			b.Fatal("no leader within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), 5)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := rn.Apply(context.Background(), &consensus.Command{Op: consensus.OpUsersSyncFile,
		Users: []consensus.User{{Name: testUser, Hash: string(hash)}}}); err != nil {
		b.Fatal(err)
	}

	store, err := blobstore.NewFilesystem(dir + "/blobs")
	if err != nil {
		b.Fatal(err)
	}
	authn := auth.New(func(name string) (auth.User, bool) {
		u, ok := rn.State().User(name)
		if !ok {
			return auth.User{}, false
		}
		return auth.User{Name: u.Name, Hash: u.Hash, Version: u.ModifyIndex}, true
	}, auth.Options{})
	srv := New(Options{
		Raft: rn, Store: store, Uploads: upload.New(store, nil), Auth: authn,
		Realm: "Bench Realm", StaleReads: staleReads,
	})
	srv.SetReady(true)
	return &benchNode{b: b, handler: srv.Handler()}
}

// do sends one request to the handler with alice's credentials.
func (n *benchNode) do(method, path string, body []byte, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.SetBasicAuth(testUser, testPassword)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	n.handler.ServeHTTP(rec, req)
	return rec
}

// pushImage stores a config and a layer blob and a manifest under tag,
// and returns the manifest.
func (n *benchNode) pushImage(repo, tag string) []byte {
	n.b.Helper()
	var descs []digest.Digest
	for _, content := range []string{`{"architecture":"amd64","os":"linux"}`, "layer of " + repo} {
		d := digest.FromString(content)
		rec := n.do("POST", fmt.Sprintf("/v2/%s/blobs/uploads/?digest=%s", repo, d), []byte(content), nil)
		if rec.Code != http.StatusCreated {
			n.b.Fatalf("blob upload: status %d: %s", rec.Code, rec.Body)
		}
		descs = append(descs, d)
	}
	m := imageManifest(descs[0], len(`{"architecture":"amd64","os":"linux"}`), descs[1])
	n.putManifest(repo, tag, m)
	return m
}

func (n *benchNode) putManifest(repo, tag string, m []byte) {
	rec := n.do("PUT", fmt.Sprintf("/v2/%s/manifests/%s", repo, tag), m,
		map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
	if rec.Code != http.StatusCreated {
		n.b.Fatalf("manifest put: status %d: %s", rec.Code, rec.Body)
	}
}

// BenchmarkManifestHeadByTag sends HEAD for a manifest by tag through the
// node's handler from GOMAXPROCS goroutines. A request costs Basic
// authentication (a cache hit after the first request), routing, the read
// barrier of a linearizable read (none with stale reads) and the lookup.
func BenchmarkManifestHeadByTag(b *testing.B) {
	for _, mode := range []struct {
		name  string
		stale bool
	}{{"linearizable", false}, {"stale", true}} {
		b.Run(mode.name, func(b *testing.B) {
			n := newBenchNode(b, mode.stale)
			n.pushImage("bench/head", "latest")
			header := map[string]string{"Accept": "application/vnd.oci.image.manifest.v1+json"}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := n.do("HEAD", "/v2/bench/head/manifests/latest", nil, header)
					if rec.Code != http.StatusOK {
						b.Errorf("HEAD: status %d", rec.Code)
						return
					}
				}
			})
		})
	}
}

// BenchmarkManifestPutTag PUTs one manifest under a new tag per request
// through the handler, from one goroutine and from 16: each request is
// one Raft commit on the node's bolt log, so concurrent writers share
// fsyncs.
func BenchmarkManifestPutTag(b *testing.B) {
	header := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	b.Run("writers=1", func(b *testing.B) {
		n := newBenchNode(b, false)
		m := n.pushImage("bench/tags", "latest")
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			rec := n.do("PUT", fmt.Sprintf("/v2/bench/tags/manifests/t%09d", i), m, header)
			if rec.Code != http.StatusCreated {
				b.Fatalf("PUT: status %d: %s", rec.Code, rec.Body)
			}
		}
	})
	b.Run("writers=16", func(b *testing.B) {
		n := newBenchNode(b, false)
		m := n.pushImage("bench/tags", "latest")
		var next atomic.Int64
		// RunParallel starts parallelism × GOMAXPROCS goroutines.
		b.SetParallelism(max(1, 16/runtime.GOMAXPROCS(0)))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rec := n.do("PUT", fmt.Sprintf("/v2/bench/tags/manifests/t%09d", next.Add(1)), m, header)
				if rec.Code != http.StatusCreated {
					b.Errorf("PUT: status %d: %s", rec.Code, rec.Body)
					return
				}
			}
		})
	})
}

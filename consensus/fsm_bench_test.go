package consensus

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"
)

// benchManifest returns a manifest command for repo and tag that
// references the blobs of seedRepo.
func benchManifest(repo, tag string, blobs []digest.Digest) *Command {
	content := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","repo":%q}`, repo)
	return &Command{Op: OpManifestPut, Repo: repo, Tag: tag, Manifest: &Manifest{
		Digest:    digest.FromString(content),
		MediaType: "application/vnd.oci.image.manifest.v1+json",
		Content:   []byte(content),
		Blobs:     blobs,
	}}
}

// seedRepo commits a config and a layer blob to repo and returns their
// digests and the next free index.
func seedRepo(s *State, repo string, index uint64) ([]digest.Digest, uint64) {
	var blobs []digest.Digest
	for _, name := range []string{"config", "layer"} {
		c := commitBlob(repo, repo+"/"+name)
		s.apply(c, index)
		index++
		blobs = append(blobs, c.Blob.Digest)
	}
	return blobs, index
}

// seedIndex fills a state with repos repositories of tagsPerRepo tags
// each, as the scale section of bench/compare.sh does through the API.
func seedIndex(repos, tagsPerRepo int) *State {
	s := NewState()
	index := uint64(1)
	for r := range repos {
		repo := fmt.Sprintf("bench/scale/repo-%07d", r)
		var blobs []digest.Digest
		blobs, index = seedRepo(s, repo, index)
		for t := range tagsPerRepo {
			c := benchManifest(repo, fmt.Sprintf("t%09d", t), blobs)
			c.ID = fmt.Sprintf("seed-%d", index)
			s.apply(c, index)
			index++
		}
	}
	return s
}

// BenchmarkApplyManifestPut applies manifest puts under new tags in one
// repository, the state machine's share of a tag write.
func BenchmarkApplyManifestPut(b *testing.B) {
	s := NewState()
	blobs, index := seedRepo(s, "bench/tags", 1)
	ids := make([]string, b.N)
	for i := range ids {
		ids[i] = fmt.Sprintf("id-%d", i)
	}
	c := benchManifest("bench/tags", "", blobs)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.ID = ids[i]
		c.Tag = ids[i]
		if r := s.apply(c, index); r.Err() != nil {
			b.Fatal(r.Err())
		}
		index++
	}
}

// BenchmarkApplyBlobCommit applies commits of new blobs to one
// repository.
func BenchmarkApplyBlobCommit(b *testing.B) {
	s := NewState()
	cmds := make([]*Command, b.N)
	for i := range cmds {
		cmds[i] = commitBlob("bench/blobs", fmt.Sprintf("blob-%d", i))
		cmds[i].ID = fmt.Sprintf("id-%d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if r := s.apply(cmds[i], uint64(i+1)); r.Err() != nil {
			b.Fatal(r.Err())
		}
	}
}

// BenchmarkFSMApplyManifestPut applies encoded manifest puts through
// FSM.Apply, which adds the JSON decoding of every log entry. The entries
// cycle through more ids than the state remembers, so the table of
// recent results never returns a remembered result.
func BenchmarkFSMApplyManifestPut(b *testing.B) {
	fsm := NewFSM()
	blobs, index := seedRepo(fsm.State(), "bench/tags", 1)
	const distinct = 2 * dedupeCapacity
	entries := make([][]byte, distinct)
	for i := range entries {
		c := benchManifest("bench/tags", fmt.Sprintf("t%09d", i), blobs)
		c.ID = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		c.Time = 1
		data, err := c.Encode()
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = data
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		res := fsm.Apply(&raft.Log{Index: index, Data: entries[i%distinct]})
		if r, ok := res.(Result); !ok || r.Err() != nil {
			b.Fatalf("apply: %v", res)
		}
		index++
	}
}

// BenchmarkManifestByTag looks up random tags in an index of 100,000
// tags in 10,000 repositories, from one goroutine and from all
// GOMAXPROCS.
func BenchmarkManifestByTag(b *testing.B) {
	const repos, tagsPerRepo = 10_000, 10
	s := seedIndex(repos, tagsPerRepo)
	keys := make([][2]string, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = [2]string{
			fmt.Sprintf("bench/scale/repo-%07d", rng.IntN(repos)),
			fmt.Sprintf("t%09d", rng.IntN(tagsPerRepo)),
		}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			k := keys[i%len(keys)]
			if _, err := s.ManifestByTag(k[0], k[1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				k := keys[i%len(keys)]
				if _, err := s.ManifestByTag(k[0], k[1]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

// benchSink is a raft.SnapshotSink into memory.
type benchSink struct{ bytes.Buffer }

func (s *benchSink) ID() string    { return "bench" }
func (s *benchSink) Cancel() error { return nil }
func (s *benchSink) Close() error  { return nil }

// fullIndexEnv set to 1 adds the index of 1,000,000 tags in 100,000
// repositories to the index benchmarks; building it takes about a minute.
const fullIndexEnv = "FLOTILLA_BENCH_FULL"

// indexSizes returns the repository counts of the index benchmarks, each
// repository with 10 tags.
func indexSizes() []int {
	if os.Getenv(fullIndexEnv) == "1" {
		return []int{10_000, 100_000}
	}
	return []int{10_000}
}

// BenchmarkIndexMemory builds an index of 10 tags per repository through
// the state machine's apply and reports the Go heap it occupies after a
// garbage collection, without the Raft log, the HTTP server or the Go
// runtime's headroom above the live heap (with GOGC=100 the heap may grow
// to about twice the live heap between collections).
func BenchmarkIndexMemory(b *testing.B) {
	for _, repos := range indexSizes() {
		b.Run(fmt.Sprintf("tags=%d", repos*10), func(b *testing.B) {
			var before, after runtime.MemStats
			for range b.N {
				runtime.GC()
				runtime.ReadMemStats(&before)
				s := seedIndex(repos, 10)
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(s)
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), "heap-bytes")
		})
	}
}

// BenchmarkSnapshot persists and restores an index of 10 tags per
// repository, the work a restarting node does before it serves (plus the
// log entries after the snapshot).
func BenchmarkSnapshot(b *testing.B) {
	for _, repos := range indexSizes() {
		b.Run(fmt.Sprintf("tags=%d", repos*10), func(b *testing.B) {
			benchmarkSnapshot(b, repos)
		})
	}
}

func benchmarkSnapshot(b *testing.B, repos int) {
	fsm := NewFSM()
	fsm.State().swap(seedIndex(repos, 10))
	var sink benchSink
	persist := func() {
		sink.Reset()
		snap, err := fsm.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(&sink); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("persist", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			persist()
		}
		b.ReportMetric(float64(sink.Len()), "bytes/snapshot")
	})
	persist()
	data := bytes.Clone(sink.Bytes())
	b.Run("restore", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if err := NewFSM().Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

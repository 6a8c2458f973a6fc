package upload

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/internal/logging"
	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// BenchmarkStreamDigest streams one blob through the engine the way a
// docker push arrives: one Append with the whole blob (SHA-256 computed
// while it streams, parts sent as they fill), then Finish with the digest
// and no more data. Sizes below and above the 8 MiB part size cover the
// single-object and the multipart paths. The filesystem store runs
// always; the S3 store runs against a versitygw on loopback when
// versitygw is in PATH.
func BenchmarkStreamDigest(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) blobstore.Store
	}{
		{"filesystem", func(b *testing.B) blobstore.Store {
			s, err := blobstore.NewFilesystem(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"s3", openBenchS3},
	}
	for _, st := range stores {
		for _, size := range []int{1 << 20, 32 << 20} {
			b.Run(fmt.Sprintf("store=%s/size=%dMiB", st.name, size>>20), func(b *testing.B) {
				benchmarkStream(b, st.open(b), size)
			})
		}
	}
}

func openBenchS3(b *testing.B) blobstore.Store {
	srv := testenv.StartS3(b)
	ctx := context.Background()
	s, err := blobstore.NewS3(ctx, blobstore.S3Config{
		Endpoint:       srv.URL(),
		Region:         srv.Region,
		Bucket:         srv.Bucket,
		AccessKey:      srv.AccessKey,
		SecretKey:      srv.SecretKey,
		ForcePathStyle: true,
	}, logging.Discard())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchmarkStream(b *testing.B, store blobstore.Store, size int) {
	engine := New(store, nil)
	content := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(content)
	want := digest.FromBytes(content)
	ctx := context.Background()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		st := engine.Start(fmt.Sprintf("blobs/bench-%d", i))
		next, err := engine.Append(ctx, st, bytes.NewReader(content))
		if err != nil {
			b.Fatal(err)
		}
		engine.Release(ctx, st, next)
		res, err := engine.Finish(ctx, next, nil, want)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := store.Delete(ctx, res.Key); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

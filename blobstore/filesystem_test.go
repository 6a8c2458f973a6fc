package blobstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/blobstore/storetest"
)

func TestFilesystem(t *testing.T) {
	storetest.Run(t, func(t *testing.T) blobstore.Store {
		s, err := blobstore.NewFilesystem(t.TempDir())
		if err != nil {
			t.Fatalf("NewFilesystem: %v", err)
		}
		return s
	})
}

// TestFilesystemCleanup checks that failed writes, completed and aborted
// uploads leave no temporary files or part folders behind.
func TestFilesystemCleanup(t *testing.T) {
	s, err := blobstore.NewFilesystem(t.TempDir())
	if err != nil {
		t.Fatalf("NewFilesystem: %v", err)
	}
	ctx := context.Background()
	if err := s.Put(ctx, "short", strings.NewReader("abc"), 10); err == nil {
		t.Fatal("Put with a short reader returned no error")
	}
	for _, complete := range []bool{true, false} {
		key := fmt.Sprintf("multipart-%v", complete)
		id, err := s.CreateMultipart(ctx, key)
		if err != nil {
			t.Fatalf("CreateMultipart: %v", err)
		}
		p, err := s.UploadPart(ctx, key, id, 1, strings.NewReader("data"), 4)
		if err != nil {
			t.Fatalf("UploadPart: %v", err)
		}
		if complete {
			err = s.CompleteMultipart(ctx, key, id, []blobstore.Part{p})
		} else {
			err = s.AbortMultipart(ctx, key, id)
		}
		if err != nil {
			t.Fatalf("end of upload (complete=%v): %v", complete, err)
		}
	}
	for _, dir := range []string{".tmp", ".multipart"} {
		entries, err := os.ReadDir(filepath.Join(s.Root(), dir))
		if err != nil {
			t.Fatalf("read %s: %v", dir, err)
		}
		if len(entries) != 0 {
			t.Errorf("%s has %d entries left, want none", dir, len(entries))
		}
	}
}

// TestFilesystemStaleTemp checks that NewFilesystem removes temporary
// files older than a day and keeps newer ones, which may belong to a write
// in progress.
func TestFilesystemStaleTemp(t *testing.T) {
	root := t.TempDir()
	if _, err := blobstore.NewFilesystem(root); err != nil {
		t.Fatalf("NewFilesystem: %v", err)
	}
	stale := filepath.Join(root, ".tmp", "put-stale")
	fresh := filepath.Join(root, ".tmp", "put-fresh")
	for _, name := range []string{stale, fresh} {
		if err := os.WriteFile(name, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := blobstore.NewFilesystem(root); err != nil {
		t.Fatalf("NewFilesystem: %v", err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file: %v, want it removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file: %v, want it kept", err)
	}
}

package htpasswd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that the watcher goroutine and the test can
// use at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startWatch runs Watch on path with a short interval until the test ends
// and returns the channel that receives every applied file.
func startWatch(t *testing.T, path string, logs *syncBuffer, apply func(*File) error) <-chan *File {
	t.Helper()
	applied := make(chan *File, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		defer close(done)
		Watch(ctx, path, 20*time.Millisecond, logger, func(f *File) error {
			if apply != nil {
				if err := apply(f); err != nil {
					return err
				}
			}
			applied <- f
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return applied
}

func waitApplied(t *testing.T, applied <-chan *File) *File {
	t.Helper()
	select {
	case f := <-applied:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("apply was not called within 5s")
		return nil
	}
}

func expectNoApply(t *testing.T, applied <-chan *File, wait time.Duration) {
	t.Helper()
	select {
	case f := <-applied:
		t.Fatalf("apply called with %+v, want no call", f)
	case <-time.After(wait):
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func users(f *File) string {
	var names []string
	for _, e := range f.Entries {
		names = append(names, e.User)
	}
	return strings.Join(names, ",")
}

func TestWatchReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	h := testHash(t, "$2y$", "pw")
	writeFile(t, path, "alice:"+h+"\n")

	logs := &syncBuffer{}
	applied := startWatch(t, path, logs, nil)
	if got := users(waitApplied(t, applied)); got != "alice" {
		t.Fatalf("first apply has users %q, want alice", got)
	}

	// A malformed file keeps the previous set: apply is not called and the
	// log names the line but not the hash.
	writeFile(t, path, "alice:"+h+"\nbob "+h+"\n")
	expectNoApply(t, applied, 100*time.Millisecond)
	if !waitForLog(logs, "line 2") {
		t.Errorf("log does not name line 2:\n%s", logs)
	}
	if strings.Contains(logs.String(), h) {
		t.Errorf("log contains the hash:\n%s", logs)
	}

	// A good change is applied.
	writeFile(t, path, "alice:"+h+"\nbob:"+h+"\ncarol:$apr1$abc$def\n")
	f := waitApplied(t, applied)
	if got := users(f); got != "alice,bob" {
		t.Errorf("users after change = %q, want alice,bob", got)
	}
	if len(f.Rejected) != 1 || f.Rejected[0].User != "carol" {
		t.Errorf("rejected = %+v, want carol", f.Rejected)
	}
	if strings.Contains(logs.String(), "$apr1$abc$def") {
		t.Errorf("log contains the rejected hash:\n%s", logs)
	}

	// Rewriting the same content does not apply again.
	writeFile(t, path, "alice:"+h+"\nbob:"+h+"\ncarol:$apr1$abc$def\n")
	expectNoApply(t, applied, 50*time.Millisecond)
}

func TestWatchMissingFileKeepsSet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	h := testHash(t, "$2y$", "pw")
	writeFile(t, path, "alice:"+h+"\n")

	logs := &syncBuffer{}
	applied := startWatch(t, path, logs, nil)
	waitApplied(t, applied)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	expectNoApply(t, applied, 50*time.Millisecond)
	if !waitForLog(logs, "cannot read htpasswd file") {
		t.Errorf("missing file not logged:\n%s", logs)
	}

	writeFile(t, path, "bob:"+h+"\n")
	if got := users(waitApplied(t, applied)); got != "bob" {
		t.Errorf("users after the file returned = %q, want bob", got)
	}
}

func TestWatchRetriesFailedApply(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	writeFile(t, path, "alice:"+testHash(t, "$2y$", "pw")+"\n")

	var mu sync.Mutex
	calls := 0
	logs := &syncBuffer{}
	applied := startWatch(t, path, logs, func(*File) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return errors.New("not leader")
		}
		return nil
	})
	waitApplied(t, applied)
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("apply called %d times, want 2", calls)
	}
	if !strings.Contains(logs.String(), "not leader") {
		t.Errorf("failed apply not logged:\n%s", logs)
	}
}

func TestWatchStartsWithMalformedFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	writeFile(t, path, "nocolon\n")

	logs := &syncBuffer{}
	applied := startWatch(t, path, logs, nil)
	if !waitForLog(logs, "htpasswd file is malformed") {
		t.Fatalf("malformed file not logged:\n%s", logs)
	}
	expectNoApply(t, applied, 50*time.Millisecond)

	writeFile(t, path, "alice:"+testHash(t, "$2y$", "pw")+"\n")
	if got := users(waitApplied(t, applied)); got != "alice" {
		t.Errorf("users = %q, want alice", got)
	}
	if n := strings.Count(logs.String(), "htpasswd file is malformed"); n != 1 {
		t.Errorf("malformed file logged %d times, want 1:\n%s", n, logs)
	}
}

// waitForLog reports whether the log contains s within a second.
func waitForLog(logs *syncBuffer, s string) bool {
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(logs.String(), s) {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}

func TestWatchWaitsForFreshContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	h := testHash(t, "$2y$", "pw")
	var applied []string
	w := &watcher{path: path, logger: slog.New(slog.DiscardHandler), apply: func(f *File) error {
		applied = append(applied, users(f))
		return nil
	}}
	// write sets the content and its modification time.
	write := func(content string, mod time.Time) {
		t.Helper()
		writeFile(t, path, content)
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Truncate(time.Second)

	write("alice:"+h+"\n", base.Add(-time.Hour))
	w.poll(base)
	if got := strings.Join(applied, ";"); got != "alice" {
		t.Fatalf("applied %q, want a settled file applied at once", got)
	}

	steps := []struct {
		content string    // "" keeps the file
		mod     time.Time // modification time of the new content
		poll    time.Time
		want    string // every apply so far
	}{
		// A truncated file waits for a second read.
		{"\n", base.Add(100 * time.Millisecond), base.Add(150 * time.Millisecond), "alice"},
		// The rest of the write arrives: it is new, so it waits too.
		{"alice:" + h + "\nbob:" + h + "\n", base.Add(200 * time.Millisecond), base.Add(250 * time.Millisecond), "alice"},
		// The same bytes on the next poll are applied.
		{"", time.Time{}, base.Add(300 * time.Millisecond), "alice;alice,bob"},
		// Later polls do not apply them again.
		{"", time.Time{}, base.Add(5 * time.Second), "alice;alice,bob"},
	}
	for i, step := range steps {
		if step.content != "" {
			write(step.content, step.mod)
		}
		w.poll(step.poll)
		if got := strings.Join(applied, ";"); got != step.want {
			t.Fatalf("step %d: applied %q, want %q", i, got, step.want)
		}
	}
}

func TestWatchAfterSkipsAppliedContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	h := testHash(t, "$2y$", "pw")
	writeFile(t, path, "alice:"+h+"\n")
	initial, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}

	applied := make(chan *File, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		WatchAfter(ctx, path, 20*time.Millisecond, slog.New(slog.DiscardHandler), initial, func(f *File) error {
			applied <- f
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	// The content that the caller applied is not applied again.
	expectNoApply(t, applied, 200*time.Millisecond)
	// A change is.
	writeFile(t, path, "alice:"+h+"\nbob:"+h+"\n")
	if got := users(waitApplied(t, applied)); got != "alice,bob" {
		t.Fatalf("users after change = %q, want alice,bob", got)
	}
}

package htpasswd

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"os"
	"time"
)

const (
	// DefaultWatchInterval is the polling interval that Watch uses when it
	// is given zero or less.
	DefaultWatchInterval = 5 * time.Second

	// racyWindow is how long after its modification time a file is read
	// again even when size and modification time look unchanged. File
	// systems store modification times with a granularity of up to 2 s
	// (FAT), so a rewrite within that window can leave both unchanged.
	racyWindow = 2 * time.Second

	// problemLogInterval is how often Watch repeats a warning that has not
	// changed, such as a file that is still missing.
	problemLogInterval = time.Minute
)

// Watch polls the htpasswd file at path every interval until ctx is done.
// It reads the file at the start and calls apply with it, and then again
// each time the content changes. apply must therefore accept the same user
// set twice. Content modified less than 2 s before a poll is used only
// after the next poll reads the same bytes, so that apply never receives
// a file in the middle of a rewrite.
//
// A file that cannot be read or is malformed is logged, with the path and
// line number but never a hash, and apply is not called, so the caller
// keeps the previous user set. When apply returns an error, Watch logs it
// and calls apply again at the next poll. Watch does not log the rejected
// lines of a file it applies; apply can do so with File.LogRejected.
func Watch(ctx context.Context, path string, interval time.Duration, logger *slog.Logger, apply func(*File) error) {
	WatchAfter(ctx, path, interval, logger, nil, apply)
}

// WatchAfter is Watch for a caller that has already applied the file
// applied, as returned by Load: apply is called only once the file's
// content differs from it. A nil applied makes it the same as Watch.
func WatchAfter(ctx context.Context, path string, interval time.Duration, logger *slog.Logger, applied *File, apply func(*File) error) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &watcher{path: path, logger: logger, apply: apply}
	if applied != nil {
		w.applied, w.hasApplied = applied.sum, true
	}
	w.poll(time.Now())
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			w.poll(now)
		}
	}
}

// stamp is the size, modification time and mode of a file version, as
// os.Stat returns them.
type stamp struct {
	size    int64
	modTime time.Time
	mode    os.FileMode
}

type watcher struct {
	path   string
	logger *slog.Logger
	apply  func(*File) error

	// seen is the stamp of the content last applied or found malformed, and
	// seenAt the time it was read. seenValid is false until then.
	seen      stamp
	seenAt    time.Time
	seenValid bool

	applied    [sha256.Size]byte
	hasApplied bool

	// pending is the digest of recently modified content that waits for a
	// second read before it is used.
	pending    [sha256.Size]byte
	hasPending bool

	// lastProblem is the last warning logged, so that an unchanged problem
	// is logged at most once per problemLogInterval.
	lastProblem   string
	lastProblemAt time.Time
}

func (w *watcher) poll(now time.Time) {
	info, err := os.Stat(w.path)
	if err != nil {
		w.seenValid = false
		w.problem(now, "cannot read htpasswd file; keeping the previous user set", err)
		return
	}

	st := stamp{size: info.Size(), modTime: info.ModTime(), mode: info.Mode()}
	if w.seenValid && st == w.seen && w.seenAt.Sub(st.modTime) > racyWindow {
		return
	}
	data, err := readFile(w.path)
	if err != nil {
		w.seenValid = false
		w.problem(now, "cannot read htpasswd file; keeping the previous user set", err)
		return
	}

	sum := sha256.Sum256(data)
	if w.hasApplied && sum == w.applied {
		w.remember(st, now)
		w.lastProblem = ""
		w.hasPending = false
		return
	}
	if now.Sub(st.modTime) < racyWindow && (!w.hasPending || sum != w.pending) {
		// The file changed moments ago, so a writer that truncates and then
		// writes may not be done: an empty or half-written file must not
		// replace the user set. Use the content once a later poll reads the
		// same bytes.
		w.pending, w.hasPending = sum, true
		w.seenValid = false
		return
	}
	w.hasPending = false

	f, err := parseBytes(data)
	if err != nil {
		w.remember(st, now)
		w.problem(now, "htpasswd file is malformed; keeping the previous user set", err)
		return
	}

	if err := w.apply(f); err != nil {
		// Forget the stamp so that the next poll reads the file and
		// retries apply.
		w.seenValid = false
		w.problem(now, "applying the htpasswd file failed; retrying at the next poll", err)
		return
	}
	w.applied, w.hasApplied = sum, true
	w.remember(st, now)
	w.lastProblem = ""
	w.logger.Info("htpasswd file applied", "path", w.path, "users", len(f.Entries), "rejected", len(f.Rejected))
}

func (w *watcher) remember(st stamp, now time.Time) {
	w.seen, w.seenAt, w.seenValid = st, now, true
}

// problem logs msg with err unless the same text was logged less than
// problemLogInterval ago.
func (w *watcher) problem(now time.Time, msg string, err error) {
	text := msg + ": " + err.Error()
	if text == w.lastProblem && now.Sub(w.lastProblemAt) < problemLogInterval {
		return
	}
	w.lastProblem, w.lastProblemAt = text, now
	w.logger.Error(msg, "path", w.path, "err", err)
}

package consensus

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"
)

// snapshotVersion is written in the first record of every snapshot.
const snapshotVersion = 1

// FSM is the raft.FSM over a State.
type FSM struct {
	state *State
	// applied is the index of the last entry the state machine has
	// processed: a command, a configuration change or a restored
	// snapshot. raft's own AppliedIndex counts entries handed to the FSM
	// goroutine, which may not have processed them yet.
	applied atomic.Uint64
}

// NewFSM returns a state machine over an empty state.
func NewFSM() *FSM { return &FSM{state: NewState()} }

// State returns the state. Restore swaps its content in place, so the
// pointer stays valid for the life of the FSM.
func (f *FSM) State() *State {
	return f.state
}

// Apply decodes and applies one log entry. It returns a Result.
func (f *FSM) Apply(l *raft.Log) any {
	c, err := DecodeCommand(l.Data)
	if err != nil {
		panic(fmt.Sprintf("consensus: entry %d: %v", l.Index, err))
	}
	res := f.state.apply(c, l.Index)
	f.applied.Store(l.Index)
	return res
}

// StoreConfiguration implements raft.ConfigurationStore, so that
// configuration entries advance the applied index too.
func (f *FSM) StoreConfiguration(index uint64, _ raft.Configuration) {
	f.applied.Store(index)
}

// AppliedIndex returns the index of the last entry the state machine has
// processed.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// snapshotRecord is one line of a snapshot: exactly one field is set.
type snapshotRecord struct {
	Version int `json:"version,omitempty"`
	// Index is the applied index when the snapshot was taken, in the
	// header record.
	Index    uint64            `json:"index,omitempty"`
	Blob     *Blob             `json:"blob,omitempty"`
	Repo     *repositoryRecord `json:"repo,omitempty"`
	Manifest *manifestRecord   `json:"manifest,omitempty"`
	Upload   *Upload           `json:"upload,omitempty"`
	User     *User             `json:"user,omitempty"`
	Result   *resultRecord     `json:"result,omitempty"`
}

type repositoryRecord struct {
	Name  string                   `json:"name"`
	Tags  map[string]digest.Digest `json:"tags,omitempty"`
	Blobs map[digest.Digest]uint64 `json:"blobs,omitempty"`
}

type manifestRecord struct {
	Repo     string    `json:"repo"`
	Manifest *Manifest `json:"manifest"`
}

type resultRecord struct {
	ID     string `json:"id"`
	Result Result `json:"result"`
}

// Snapshot records the state without copying the tags of each
// repository: the snapshot keeps every repository's tags, manifests and
// blobs maps, and Apply copies a repository's maps before it changes
// them (State.own). The values the maps point to are never changed in
// place, so the snapshot stays consistent while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	s := f.state
	s.mu.Lock()
	defer s.mu.Unlock()

	s.snapshotGen++
	snap := &fsmSnapshot{
		index:   f.applied.Load(),
		blobs:   make([]*Blob, 0, len(s.blobs)),
		repos:   make([]repoView, 0, len(s.repos)),
		uploads: make([]*Upload, 0, len(s.uploads)),
		users:   make([]*User, 0, len(s.users)),
		results: make([]resultRecord, 0, len(s.resultOrder)),
	}
	for _, b := range s.blobs {
		snap.blobs = append(snap.blobs, b)
	}
	for _, r := range s.repos {
		snap.repos = append(snap.repos, repoView{name: r.name, tags: r.tags, blobs: r.blobs, manifests: r.manifests})
	}
	for _, u := range s.uploads {
		snap.uploads = append(snap.uploads, u)
	}
	for _, u := range s.users {
		snap.users = append(snap.users, u)
	}
	for i := range s.resultOrder {
		id := s.resultOrder[(s.resultNext+i)%len(s.resultOrder)]
		snap.results = append(snap.results, resultRecord{ID: id, Result: s.results[id]})
	}
	return snap, nil
}

// repoView is a repository's maps as a snapshot keeps them.
type repoView struct {
	name      string
	tags      map[string]digest.Digest
	blobs     map[digest.Digest]uint64
	manifests map[digest.Digest]*Manifest
}

type fsmSnapshot struct {
	index   uint64
	blobs   []*Blob
	repos   []repoView
	uploads []*Upload
	users   []*User
	results []resultRecord
}

// Persist writes one JSON record per line: the version first, then the
// blobs, each repository followed by its manifests, the uploads, the
// users and the remembered results.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 1<<20)
	if err := s.encode(json.NewEncoder(w)); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := w.Flush(); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) encode(enc *json.Encoder) error {
	if err := enc.Encode(snapshotRecord{Version: snapshotVersion, Index: s.index}); err != nil {
		return err
	}
	for _, b := range s.blobs {
		if err := enc.Encode(snapshotRecord{Blob: b}); err != nil {
			return err
		}
	}
	for _, r := range s.repos {
		rec := repositoryRecord{Name: r.name, Tags: r.tags, Blobs: r.blobs}
		if err := enc.Encode(snapshotRecord{Repo: &rec}); err != nil {
			return err
		}
		for _, m := range r.manifests {
			if err := enc.Encode(snapshotRecord{Manifest: &manifestRecord{Repo: r.name, Manifest: m}}); err != nil {
				return err
			}
		}
	}
	for _, u := range s.uploads {
		if err := enc.Encode(snapshotRecord{Upload: u}); err != nil {
			return err
		}
	}
	for _, u := range s.users {
		if err := enc.Encode(snapshotRecord{User: u}); err != nil {
			return err
		}
	}
	for i := range s.results {
		if err := enc.Encode(snapshotRecord{Result: &s.results[i]}); err != nil {
			return err
		}
	}
	return nil
}

// Release is a no-op: the snapshot holds no resources.
func (s *fsmSnapshot) Release() {}

// Restore builds a fresh state from a snapshot and swaps it in.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, index, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.state.swap(st)
	f.applied.Store(index)
	return nil
}

func readSnapshot(r io.Reader) (*State, uint64, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<20))
	var head snapshotRecord
	if err := dec.Decode(&head); err != nil {
		return nil, 0, fmt.Errorf("restore snapshot: read header: %w", err)
	}
	if head.Version != snapshotVersion {
		return nil, 0, fmt.Errorf("restore snapshot: unknown version %d", head.Version)
	}
	st := NewState()
	for {
		var rec snapshotRecord
		err := dec.Decode(&rec)
		if errors.Is(err, io.EOF) {
			return st, head.Index, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("restore snapshot: %w", err)
		}
		st.restoreRecord(&rec)
	}
}

func (s *State) restoreRecord(rec *snapshotRecord) {
	switch {
	case rec.Blob != nil:
		s.blobs[rec.Blob.Digest] = rec.Blob
	case rec.Repo != nil:
		r := s.repoForWrite(rec.Repo.Name)
		for tag, d := range rec.Repo.Tags {
			r.tags[tag] = d
			r.tagNames.ReplaceOrInsert(tag)
		}
		for d, idx := range rec.Repo.Blobs {
			r.blobs[d] = idx
		}
	case rec.Manifest != nil:
		r := s.repoForWrite(rec.Manifest.Repo)
		m := rec.Manifest.Manifest
		r.manifests[m.Digest] = m
		if m.Subject != "" {
			refs, ok := r.referrers[m.Subject]
			if !ok {
				refs = make(map[digest.Digest]struct{})
				r.referrers[m.Subject] = refs
			}
			refs[m.Digest] = struct{}{}
		}
	case rec.Upload != nil:
		s.uploads[rec.Upload.ID] = rec.Upload
	case rec.User != nil:
		s.users[rec.User.Name] = rec.User
	case rec.Result != nil:
		s.remember(rec.Result.ID, rec.Result.Result)
	}
}

// swap replaces the content of s with that of fresh, under s's lock, so
// readers holding s see either the old or the new state.
func (s *State) swap(fresh *State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos = fresh.repos
	s.repoNames = fresh.repoNames
	s.blobs = fresh.blobs
	s.uploads = fresh.uploads
	s.users = fresh.users
	s.results = fresh.results
	s.resultOrder = fresh.resultOrder
	s.resultNext = fresh.resultNext
}

package consensus

import (
	"sort"
	"sync"

	"github.com/google/btree"
	"github.com/opencontainers/go-digest"
)

// dedupeCapacity is how many recent command ids the state machine
// remembers. A retry arrives within seconds of the first attempt, and
// thousands of commands fit in that time only under heavy load.
const dedupeCapacity = 16384

const btreeDegree = 32

// State is the replicated index. Readers call its methods from any
// goroutine; only the FSM changes it. Values returned by the read methods
// are shared with the state and must not be modified.
type State struct {
	mu        sync.RWMutex
	repos     map[string]*repository
	repoNames *btree.BTreeG[string]
	blobs     map[digest.Digest]*Blob
	uploads   map[string]*Upload
	users     map[string]*User

	results     map[string]Result
	resultOrder []string // ring of ids in results, oldest at resultNext
	resultNext  int

	// snapshotGen counts the snapshots taken. A snapshot keeps the tags,
	// manifests and blobs maps of every repository as they are, and a
	// repository copies its maps before its next change (see own).
	snapshotGen uint64
}

type repository struct {
	name      string
	tags      map[string]digest.Digest
	tagNames  *btree.BTreeG[string]
	manifests map[digest.Digest]*Manifest
	blobs     map[digest.Digest]uint64 // link creation index
	referrers map[digest.Digest]map[digest.Digest]struct{}
	// gen is the snapshotGen at which tags, manifests and blobs became
	// this repository's own; below the State's, a snapshot shares them.
	gen uint64
}

func lessString(a, b string) bool { return a < b }

// NewState returns an empty index.
func NewState() *State {
	return &State{
		repos:     make(map[string]*repository),
		repoNames: btree.NewG(btreeDegree, lessString),
		blobs:     make(map[digest.Digest]*Blob),
		uploads:   make(map[string]*Upload),
		users:     make(map[string]*User),
		results:   make(map[string]Result),
	}
}

func newRepository(name string) *repository {
	return &repository{
		name:      name,
		tags:      make(map[string]digest.Digest),
		tagNames:  btree.NewG(btreeDegree, lessString),
		manifests: make(map[digest.Digest]*Manifest),
		blobs:     make(map[digest.Digest]uint64),
		referrers: make(map[digest.Digest]map[digest.Digest]struct{}),
	}
}

func (r *repository) empty() bool {
	return len(r.manifests) == 0 && len(r.blobs) == 0 && len(r.tags) == 0
}

// RepositoryExists reports whether the repository holds any blob,
// manifest or tag.
func (s *State) RepositoryExists(repo string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.repos[repo]
	return ok
}

// ManifestByTag returns the manifest that tag points to.
func (s *State) ManifestByTag(repo, tag string) (*Manifest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.repos[repo]
	if !ok {
		return nil, ErrNameUnknown
	}
	d, ok := r.tags[tag]
	if !ok {
		return nil, ErrManifestUnknown
	}
	return r.manifests[d], nil
}

// ManifestByDigest returns a manifest of the repository.
func (s *State) ManifestByDigest(repo string, d digest.Digest) (*Manifest, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.repos[repo]
	if !ok {
		return nil, ErrNameUnknown
	}
	m, ok := r.manifests[d]
	if !ok {
		return nil, ErrManifestUnknown
	}
	return m, nil
}

// Tags returns up to n tag names of the repository in lexical order,
// starting after last, and whether more follow. n < 0 means no limit.
func (s *State) Tags(repo, last string, n int) ([]string, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.repos[repo]
	if !ok {
		return nil, false, ErrNameUnknown
	}
	names, more := page(r.tagNames, last, n)
	return names, more, nil
}

// Repositories returns up to n repository names in lexical order,
// starting after last, and whether more follow. n < 0 means no limit.
func (s *State) Repositories(last string, n int) ([]string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return page(s.repoNames, last, n)
}

func page(t *btree.BTreeG[string], last string, n int) ([]string, bool) {
	var out []string
	more := false
	visit := func(name string) bool {
		if name == last {
			return true
		}
		if n >= 0 && len(out) == n {
			more = true
			return false
		}
		out = append(out, name)
		return true
	}
	if last == "" {
		t.Ascend(visit)
	} else {
		t.AscendGreaterOrEqual(last, visit)
	}
	return out, more
}

// LinkedBlob returns the blob if the repository links it.
func (s *State) LinkedBlob(repo string, d digest.Digest) (*Blob, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.repos[repo]
	if !ok {
		return nil, ErrBlobUnknown
	}
	if _, ok := r.blobs[d]; !ok {
		return nil, ErrBlobUnknown
	}
	b, ok := s.blobs[d]
	if !ok {
		return nil, ErrBlobUnknown
	}
	return b, nil
}

// Blob returns a stored blob, whichever repositories link it.
func (s *State) Blob(d digest.Digest) (*Blob, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[d]
	return b, ok
}

// Referrers returns the descriptors of the manifests in repo whose subject
// is the given digest, sorted by digest. A non-empty artifactType keeps
// only referrers of that type.
func (s *State) Referrers(repo string, subject digest.Digest, artifactType string) []Descriptor {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []Descriptor{}
	r, ok := s.repos[repo]
	if !ok {
		return out
	}
	for d := range r.referrers[subject] {
		m := r.manifests[d]
		if m == nil || (artifactType != "" && m.ArtifactType != artifactType) {
			continue
		}
		out = append(out, Descriptor{
			MediaType:    m.MediaType,
			Digest:       m.Digest,
			Size:         m.Size(),
			ArtifactType: m.ArtifactType,
			Annotations:  m.Annotations,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

// Upload returns an upload session.
func (s *State) Upload(id string) (*Upload, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.uploads[id]
	return u, ok
}

// Uploads returns every upload session, for the expiry job.
func (s *State) Uploads() []*Upload {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*Upload, 0, len(s.uploads))
	for _, u := range s.uploads {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// User returns a user.
func (s *State) User(name string) (*User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	u, ok := s.users[name]
	return u, ok
}

// Users returns every user sorted by name.
func (s *State) Users() []User {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]User, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Counts returns the number of repositories, tags, manifests and blobs.
func (s *State) Counts() (repos, tags, manifests, blobs int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.repos {
		tags += len(r.tags)
		manifests += len(r.manifests)
	}
	return len(s.repos), tags, manifests, len(s.blobs)
}

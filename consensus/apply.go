package consensus

import (
	"fmt"
	"maps"

	"github.com/opencontainers/go-digest"
)

// apply changes the state for one command at the given Raft index. It
// returns application errors in the Result and panics only for a command
// this version cannot interpret, because skipping it would let this node's
// state diverge from its peers'.
func (s *State) apply(c *Command, index uint64) Result {
	s.mu.Lock()
	defer s.mu.Unlock()

	if c.ID != "" {
		if r, ok := s.results[c.ID]; ok {
			return r
		}
	}
	r := s.applyLocked(c, index)
	if r.Code == codeOK {
		r.Index = index
	}
	if c.ID != "" {
		s.remember(c.ID, r)
	}
	return r
}

func (s *State) remember(id string, r Result) {
	if len(s.resultOrder) < dedupeCapacity {
		s.resultOrder = append(s.resultOrder, id)
	} else {
		delete(s.results, s.resultOrder[s.resultNext])
		s.resultOrder[s.resultNext] = id
		s.resultNext = (s.resultNext + 1) % dedupeCapacity
	}
	s.results[id] = r
}

func (s *State) applyLocked(c *Command, index uint64) Result {
	switch c.Op {
	case OpBlobCommit:
		return s.blobCommit(c, index)
	case OpBlobMount:
		return s.blobMount(c, index)
	case OpBlobUnlink:
		return s.blobUnlink(c)
	case OpManifestPut:
		return s.manifestPut(c, index)
	case OpManifestDelete:
		return s.manifestDelete(c)
	case OpTagDelete:
		return s.tagDelete(c)
	case OpTagPut:
		return s.tagPut(c)
	case OpUploadCreate:
		return s.uploadCreate(c, index)
	case OpUploadUpdate:
		return s.uploadUpdate(c, index)
	case OpUploadDelete:
		return s.uploadDelete(c)
	case OpUserCreate:
		return s.userCreate(c, index)
	case OpUserPassword:
		return s.userPassword(c, index)
	case OpUserDelete:
		return s.userDelete(c)
	case OpUsersSyncFile:
		return s.usersSyncFile(c, index)
	default:
		panic(fmt.Sprintf("consensus: unknown command op %q at index %d", c.Op, index))
	}
}

// repoForWrite returns the repository, created if needed, ready for a
// change of its maps.
func (s *State) repoForWrite(name string) *repository {
	r, ok := s.repos[name]
	if !ok {
		r = newRepository(name)
		r.gen = s.snapshotGen
		s.repos[name] = r
		s.repoNames.ReplaceOrInsert(name)
	}
	s.own(r)
	return r
}

// own copies the tags, manifests and blobs maps of r when a snapshot
// taken since their last copy shares them, so that the snapshot keeps
// seeing them unchanged. Every change to those maps comes after own.
func (s *State) own(r *repository) {
	if r.gen == s.snapshotGen {
		return
	}
	r.tags = maps.Clone(r.tags)
	r.manifests = maps.Clone(r.manifests)
	r.blobs = maps.Clone(r.blobs)
	r.gen = s.snapshotGen
}

func (s *State) dropIfEmpty(r *repository) {
	if r.empty() {
		delete(s.repos, r.name)
		s.repoNames.Delete(r.name)
	}
}

func (s *State) blobCommit(c *Command, index uint64) Result {
	if c.Blob == nil {
		return fail(codeBlobUnknown, "commit without blob")
	}
	if c.UploadID != "" {
		u, ok := s.uploads[c.UploadID]
		if !ok || u.Repo != c.Repo {
			return fail(codeUploadUnknown, "%s", c.UploadID)
		}
		delete(s.uploads, c.UploadID)
	}
	b, ok := s.blobs[c.Blob.Digest]
	if !ok {
		nb := *c.Blob
		nb.CreateIndex = index
		b = &nb
		s.blobs[b.Digest] = b
	}
	r := s.repoForWrite(c.Repo)
	if _, linked := r.blobs[b.Digest]; !linked {
		r.blobs[b.Digest] = index
	}
	out := *b
	return Result{Blob: &out}
}

func (s *State) blobMount(c *Command, index uint64) Result {
	b, stored := s.blobs[c.Digest]
	if !stored {
		return fail(codeBlobUnknown, "%s", c.Digest)
	}
	if c.From != "" {
		from, ok := s.repos[c.From]
		if !ok {
			return fail(codeBlobUnknown, "%s in %s", c.Digest, c.From)
		}
		if _, linked := from.blobs[c.Digest]; !linked {
			return fail(codeBlobUnknown, "%s in %s", c.Digest, c.From)
		}
	}
	r := s.repoForWrite(c.Repo)
	if _, linked := r.blobs[c.Digest]; !linked {
		r.blobs[c.Digest] = index
	}
	out := *b
	return Result{Blob: &out}
}

func (s *State) blobUnlink(c *Command) Result {
	r, ok := s.repos[c.Repo]
	if !ok {
		return fail(codeBlobUnknown, "%s in %s", c.Digest, c.Repo)
	}
	if _, linked := r.blobs[c.Digest]; !linked {
		return fail(codeBlobUnknown, "%s in %s", c.Digest, c.Repo)
	}
	s.own(r)
	delete(r.blobs, c.Digest)
	s.dropIfEmpty(r)
	return Result{}
}

func (s *State) manifestPut(c *Command, index uint64) Result {
	m := c.Manifest
	if m == nil {
		return fail(codeManifestUnknown, "put without manifest")
	}
	r, ok := s.repos[c.Repo]
	if !ok && (len(m.Blobs) > 0 || len(m.Children) > 0) {
		return fail(codeManifestBlobUnknown, "%s", firstOf(m.Blobs, m.Children))
	}
	if ok {
		if res := r.checkReferences(m); res.Code != "" {
			return res
		}
	}
	r = s.repoForWrite(c.Repo)
	stored := *m
	stored.ModifyIndex = index
	stored.CreateIndex = index
	if old, exists := r.manifests[m.Digest]; exists {
		// The same bytes again. A manifest without a mediaType field
		// takes its type from the Content-Type of the first PUT, and a
		// later PUT with another Content-Type does not change it.
		stored.CreateIndex = old.CreateIndex
		stored.MediaType = old.MediaType
	}
	r.manifests[m.Digest] = &stored
	if m.Subject != "" {
		refs, ok := r.referrers[m.Subject]
		if !ok {
			refs = make(map[digest.Digest]struct{})
			r.referrers[m.Subject] = refs
		}
		refs[m.Digest] = struct{}{}
	}
	r.setTags(m.Digest, c.Tag, c.Tags)
	return Result{}
}

// tagPut points tags at a manifest that the repository already holds.
func (s *State) tagPut(c *Command) Result {
	r, m, res := s.storedManifest(c.Repo, c.Digest)
	if m == nil {
		return res
	}
	// The blobs may have been unlinked since the manifest was put; a tag
	// then fails as a new put of the manifest would.
	if res := r.checkReferences(m); res.Code != "" {
		return res
	}
	s.own(r)
	r.setTags(c.Digest, c.Tag, c.Tags)
	return Result{}
}

// checkReferences fails unless every blob and child manifest of m is in
// the repository.
func (r *repository) checkReferences(m *Manifest) Result {
	for _, d := range m.Blobs {
		if _, linked := r.blobs[d]; !linked {
			return fail(codeManifestBlobUnknown, "blob %s", d)
		}
	}
	for _, d := range m.Children {
		if _, present := r.manifests[d]; !present {
			return fail(codeManifestBlobUnknown, "manifest %s", d)
		}
	}
	return Result{}
}

// setTags points tag and tags, skipping empty ones, at d.
func (r *repository) setTags(d digest.Digest, tag string, tags []string) {
	for _, t := range append([]string{tag}, tags...) {
		if t == "" {
			continue
		}
		if _, exists := r.tags[t]; !exists {
			r.tagNames.ReplaceOrInsert(t)
		}
		r.tags[t] = d
	}
}

func firstOf(lists ...[]digest.Digest) digest.Digest {
	for _, l := range lists {
		if len(l) > 0 {
			return l[0]
		}
	}
	return ""
}

// storedManifest returns the repository and the manifest d in it, or a
// MANIFEST_UNKNOWN result and a nil manifest.
func (s *State) storedManifest(repo string, d digest.Digest) (*repository, *Manifest, Result) {
	if r, ok := s.repos[repo]; ok {
		if m, ok := r.manifests[d]; ok {
			return r, m, Result{}
		}
	}
	return nil, nil, fail(codeManifestUnknown, "%s in %s", d, repo)
}

func (s *State) manifestDelete(c *Command) Result {
	r, m, res := s.storedManifest(c.Repo, c.Digest)
	if m == nil {
		return res
	}
	s.own(r)
	delete(r.manifests, c.Digest)
	deleted := 0
	for tag, d := range r.tags {
		if d == c.Digest {
			delete(r.tags, tag)
			r.tagNames.Delete(tag)
			deleted++
		}
	}
	if m.Subject != "" {
		if refs, ok := r.referrers[m.Subject]; ok {
			delete(refs, m.Digest)
			if len(refs) == 0 {
				delete(r.referrers, m.Subject)
			}
		}
	}
	s.dropIfEmpty(r)
	return Result{Deleted: deleted}
}

func (s *State) tagDelete(c *Command) Result {
	r, ok := s.repos[c.Repo]
	if !ok {
		return fail(codeTagUnknown, "%s in %s", c.Tag, c.Repo)
	}
	if _, ok := r.tags[c.Tag]; !ok {
		return fail(codeTagUnknown, "%s in %s", c.Tag, c.Repo)
	}
	s.own(r)
	delete(r.tags, c.Tag)
	r.tagNames.Delete(c.Tag)
	s.dropIfEmpty(r)
	return Result{}
}

func (s *State) uploadCreate(c *Command, index uint64) Result {
	if c.Upload == nil {
		return fail(codeUploadUnknown, "create without session")
	}
	if _, exists := s.uploads[c.Upload.ID]; exists {
		return fail(codeUploadConflict, "%s exists", c.Upload.ID)
	}
	u := *c.Upload
	u.CreateIndex, u.ModifyIndex = index, index
	s.uploads[u.ID] = &u
	return Result{}
}

func (s *State) uploadUpdate(c *Command, index uint64) Result {
	if c.Upload == nil {
		return fail(codeUploadUnknown, "update without session")
	}
	old, ok := s.uploads[c.Upload.ID]
	if !ok || old.Repo != c.Upload.Repo {
		return fail(codeUploadUnknown, "%s", c.Upload.ID)
	}
	if old.Offset != c.ExpectOffset {
		return fail(codeUploadConflict, "%s at offset %d, expected %d", old.ID, old.Offset, c.ExpectOffset)
	}
	u := *c.Upload
	u.Started = old.Started
	u.CreateIndex, u.ModifyIndex = old.CreateIndex, index
	s.uploads[u.ID] = &u
	return Result{}
}

func (s *State) uploadDelete(c *Command) Result {
	u, ok := s.uploads[c.UploadID]
	if !ok || (c.Repo != "" && u.Repo != c.Repo) {
		return fail(codeUploadUnknown, "%s", c.UploadID)
	}
	delete(s.uploads, c.UploadID)
	return Result{}
}

func (s *State) userCreate(c *Command, index uint64) Result {
	if c.User == nil {
		return fail(codeUserUnknown, "create without user")
	}
	if old, ok := s.users[c.User.Name]; ok {
		if old.Source == SourceFile {
			return fail(codeUserFileManaged, "%s", old.Name)
		}
		return fail(codeUserExists, "%s", old.Name)
	}
	u := *c.User
	u.Source = SourceAPI
	u.ModifyIndex = index
	s.users[u.Name] = &u
	return Result{}
}

func (s *State) userPassword(c *Command, index uint64) Result {
	if c.User == nil {
		return fail(codeUserUnknown, "password change without user")
	}
	old, ok := s.users[c.User.Name]
	if !ok {
		return fail(codeUserUnknown, "%s", c.User.Name)
	}
	if old.Source == SourceFile {
		return fail(codeUserFileManaged, "%s", old.Name)
	}
	u := *old
	u.Hash = c.User.Hash
	u.ModifyIndex = index
	s.users[u.Name] = &u
	return Result{}
}

func (s *State) userDelete(c *Command) Result {
	if c.User == nil {
		return fail(codeUserUnknown, "delete without user")
	}
	old, ok := s.users[c.User.Name]
	if !ok {
		return fail(codeUserUnknown, "%s", c.User.Name)
	}
	if old.Source == SourceFile {
		return fail(codeUserFileManaged, "%s", old.Name)
	}
	delete(s.users, old.Name)
	return Result{}
}

// usersSyncFile makes the file-managed users equal to c.Users. A user of
// the file replaces an API-managed user of the same name, because the file
// is the configured source of truth. Unchanged users keep their
// ModifyIndex, so their cached logins stay valid.
func (s *State) usersSyncFile(c *Command, index uint64) Result {
	want := make(map[string]User, len(c.Users))
	for _, u := range c.Users {
		want[u.Name] = u
	}
	deleted := 0
	for name, u := range s.users {
		if _, keep := want[name]; !keep && u.Source == SourceFile {
			delete(s.users, name)
			deleted++
		}
	}
	for name, u := range want {
		old, ok := s.users[name]
		if ok && old.Source == SourceFile && old.Hash == u.Hash && old.Admin == u.Admin {
			continue
		}
		nu := u
		nu.Source = SourceFile
		nu.ModifyIndex = index
		s.users[name] = &nu
	}
	return Result{Deleted: deleted}
}

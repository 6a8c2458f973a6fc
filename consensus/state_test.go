package consensus

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/opencontainers/go-digest"
)

func dg(s string) digest.Digest { return digest.FromString(s) }

// applyAll applies commands in order from index 1 and returns the results.
func applyAll(t *testing.T, s *State, cmds ...*Command) []Result {
	t.Helper()
	out := make([]Result, len(cmds))
	for i, c := range cmds {
		out[i] = s.apply(c, uint64(i+1))
	}
	return out
}

func commitBlob(repo, content string) *Command {
	d := dg(content)
	return &Command{Op: OpBlobCommit, Repo: repo, Blob: &Blob{Digest: d, Size: int64(len(content)), Key: "blobs/" + content}}
}

func putManifest(repo, tag, content string, blobs ...digest.Digest) *Command {
	return &Command{Op: OpManifestPut, Repo: repo, Tag: tag, Manifest: &Manifest{
		Digest: dg(content), MediaType: "application/vnd.oci.image.manifest.v1+json",
		Content: []byte(content), Blobs: blobs,
	}}
}

func TestManifestPutChecksBlobs(t *testing.T) {
	tests := []struct {
		name string
		cmds []*Command
		want error
	}{
		{"blob linked", []*Command{commitBlob("a", "l1"), putManifest("a", "v1", "m1", dg("l1"))}, nil},
		{"blob missing", []*Command{putManifest("a", "v1", "m1", dg("l1"))}, ErrManifestBlobUnknown},
		{"blob in other repo", []*Command{commitBlob("b", "l1"), putManifest("a", "v1", "m1", dg("l1"))}, ErrManifestBlobUnknown},
		{"blob unlinked", []*Command{commitBlob("a", "l1"), {Op: OpBlobUnlink, Repo: "a", Digest: dg("l1")}, putManifest("a", "v1", "m1", dg("l1"))}, ErrManifestBlobUnknown},
		{"no blobs", []*Command{putManifest("a", "v1", "m1")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			res := applyAll(t, s, tt.cmds...)
			err := res[len(res)-1].Err()
			if !errors.Is(err, tt.want) {
				t.Fatalf("last result error = %v, want %v", err, tt.want)
			}
			_, gotErr := s.ManifestByTag("a", "v1")
			if (tt.want == nil) != (gotErr == nil) {
				t.Fatalf("ManifestByTag error = %v after put error %v", gotErr, err)
			}
		})
	}
}

func TestBlobMountAndIsolation(t *testing.T) {
	s := NewState()
	applyAll(t, s, commitBlob("a", "l1"))
	if _, err := s.LinkedBlob("b", dg("l1")); !errors.Is(err, ErrBlobUnknown) {
		t.Fatalf("blob of a readable through b before mount: err = %v", err)
	}
	r := s.apply(&Command{Op: OpBlobMount, Repo: "b", From: "c", Digest: dg("l1")}, 10)
	if !errors.Is(r.Err(), ErrBlobUnknown) {
		t.Fatalf("mount from repository without the blob: err = %v", r.Err())
	}
	r = s.apply(&Command{Op: OpBlobMount, Repo: "b", From: "a", Digest: dg("l1")}, 11)
	if r.Err() != nil {
		t.Fatalf("mount: %v", r.Err())
	}
	if _, err := s.LinkedBlob("b", dg("l1")); err != nil {
		t.Fatalf("blob after mount: %v", err)
	}
}

func TestBlobCommitKeepsFirstKey(t *testing.T) {
	s := NewState()
	first := s.apply(commitBlob("a", "x"), 1)
	second := s.apply(&Command{Op: OpBlobCommit, Repo: "b", Blob: &Blob{Digest: dg("x"), Size: 1, Key: "blobs/other"}}, 2)
	if first.Blob.Key != "blobs/x" {
		t.Fatalf("first key = %q", first.Blob.Key)
	}
	if second.Blob.Key != "blobs/x" {
		t.Fatalf("second commit key = %q, want the first one", second.Blob.Key)
	}
}

func TestCommandIDAppliesOnce(t *testing.T) {
	s := NewState()
	applyAll(t, s, commitBlob("a", "l1"))
	c := &Command{Op: OpUserCreate, ID: "req-1", User: &User{Name: "u", Hash: "h"}}
	r1 := s.apply(c, 5)
	r2 := s.apply(c, 6)
	if r1.Err() != nil || r2.Err() != nil {
		t.Fatalf("repeat of one id: errors %v, %v; want the first result twice", r1.Err(), r2.Err())
	}
	if r2.Index != 5 {
		t.Fatalf("repeat index = %d, want 5", r2.Index)
	}
	r3 := s.apply(&Command{Op: OpUserCreate, ID: "req-2", User: &User{Name: "u", Hash: "h"}}, 7)
	if !errors.Is(r3.Err(), ErrUserExists) {
		t.Fatalf("second create with new id: err = %v", r3.Err())
	}
}

func TestDedupeTableBounded(t *testing.T) {
	s := NewState()
	for i := 0; i < dedupeCapacity+100; i++ {
		s.apply(&Command{Op: OpTagDelete, ID: fmt.Sprint(i), Repo: "r", Tag: "t"}, uint64(i+1))
	}
	if len(s.results) != dedupeCapacity {
		t.Fatalf("remembered %d results, want %d", len(s.results), dedupeCapacity)
	}
	if _, ok := s.results["0"]; ok {
		t.Fatal("oldest id still remembered")
	}
}

func TestTagPut(t *testing.T) {
	tagPut := func(repo, tag string, d digest.Digest, more ...string) *Command {
		return &Command{Op: OpTagPut, Repo: repo, Tag: tag, Tags: more, Digest: d}
	}
	tests := []struct {
		name string
		cmds []*Command
		want error
	}{
		{"manifest present", []*Command{commitBlob("a", "l1"), putManifest("a", "v0", "m1", dg("l1")), tagPut("a", "v1", dg("m1"), "v2")}, nil},
		{"no repository", []*Command{tagPut("a", "v1", dg("m1"))}, ErrManifestUnknown},
		{"manifest in other repo", []*Command{putManifest("b", "v0", "m1"), tagPut("a", "v1", dg("m1"))}, ErrManifestUnknown},
		{"manifest deleted", []*Command{putManifest("a", "v0", "m1"), {Op: OpManifestDelete, Repo: "a", Digest: dg("m1")}, tagPut("a", "v1", dg("m1"))}, ErrManifestUnknown},
		{"blob unlinked since", []*Command{commitBlob("a", "l1"), putManifest("a", "v0", "m1", dg("l1")), {Op: OpBlobUnlink, Repo: "a", Digest: dg("l1")}, tagPut("a", "v1", dg("m1"))}, ErrManifestBlobUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewState()
			res := applyAll(t, s, tt.cmds...)
			err := res[len(res)-1].Err()
			if !errors.Is(err, tt.want) {
				t.Fatalf("last result error = %v, want %v", err, tt.want)
			}
			for _, tag := range []string{"v1", "v2"} {
				m, gotErr := s.ManifestByTag("a", tag)
				if tt.want != nil && gotErr == nil {
					t.Errorf("tag %s exists after a failed tag put", tag)
				}
				if tt.want == nil && (gotErr != nil || m.Digest != dg("m1")) {
					t.Errorf("tag %s: %v, %v; want m1", tag, m, gotErr)
				}
			}
		})
	}
}

func TestTagDeleteOnlyThatTag(t *testing.T) {
	s := NewState()
	applyAll(t, s, putManifest("a", "v1", "m1"), putManifest("a", "v2", "m1"))
	r := s.apply(&Command{Op: OpTagDelete, Repo: "a", Tag: "v1"}, 3)
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	tags, _, err := s.Tags("a", "", -1)
	if err != nil || !reflect.DeepEqual(tags, []string{"v2"}) {
		t.Fatalf("tags = %v, %v; want [v2]", tags, err)
	}
	if _, err := s.ManifestByDigest("a", dg("m1")); err != nil {
		t.Fatalf("manifest gone with its tag: %v", err)
	}
}

func TestManifestDeleteRemovesTagsAndReferrer(t *testing.T) {
	s := NewState()
	ref := putManifest("a", "", "sig")
	ref.Manifest.Subject = dg("m1")
	ref.Manifest.ArtifactType = "application/example"
	applyAll(t, s, putManifest("a", "v1", "m1"), ref)
	got := s.Referrers("a", dg("m1"), "")
	if len(got) != 1 || got[0].Digest != dg("sig") || got[0].ArtifactType != "application/example" {
		t.Fatalf("referrers = %+v", got)
	}
	if got := s.Referrers("a", dg("m1"), "other/type"); len(got) != 0 {
		t.Fatalf("filtered referrers = %+v, want none", got)
	}
	s.apply(&Command{Op: OpManifestDelete, Repo: "a", Digest: dg("sig")}, 3)
	if got := s.Referrers("a", dg("m1"), ""); len(got) != 0 {
		t.Fatalf("referrers after delete = %+v", got)
	}
	r := s.apply(&Command{Op: OpManifestDelete, Repo: "a", Digest: dg("m1")}, 4)
	if r.Err() != nil || r.Deleted != 1 {
		t.Fatalf("delete m1: err %v, deleted tags %d", r.Err(), r.Deleted)
	}
	if s.RepositoryExists("a") {
		t.Fatal("empty repository still listed")
	}
}

func TestPagination(t *testing.T) {
	s := NewState()
	for _, tag := range []string{"c", "a", "b", "d"} {
		s.apply(putManifest("r", tag, "m"), 1)
	}
	tests := []struct {
		last string
		n    int
		want []string
		more bool
	}{
		{"", -1, []string{"a", "b", "c", "d"}, false},
		{"", 2, []string{"a", "b"}, true},
		{"b", 2, []string{"c", "d"}, false},
		{"bb", 1, []string{"c"}, true},
		{"d", 5, nil, false},
		{"", 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("last=%s,n=%d", tt.last, tt.n), func(t *testing.T) {
			got, more, err := s.Tags("r", tt.last, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) || more != tt.more {
				t.Fatalf("got %v more=%v, want %v more=%v", got, more, tt.want, tt.more)
			}
		})
	}
}

func TestUploadUpdateConflict(t *testing.T) {
	s := NewState()
	applyAll(t, s, &Command{Op: OpUploadCreate, Upload: &Upload{ID: "u1", Repo: "a"}})
	ok := s.apply(&Command{Op: OpUploadUpdate, Upload: &Upload{ID: "u1", Repo: "a", Offset: 10}, ExpectOffset: 0}, 2)
	if ok.Err() != nil {
		t.Fatal(ok.Err())
	}
	stale := s.apply(&Command{Op: OpUploadUpdate, Upload: &Upload{ID: "u1", Repo: "a", Offset: 20}, ExpectOffset: 0}, 3)
	if !errors.Is(stale.Err(), ErrUploadConflict) {
		t.Fatalf("stale update: err = %v", stale.Err())
	}
	other := s.apply(&Command{Op: OpUploadUpdate, Upload: &Upload{ID: "u1", Repo: "b", Offset: 20}, ExpectOffset: 10}, 4)
	if !errors.Is(other.Err(), ErrUploadUnknown) {
		t.Fatalf("update through another repository: err = %v", other.Err())
	}
	commit := commitBlob("a", "x")
	commit.UploadID = "u1"
	if r := s.apply(commit, 5); r.Err() != nil {
		t.Fatal(r.Err())
	}
	if _, ok := s.Upload("u1"); ok {
		t.Fatal("session still present after commit")
	}
}

func TestUsersSyncFile(t *testing.T) {
	s := NewState()
	applyAll(t, s,
		&Command{Op: OpUserCreate, User: &User{Name: "api", Hash: "h0"}},
		&Command{Op: OpUsersSyncFile, Users: []User{{Name: "alice", Hash: "h1"}, {Name: "bob", Hash: "h2"}}},
	)
	alice, _ := s.User("alice")
	r := s.apply(&Command{Op: OpUsersSyncFile, Users: []User{{Name: "alice", Hash: "h1"}}}, 3)
	if r.Deleted != 1 {
		t.Fatalf("deleted = %d, want 1", r.Deleted)
	}
	if _, ok := s.User("bob"); ok {
		t.Fatal("bob still present after removal from the file")
	}
	if _, ok := s.User("api"); !ok {
		t.Fatal("api user removed by a file sync")
	}
	again, _ := s.User("alice")
	if again.ModifyIndex != alice.ModifyIndex {
		t.Fatalf("unchanged user got a new index: %d → %d", alice.ModifyIndex, again.ModifyIndex)
	}
	denied := s.apply(&Command{Op: OpUserPassword, User: &User{Name: "alice", Hash: "x"}}, 4)
	if !errors.Is(denied.Err(), ErrUserFileManaged) {
		t.Fatalf("password change of a file user: err = %v", denied.Err())
	}
}

func TestUnknownOpPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("unknown op did not panic")
		}
	}()
	NewState().apply(&Command{Op: "bogus"}, 1)
}

func TestSnapshotRoundTrip(t *testing.T) {
	f := NewFSM()
	ref := putManifest("a", "", "sig")
	ref.Manifest.Subject = dg("m1")
	cmds := []*Command{
		commitBlob("a", "l1"),
		putManifest("a", "v1", "m1", dg("l1")),
		ref,
		{Op: OpBlobMount, Repo: "b", From: "a", Digest: dg("l1")},
		{Op: OpUploadCreate, Upload: &Upload{ID: "u1", Repo: "a", Offset: 3, State: []byte(`{"k":1}`)}},
		{Op: OpUserCreate, ID: "id-1", User: &User{Name: "u", Hash: "h", Admin: true}},
	}
	applyAll(t, f.state, cmds...)

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sink := &memorySink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	a, b := f.state, g.state
	if !reflect.DeepEqual(a.blobs, b.blobs) || !reflect.DeepEqual(a.uploads, b.uploads) ||
		!reflect.DeepEqual(a.users, b.users) || !reflect.DeepEqual(a.results, b.results) {
		t.Fatal("restored blobs, uploads, users or results differ")
	}
	for name, ra := range a.repos {
		rb := b.repos[name]
		if rb == nil || !reflect.DeepEqual(ra.tags, rb.tags) || !reflect.DeepEqual(ra.blobs, rb.blobs) ||
			!reflect.DeepEqual(ra.manifests, rb.manifests) || !reflect.DeepEqual(ra.referrers, rb.referrers) {
			t.Fatalf("restored repository %s differs", name)
		}
	}
	if got, _ := b.Repositories("", -1); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("restored catalog = %v", got)
	}
	// The restored dedupe table still recognises the applied id.
	if r := b.apply(cmds[5], 99); r.Index != 6 {
		t.Fatalf("repeat after restore applied again: index %d", r.Index)
	}
}

type memorySink struct {
	*bytes.Buffer
}

func (m *memorySink) ID() string    { return "mem" }
func (m *memorySink) Cancel() error { return nil }
func (m *memorySink) Close() error  { return nil }

// sameIndex fails unless a and b hold the same repositories, tags,
// manifests, blob links and blobs.
func sameIndex(t *testing.T, a, b *State) {
	t.Helper()
	if !reflect.DeepEqual(a.blobs, b.blobs) {
		t.Fatal("blobs differ")
	}
	if len(a.repos) != len(b.repos) {
		t.Fatalf("%d repositories, want %d", len(b.repos), len(a.repos))
	}
	for name, ra := range a.repos {
		rb := b.repos[name]
		if rb == nil || !reflect.DeepEqual(ra.tags, rb.tags) || !reflect.DeepEqual(ra.blobs, rb.blobs) ||
			!reflect.DeepEqual(ra.manifests, rb.manifests) {
			t.Fatalf("repository %s differs", name)
		}
	}
}

// TestSnapshotUnchangedByLaterApplies takes a snapshot, changes every
// kind of repository map while the snapshot is persisted, and checks
// that the snapshot holds the state of the moment it was taken. Under
// the race detector it also shows that Apply and Persist share no map
// that either of them changes.
func TestSnapshotUnchangedByLaterApplies(t *testing.T) {
	f := NewFSM()
	var cmds []*Command
	for i := range 20 {
		repo := fmt.Sprintf("r%d", i%4)
		cmds = append(cmds, commitBlob(repo, fmt.Sprintf("l%d", i)),
			putManifest(repo, fmt.Sprintf("v%d", i), fmt.Sprintf("m%d", i), dg(fmt.Sprintf("l%d", i))))
	}
	applyAll(t, f.state, cmds...)

	// The reference: a copy of the state restored from a snapshot
	// persisted before any change.
	persist := func(snap raft.FSMSnapshot) *bytes.Buffer {
		var buf bytes.Buffer
		if err := snap.Persist(&memorySink{Buffer: &buf}); err != nil {
			t.Error(err)
		}
		return &buf
	}
	first, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := NewFSM()
	if err := want.Restore(io.NopCloser(persist(first))); err != nil {
		t.Fatal(err)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *bytes.Buffer)
	go func() { done <- persist(snap) }()
	index := uint64(len(cmds))
	for i := range 20 {
		repo := fmt.Sprintf("r%d", i%4)
		later := []*Command{
			{Op: OpTagPut, Repo: repo, Tag: fmt.Sprintf("new%d", i), Digest: dg(fmt.Sprintf("m%d", i))},
			{Op: OpTagDelete, Repo: repo, Tag: fmt.Sprintf("v%d", i)},
			commitBlob(repo, fmt.Sprintf("later%d", i)),
			{Op: OpBlobUnlink, Repo: repo, Digest: dg(fmt.Sprintf("l%d", i))},
			{Op: OpManifestDelete, Repo: repo, Digest: dg(fmt.Sprintf("m%d", i))},
			putManifest(fmt.Sprintf("fresh%d", i), "v1", fmt.Sprintf("fm%d", i)),
		}
		for _, c := range later {
			index++
			if r := f.state.apply(c, index); r.Err() != nil {
				t.Fatalf("%s %s: %v", c.Op, c.Repo, r.Err())
			}
		}
	}
	got := NewFSM()
	if err := got.Restore(io.NopCloser(<-done)); err != nil {
		t.Fatal(err)
	}
	sameIndex(t, want.state, got.state)

	// The live state did change, and a new snapshot holds the change.
	after, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	now := NewFSM()
	if err := now.Restore(io.NopCloser(persist(after))); err != nil {
		t.Fatal(err)
	}
	sameIndex(t, f.state, now.state)
	if _, err := now.state.ManifestByTag("fresh3", "v1"); err != nil {
		t.Fatalf("a snapshot taken after the changes lacks them: %v", err)
	}
}

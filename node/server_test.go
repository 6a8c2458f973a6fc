package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"

	"github.com/flotilla-registry/flotilla/blobstore"
	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/auth"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

const (
	testUser     = "alice"
	testPassword = "wonderland"
	adminToken   = "local-token"
)

type testServer struct {
	t       *testing.T
	url     string
	handler http.Handler
	raft    *consensus.Node
	auth    *auth.Authenticator
	http    *http.Client
}

type serverOption func(*Options)

func withDeleteDisabled(o *Options) { o.DeleteEnabled = false }

// newTestServer starts a node on a real Raft cluster of one and a
// filesystem blob store in a temporary folder, with user alice.
func newTestServer(t *testing.T, opts ...serverOption) *testServer {
	t.Helper()
	dir := t.TempDir()
	rn, err := consensus.Open(consensus.Config{NodeID: "test", DataDir: dir + "/raft"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rn.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !rn.IsLeader() {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	ctx := context.Background()
	if _, err := rn.Apply(ctx, &consensus.Command{Op: consensus.OpUsersSyncFile,
		Users: []consensus.User{{Name: testUser, Hash: string(hash)}}}); err != nil {
		t.Fatal(err)
	}
	store, err := blobstore.NewFilesystem(dir + "/blobs")
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.New(func(name string) (auth.User, bool) {
		u, ok := rn.State().User(name)
		if !ok {
			return auth.User{}, false
		}
		return auth.User{Name: u.Name, Hash: u.Hash, Admin: u.Admin, Version: u.ModifyIndex}, true
	}, auth.Options{})
	o := Options{
		Raft: rn, Store: store, Uploads: upload.New(store, nil), Auth: authn,
		Realm: "Test Realm", AdminToken: adminToken, DeleteEnabled: true,
		MaxManifestSize: 64 << 10, PasswordCost: bcrypt.MinCost,
	}
	for _, opt := range opts {
		opt(&o)
	}
	srv := New(o)
	srv.SetReady(true)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &testServer{t: t, url: hs.URL, handler: srv.Handler(), raft: rn, auth: authn, http: hs.Client()}
}

type request struct {
	method  string
	path    string
	body    []byte
	header  map[string]string
	noAuth  bool
	user    string
	pass    string
	reader  io.Reader
	length  int64
	chunked bool
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (s *testServer) do(r request) response {
	s.t.Helper()
	var body io.Reader = bytes.NewReader(r.body)
	if r.reader != nil {
		body = r.reader
	}
	req, err := http.NewRequest(r.method, s.url+r.path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	if r.reader != nil {
		req.ContentLength = r.length
	}
	if r.chunked {
		req.ContentLength = -1
	}
	if !r.noAuth {
		user, pass := r.user, r.pass
		if user == "" {
			user, pass = testUser, testPassword
		}
		req.SetBasicAuth(user, pass)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// code returns the first OCI error code of a response body.
func (r response) code() string {
	var e errorBody
	if json.Unmarshal(r.body, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return string(e.Errors[0].Code)
}

func expect(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" && r.code() != code {
		t.Fatalf("code = %q, want %q; body %s", r.code(), code, r.body)
	}
}

// pushBlob uploads content monolithically and returns its digest.
func (s *testServer) pushBlob(repo string, content []byte) digest.Digest {
	s.t.Helper()
	d := digest.FromBytes(content)
	r := s.do(request{method: "POST", path: fmt.Sprintf("/v2/%s/blobs/uploads/?digest=%s", repo, d), body: content})
	expect(s.t, r, http.StatusCreated, "")
	return d
}

func imageManifest(config digest.Digest, configSize int, layers ...digest.Digest) []byte {
	var ls []string
	for _, l := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":1}`, l))
	}
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
		config, configSize, strings.Join(ls, ",")))
}

func (s *testServer) pushImage(repo, tag string) (digest.Digest, []byte) {
	s.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := s.pushBlob(repo, cfg)
	ld := s.pushBlob(repo, []byte("layer of "+repo+tag))
	m := imageManifest(cd, len(cfg), ld)
	r := s.do(request{method: "PUT", path: fmt.Sprintf("/v2/%s/manifests/%s", repo, tag), body: m,
		header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expect(s.t, r, http.StatusCreated, "")
	return digest.FromBytes(m), m
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func uploadEngine(store blobstore.Store) *upload.Engine { return upload.New(store, nil) }

func digestOf(b []byte) string { return digest.FromBytes(b).String() }

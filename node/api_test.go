package node

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestBaseNeedsAuth(t *testing.T) {
	s := newTestServer(t)
	s.pushImage("exists/repo", "latest")
	tests := []struct {
		name string
		req  request
		want int
	}{
		{"no credentials on /v2/", request{method: "GET", path: "/v2/", noAuth: true}, 401},
		{"wrong password", request{method: "GET", path: "/v2/", user: testUser, pass: "nope"}, 401},
		{"unknown user", request{method: "GET", path: "/v2/", user: "mallory", pass: "x"}, 401},
		{"right password", request{method: "GET", path: "/v2/"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(tt.req)
			expect(t, r, tt.want, "")
			if r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
				t.Fatalf("missing API version header: %v", r.header)
			}
			if tt.want == 401 {
				if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="Test Realm"` {
					t.Fatalf("WWW-Authenticate = %q", got)
				}
				if r.code() != "UNAUTHORIZED" {
					t.Fatalf("code = %q", r.code())
				}
			}
		})
	}
}

func TestAnonymousAnswerSameForExistingAndMissingRepo(t *testing.T) {
	s := newTestServer(t)
	s.pushImage("exists/repo", "latest")
	a := s.do(request{method: "GET", path: "/v2/exists/repo/manifests/latest", noAuth: true})
	b := s.do(request{method: "GET", path: "/v2/missing/repo/manifests/latest", noAuth: true})
	expect(t, a, 401, "UNAUTHORIZED")
	if a.status != b.status || !bytes.Equal(a.body, b.body) ||
		a.header.Get("WWW-Authenticate") != b.header.Get("WWW-Authenticate") {
		t.Fatalf("answers differ: %d %s / %d %s", a.status, a.body, b.status, b.body)
	}
}

func TestUnknownUserCostsOneComparison(t *testing.T) {
	s := newTestServer(t)
	for _, tt := range []struct{ user, pass string }{{"mallory", "x"}, {testUser, "wrong"}} {
		before := s.auth.Comparisons()
		s.do(request{method: "GET", path: "/v2/", user: tt.user, pass: tt.pass})
		if got := s.auth.Comparisons() - before; got != 1 {
			t.Fatalf("user %s: %d bcrypt comparisons, want 1", tt.user, got)
		}
	}
	before := s.auth.Comparisons()
	for i := 0; i < 5; i++ {
		expect(t, s.do(request{method: "GET", path: "/v2/"}), 200, "")
	}
	if got := s.auth.Comparisons() - before; got > 1 {
		t.Fatalf("5 requests with the same credentials cost %d comparisons, want at most 1", got)
	}
}

func TestChunkedUpload(t *testing.T) {
	s := newTestServer(t)
	content := []byte("0123456789abcdefghij")
	d := digest.FromBytes(content)

	r := s.do(request{method: "POST", path: "/v2/r/blobs/uploads/"})
	expect(t, r, 202, "")
	loc := r.header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/r/blobs/uploads/") {
		t.Fatalf("Location = %q, want a relative path", loc)
	}
	patch := func(from, to int) response {
		return s.do(request{method: "PATCH", path: loc, body: content[from:to], header: map[string]string{
			"Content-Range": fmt.Sprintf("%d-%d", from, to-1), "Content-Type": "application/octet-stream"}})
	}
	expect(t, patch(0, 10), 202, "")
	if got := s.do(request{method: "GET", path: loc}); got.status != 204 || got.header.Get("Range") != "0-9" {
		t.Fatalf("status after first chunk: %d Range %q", got.status, got.header.Get("Range"))
	}

	t.Run("repeated chunk", func(t *testing.T) {
		r := patch(0, 10)
		expect(t, r, 416, "BLOB_UPLOAD_INVALID")
		if r.header.Get("Range") != "0-9" {
			t.Fatalf("Range = %q, want 0-9", r.header.Get("Range"))
		}
	})
	t.Run("out of order chunk", func(t *testing.T) {
		r := patch(15, 20)
		expect(t, r, 416, "BLOB_UPLOAD_INVALID")
	})
	t.Run("other repository", func(t *testing.T) {
		other := strings.Replace(loc, "/v2/r/", "/v2/other/", 1)
		expect(t, s.do(request{method: "GET", path: other}), 404, "BLOB_UPLOAD_UNKNOWN")
	})
	if got := s.do(request{method: "GET", path: loc}); got.header.Get("Range") != "0-9" {
		t.Fatalf("rejected chunks changed the session: Range %q", got.header.Get("Range"))
	}
	expect(t, patch(10, 15), 202, "")
	r = s.do(request{method: "PUT", path: loc + "?digest=" + d.String(), body: content[15:],
		header: map[string]string{"Content-Range": "15-19"}})
	expect(t, r, 201, "")
	if r.header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("Docker-Content-Digest = %q", r.header.Get("Docker-Content-Digest"))
	}
	got := s.do(request{method: "GET", path: "/v2/r/blobs/" + d.String()})
	if !bytes.Equal(got.body, content) {
		t.Fatalf("blob = %q", got.body)
	}
	expect(t, s.do(request{method: "GET", path: loc}), 404, "BLOB_UPLOAD_UNKNOWN")
}

func TestStreamedUploadAndDigestMismatch(t *testing.T) {
	s := newTestServer(t)
	content := bytes.Repeat([]byte("x"), 100000)
	r := s.do(request{method: "POST", path: "/v2/r/blobs/uploads/"})
	loc := r.header.Get("Location")
	expect(t, s.do(request{method: "PATCH", path: loc, reader: bytes.NewReader(content), chunked: true}), 202, "")
	wrong := digest.FromString("other")
	expect(t, s.do(request{method: "PUT", path: loc + "?digest=" + wrong.String()}), 400, "DIGEST_INVALID")
	expect(t, s.do(request{method: "HEAD", path: "/v2/r/blobs/" + wrong.String()}), 404, "")
	expect(t, s.do(request{method: "HEAD", path: "/v2/r/blobs/" + digest.FromBytes(content).String()}), 404, "")
}

func TestSHA512Blob(t *testing.T) {
	s := newTestServer(t)
	content := []byte("sha512 content")
	d := digest.SHA512.FromBytes(content)
	r := s.do(request{method: "POST", path: "/v2/r/blobs/uploads/?digest=" + d.String(), body: content})
	expect(t, r, 201, "")
	got := s.do(request{method: "GET", path: "/v2/r/blobs/" + d.String()})
	expect(t, got, 200, "")
	if !bytes.Equal(got.body, content) {
		t.Fatalf("body = %q", got.body)
	}
}

func TestBlobRangeAndIsolation(t *testing.T) {
	s := newTestServer(t)
	d := s.pushBlob("a", []byte("0123456789"))
	tests := []struct {
		rng    string
		status int
		body   string
	}{
		{"bytes=2-4", 206, "234"},
		{"bytes=7-", 206, "789"},
		{"bytes=-2", 206, "89"},
		{"bytes=5-100", 206, "56789"},
		{"bytes=10-12", 416, ""},
		{"bytes=4-2", 416, ""},
		{"items=1-2", 416, ""},
	}
	for _, tt := range tests {
		t.Run(tt.rng, func(t *testing.T) {
			r := s.do(request{method: "GET", path: "/v2/a/blobs/" + d.String(), header: map[string]string{"Range": tt.rng}})
			expect(t, r, tt.status, "")
			if tt.status == 206 && string(r.body) != tt.body {
				t.Fatalf("body = %q, want %q", r.body, tt.body)
			}
		})
	}
	expect(t, s.do(request{method: "GET", path: "/v2/b/blobs/" + d.String()}), 404, "BLOB_UNKNOWN")

	t.Run("mount", func(t *testing.T) {
		missing := s.do(request{method: "POST", path: "/v2/b/blobs/uploads/?mount=" + d.String() + "&from=c"})
		expect(t, missing, 202, "")
		if missing.header.Get("Location") == "" {
			t.Fatal("fallback session without Location")
		}
		r := s.do(request{method: "POST", path: "/v2/b/blobs/uploads/?mount=" + d.String() + "&from=a"})
		expect(t, r, 201, "")
		if r.header.Get("Location") != "/v2/b/blobs/"+d.String() {
			t.Fatalf("Location = %q", r.header.Get("Location"))
		}
		expect(t, s.do(request{method: "HEAD", path: "/v2/b/blobs/" + d.String()}), 200, "")
	})
	t.Run("delete", func(t *testing.T) {
		expect(t, s.do(request{method: "DELETE", path: "/v2/b/blobs/" + d.String()}), 202, "")
		expect(t, s.do(request{method: "HEAD", path: "/v2/b/blobs/" + d.String()}), 404, "")
		expect(t, s.do(request{method: "HEAD", path: "/v2/a/blobs/" + d.String()}), 200, "")
	})
}

func TestDeleteDisabled(t *testing.T) {
	s := newTestServer(t, withDeleteDisabled)
	md, _ := s.pushImage("r", "v1")
	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/" + md.String()}), 405, "UNSUPPORTED")
	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/v1"}), 405, "UNSUPPORTED")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/v1"}), 200, "")
}

func TestManifestPutChecks(t *testing.T) {
	s := newTestServer(t)
	cfg := s.pushBlob("r", []byte("{}"))
	layer := s.pushBlob("r", []byte("layer"))
	missing := digest.FromString("missing")
	ociType := map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
	withURLs := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},`+
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":%q,"size":5,"urls":["https://example.com/l"]}]}`,
		cfg, missing)
	withSubject := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x.sig",`+
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],`+
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":10}}`, cfg, missing)
	tests := []struct {
		name   string
		ref    string
		body   string
		header map[string]string
		status int
		code   string
	}{
		{"valid", "v1", string(imageManifest(cfg, 2, layer)), ociType, 201, ""},
		{"missing layer", "v2", string(imageManifest(cfg, 2, missing)), ociType, 400, "MANIFEST_BLOB_UNKNOWN"},
		{"missing config", "v2", string(imageManifest(missing, 2, layer)), ociType, 400, "MANIFEST_BLOB_UNKNOWN"},
		{"layer with urls", "v3", withURLs, ociType, 201, ""},
		{"subject not pushed", "v4", withSubject, ociType, 201, ""},
		{"not json", "v5", "{not json", ociType, 400, "MANIFEST_INVALID"},
		{"empty", "v5", "", ociType, 400, "MANIFEST_INVALID"},
		{"schema1", "v5", `{"schemaVersion":1,"name":"r","tag":"v5","fsLayers":[]}`,
			map[string]string{"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, 415, "UNSUPPORTED"},
		{"type mismatch", "v5", string(imageManifest(cfg, 2, layer)),
			map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, 400, "MANIFEST_INVALID"},
		{"unknown type", "v5", `{"schemaVersion":2,"mediaType":"application/x.custom"}`, nil, 400, "MANIFEST_INVALID"},
		{"digest mismatch", missing.String(), string(imageManifest(cfg, 2, layer)), ociType, 400, "DIGEST_INVALID"},
		{"bad reference", "-bad-", string(imageManifest(cfg, 2, layer)), ociType, 400, ""},
		{"too large", "v6", `{"schemaVersion":2,"x":"` + strings.Repeat("a", 70<<10) + `"}`, ociType, 413, "SIZE_INVALID"},
		{"bad index child", "v7", fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",`+
			`"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}]}`, missing),
			map[string]string{"Content-Type": "application/vnd.oci.image.index.v1+json"}, 400, "MANIFEST_BLOB_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(request{method: "PUT", path: "/v2/r/manifests/" + tt.ref, body: []byte(tt.body), header: tt.header})
			expect(t, r, tt.status, tt.code)
			if tt.status == 201 && r.header.Get("Docker-Content-Digest") != digest.FromString(tt.body).String() {
				t.Fatalf("Docker-Content-Digest = %q", r.header.Get("Docker-Content-Digest"))
			}
		})
	}
	tags := s.do(request{method: "GET", path: "/v2/r/tags/list"})
	if string(tags.body) != `{"name":"r","tags":["v1","v3","v4"]}` {
		t.Fatalf("tags after rejected puts = %s", tags.body)
	}
}

func TestManifestGetAndAccept(t *testing.T) {
	s := newTestServer(t)
	md, m := s.pushImage("r", "v1")
	for _, ref := range []string{"v1", md.String()} {
		r := s.do(request{method: "GET", path: "/v2/r/manifests/" + ref})
		expect(t, r, 200, "")
		if !bytes.Equal(r.body, m) || r.header.Get("Docker-Content-Digest") != md.String() ||
			r.header.Get("Content-Type") != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("GET %s: headers %v body %s", ref, r.header, r.body)
		}
		h := s.do(request{method: "HEAD", path: "/v2/r/manifests/" + ref})
		if h.status != 200 || len(h.body) != 0 || h.header.Get("Content-Length") != fmt.Sprint(len(m)) {
			t.Fatalf("HEAD %s: %d %v", ref, h.status, h.header)
		}
	}
	accepted := s.do(request{method: "GET", path: "/v2/r/manifests/v1", header: map[string]string{
		"Accept": "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"}})
	expect(t, accepted, 200, "")
	refused := s.do(request{method: "GET", path: "/v2/r/manifests/v1", header: map[string]string{
		"Accept": "application/vnd.docker.distribution.manifest.v2+json"}})
	expect(t, refused, 404, "MANIFEST_UNKNOWN")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/nope"}), 404, "MANIFEST_UNKNOWN")
	expect(t, s.do(request{method: "GET", path: "/v2/nope/manifests/v1"}), 404, "MANIFEST_UNKNOWN")
}

func TestTagDeleteOnlyThatTag(t *testing.T) {
	s := newTestServer(t)
	md, m := s.pushImage("r", "v1")
	expect(t, s.do(request{method: "PUT", path: "/v2/r/manifests/v2", body: m,
		header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}), 201, "")
	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/v1"}), 202, "")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/v1"}), 404, "MANIFEST_UNKNOWN")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/v2"}), 200, "")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/" + md.String()}), 200, "")
	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/v1"}), 404, "MANIFEST_UNKNOWN")
	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/" + md.String()}), 202, "")
	expect(t, s.do(request{method: "GET", path: "/v2/r/manifests/v2"}), 404, "MANIFEST_UNKNOWN")
}

func TestReferrers(t *testing.T) {
	s := newTestServer(t)
	subject, _ := s.pushImage("r", "v1")
	empty := s.pushBlob("r", []byte("{}"))
	put := func(artifactType string) digest.Digest {
		body := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":%q,`+
			`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":%q,"size":2},"layers":[],`+
			`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":1}}`, artifactType, empty, subject))
		d := digest.FromBytes(body)
		r := s.do(request{method: "PUT", path: "/v2/r/manifests/" + d.String(), body: body,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
		expect(t, r, 201, "")
		if r.header.Get("OCI-Subject") != subject.String() {
			t.Fatalf("OCI-Subject = %q", r.header.Get("OCI-Subject"))
		}
		return d
	}
	sig := put("application/x.sig")
	put("application/x.sbom")
	var idx referrersIndex
	r := s.do(request{method: "GET", path: "/v2/r/referrers/" + subject.String()})
	expect(t, r, 200, "")
	if err := jsonUnmarshal(r.body, &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("referrers = %s (%v)", r.body, err)
	}
	r = s.do(request{method: "GET", path: "/v2/r/referrers/" + subject.String() + "?artifactType=application/x.sig"})
	if err := jsonUnmarshal(r.body, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != sig {
		t.Fatalf("filtered referrers = %s", r.body)
	}
	if r.header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("OCI-Filters-Applied = %q", r.header.Get("OCI-Filters-Applied"))
	}
	expect(t, s.do(request{method: "GET", path: "/v2/r/referrers/sha256:bad"}), 400, "DIGEST_INVALID")
}

func TestTagsAndCatalogPagination(t *testing.T) {
	s := newTestServer(t)
	_, m := s.pushImage("r", "a")
	for _, tag := range []string{"d", "c", "b"} {
		expect(t, s.do(request{method: "PUT", path: "/v2/r/manifests/" + tag, body: m,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}}), 201, "")
	}
	r := s.do(request{method: "GET", path: "/v2/r/tags/list?n=2"})
	if string(r.body) != `{"name":"r","tags":["a","b"]}` {
		t.Fatalf("page 1 = %s", r.body)
	}
	if link := r.header.Get("Link"); link != `</v2/r/tags/list?last=b&n=2>; rel="next"` {
		t.Fatalf("Link = %q", link)
	}
	r = s.do(request{method: "GET", path: "/v2/r/tags/list?n=2&last=b"})
	if string(r.body) != `{"name":"r","tags":["c","d"]}` || r.header.Get("Link") != "" {
		t.Fatalf("page 2 = %s, Link %q", r.body, r.header.Get("Link"))
	}
	for _, bad := range []string{"-1", "x", "100001"} {
		expect(t, s.do(request{method: "GET", path: "/v2/r/tags/list?n=" + bad}), 400, "PAGINATION_NUMBER_INVALID")
	}
	expect(t, s.do(request{method: "GET", path: "/v2/unknown/tags/list"}), 404, "NAME_UNKNOWN")

	s.pushImage("b/one", "x")
	s.pushImage("a/two", "x")
	r = s.do(request{method: "GET", path: "/v2/_catalog?n=2"})
	if string(r.body) != `{"repositories":["a/two","b/one"]}` || r.header.Get("Link") == "" {
		t.Fatalf("catalog page 1 = %s, Link %q", r.body, r.header.Get("Link"))
	}
	r = s.do(request{method: "GET", path: "/v2/_catalog?n=2&last=b/one"})
	if string(r.body) != `{"repositories":["r"]}` {
		t.Fatalf("catalog page 2 = %s", r.body)
	}
}

func TestBadNamesAndDigests(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/UPPER/tags/list", 400, "NAME_INVALID"},
		{"GET", "/v2/a//b/tags/list", 400, "NAME_INVALID"},
		{"GET", "/v2/" + strings.Repeat("a", 256) + "/tags/list", 400, "NAME_INVALID"},
		{"GET", "/v2/a/../b/tags/list", 400, "NAME_INVALID"},
		{"HEAD", "/v2/r/blobs/sha256:xyz", 400, ""},
		{"GET", "/v2/r/blobs/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/r/blobs/md5:" + strings.Repeat("a", 32), 400, "DIGEST_INVALID"},
		{"PATCH", "/v2/r/blobs/uploads/not-a-uuid", 404, "BLOB_UPLOAD_UNKNOWN"},
		{"PUT", "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000?digest=" + digest.FromString("x").String(), 404, "BLOB_UPLOAD_UNKNOWN"},
		{"PUT", "/v2/r/blobs/uploads/00000000-0000-0000-0000-000000000000", 400, "DIGEST_INVALID"},
		{"POST", "/v2/r/blobs/uploads/?digest=sha256:short", 400, "DIGEST_INVALID"},
		{"PUT", "/v2/r/tags/list", 405, "UNSUPPORTED"},
		{"GET", "/v2/r/unknown/x", 404, ""},
		{"GET", "/elsewhere", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path[:min(len(tt.path), 50)], func(t *testing.T) {
			r := s.do(request{method: tt.method, path: tt.path})
			expect(t, r, tt.status, tt.code)
			// Paths outside the API get registry:2's plain 404.
			if tt.method != "HEAD" && strings.HasPrefix(tt.path, "/v2/") && r.code() == "" {
				t.Fatalf("no OCI error body: %s", r.body)
			}
		})
	}
}

func TestAdminUsers(t *testing.T) {
	s := newTestServer(t)
	bearer := map[string]string{"Authorization": "Bearer " + adminToken}
	create := func(body string, header map[string]string, noAuth bool) response {
		return s.do(request{method: "POST", path: "/flotilla/v1/users", body: []byte(body), header: header, noAuth: noAuth})
	}
	expect(t, create(`{"name":"bob","password":"pw"}`, nil, false), 403, "DENIED")
	expect(t, create(`{"name":"bob","password":"pw"}`, map[string]string{"Authorization": "Bearer wrong"}, true), 401, "UNAUTHORIZED")
	expect(t, create(`{"name":"root","password":"rootpw","admin":true}`, bearer, true), 201, "")
	expect(t, create(`{"name":"bob","password":"`+strings.Repeat("p", 73)+`"}`, bearer, true), 400, "PASSWORD_INVALID")
	expect(t, create(`{"name":"alice","password":"x"}`, bearer, true), 403, "DENIED")
	expect(t, create(`{"name":"bad:name","password":"x"}`, bearer, true), 400, "USER_INVALID")

	asRoot := request{method: "POST", path: "/flotilla/v1/users", body: []byte(`{"name":"bob","password":"bobpw"}`), user: "root", pass: "rootpw"}
	expect(t, s.do(asRoot), 201, "")
	expect(t, s.do(request{method: "GET", path: "/v2/", user: "bob", pass: "bobpw"}), 200, "")
	expect(t, s.do(request{method: "PUT", path: "/flotilla/v1/users/bob/password", body: []byte(`{"password":"new"}`),
		user: "root", pass: "rootpw"}), 204, "")
	expect(t, s.do(request{method: "GET", path: "/v2/", user: "bob", pass: "bobpw"}), 401, "")
	expect(t, s.do(request{method: "GET", path: "/v2/", user: "bob", pass: "new"}), 200, "")
	expect(t, s.do(request{method: "PUT", path: "/flotilla/v1/users/alice/password", body: []byte(`{"password":"x"}`),
		header: bearer, noAuth: true}), 403, "DENIED")
	expect(t, s.do(request{method: "DELETE", path: "/flotilla/v1/users/bob", header: bearer, noAuth: true}), 204, "")
	expect(t, s.do(request{method: "GET", path: "/v2/", user: "bob", pass: "new"}), 401, "")
	expect(t, s.do(request{method: "DELETE", path: "/flotilla/v1/users/bob", header: bearer, noAuth: true}), 404, "USER_UNKNOWN")
	list := s.do(request{method: "GET", path: "/flotilla/v1/users", header: bearer, noAuth: true})
	if string(list.body) != `{"users":[{"name":"alice","admin":false,"source":"file"},{"name":"root","admin":true,"source":"api"}]}` {
		t.Fatalf("users = %s", list.body)
	}
}

func TestHealthEndpoints(t *testing.T) {
	s := newTestServer(t)
	expect(t, s.do(request{method: "GET", path: "/healthz", noAuth: true}), 200, "")
	expect(t, s.do(request{method: "GET", path: "/readyz", noAuth: true}), 200, "")
}

func TestManifestPutTagParams(t *testing.T) {
	s := newTestServer(t)
	_, m := s.pushImage("r", "v1")
	d := digest.FromBytes(m)
	r := s.do(request{method: "PUT", path: "/v2/r/manifests/" + d.String() + "?tag=a&tag=b", body: m,
		header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expect(t, r, 201, "")
	if got := r.header.Values("OCI-Tag"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("OCI-Tag = %v, want [a b]", got)
	}
	tags := s.do(request{method: "GET", path: "/v2/r/tags/list"})
	if string(tags.body) != `{"name":"r","tags":["a","b","v1"]}` {
		t.Fatalf("tags = %s", tags.body)
	}
	bad := s.do(request{method: "PUT", path: "/v2/r/manifests/" + d.String() + "?tag=-bad", body: m,
		header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
	expect(t, bad, 400, "MANIFEST_INVALID")
}

func TestMountWithoutFrom(t *testing.T) {
	s := newTestServer(t)
	d := s.pushBlob("a", []byte("shared layer"))
	r := s.do(request{method: "POST", path: "/v2/b/blobs/uploads/?mount=" + d.String()})
	expect(t, r, 201, "")
	expect(t, s.do(request{method: "HEAD", path: "/v2/b/blobs/" + d.String()}), 200, "")
	unknown := digest.FromString("never pushed")
	expect(t, s.do(request{method: "POST", path: "/v2/b/blobs/uploads/?mount=" + unknown.String()}), 202, "")
}

// TestManifestPutAgainUnderNewTag pushes one manifest under a second and
// third tag. The node must send a tag command, which leaves the stored
// manifest as it was (a whole manifest put would move its modify index),
// and fall back to a whole put after the manifest was deleted.
func TestManifestPutAgainUnderNewTag(t *testing.T) {
	s := newTestServer(t)
	d, m := s.pushImage("r", "v1")
	before, err := s.raft.State().ManifestByDigest("r", d)
	if err != nil {
		t.Fatal(err)
	}
	put := func(tag string, query string) {
		t.Helper()
		r := s.do(request{method: "PUT", path: "/v2/r/manifests/" + tag + query, body: m,
			header: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json"}})
		expect(t, r, 201, "")
		if got := r.header.Get("Docker-Content-Digest"); got != d.String() {
			t.Fatalf("PUT %s: Docker-Content-Digest %q, want %s", tag, got, d)
		}
	}
	put("v2", "")
	put(d.String(), "?tag=v3")
	after, err := s.raft.State().ManifestByDigest("r", d)
	if err != nil {
		t.Fatal(err)
	}
	if after.ModifyIndex != before.ModifyIndex {
		t.Errorf("manifest modify index moved from %d to %d: the new tags carried the whole manifest",
			before.ModifyIndex, after.ModifyIndex)
	}
	for _, tag := range []string{"v1", "v2", "v3"} {
		expect(t, s.do(request{method: "HEAD", path: "/v2/r/manifests/" + tag}), 200, "")
	}

	expect(t, s.do(request{method: "DELETE", path: "/v2/r/manifests/" + d.String()}), 202, "")
	put("v4", "")
	expect(t, s.do(request{method: "HEAD", path: "/v2/r/manifests/v4"}), 200, "")
	expect(t, s.do(request{method: "HEAD", path: "/v2/r/manifests/v1"}), 404, "")
}

// TestManifestPutKeepsFirstMediaType pushes a manifest without a
// mediaType field under two tags with two Content-Types. The type of the
// first PUT stays, for both tags.
func TestManifestPutKeepsFirstMediaType(t *testing.T) {
	s := newTestServer(t)
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	cd := s.pushBlob("r", cfg)
	m := []byte(fmt.Sprintf(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[]}`, cd, len(cfg)))
	const oci = "application/vnd.oci.image.manifest.v1+json"
	for _, put := range []struct{ tag, contentType string }{
		{"n1", oci},
		{"n2", "application/vnd.docker.distribution.manifest.v2+json"},
	} {
		r := s.do(request{method: "PUT", path: "/v2/r/manifests/" + put.tag, body: m,
			header: map[string]string{"Content-Type": put.contentType}})
		expect(t, r, 201, "")
	}
	for _, tag := range []string{"n1", "n2"} {
		r := s.do(request{method: "GET", path: "/v2/r/manifests/" + tag, header: map[string]string{"Accept": oci}})
		expect(t, r, 200, "")
		if ct := r.header.Get("Content-Type"); ct != oci {
			t.Errorf("GET %s: Content-Type %q, want the first PUT's %q", tag, ct, oci)
		}
	}
}

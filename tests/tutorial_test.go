package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// The user, password and realm of the registry:2 tutorial that secures a
// registry with TLS and htpasswd ("Using Basic Authentication with a
// Secured Registry in Linux").
const (
	tutorialUser     = "moby"
	tutorialPassword = "DockerRules"
	tutorialRealm    = "Registry Realm"
)

// TestTutorialBasicAuth follows that tutorial with Flotilla in place of
// registry:2. The htpasswd line comes from the binary's helper, and the
// node is set up only by REGISTRY_* environment variables. Anonymous
// requests must get the same 401 whether or not the repository exists,
// GET /v2/ must check the password as docker login expects, and push and
// pull must work with the right password.
func TestTutorialBasicAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	line := harness.HtpasswdLine(t, tutorialUser, tutorialPassword)
	user, hash, ok := strings.Cut(line, ":")
	if !ok || user != tutorialUser || !strings.HasPrefix(hash, "$2y$") {
		t.Fatalf("htpasswd -Bbn printed %q, want moby:$2y$... (bcrypt)", line)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(tutorialPassword)); err != nil {
		t.Errorf("htpasswd hash does not match the password: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("WrongPassword")); err == nil {
		t.Errorf("htpasswd hash matches a wrong password")
	}

	// The harness passes no configuration file: only REGISTRY_* variables.
	node := harness.StartNode(t, harness.NodeOptions{
		Storage:  harness.StorageFilesystem,
		Realm:    tutorialRealm,
		Username: tutorialUser,
		Password: tutorialPassword,
		Htpasswd: line + "\n",
	})
	if node.ConfigFile != "" {
		t.Fatalf("node was given configuration file %s", node.ConfigFile)
	}

	tools := harness.NewTools(t, node)
	tools.Run(ctx, "crane", "auth", "login", node.Host, "-u", tutorialUser, "-p", tutorialPassword)
	img := harness.RandomImage(t, harness.ImageOptions{})
	layoutDir := filepath.Join(t.TempDir(), "layout")
	layout := harness.NewLayout()
	layout.AddImage("latest", img)
	layout.Write(t, layoutDir)
	repo := node.Host + "/labs/hello-world"
	tools.Run(ctx, "crane", "push", layoutDir, repo+":latest")

	t.Run("anonymous", func(t *testing.T) {
		testAnonymousRequests(ctx, t, node, img)
	})
	t.Run("login", func(t *testing.T) {
		testLogin(ctx, t, node)
	})
	t.Run("pull", func(t *testing.T) {
		tools := tools.For(t)
		requireDigest(t, tools.Run(ctx, "crane", "digest", repo+":latest"), img.Manifest.Digest)
		pulled := filepath.Join(t.TempDir(), "pulled")
		tools.Run(ctx, "crane", "pull", "--format", "oci", repo+":latest", pulled)
		harness.RequireLayoutLists(t, pulled, img.Manifest.Digest)
		harness.RequireImageInLayout(t, pulled, img)
	})
	t.Run("wrong password", func(t *testing.T) {
		wrong := harness.NewTools(t, node)
		wrong.Run(ctx, "crane", "auth", "login", node.Host, "-u", tutorialUser, "-p", "WrongPassword")
		res := wrong.Try(ctx, "crane", "digest", repo+":latest")
		if res.Err == nil {
			t.Fatalf("crane digest with a wrong password succeeded: %s", res.Stdout)
		}
		if !strings.Contains(res.Stderr, "UNAUTHORIZED") && !strings.Contains(res.Stderr, "401") {
			t.Errorf("crane with a wrong password failed without a 401:\n%s", res.Stderr)
		}
	})
}

// unauthorizedBody is the OCI error body of a 401.
type unauthorizedBody struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// testAnonymousRequests checks that requests without credentials get 401
// with a Basic challenge and an UNAUTHORIZED body, identical for an
// existing and a missing repository, so they reveal nothing.
func testAnonymousRequests(ctx context.Context, t *testing.T, node *harness.Node, img *harness.Image) {
	challenge := `Basic realm="` + tutorialRealm + `"`
	ping := doAnonymous(ctx, t, node, http.MethodGet, "/v2/")
	if ping.status != http.StatusUnauthorized || ping.challenge != challenge {
		t.Errorf("GET /v2/: status %d and WWW-Authenticate %q, want 401 and %q",
			ping.status, ping.challenge, challenge)
	}
	requireUnauthorizedBody(t, "GET /v2/", ping.body)

	layer := img.Layers[0].Digest.String()
	pairs := []struct {
		method, existing, missing string
	}{
		{http.MethodGet, "/v2/labs/hello-world/manifests/latest", "/v2/labs/no-such-repo/manifests/latest"},
		{http.MethodHead, "/v2/labs/hello-world/manifests/latest", "/v2/labs/no-such-repo/manifests/latest"},
		{http.MethodGet, "/v2/labs/hello-world/blobs/" + layer, "/v2/labs/no-such-repo/blobs/" + layer},
		{http.MethodGet, "/v2/labs/hello-world/tags/list", "/v2/labs/no-such-repo/tags/list"},
		{http.MethodPost, "/v2/labs/hello-world/blobs/uploads/", "/v2/labs/no-such-repo/blobs/uploads/"},
	}
	for _, pair := range pairs {
		existing := doAnonymous(ctx, t, node, pair.method, pair.existing)
		missing := doAnonymous(ctx, t, node, pair.method, pair.missing)
		for _, r := range []anonymousResponse{existing, missing} {
			if r.status != http.StatusUnauthorized {
				t.Errorf("%s %s: status %d, want 401", pair.method, r.path, r.status)
			}
			if r.challenge != challenge {
				t.Errorf("%s %s: WWW-Authenticate %q, want %q", pair.method, r.path, r.challenge, challenge)
			}
			if pair.method != http.MethodHead {
				requireUnauthorizedBody(t, pair.method+" "+r.path, r.body)
			}
		}
		if !bytes.Equal(existing.body, missing.body) {
			t.Errorf("%s: body for an existing repository %q differs from the body for a missing one %q",
				pair.method, existing.body, missing.body)
		}
		if existing.contentType != missing.contentType {
			t.Errorf("%s: Content-Type %q for an existing repository, %q for a missing one",
				pair.method, existing.contentType, missing.contentType)
		}
	}
}

func requireUnauthorizedBody(t *testing.T, request string, body []byte) {
	t.Helper()
	var decoded unauthorizedBody
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Errorf("%s: body %q is not an OCI error body: %v", request, body, err)
		return
	}
	if len(decoded.Errors) == 0 || decoded.Errors[0].Code != "UNAUTHORIZED" {
		t.Errorf("%s: body %q, want an error with code UNAUTHORIZED", request, body)
	}
}

type anonymousResponse struct {
	path        string
	status      int
	challenge   string
	contentType string
	body        []byte
}

func doAnonymous(ctx context.Context, t *testing.T, node *harness.Node, method, path string) anonymousResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, node.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := node.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return anonymousResponse{
		path:        path,
		status:      resp.StatusCode,
		challenge:   resp.Header.Get("WWW-Authenticate"),
		contentType: resp.Header.Get("Content-Type"),
		body:        body,
	}
}

// testLogin checks GET /v2/ the way "docker login" does: 401 for a wrong
// password or an unknown user, 200 for the right credentials.
func testLogin(ctx context.Context, t *testing.T, node *harness.Node) {
	cases := []struct {
		name, user, password string
		want                 int
	}{
		{"right password", tutorialUser, tutorialPassword, http.StatusOK},
		{"wrong password", tutorialUser, "WrongPassword", http.StatusUnauthorized},
		{"unknown user", "elton", tutorialPassword, http.StatusUnauthorized},
		{"empty password", tutorialUser, "", http.StatusUnauthorized},
	}
	for _, tc := range cases {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, node.URL+"/v2/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(tc.user, tc.password)
		resp, err := node.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: GET /v2/: %v", tc.name, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: GET /v2/ returned %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == http.StatusUnauthorized {
			requireUnauthorizedBody(t, tc.name+": GET /v2/", body)
		}
	}
}

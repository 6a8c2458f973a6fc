package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeNode implements the admin API's user resource with an in-memory user
// set. It stands in for a node in tests of the client only.
type fakeNode struct {
	mu       sync.Mutex
	users    map[string]*fakeUser
	token    string
	requests int
	lastPath string
}

type fakeUser struct {
	password string
	admin    bool
	source   string
}

func newFakeNode() *fakeNode {
	return &fakeNode{
		token: "node-token",
		users: map[string]*fakeUser{
			"root":  {password: "rootpw", admin: true, source: "api"},
			"dev":   {password: "devpw", source: "api"},
			"moby":  {password: "filepw", source: "file"},
			"alice": {password: "alicepw", source: "api"},
		},
	}
}

func (n *fakeNode) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /flotilla/v1/users", n.list)
	mux.HandleFunc("POST /flotilla/v1/users", n.add)
	mux.HandleFunc("PUT /flotilla/v1/users/{name}/password", n.passwd)
	mux.HandleFunc("DELETE /flotilla/v1/users/{name}", n.remove)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.requests++
		n.lastPath = r.URL.EscapedPath()
		if status, code, msg := n.authorize(r); status != 0 {
			writeAPIError(w, status, code, msg)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (n *fakeNode) authorize(r *http.Request) (int, string, string) {
	if r.Header.Get("Authorization") == "Bearer "+n.token {
		return 0, "", ""
	}
	name, password, ok := r.BasicAuth()
	u, found := n.users[name]
	if !ok || !found || u.password != password {
		return http.StatusUnauthorized, "UNAUTHORIZED", "authentication required"
	}
	if !u.admin {
		return http.StatusForbidden, "DENIED", "the admin role is required"
	}
	return 0, "", ""
}

func writeAPIError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

func (n *fakeNode) list(w http.ResponseWriter, r *http.Request) {
	type entry struct {
		Name   string `json:"name"`
		Admin  bool   `json:"admin"`
		Source string `json:"source"`
	}
	var users []entry
	for name, u := range n.users {
		users = append(users, entry{name, u.admin, u.source})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"users": users})
}

func (n *fakeNode) add(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	if len(body.Password) > 72 {
		writeAPIError(w, http.StatusBadRequest, "PASSWORD_INVALID", "password longer than 72 bytes")
		return
	}
	if _, ok := n.users[body.Name]; ok {
		writeAPIError(w, http.StatusConflict, "USER_EXISTS", "user "+body.Name+" already exists")
		return
	}
	n.users[body.Name] = &fakeUser{password: body.Password, admin: body.Admin, source: "api"}
	w.WriteHeader(http.StatusCreated)
}

// managed returns the user called name, or writes the error response and
// returns nil.
func (n *fakeNode) managed(w http.ResponseWriter, name string) *fakeUser {
	u, ok := n.users[name]
	if !ok {
		writeAPIError(w, http.StatusNotFound, "USER_UNKNOWN", "user "+name+" not found")
		return nil
	}
	if u.source == "file" {
		writeAPIError(w, http.StatusForbidden, "DENIED",
			"user "+name+" is managed by the htpasswd file: edit the file instead")
		return nil
	}
	return u
}

func (n *fakeNode) passwd(w http.ResponseWriter, r *http.Request) {
	u := n.managed(w, r.PathValue("name"))
	if u == nil {
		return
	}
	var body struct {
		Password string `json:"password"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeAPIError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	u.password = body.Password
	w.WriteHeader(http.StatusNoContent)
}

func (n *fakeNode) remove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if n.managed(w, name) == nil {
		return
	}
	delete(n.users, name)
	w.WriteHeader(http.StatusNoContent)
}

func (n *fakeNode) user(name string) (fakeUser, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	u, ok := n.users[name]
	if !ok {
		return fakeUser{}, false
	}
	return *u, true
}

func (n *fakeNode) requestCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.requests
}

// userEnv is a fake node behind TLS, its CA file and a data directory with
// its admin token.
type userEnv struct {
	node    *fakeNode
	url     string
	cacert  string
	datadir string
}

func newUserEnv(t *testing.T) *userEnv {
	t.Helper()
	t.Setenv("FLOTILLA_URL", "")
	t.Setenv("FLOTILLA_PASSWORD", "")
	node := newFakeNode()
	srv := httptest.NewTLSServer(node.handler())
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	cacert := filepath.Join(dir, "ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}
	if err := os.WriteFile(cacert, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	datadir := filepath.Join(dir, "data")
	if err := os.Mkdir(datadir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(datadir, adminTokenFile), []byte(node.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &userEnv{node: node, url: srv.URL, cacert: cacert, datadir: datadir}
}

// run runs "flotilla user" with --url and --cacert of the fake node
// appended to args.
func (e *userEnv) run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	args = append(args, "--url", e.url, "--cacert", e.cacert)
	var stdout, stderr bytes.Buffer
	code := runUser(args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUserList(t *testing.T) {
	env := newUserEnv(t)
	code, out, errOut := env.run(t, "", "list", "--datadir", env.datadir)
	if code != 0 {
		t.Fatalf("exit status %d, stderr %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"NAME", "ADMIN", "SOURCE"},
		{"alice", "no", "api"},
		{"dev", "no", "api"},
		{"moby", "no", "file"},
		{"root", "yes", "api"},
	}
	if len(lines) != len(want) {
		t.Fatalf("output has %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, fields := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(fields, " ") {
			t.Errorf("line %d = %q, want fields %v", i+1, lines[i], fields)
		}
	}
}

func TestUserCommands(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		stdin string
		args  []string
		code  int
		out   string // expected in stdout
		err   string // expected in stderr
		check func(t *testing.T, n *fakeNode)
	}{
		{
			name:  "add admin with token",
			stdin: "newpw\n",
			args:  []string{"add", "bob", "--admin", "--password-stdin", "--datadir", "DATADIR"},
			out:   "user bob added",
			check: func(t *testing.T, n *fakeNode) {
				if u, ok := n.user("bob"); !ok || !u.admin || u.password != "newpw" {
					t.Errorf("bob = %+v, %v; want admin with password newpw", u, ok)
				}
			},
		},
		{
			name:  "add with basic auth from env",
			env:   map[string]string{"FLOTILLA_PASSWORD": "rootpw"},
			stdin: "pw\npw\n",
			args:  []string{"add", "--username", "root", "carol"},
			out:   "user carol added",
			check: func(t *testing.T, n *fakeNode) {
				if u, ok := n.user("carol"); !ok || u.admin || u.password != "pw" {
					t.Errorf("carol = %+v, %v; want non-admin with password pw", u, ok)
				}
			},
		},
		{
			name:  "passwd with prompts from pipe",
			stdin: "rootpw\nnew\nnew\n",
			args:  []string{"passwd", "alice", "--username", "root"},
			out:   "password of user alice changed",
			check: func(t *testing.T, n *fakeNode) {
				if u, _ := n.user("alice"); u.password != "new" {
					t.Errorf("alice's password = %q, want new", u.password)
				}
			},
		},
		{
			name:  "delete with password from stdin",
			stdin: "rootpw\n",
			args:  []string{"delete", "--username", "root", "--password-stdin", "alice"},
			out:   "user alice deleted",
			check: func(t *testing.T, n *fakeNode) {
				if _, ok := n.user("alice"); ok {
					t.Error("alice still exists")
				}
			},
		},
		{
			name:  "add existing user",
			stdin: "pw\n",
			args:  []string{"add", "alice", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "user alice already exists (USER_EXISTS)",
		},
		{
			name:  "passwd of file user",
			stdin: "pw\n",
			args:  []string{"passwd", "moby", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "managed by the htpasswd file: edit the file instead (DENIED)",
		},
		{
			name:  "passwd of unknown user",
			stdin: "pw\n",
			args:  []string{"passwd", "nobody", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "not found (USER_UNKNOWN)",
		},
		{
			name: "delete unknown user",
			args: []string{"delete", "nobody", "--datadir", "DATADIR"},
			code: 1,
			err:  "user nobody not found",
		},
		{
			name: "delete file user",
			args: []string{"delete", "moby", "--datadir", "DATADIR"},
			code: 1,
			err:  "edit the file instead",
		},
		{
			name: "caller not admin",
			env:  map[string]string{"FLOTILLA_PASSWORD": "devpw"},
			args: []string{"list", "--username", "dev"},
			code: 1,
			err:  "admin role is required (DENIED)",
		},
		{
			name: "wrong password",
			env:  map[string]string{"FLOTILLA_PASSWORD": "wrong"},
			args: []string{"list", "--username", "root"},
			code: 1,
			err:  "check --username and the password",
		},
		{
			name:  "password too long",
			stdin: strings.Repeat("x", 73),
			args:  []string{"add", "bob", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "longer than 72 bytes",
		},
		{
			name:  "empty password",
			stdin: "\n",
			args:  []string{"add", "bob", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "empty password",
		},
		{
			name:  "entries differ",
			stdin: "a\nb\n",
			args:  []string{"add", "bob", "--datadir", "DATADIR"},
			code:  1,
			err:   "differ",
		},
		{
			name:  "invalid user name",
			stdin: "pw\n",
			args:  []string{"add", "bad:name", "--password-stdin", "--datadir", "DATADIR"},
			code:  1,
			err:   "contains ':'",
		},
		{
			name: "missing token",
			args: []string{"list", "--datadir", "NODATADIR"},
			code: 1,
			err:  "read admin token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newUserEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.NewReplacer("NODATADIR", t.TempDir(), "DATADIR", env.datadir).Replace(a)
			}
			code, out, errOut := env.run(t, tt.stdin, args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("stdout %q does not contain %q", out, tt.out)
			}
			if !strings.Contains(errOut, tt.err) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.err)
			}
			if tt.code != 0 && strings.Count(errOut, "\n") != 1 {
				t.Errorf("stderr %q is not one line", errOut)
			}
			if tt.check != nil {
				tt.check(t, env.node)
			}
		})
	}
}

func TestUserRejectsLongPasswordWithoutRequest(t *testing.T) {
	env := newUserEnv(t)
	code, _, _ := env.run(t, strings.Repeat("x", 73), "add", "bob", "--password-stdin", "--datadir", env.datadir)
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if n := env.node.requestCount(); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

func TestUserUsage(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		err  string
	}{
		{"no command", nil, nil, "usage: flotilla user"},
		{"unknown command", nil, []string{"rename", "a"}, "unknown command"},
		{"no authentication", nil, []string{"list"}, "use --username NAME or --datadir DIR"},
		{"both authentications", nil, []string{"list", "--username", "a", "--datadir", "d"}, "either --username or --datadir"},
		{"missing name", nil, []string{"delete", "--datadir", "d"}, "expects 1 arguments, got 0"},
		{"extra name", nil, []string{"delete", "a", "b", "--datadir", "d"}, "expects 1 arguments, got 2"},
		{"list with name", nil, []string{"list", "a", "--datadir", "d"}, "expects 0 arguments"},
		{"admin flag on passwd", nil, []string{"passwd", "a", "--admin", "--datadir", "d"}, "flag provided but not defined: -admin"},
		{"stdin for two passwords", nil, []string{"add", "a", "--username", "root", "--password-stdin"}, "set FLOTILLA_PASSWORD"},
		{"stdin unused", nil, []string{"list", "--datadir", "d", "--password-stdin"}, "nothing to read"},
		{"plain http to remote host", nil, []string{"list", "--datadir", "d", "--url", "http://registry.example:5000"}, "use https"},
		{"url without scheme", nil, []string{"list", "--datadir", "d", "--url", "localhost:5000"}, "invalid --url"},
		{"url from env", map[string]string{"FLOTILLA_URL": "ftp://localhost"}, []string{"list", "--datadir", "d"}, "scheme must be https"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FLOTILLA_URL", "")
			t.Setenv("FLOTILLA_PASSWORD", "")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := runUser(tt.args, strings.NewReader(""), &stdout, &stderr)
			if code != userExitUsage {
				t.Errorf("exit status %d, want %d (stderr %q)", code, userExitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.err) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.err)
			}
		})
	}
}

func TestUserTLSTrust(t *testing.T) {
	env := newUserEnv(t)
	var stdout, stderr bytes.Buffer
	code := runUser([]string{"list", "--datadir", env.datadir, "--url", env.url}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit status %d without --cacert, want 1", code)
	}
	if !strings.Contains(stderr.String(), "certificate") {
		t.Errorf("stderr %q does not mention the certificate", stderr.String())
	}
	if env.node.requestCount() != 0 {
		t.Error("a request reached the node over an untrusted connection")
	}
}

func TestUserPlainHTTPLoopback(t *testing.T) {
	t.Setenv("FLOTILLA_PASSWORD", "")
	node := newFakeNode()
	srv := httptest.NewServer(node.handler())
	defer srv.Close()
	t.Setenv("FLOTILLA_URL", srv.URL)
	datadir := t.TempDir()
	if err := os.WriteFile(filepath.Join(datadir, adminTokenFile), []byte(node.token), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := runUser([]string{"delete", "--datadir", datadir, "--", "dev"}, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit status %d, stderr %q", code, stderr.String())
	}
	if _, ok := node.user("dev"); ok {
		t.Error("dev still exists")
	}
}

func TestUserNameEscaped(t *testing.T) {
	env := newUserEnv(t)
	env.node.users["a/b?c"] = &fakeUser{password: "x", source: "api"}
	code, _, errOut := env.run(t, "", "delete", "a/b?c", "--datadir", env.datadir)
	if code != 0 {
		t.Fatalf("exit status %d, stderr %q", code, errOut)
	}
	if got := env.node.lastPath; got != "/flotilla/v1/users/a%2Fb%3Fc" {
		t.Errorf("request path = %q, want the name escaped as one segment", got)
	}
}

// TestUserListWithClientCertificate runs "flotilla user list" against a
// node that requires a client certificate, with and without --cert.
func TestUserListWithClientCertificate(t *testing.T) {
	t.Setenv("FLOTILLA_URL", "")
	dir := t.TempDir()
	caFile, caKeyFile := writeSelfSigned(t, dir, "clients")
	ca, err := tls.LoadX509KeyPair(caFile, caKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeSignedClient(t, dir, "admin", ca)

	node := newFakeNode()
	srv := httptest.NewUnstartedServer(node.handler())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Leaf)
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	serverCA := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(serverCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	datadir := filepath.Join(dir, "data")
	if err := os.Mkdir(datadir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(datadir, adminTokenFile), []byte(node.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	run := func(extra ...string) (int, string) {
		args := append([]string{"list", "--url", srv.URL, "--cacert", serverCA, "--datadir", datadir}, extra...)
		var stdout, stderr bytes.Buffer
		code := runUser(args, strings.NewReader(""), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	if code, out := run("--cert", certFile, "--key", keyFile); code != 0 || !strings.Contains(out, "moby") {
		t.Errorf("with --cert: exit %d, output %q; want the user list", code, out)
	}
	if code, _ := run(); code == 0 {
		t.Error("without --cert: exit 0, want a failure")
	}
	if code, out := run("--cert", certFile); code != 2 || !strings.Contains(out, "--key") {
		t.Errorf("--cert without --key: exit %d, output %q; want a usage error", code, out)
	}
}

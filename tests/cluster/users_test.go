package cluster

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/tests/harness"
)

// userVisibleTimeout bounds the wait until a node has applied a user
// change. Replication on loopback takes milliseconds; the bound only
// keeps a broken cluster from hanging the test.
const userVisibleTimeout = 10 * time.Second

// TestUsersReplicated adds a user through a follower's admin API and
// checks that the user can log in on every node once that node applied
// the change. It then deletes the user through another node and checks
// that every node rejects the login.
func TestUsersReplicated(t *testing.T) {
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	leader := c.WaitLeader(t)
	followers := c.Followers(leader)
	name := "user-" + harness.RandomHex(t, 4)
	password := harness.RandomHex(t, 12)

	body, err := json.Marshal(map[string]any{"name": name, "password": password, "admin": false})
	if err != nil {
		t.Fatalf("encode user: %v", err)
	}
	adminRequest(ctx, t, followers[0], http.MethodPost, "/flotilla/v1/users", body, http.StatusCreated)
	added := time.Now()
	for _, n := range c.Members() {
		waitLogin(ctx, t, n, name, password, http.StatusOK, added)
		wrong := &Client{Name: n.ID, BaseURL: n.URL, HTTP: n.Client().HTTP, Username: name, Password: password + "x"}
		if status, err := wrong.Ping(ctx); err != nil || status != http.StatusUnauthorized {
			t.Errorf("GET /v2/ on %s with a wrong password returned %d, %v; want 401", n.ID, status, err)
		}
	}

	adminRequest(ctx, t, followers[1], http.MethodDelete, "/flotilla/v1/users/"+name, nil, http.StatusNoContent)
	deleted := time.Now()
	for _, n := range c.Members() {
		waitLogin(ctx, t, n, name, password, http.StatusUnauthorized, deleted)
	}
}

// adminRequest sends an admin API request to n with its admin token
// and fails the test unless the response has one of the statuses.
func adminRequest(ctx context.Context, t *testing.T, n *Node, method, path string, body []byte, statuses ...int) *Response {
	t.Helper()
	token, err := n.AdminToken()
	if err != nil {
		t.Fatal(err)
	}
	header := http.Header{"Authorization": {"Bearer " + token}}
	if body != nil {
		header.Set("Content-Type", "application/json")
	}
	resp, err := n.Client().Do(ctx, method, path, header, body)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.ID, err)
	}
	if err := n.Client().expect(method, path, resp, statuses...); err != nil {
		t.Fatalf("%v, want %v", err, statuses)
	}
	return resp
}

// waitLogin polls GET /v2/ on n with the credentials until it returns
// want, and logs how long after since that took.
func waitLogin(ctx context.Context, t *testing.T, n *Node, user, password string, want int, since time.Time) {
	t.Helper()
	client := &Client{Name: n.ID, BaseURL: n.URL, HTTP: n.Client().HTTP, Username: user, Password: password}
	deadline := time.Now().Add(userVisibleTimeout)
	polls := 0
	for {
		polls++
		status, err := client.Ping(ctx)
		if err == nil && status == want {
			t.Logf("GET /v2/ as %s on %s returned %d after %v (%d polls)",
				user, n.ID, want, time.Since(since).Round(time.Millisecond), polls)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("GET /v2/ as %s on %s returned %d, %v for %v; want %d",
				user, n.ID, status, err, userVisibleTimeout, want)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

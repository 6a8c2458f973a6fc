package auth

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// store is a user store for tests whose users can change while an
// Authenticator uses it.
type store struct {
	mu    sync.Mutex
	users map[string]User
}

func (s *store) lookup(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	return u, ok
}

func (s *store) set(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.Name] = u
}

func (s *store) delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.users, name)
}

func hash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2y$" + string(h[4:])
}

// newFast returns an Authenticator whose dummy comparisons start at
// bcrypt.MinCost instead of the default cost 10, which takes about a
// second under the race detector.
func newFast(lookup Lookup, opts Options) *Authenticator {
	a := New(lookup, opts)
	a.lastCost.Store(int32(bcrypt.MinCost))
	return a
}

func newStore(t *testing.T, users ...User) *store {
	t.Helper()
	s := &store{users: make(map[string]User)}
	for _, u := range users {
		s.set(u)
	}
	return s
}

func TestComparisonsPerOutcome(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "right"), Version: 1})
	tests := []struct {
		name     string
		user     string
		password string
		wantOK   bool
	}{
		{"right password", "alice", "right", true},
		{"wrong password", "alice", "wrong", false},
		{"unknown user", "mallory", "right", false},
		{"empty user", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh Authenticator per case, so no case is a cache hit.
			a := newFast(s.lookup, Options{})
			u, err := a.Authenticate(tt.user, tt.password)
			if tt.wantOK && (err != nil || u.Name != tt.user) {
				t.Errorf("Authenticate = %+v, %v; want user %s", u, err, tt.user)
			}
			if !tt.wantOK && !errors.Is(err, ErrUnauthorized) {
				t.Errorf("Authenticate error = %v, want ErrUnauthorized", err)
			}
			if got := a.Comparisons(); got != 1 {
				t.Errorf("comparisons = %d, want 1", got)
			}
		})
	}
}

func TestUnknownUserFailsLikeWrongPassword(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "right"), Version: 1})
	a := New(s.lookup, Options{})
	_, errWrong := a.Authenticate("alice", "wrong")
	_, errUnknown := a.Authenticate("bob", "wrong")
	if errWrong != errUnknown {
		t.Errorf("wrong password gives %v, unknown user gives %v; want the same error", errWrong, errUnknown)
	}
}

func TestDummyCostFollowsRealHashes(t *testing.T) {
	h5, err := bcrypt.GenerateFromPassword([]byte("pw"), 5)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t, User{Name: "alice", Hash: string(h5), Version: 1})
	a := New(s.lookup, Options{})
	if got := a.lastCost.Load(); got != defaultDummyCost {
		t.Errorf("initial dummy cost = %d, want %d", got, defaultDummyCost)
	}
	if _, err := a.Authenticate("alice", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	if got := a.lastCost.Load(); got != 5 {
		t.Errorf("dummy cost after seeing a cost-5 hash = %d, want 5", got)
	}
}

func TestCacheHitAvoidsBcrypt(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "right"), Admin: true, Version: 1})
	a := New(s.lookup, Options{})
	for i := range 3 {
		u, err := a.Authenticate("alice", "right")
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if !u.Admin {
			t.Errorf("attempt %d: user lost its admin flag", i)
		}
	}
	if got := a.Comparisons(); got != 1 {
		t.Errorf("comparisons = %d, want 1", got)
	}
	st := a.Stats()
	if st.CacheHits != 2 || st.CacheMisses != 1 || st.Successes != 3 || st.CacheEntries != 1 {
		t.Errorf("stats = %+v, want 2 hits, 1 miss, 3 successes, 1 entry", st)
	}

	// A wrong password is compared again every time: failures are not cached.
	for range 2 {
		if _, err := a.Authenticate("alice", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if got := a.Comparisons(); got != 3 {
		t.Errorf("comparisons after two wrong passwords = %d, want 3", got)
	}
}

func TestCacheHitReturnsCurrentUser(t *testing.T) {
	h := hash(t, "right")
	s := newStore(t, User{Name: "alice", Hash: h, Admin: true, Version: 1})
	a := New(s.lookup, Options{})
	if _, err := a.Authenticate("alice", "right"); err != nil {
		t.Fatal(err)
	}
	// Same hash, new Version: the entry is stale and bcrypt runs again.
	s.set(User{Name: "alice", Hash: h, Admin: false, Version: 2})
	u, err := a.Authenticate("alice", "right")
	if err != nil {
		t.Fatal(err)
	}
	if u.Admin || u.Version != 2 {
		t.Errorf("user = %+v, want the Version 2 user without admin", u)
	}
	if got := a.Comparisons(); got != 2 {
		t.Errorf("comparisons = %d, want 2", got)
	}
}

func TestCacheDroppedOnPasswordChange(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "old"), Version: 1})
	a := New(s.lookup, Options{})
	if _, err := a.Authenticate("alice", "old"); err != nil {
		t.Fatal(err)
	}
	s.set(User{Name: "alice", Hash: hash(t, "new"), Version: 7})
	if _, err := a.Authenticate("alice", "old"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("old password after change: err = %v, want ErrUnauthorized", err)
	}
	if st := a.Stats(); st.CacheEntries != 0 {
		t.Errorf("cache entries = %d, want 0", st.CacheEntries)
	}
	if _, err := a.Authenticate("alice", "new"); err != nil {
		t.Errorf("new password: %v", err)
	}
}

func TestCacheDroppedOnDelete(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "pw"), Version: 1})
	a := New(s.lookup, Options{})
	if _, err := a.Authenticate("alice", "pw"); err != nil {
		t.Fatal(err)
	}
	s.delete("alice")
	if _, err := a.Authenticate("alice", "pw"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("deleted user: err = %v, want ErrUnauthorized", err)
	}
	if got := a.Comparisons(); got != 2 {
		t.Errorf("comparisons = %d, want 2 (the deleted user costs a dummy comparison)", got)
	}
	if st := a.Stats(); st.CacheEntries != 0 {
		t.Errorf("cache entries = %d, want 0", st.CacheEntries)
	}
}

func TestCacheBounded(t *testing.T) {
	const size = 3
	s := newStore(t)
	for _, name := range []string{"u0", "u1", "u2", "u3", "u4"} {
		s.set(User{Name: name, Hash: hash(t, "pw"), Version: 1})
	}
	a := New(s.lookup, Options{CacheSize: size})
	for _, name := range []string{"u0", "u1", "u2", "u3", "u4"} {
		if _, err := a.Authenticate(name, "pw"); err != nil {
			t.Fatal(err)
		}
	}
	st := a.Stats()
	if st.CacheEntries != size {
		t.Errorf("cache entries = %d, want %d", st.CacheEntries, size)
	}
	if st.Evictions != 2 {
		t.Errorf("evictions = %d, want 2", st.Evictions)
	}
	// u4 is cached, u0 was evicted first.
	before := a.Comparisons()
	if _, err := a.Authenticate("u4", "pw"); err != nil {
		t.Fatal(err)
	}
	if a.Comparisons() != before {
		t.Error("recent user u4 was not cached")
	}
	if _, err := a.Authenticate("u0", "pw"); err != nil {
		t.Fatal(err)
	}
	if a.Comparisons() != before+1 {
		t.Error("oldest user u0 was still cached")
	}
}

func TestCacheDisabled(t *testing.T) {
	s := newStore(t, User{Name: "alice", Hash: hash(t, "pw"), Version: 1})
	a := New(s.lookup, Options{CacheSize: -1})
	for range 2 {
		if _, err := a.Authenticate("alice", "pw"); err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Comparisons(); got != 2 {
		t.Errorf("comparisons = %d, want 2", got)
	}
}

func TestPasswordLength(t *testing.T) {
	pw72 := strings.Repeat("p", MaxPasswordLength)
	s := newStore(t, User{Name: "alice", Hash: hash(t, pw72), Version: 1})
	a := New(s.lookup, Options{})
	if _, err := a.Authenticate("alice", pw72); err != nil {
		t.Fatalf("72-byte password: %v", err)
	}
	// bcrypt would accept this one, because it ignores bytes after 72.
	before := a.Comparisons()
	if _, err := a.Authenticate("alice", pw72+"x"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("73-byte password: err = %v, want ErrUnauthorized", err)
	}
	if _, err := a.Authenticate("nobody", pw72+"x"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("73-byte password of unknown user: err = %v, want ErrUnauthorized", err)
	}
	if got := a.Comparisons() - before; got != 0 {
		t.Errorf("comparisons for too long passwords = %d, want 0", got)
	}
}

func TestCacheKeySeparatesNameAndPassword(t *testing.T) {
	a := New(newStore(t).lookup, Options{})
	if a.cacheKey("a:b", "c") == a.cacheKey("a", "b:c") {
		t.Error("cache keys of (a:b, c) and (a, b:c) are equal")
	}
	if a.cacheKey("a\x00", "b") == a.cacheKey("a", "\x00b") {
		t.Error("cache keys of (a\\x00, b) and (a, \\x00b) are equal")
	}
	b := New(newStore(t).lookup, Options{})
	if a.cacheKey("a", "b") == b.cacheKey("a", "b") {
		t.Error("two Authenticators share the HMAC key")
	}
}

func TestUnusableHash(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s := newStore(t, User{Name: "alice", Hash: "$apr1$abc$def", Version: 1})
	a := newFast(s.lookup, Options{Logger: logger})
	for range 2 {
		if _, err := a.Authenticate("alice", "pw"); !errors.Is(err, ErrUnauthorized) {
			t.Errorf("err = %v, want ErrUnauthorized", err)
		}
	}
	if got := a.Comparisons(); got != 2 {
		t.Errorf("comparisons = %d, want 2 (one dummy comparison each)", got)
	}
	if n := strings.Count(logs.String(), "user=alice"); n != 1 {
		t.Errorf("unusable hash logged %d times, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), "$apr1$abc$def") {
		t.Errorf("log contains the hash:\n%s", logs.String())
	}
}

func TestConcurrentSameCredentials(t *testing.T) {
	const clients = 8
	s := newStore(t, User{Name: "alice", Hash: hash(t, "pw"), Version: 1})
	// Hold every caller at the lookup until all have arrived, so they reach
	// the cache together.
	var arrived sync.WaitGroup
	arrived.Add(clients)
	lookup := func(name string) (User, bool) {
		arrived.Done()
		arrived.Wait()
		return s.lookup(name)
	}
	a := New(lookup, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			_, err := a.Authenticate("alice", "pw")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	}
	if got := a.Comparisons(); got != 1 {
		t.Errorf("comparisons = %d, want 1", got)
	}
}

func TestConcurrentMixed(t *testing.T) {
	s := newStore(t,
		User{Name: "alice", Hash: hash(t, "a"), Version: 1},
		User{Name: "bob", Hash: hash(t, "b"), Version: 1},
	)
	a := newFast(s.lookup, Options{CacheSize: 2})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			switch i % 4 {
			case 0:
				if _, err := a.Authenticate("alice", "a"); err != nil {
					t.Errorf("alice: %v", err)
				}
			case 1:
				if _, err := a.Authenticate("bob", "wrong"); err == nil {
					t.Error("bob with a wrong password accepted")
				}
			case 2:
				if _, err := a.Authenticate("carol", "c"); err == nil {
					t.Error("unknown carol accepted")
				}
			case 3:
				s.set(User{Name: "bob", Hash: hash(t, "b"), Version: uint64(i)})
			}
		})
	}
	wg.Wait()
	st := a.Stats()
	if st.Successes+st.Failures != 12 {
		t.Errorf("successes + failures = %d, want 12", st.Successes+st.Failures)
	}
}

package auth

import (
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
)

const (
	// DefaultCacheSize is the number of successful checks that New caches
	// when Options.CacheSize is zero.
	DefaultCacheSize = 1024

	// MaxPasswordLength is the maximum password length in bytes. bcrypt uses
	// only the first 72 bytes, so no stored hash was set from a longer
	// password, and a longer one never authenticates.
	MaxPasswordLength = 72

	// defaultDummyCost is the cost of the dummy comparison before any real
	// hash has been seen. It is the default cost of flotilla htpasswd and of
	// x/crypto's bcrypt.DefaultCost.
	defaultDummyCost = 10
)

// ErrUnauthorized is returned by Authenticate for every failure: unknown
// user, wrong password, password too long, unusable stored hash.
var ErrUnauthorized = errors.New("unauthorized")

// User is a registry user as the user store returns it.
type User struct {
	Name  string
	Hash  string // bcrypt hash with a $2a$, $2b$ or $2y$ prefix
	Admin bool
	// Version changes whenever the user changes, for example the Raft index
	// of its last change. Cached checks are valid only for one Version.
	Version uint64
}

// Lookup returns the user called name and whether it exists. It is called
// once per Authenticate and must be safe for concurrent use.
type Lookup func(name string) (User, bool)

// Options configures an Authenticator.
type Options struct {
	// CacheSize is the maximum number of cached successful checks. Zero means
	// DefaultCacheSize and a negative value disables the cache.
	CacheSize int
	// Logger receives warnings about unusable stored hashes. Nil discards
	// them.
	Logger *slog.Logger
}

// Stats are counters since New. They are plain numbers so that callers can
// export them to any metrics system.
type Stats struct {
	Comparisons  uint64 // bcrypt comparisons, the dummy ones included
	CacheHits    uint64 // checks served from the cache
	CacheMisses  uint64 // checks of existing users not found in the cache
	Successes    uint64
	Failures     uint64
	Evictions    uint64 // cache entries dropped to make room
	CacheEntries int    // current cache size
}

// Authenticator checks credentials against the users that its Lookup
// returns. It is safe for concurrent use.
type Authenticator struct {
	lookup Lookup
	logger *slog.Logger
	// key is the HMAC key for cache keys, random per process.
	key [32]byte
	// dummyHash is a valid bcrypt hash that no password matches. Its cost
	// digits are replaced to match lastCost.
	dummyHash []byte
	// lastCost is the cost of the most recently seen real hash.
	lastCost atomic.Int32

	mu       sync.Mutex
	cache    *lru
	inflight map[cacheKey]*check
	// warned records, per user name, the Version of an unusable hash that
	// was already logged.
	warned map[string]uint64

	comparisons, hits, misses, successes, failures atomic.Uint64
}

type cacheKey [sha256.Size]byte

// check is one bcrypt comparison in progress. Concurrent requests with the
// same credentials wait for it instead of comparing again, so a client that
// opens many connections at once pays for one comparison.
type check struct {
	done    chan struct{}
	version uint64
	hash    string
	ok      bool
}

// New returns an Authenticator that finds users with lookup.
func New(lookup Lookup, opts Options) *Authenticator {
	a := &Authenticator{
		lookup:   lookup,
		logger:   opts.Logger,
		inflight: make(map[cacheKey]*check),
		warned:   make(map[string]uint64),
	}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	size := opts.CacheSize
	if size == 0 {
		size = DefaultCacheSize
	}
	a.cache = newLRU(max(size, 0))
	rand.Read(a.key[:])
	a.dummyHash = newDummyHash()
	a.lastCost.Store(defaultDummyCost)
	return a
}

// newDummyHash returns a bcrypt hash of a random password. Only its salt
// and hash text matter: bcrypt.CompareHashAndPassword computes the full
// hash at the cost written in the string and then finds no match, so a
// comparison against it costs as much as one against a real hash of the
// same cost.
func newDummyHash() []byte {
	var secret [32]byte
	rand.Read(secret[:])
	// GenerateFromPassword fails only for a password over 72 bytes or an
	// invalid cost, so an error here is a bug.
	h, err := bcrypt.GenerateFromPassword(secret[:], bcrypt.MinCost)
	if err != nil {
		panic(fmt.Sprintf("auth: generate dummy bcrypt hash: %v", err))
	}
	return h
}

// Authenticate returns the user if password is the user's password, and
// ErrUnauthorized otherwise.
func (a *Authenticator) Authenticate(name, password string) (User, error) {
	if len(password) > MaxPasswordLength {
		// The client chose the length itself, and the result does not
		// depend on whether the user exists, so no comparison is needed.
		return a.fail()
	}
	key := a.cacheKey(name, password)
	user, found := a.lookup(name)
	if !found {
		a.mu.Lock()
		a.cache.remove(key)
		a.mu.Unlock()
		a.compareDummy(password)
		return a.fail()
	}
	cost, err := bcrypt.Cost([]byte(user.Hash))
	if err != nil {
		a.warnUnusableHash(user)
		a.compareDummy(password)
		return a.fail()
	}
	a.lastCost.Store(int32(cost))
	if a.verify(key, user, password) {
		a.successes.Add(1)
		return user, nil
	}
	return a.fail()
}

func (a *Authenticator) fail() (User, error) {
	a.failures.Add(1)
	return User{}, ErrUnauthorized
}

// verify reports whether password matches user.Hash, using the cache or a
// comparison already in progress for the same credentials when it can.
func (a *Authenticator) verify(key cacheKey, user User, password string) bool {
	a.mu.Lock()
	if e, ok := a.cache.get(key); ok {
		if e.version == user.Version && e.hash == user.Hash {
			a.mu.Unlock()
			a.hits.Add(1)
			return true
		}
		a.cache.remove(key)
	}
	a.misses.Add(1)
	if c, ok := a.inflight[key]; ok && c.version == user.Version && c.hash == user.Hash {
		a.mu.Unlock()
		<-c.done
		return c.ok
	}
	c := &check{done: make(chan struct{}), version: user.Version, hash: user.Hash}
	a.inflight[key] = c
	a.mu.Unlock()

	c.ok = a.compare(user.Hash, password)

	a.mu.Lock()
	if c.ok {
		a.cache.add(key, entry{version: user.Version, hash: user.Hash})
	}
	if a.inflight[key] == c {
		delete(a.inflight, key)
	}
	a.mu.Unlock()
	close(c.done)
	return c.ok
}

func (a *Authenticator) compare(hash, password string) bool {
	a.comparisons.Add(1)
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// compareDummy spends one bcrypt comparison at the cost of the most
// recently seen real hash, the same time a wrong password takes.
func (a *Authenticator) compareDummy(password string) {
	h := make([]byte, len(a.dummyHash))
	copy(h, a.dummyHash)
	// A bcrypt hash starts with "$2a$NN$", where NN is the cost.
	cost := a.lastCost.Load()
	h[4] = byte('0' + cost/10)
	h[5] = byte('0' + cost%10)
	a.compare(string(h), password)
}

// warnUnusableHash logs once per user and Version that the stored hash is
// not a bcrypt hash. The hash itself is never logged.
func (a *Authenticator) warnUnusableHash(user User) {
	a.mu.Lock()
	v, seen := a.warned[user.Name]
	if seen && v == user.Version {
		a.mu.Unlock()
		return
	}
	a.warned[user.Name] = user.Version
	a.mu.Unlock()
	a.logger.Warn("stored password hash is not a bcrypt hash; the user cannot log in", "user", user.Name)
}

// cacheKey returns the HMAC-SHA256 of the length of name, name and
// password. The length prefix keeps ("a:b", "c") and ("a", "b:c") apart.
func (a *Authenticator) cacheKey(name, password string) cacheKey {
	m := hmac.New(sha256.New, a.key[:])
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	m.Write(n[:])
	m.Write([]byte(name))
	m.Write([]byte(password))
	var k cacheKey
	m.Sum(k[:0])
	return k
}

// Comparisons returns the number of bcrypt comparisons done so far,
// including those against the dummy hash.
func (a *Authenticator) Comparisons() uint64 { return a.comparisons.Load() }

// Stats returns the current counters.
func (a *Authenticator) Stats() Stats {
	a.mu.Lock()
	entries, evictions := a.cache.len(), a.cache.evictions
	a.mu.Unlock()
	return Stats{
		Comparisons:  a.comparisons.Load(),
		CacheHits:    a.hits.Load(),
		CacheMisses:  a.misses.Load(),
		Successes:    a.successes.Load(),
		Failures:     a.failures.Load(),
		Evictions:    evictions,
		CacheEntries: entries,
	}
}

// entry is a cached successful check. It is valid while the user has the
// same Version and hash.
type entry struct {
	version uint64
	hash    string
}

// lru is a least-recently-used map of cache keys to entries. Callers hold
// Authenticator.mu.
type lru struct {
	size      int
	order     *list.List // of *lruItem, most recently used first
	items     map[cacheKey]*list.Element
	evictions uint64
}

type lruItem struct {
	key   cacheKey
	entry entry
}

func newLRU(size int) *lru {
	return &lru{size: size, order: list.New(), items: make(map[cacheKey]*list.Element)}
}

func (c *lru) get(k cacheKey) (entry, bool) {
	el, ok := c.items[k]
	if !ok {
		return entry{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem).entry, true
}

func (c *lru) add(k cacheKey, e entry) {
	if c.size == 0 {
		return
	}
	if el, ok := c.items[k]; ok {
		el.Value.(*lruItem).entry = e
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.size {
		oldest := c.order.Back()
		delete(c.items, oldest.Value.(*lruItem).key)
		c.order.Remove(oldest)
		c.evictions++
	}
	c.items[k] = c.order.PushFront(&lruItem{key: k, entry: e})
}

func (c *lru) remove(k cacheKey) {
	if el, ok := c.items[k]; ok {
		delete(c.items, k)
		c.order.Remove(el)
	}
}

func (c *lru) len() int { return c.order.Len() }

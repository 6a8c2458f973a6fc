package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
	"github.com/flotilla-registry/flotilla/tests/harness"
)

// Defaults and limits of the harness.
const (
	// DefaultNodes is the size of a cluster when Options.Nodes is zero.
	DefaultNodes = 3
	// bootstrapExpect is REGISTRY_CLUSTER_BOOTSTRAPEXPECT of every node:
	// the first three nodes start at once, as a compose file starts them.
	bootstrapExpect = 3
	// DefaultReadyTimeout bounds the wait until a started node is ready.
	DefaultReadyTimeout = 60 * time.Second
	// DefaultStopTimeout bounds the wait after SIGTERM.
	DefaultStopTimeout = 30 * time.Second
	// cleanupStopTimeout bounds the wait after SIGTERM when the test
	// ends. All nodes stop at once then, so none can hand leadership
	// over; the graceful stop has tests of its own.
	cleanupStopTimeout = 5 * time.Second
	// pollInterval is the pause between two polls of a wait helper.
	pollInterval = 100 * time.Millisecond
	// probeTimeout bounds one request of a wait helper.
	probeTimeout = 2 * time.Second
	// bcryptCost keeps password checks fast, about 2 ms each at cost 5.
	bcryptCost = "5"
	// firstHostByte is the last byte of the first node's address,
	// 127.0.0.2. The test client, the proxy and S3 use 127.0.0.1, which
	// no partition rule names.
	firstHostByte = 2
	// maxHostByte bounds the addresses that the harness hands out.
	maxHostByte = 60
)

// Options configures Start.
type Options struct {
	// Nodes is the number of nodes that start at once, DefaultNodes
	// when zero.
	Nodes int
	// Reads is REGISTRY_CLUSTER_READS ("linearizable" or "stale"); empty
	// leaves the node's default, linearizable.
	Reads string
	// LogLevel is REGISTRY_LOG_LEVEL, info when empty.
	LogLevel string
	// Env lists extra KEY=VALUE entries for every node. They override the
	// harness's own setting of the same key.
	Env []string
	// ReadyTimeout bounds each wait for readiness, DefaultReadyTimeout
	// when zero.
	ReadyTimeout time.Duration
}

// Cluster is a set of "flotilla serve" processes on loopback that share
// one S3 bucket. Node k (from 1) listens on 127.0.0.(k+1) with its API
// and cluster ports, picked at run time.
type Cluster struct {
	// Nodes lists every node started through the cluster, also those
	// stopped or removed since.
	Nodes []*Node
	S3    testenv.S3Server
	// CA signs the node certificates of the cluster port.
	CA *CertAuthority
	// APICertFile is the self-signed certificate of every node's API and
	// of the proxy, valid for 127.0.0.1 to 127.0.0.60. Clients trust it
	// as their only root.
	APICertFile string
	APIKeyFile  string
	// Username and Password are the htpasswd user, Realm its realm.
	Username string
	Password string
	Realm    string
	// Dir contains the cluster's files, one folder per node.
	Dir string

	t        testing.TB
	opts     Options
	bin      string
	htpasswd string
	roots    *x509.CertPool

	mu          sync.Mutex
	nextHost    int
	partitioned map[*Node][]string
}

// Start starts opts.Nodes nodes at once, waits until every node is
// ready and a leader is elected, and stops the nodes when the test ends.
// When the test failed, the end of every node's log is printed.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c := &Cluster{
		t:           t,
		opts:        opts,
		bin:         harness.Binary(t),
		Dir:         t.TempDir(),
		S3:          testenv.StartS3(t),
		Username:    "flotilla-test",
		Password:    harness.RandomHex(t, 16),
		Realm:       "Flotilla Cluster Test",
		nextHost:    firstHostByte,
		partitioned: map[*Node][]string{},
	}
	c.writeAPICert(t)
	c.CA = NewCertAuthority(t, filepath.Join(c.Dir, "cluster-tls"), "cluster")
	c.writeHtpasswd(t)
	t.Cleanup(c.cleanup)

	count := orDefault(opts.Nodes, DefaultNodes)
	nodes := make([]*Node, count)
	for i := range nodes {
		nodes[i] = c.newNode(t, fmt.Sprintf("n%d", i+1))
	}
	for _, n := range nodes {
		n.Peers = c.peersOf(n, nodes)
		c.configure(n)
	}
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			t.Fatalf("start %s: %v", n.ID, err)
		}
	}
	c.WaitReady(t, nodes...)
	c.WaitLeader(t)
	c.waitLogin(t, nodes)
	return c
}

// waitLogin waits until the htpasswd user can log in on every node. A
// node imports the htpasswd file through Raft once a leader exists, so
// the user may be missing for a moment after the node is ready.
func (c *Cluster) waitLogin(t testing.TB, nodes []*Node) {
	t.Helper()
	start := time.Now()
	timeout := orDefault(c.opts.ReadyTimeout, DefaultReadyTimeout)
	for _, n := range nodes {
		last := "no request sent"
		for {
			ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
			status, err := n.Client().Ping(ctx)
			cancel()
			if err == nil && status == http.StatusOK {
				break
			}
			last = fmt.Sprintf("GET /v2/ returned %d, %v", status, err)
			if time.Since(start) > timeout {
				t.Fatalf("%s: the htpasswd user cannot log in %v after the node was ready: %s", n.ID, timeout, last)
			}
			time.Sleep(pollInterval)
		}
	}
	if waited := time.Since(start); waited > pollInterval {
		t.Logf("the htpasswd user could log in on every node %v after all were ready", waited.Round(time.Millisecond))
	}
}

// writeAPICert writes one self-signed certificate for the API of every
// node and the proxy, valid for all addresses that the harness uses.
func (c *Cluster) writeAPICert(t testing.TB) {
	t.Helper()
	var hosts []string
	for b := firstHostByte; b <= maxHostByte; b++ {
		hosts = append(hosts, "127.0.0."+strconv.Itoa(b))
	}
	dir := filepath.Join(c.Dir, "api-tls")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("create API certificate folder: %v", err)
	}
	c.APICertFile, c.APIKeyFile = testenv.WriteSelfSignedCert(t, dir, hosts...)
	pem, err := os.ReadFile(c.APICertFile)
	if err != nil {
		t.Fatalf("read API certificate: %v", err)
	}
	c.roots = x509.NewCertPool()
	if !c.roots.AppendCertsFromPEM(pem) {
		t.Fatalf("API certificate %s has no PEM certificate", c.APICertFile)
	}
}

func (c *Cluster) writeHtpasswd(t testing.TB) {
	t.Helper()
	line := harness.HtpasswdLine(t, c.Username, c.Password, "-C", bcryptCost)
	c.htpasswd = filepath.Join(c.Dir, "htpasswd")
	if err := os.WriteFile(c.htpasswd, []byte(line+"\n"), 0o600); err != nil {
		t.Fatalf("write htpasswd: %v", err)
	}
}

// newNode allocates the next loopback address and two free ports on it,
// and writes the node's cluster certificate.
func (c *Cluster) newNode(t testing.TB, id string) *Node {
	t.Helper()
	c.mu.Lock()
	host := c.nextHost
	c.nextHost++
	c.mu.Unlock()
	if host > maxHostByte {
		t.Fatalf("no loopback address left for node %s", id)
	}
	ip := "127.0.0." + strconv.Itoa(host)
	n := &Node{
		ID:      id,
		IP:      ip,
		Dir:     filepath.Join(c.Dir, id),
		cluster: c,
	}
	n.DataDir = filepath.Join(n.Dir, "data")
	n.LogFile = filepath.Join(n.Dir, "flotilla.log")
	if err := os.MkdirAll(n.DataDir, 0o700); err != nil {
		t.Fatalf("create node folder: %v", err)
	}
	apiPort, clusterPort := freePort(t, ip), freePort(t, ip)
	n.APIAddr = net.JoinHostPort(ip, strconv.Itoa(apiPort))
	n.ClusterAddr = net.JoinHostPort(ip, strconv.Itoa(clusterPort))
	n.URL = "https://" + n.APIAddr
	n.CertFile, n.KeyFile = c.CA.IssueNodeCert(t, id, ip)
	c.mu.Lock()
	c.Nodes = append(c.Nodes, n)
	c.mu.Unlock()
	return n
}

// peersOf returns the cluster addresses of the nodes other than n.
func (c *Cluster) peersOf(n *Node, nodes []*Node) []string {
	var peers []string
	for _, other := range nodes {
		if other != n {
			peers = append(peers, other.ClusterAddr)
		}
	}
	return peers
}

// configure sets the node's environment from its fields.
func (c *Cluster) configure(n *Node) {
	env := []string{
		"REGISTRY_LOG_LEVEL=" + orDefault(c.opts.LogLevel, "info"),
		"REGISTRY_HTTP_ADDR=" + n.APIAddr,
		"REGISTRY_HTTP_TLS_CERTIFICATE=" + c.APICertFile,
		"REGISTRY_HTTP_TLS_KEY=" + c.APIKeyFile,
		"REGISTRY_AUTH=htpasswd",
		"REGISTRY_AUTH_HTPASSWD_REALM=" + c.Realm,
		"REGISTRY_AUTH_HTPASSWD_PATH=" + c.htpasswd,
		"REGISTRY_STORAGE=s3",
		// The filesystem root decides the default Raft folder, so it
		// points into the node's folder although the blobs go to S3.
		"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=" + filepath.Join(n.Dir, "fs"),
		"REGISTRY_STORAGE_S3_ACCESSKEY=" + c.S3.AccessKey,
		"REGISTRY_STORAGE_S3_SECRETKEY=" + c.S3.SecretKey,
		"REGISTRY_STORAGE_S3_REGION=" + c.S3.Region,
		"REGISTRY_STORAGE_S3_REGIONENDPOINT=" + c.S3.URL(),
		"REGISTRY_STORAGE_S3_BUCKET=" + c.S3.Bucket,
		"REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
		"REGISTRY_STORAGE_S3_SECURE=" + strconv.FormatBool(c.S3.Secure),
		"REGISTRY_STORAGE_S3_ROOTDIRECTORY=/flotilla",
		"REGISTRY_STORAGE_DELETE_ENABLED=true",
		"REGISTRY_CLUSTER_DATADIR=" + n.DataDir,
		"REGISTRY_CLUSTER_NODEID=" + n.ID,
		"REGISTRY_CLUSTER_BIND=" + n.ClusterAddr,
		"REGISTRY_CLUSTER_ADVERTISE=" + n.ClusterAddr,
		"REGISTRY_CLUSTER_PEERS=" + strings.Join(n.Peers, ","),
		"REGISTRY_CLUSTER_BOOTSTRAPEXPECT=" + strconv.Itoa(bootstrapExpect),
		"REGISTRY_CLUSTER_TLS_CERTIFICATE=" + n.CertFile,
		"REGISTRY_CLUSTER_TLS_KEY=" + n.KeyFile,
		"REGISTRY_CLUSTER_TLS_CA=" + c.CA.CertFile,
	}
	if c.opts.Reads != "" {
		env = append(env, "REGISTRY_CLUSTER_READS="+c.opts.Reads)
	}
	env = append(env, c.opts.Env...)
	env = append(env, n.ExtraEnv...)
	for _, key := range n.UnsetEnv {
		env = filterEnv(env, key+"=")
	}
	n.env = append(filterEnv(os.Environ(), "REGISTRY_"), env...)
}

// AddNode prepares a new node with an empty data folder whose peers are
// the cluster addresses of the given nodes, and starts it. It does not
// wait: the caller waits for it to join.
func (c *Cluster) AddNode(t testing.TB, id string, peers ...*Node) *Node {
	t.Helper()
	n := c.newNode(t, id)
	for _, p := range peers {
		n.Peers = append(n.Peers, p.ClusterAddr)
	}
	c.configure(n)
	if err := n.Start(); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	return n
}

// NewRogueNode prepares a node that does not start: its address, ports
// and folder are allocated, and its environment names the cluster's
// nodes as peers. The caller changes its ExtraEnv (for example the
// cluster TLS files) and calls Reconfigure and Start.
func (c *Cluster) NewRogueNode(t testing.TB, id string) *Node {
	t.Helper()
	n := c.newNode(t, id)
	c.mu.Lock()
	n.rogue = true
	c.mu.Unlock()
	for _, p := range c.Members() {
		n.Peers = append(n.Peers, p.ClusterAddr)
	}
	c.configure(n)
	return n
}

// Reconfigure rebuilds n's environment after a change of its fields
// (Peers, ExtraEnv, UnsetEnv). It takes effect at the next start.
func (c *Cluster) Reconfigure(n *Node) {
	c.configure(n)
}

// Members returns the nodes that have not been removed from the
// cluster by the test, running or not.
func (c *Cluster) Members() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*Node
	for _, n := range c.Nodes {
		if !n.removed && !n.rogue {
			out = append(out, n)
		}
	}
	return out
}

// Running returns the members whose process is alive and not paused.
func (c *Cluster) Running() []*Node {
	var out []*Node
	for _, n := range c.Members() {
		if n.Running() && !n.Paused() {
			out = append(out, n)
		}
	}
	return out
}

// Node returns the node with the id, or nil.
func (c *Cluster) Node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// MarkRemoved records that the test removed n from the cluster, so
// Members, Running and the wait helpers leave it out.
func (c *Cluster) MarkRemoved(n *Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n.removed = true
}

// WaitReady waits until GET /readyz returns 200 on each of nodes, or on
// every running member when nodes is empty.
func (c *Cluster) WaitReady(t testing.TB, nodes ...*Node) {
	t.Helper()
	if len(nodes) == 0 {
		nodes = c.Running()
	}
	timeout := orDefault(c.opts.ReadyTimeout, DefaultReadyTimeout)
	for _, n := range nodes {
		if err := n.WaitReady(timeout); err != nil {
			t.Fatalf("%s not ready: %v\n%s", n.ID, err, n.LogTail(16<<10))
		}
	}
}

// WaitLeader waits until every running member names the same leader and
// that leader is a running member, and returns it.
func (c *Cluster) WaitLeader(t testing.TB) *Node {
	t.Helper()
	timeout := orDefault(c.opts.ReadyTimeout, DefaultReadyTimeout)
	leader, err := c.waitLeader(timeout)
	if err != nil {
		t.Fatalf("no leader: %v", err)
	}
	return leader
}

func (c *Cluster) waitLeader(timeout time.Duration) (*Node, error) {
	deadline := time.Now().Add(timeout)
	last := "no status requested"
	for time.Now().Before(deadline) {
		leader, err := c.agreedLeader()
		if err == nil {
			return leader, nil
		}
		last = err.Error()
		time.Sleep(pollInterval)
	}
	return nil, fmt.Errorf("no agreed leader within %v: %s", timeout, last)
}

// agreedLeader returns the leader when all running members report the
// same leader_id and that node runs.
func (c *Cluster) agreedLeader() (*Node, error) {
	running := c.Running()
	if len(running) == 0 {
		return nil, errors.New("no running node")
	}
	leaderID := ""
	for _, n := range running {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		st, err := n.Status(ctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.ID, err)
		}
		if st.LeaderID == "" {
			return nil, fmt.Errorf("%s knows no leader", n.ID)
		}
		if leaderID != "" && st.LeaderID != leaderID {
			return nil, fmt.Errorf("%s names leader %s, another node names %s", n.ID, st.LeaderID, leaderID)
		}
		leaderID = st.LeaderID
	}
	leader := c.Node(leaderID)
	if leader == nil || !leader.Running() || leader.Paused() {
		return nil, fmt.Errorf("leader %s is not a running node of the harness", leaderID)
	}
	return leader, nil
}

// WaitNewLeader waits until the running members agree on a leader other
// than old, and returns it.
func (c *Cluster) WaitNewLeader(t testing.TB, old *Node) *Node {
	t.Helper()
	timeout := orDefault(c.opts.ReadyTimeout, DefaultReadyTimeout)
	deadline := time.Now().Add(timeout)
	last := "no status requested"
	for time.Now().Before(deadline) {
		leader, err := c.agreedLeader()
		switch {
		case err != nil:
			last = err.Error()
		case leader == old:
			last = "the old leader " + old.ID + " still leads"
		default:
			return leader
		}
		time.Sleep(pollInterval)
	}
	t.Fatalf("no new leader within %v: %s", timeout, last)
	return nil
}

// Followers returns the running members other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.Running() {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// Partition cuts n off from every other node of the harness, in both
// directions, with iptables DROP rules between their addresses. The test
// client, the proxy and S3 (on 127.0.0.1) still reach n. The rules are
// removed by Heal or when the test ends.
func (c *Cluster) Partition(t testing.TB, n *Node) {
	t.Helper()
	RequireFirewall(t)
	var others []string
	for _, other := range c.Nodes {
		if other != n {
			others = append(others, other.IP)
		}
	}
	if err := hostFirewall.drop(n.IP, others); err != nil {
		t.Fatalf("partition %s: %v", n.ID, err)
	}
	c.mu.Lock()
	c.partitioned[n] = append(c.partitioned[n], others...)
	c.mu.Unlock()
	t.Logf("partitioned %s (%s) from %s", n.ID, n.IP, strings.Join(others, ", "))
}

// Heal removes the rules that Partition added for n.
func (c *Cluster) Heal(t testing.TB, n *Node) {
	t.Helper()
	if err := c.heal(n); err != nil {
		t.Fatalf("heal %s: %v", n.ID, err)
	}
	t.Logf("healed %s (%s)", n.ID, n.IP)
}

func (c *Cluster) heal(n *Node) error {
	c.mu.Lock()
	others := c.partitioned[n]
	delete(c.partitioned, n)
	c.mu.Unlock()
	if len(others) == 0 {
		return nil
	}
	return hostFirewall.allow(n.IP, others)
}

// FirewallRules returns the test chain's rules, for failure messages.
func (c *Cluster) FirewallRules() string {
	return hostFirewall.rulesText()
}

// cleanup heals every partition, stops every node (at once, to save
// time) and prints the ends of the logs when the test failed.
func (c *Cluster) cleanup() {
	c.mu.Lock()
	var cut []*Node
	for n := range c.partitioned {
		cut = append(cut, n)
	}
	nodes := append([]*Node(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range cut {
		if err := c.heal(n); err != nil {
			c.t.Errorf("heal %s at cleanup: %v", n.ID, err)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.stop(cleanupStopTimeout) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			c.t.Logf("stop %s at cleanup: %v", nodes[i].ID, err)
		}
	}
	if c.t.Failed() {
		for _, n := range nodes {
			c.t.Logf("log of %s (%s), last 24 KiB:\n%s", n.ID, n.LogFile, n.LogTail(24<<10))
		}
	}
}

// TLSConfig returns a client TLS configuration that trusts the API
// certificate and nothing else.
func (c *Cluster) TLSConfig() *tls.Config {
	return &tls.Config{RootCAs: c.roots, MinVersion: tls.VersionTLS12}
}

// newHTTPClient returns a client with its own connection pool that
// trusts the API certificate.
func (c *Cluster) newHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	transport.TLSClientConfig = c.TLSConfig()
	transport.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: transport}
}

// ClientFor returns a registry client for base (a node's or the proxy's
// URL) with the cluster's user.
func (c *Cluster) ClientFor(name, base string) *Client {
	return &Client{
		Name:     name,
		BaseURL:  base,
		HTTP:     c.newHTTPClient(),
		Username: c.Username,
		Password: c.Password,
	}
}

// ToolsFor returns registry tools (crane, oras, ...) whose only trusted
// root is the API certificate.
func (c *Cluster) ToolsFor(t testing.TB) *harness.Tools {
	t.Helper()
	return harness.NewTools(t, &harness.Node{CAFile: c.APICertFile, Password: c.Password})
}

// Status is the response body of GET /flotilla/v1/cluster.
type Status struct {
	NodeID        string         `json:"node_id"`
	LeaderID      string         `json:"leader_id"`
	LeaderAddress string         `json:"leader_address"`
	Term          uint64         `json:"term"`
	CommitIndex   uint64         `json:"commit_index"`
	AppliedIndex  uint64         `json:"applied_index"`
	SnapshotIndex uint64         `json:"snapshot_index"`
	FirstLogIndex uint64         `json:"first_log_index"`
	Servers       []StatusServer `json:"servers"`
}

// StatusServer is one member in a Status.
type StatusServer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	Lag      uint64 `json:"lag"`
}

// ServerIDs returns the ids of the servers, in the order listed.
func (s Status) ServerIDs() []string {
	var ids []string
	for _, srv := range s.Servers {
		ids = append(ids, srv.ID)
	}
	return ids
}

// readStatus decodes a cluster status body.
func readStatus(body io.Reader) (Status, error) {
	var st Status
	data, err := io.ReadAll(io.LimitReader(body, 1<<20))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("decode cluster status %q: %w", truncate(string(data), 512), err)
	}
	return st, nil
}

// freePort returns a TCP port on ip that was free a moment ago.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	return testenv.FreePort(t, ip)
}

// filterEnv returns env without the entries whose key starts with prefix.
func filterEnv(env []string, prefix string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, prefix) {
			out = append(out, kv)
		}
	}
	return out
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return s[:limit] + fmt.Sprintf("[... %d more bytes]", len(s)-limit)
}

package consensus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flotilla-registry/flotilla/internal/testenv"
)

// testCA issues node certificates for cluster tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

func writePEM(t *testing.T, file, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a node certificate for the given IP addresses.
func (ca *testCA) issue(t *testing.T, dir, name string, ips ...string) TLSFiles {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	files := TLSFiles{Certificate: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: ca.file}
	writePEM(t, files.Certificate, "CERTIFICATE", der)
	writePEM(t, files.Key, "EC PRIVATE KEY", kder)
	return files
}

// testLogWriter sends a node's log lines to the test log.
type testLogWriter struct {
	t    *testing.T
	name string
}

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s: %s", w.name, p)
	return len(p), nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t, "127.0.0.1"))
}

type testCluster struct {
	t     *testing.T
	dir   string
	ca    *testCA
	addrs []string
	nodes []*Node
}

func startCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir()}
	c.ca = newTestCA(t, c.dir, "ca")
	for i := 0; i < size; i++ {
		c.addrs = append(c.addrs, freeAddr(t))
	}
	c.nodes = make([]*Node, size)
	for i := range c.nodes {
		c.start(i, size)
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n != nil {
				n.Shutdown()
			}
		}
	})
	c.waitLeader()
	return c
}

func (c *testCluster) config(i, expect int) Config {
	var peers []string
	for j, a := range c.addrs {
		if j != i {
			peers = append(peers, a)
		}
	}
	name := fmt.Sprintf("n%d", i+1)
	return Config{
		Logger: slog.New(slog.NewTextHandler(testLogWriter{c.t, name}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		NodeID: name, DataDir: filepath.Join(c.dir, name), Bind: c.addrs[i],
		Peers: peers, BootstrapExpect: expect, TLS: c.ca.issue(c.t, c.dir, name, "127.0.0.1"),
	}
}

func (c *testCluster) start(i, expect int) {
	c.t.Helper()
	n, err := Open(c.config(i, expect))
	if err != nil {
		c.t.Fatalf("open node %d: %v", i+1, err)
	}
	c.nodes[i] = n
}

func (c *testCluster) stop(i int) {
	c.t.Helper()
	if err := c.nodes[i].Shutdown(); err != nil {
		c.t.Logf("shutdown node %d: %v", i+1, err)
	}
	c.nodes[i] = nil
}

// waitLeader returns the index of the node that leads, once every running
// node agrees on it.
func (c *testCluster) waitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		leader, agreed := -1, true
		for i, n := range c.nodes {
			if n == nil {
				continue
			}
			_, id := n.Leader()
			if id == "" {
				agreed = false
				break
			}
			if n.IsLeader() {
				leader = i
			}
		}
		if agreed && leader >= 0 {
			return leader
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatal("no leader within 20s")
	return -1
}

func TestClusterForwardsWritesAndReadsLinearizably(t *testing.T) {
	c := startCluster(t, 3)
	leader := c.waitLeader()
	follower := (leader + 1) % 3
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for i := 0; i < 20; i++ {
		tag := fmt.Sprintf("t%d", i)
		if _, err := c.nodes[follower].Apply(ctx, putManifest("r", tag, "m")); err != nil {
			t.Fatalf("apply through follower: %v", err)
		}
		reader := c.nodes[(follower+1+i)%3]
		if err := reader.ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier: %v", err)
		}
		if _, err := reader.State().ManifestByTag("r", tag); err != nil {
			t.Fatalf("tag %s not visible on node %s after the barrier: %v", tag, reader.ID(), err)
		}
	}
	if _, err := c.nodes[follower].Apply(ctx, putManifest("r", "x", "m2", dg("missing"))); !errors.Is(err, ErrManifestBlobUnknown) {
		t.Fatalf("forwarded application error = %v, want ErrManifestBlobUnknown", err)
	}
	st := c.nodes[follower].ClusterStatus(ctx)
	if len(st.Servers) != 3 || st.LeaderID != c.nodes[leader].ID() {
		t.Fatalf("status = %+v", st)
	}
	for _, s := range st.Servers {
		if !s.Reachable {
			t.Fatalf("server %s unreachable in status", s.ID)
		}
	}
}

func TestClusterSurvivesLeaderLoss(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.waitLeader()
	other := (leader + 1) % 3
	if _, err := c.nodes[other].Apply(ctx, putManifest("r", "before", "m")); err != nil {
		t.Fatal(err)
	}
	c.stop(leader)
	start := time.Now()
	if _, err := c.nodes[other].Apply(ctx, putManifest("r", "after", "m")); err != nil {
		t.Fatalf("write after leader loss: %v", err)
	}
	t.Logf("write accepted %v after the leader stopped", time.Since(start))

	// The stopped node restarts with its data and catches up.
	c.start(leader, 3)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.nodes[leader].ReadBarrier(ctx); err == nil {
			if _, err := c.nodes[leader].State().ManifestByTag("r", "after"); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted node did not catch up within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterWipedNodeRejoins(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.waitLeader()
	if _, err := c.nodes[leader].Apply(ctx, putManifest("r", "v1", "m")); err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[leader].Snapshot(); err != nil {
		t.Fatal(err)
	}
	victim := (leader + 1) % 3
	c.stop(victim)
	if err := os.RemoveAll(filepath.Join(c.dir, fmt.Sprintf("n%d", victim+1))); err != nil {
		t.Fatal(err)
	}
	c.start(victim, 3)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := c.nodes[victim].ReadBarrier(ctx); err == nil {
			if _, err := c.nodes[victim].State().ManifestByTag("r", "v1"); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("wiped node did not catch up within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterRejectsForeignCertificates(t *testing.T) {
	c := startCluster(t, 3)
	other := newTestCA(t, c.dir, "other-ca")
	foreign := other.issue(t, c.dir, "intruder", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(foreign.Certificate, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.ca.cert)
	for _, tt := range []struct {
		name  string
		certs []tls.Certificate
	}{{"other CA", []tls.Certificate{cert}}, {"no certificate", nil}} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", c.addrs[0], &tls.Config{Certificates: tt.certs, RootCAs: pool, ServerName: "127.0.0.1"})
			if err == nil {
				// TLS 1.3 reports a rejected client certificate on the
				// first read, after the handshake returned.
				_, _ = conn.Write([]byte{protoRaft})
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil {
				t.Fatal("connection with a foreign certificate was accepted")
			}
		})
	}

	// A node with a certificate of another CA cannot join.
	cfg := Config{NodeID: "intruder", DataDir: filepath.Join(c.dir, "intruder"), Bind: freeAddr(t),
		Peers: c.addrs, BootstrapExpect: 3, TLS: foreign}
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Shutdown()
	time.Sleep(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range c.nodes[c.waitLeader()].ClusterStatus(ctx).Servers {
		if s.ID == "intruder" {
			t.Fatal("node with a foreign certificate joined the cluster")
		}
	}
}

func TestClusterAddAndRemoveServer(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.addrs = append(c.addrs, freeAddr(t))
	c.nodes = append(c.nodes, nil)
	// The fourth node starts empty with peers and joins by itself.
	c.start(3, 3)
	leader := c.waitLeader()
	deadline := time.Now().Add(20 * time.Second)
	for len(c.nodes[leader].servers()) != 4 {
		if time.Now().After(deadline) {
			t.Fatal("fourth node did not join within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := c.nodes[3].Apply(ctx, putManifest("r", "from4", "m")); err != nil {
		t.Fatalf("write through the new node: %v", err)
	}
	if err := c.nodes[3].RemoveServer(ctx, "n1"); err != nil {
		t.Fatalf("remove n1: %v", err)
	}
	leader = c.waitLeader()
	for _, s := range c.nodes[leader].servers() {
		if s.ID == "n1" {
			t.Fatal("n1 still in the configuration")
		}
	}
}

// TestTransferLeadershipSkipsStoppedPeer stops a follower and calls
// TransferLeadership on the leader. The live follower must take over.
func TestTransferLeadershipSkipsStoppedPeer(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader := c.waitLeader()
	if _, err := c.nodes[leader].Apply(ctx, putManifest("r", "v1", "m")); err != nil {
		t.Fatal(err)
	}
	// Stop each follower in turn, so that the test covers the stopped
	// peer being the first choice of Raft's own pick as well.
	for round := range 2 {
		leader = c.waitLeader()
		stopped := (leader + 1 + round) % 3
		live := 3 - leader - stopped
		c.stop(stopped)
		if err := c.nodes[leader].TransferLeadership(); err != nil {
			t.Fatalf("round %d: transfer with %s stopped: %v", round, fmt.Sprintf("n%d", stopped+1), err)
		}
		if got := c.waitLeader(); got != live {
			t.Fatalf("round %d: leader is n%d, want the live follower n%d", round, got+1, live+1)
		}
		c.start(stopped, 3)
		for c.nodes[stopped].Info().AppliedIndex < c.nodes[live].Info().AppliedIndex {
			if ctx.Err() != nil {
				t.Fatalf("round %d: restarted n%d did not catch up", round, stopped+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

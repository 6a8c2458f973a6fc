package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// silenceWindow is how long a raw connection to the cluster port waits
// for the node to reject it. A node that accepted the client keeps the
// connection open and waits for a request, so the read times out.
const silenceWindow = 2 * time.Second

// rogueWatch is how long the test watches that nodes with foreign or no
// certificates do not become members.
const rogueWatch = 8 * time.Second

// TestClusterPortRejectsStrangers checks the mutual TLS of the cluster
// port. Raw connections with a certificate of another CA, without a
// certificate, or in plain TCP are rejected. A peer whose certificate
// does not name its address gets no Raft traffic. Flotilla nodes with a
// foreign certificate or none never become members.
func TestClusterPortRejectsStrangers(t *testing.T) {
	c := Start(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	leader := c.WaitLeader(t)
	other := NewCertAuthority(t, t.TempDir(), "other")
	before, err := leader.Status(ctx)
	if err != nil {
		t.Fatalf("cluster status: %v", err)
	}

	t.Run("raw connections", func(t *testing.T) {
		clusterRoots := x509.NewCertPool()
		clusterRoots.AddCert(c.CA.Cert)
		for _, n := range c.Members() {
			// The positive control: a certificate of the cluster CA that
			// names a member's address, used from that address, is
			// accepted, so the node keeps the connection open.
			member := c.Members()[0]
			if member == n {
				member = c.Members()[1]
			}
			good := loadPair(t, c.CA, "control-"+n.ID, member.IP)
			if got := probeClusterPort(n, member.IP, &good, clusterRoots); got != probeAccepted {
				t.Errorf("%s: a connection with a valid member certificate was %s, want it accepted; "+
					"the rejection checks below mean nothing", n.ID, got)
			}
			foreign := loadPair(t, other, "foreign-"+n.ID, "127.0.0.41")
			if got := probeClusterPort(n, "127.0.0.41", &foreign, clusterRoots); got == probeAccepted {
				t.Errorf("%s accepted a TLS connection with a certificate of another CA", n.ID)
			}
			if got := probeClusterPort(n, "127.0.0.42", nil, clusterRoots); got == probeAccepted {
				t.Errorf("%s accepted a TLS connection without a client certificate", n.ID)
			}
			if got := probePlainTCP(n, "127.0.0.43"); got == probeAccepted {
				t.Errorf("%s kept a plain TCP connection open", n.ID)
			}
		}
	})

	t.Run("impostor peer", func(t *testing.T) {
		// The impostor has a certificate of the cluster CA, but for
		// another address than the one it listens on. A node that dials
		// it must reject the handshake before it sends any Raft data.
		imp := startImpostor(t, c.CA, "127.0.0.44", "127.0.0.45")
		body, _ := json.Marshal(map[string]string{"id": "impostor", "address": imp.addr})
		adminRequest(ctx, t, leader, http.MethodPost, "/flotilla/v1/cluster/servers", body, http.StatusNoContent, http.StatusOK, http.StatusCreated)
		waitUntil(t, 10*time.Second, "the leader dials the impostor", func() bool { return imp.attempts.Load() >= 2 })
		time.Sleep(time.Second)
		adminRequest(ctx, t, c.WaitLeader(t), http.MethodDelete, "/flotilla/v1/cluster/servers/impostor", nil,
			http.StatusNoContent, http.StatusOK)
		if n := imp.handshakes.Load(); n != 0 {
			t.Errorf("%d TLS handshakes with the impostor completed, want 0: a node accepted a peer "+
				"certificate that does not name the dialed address", n)
		}
		if n := imp.bytesRead.Load(); n != 0 {
			t.Errorf("the impostor received %d bytes of cluster traffic, want 0", n)
		}
		t.Logf("impostor: %d connection attempts, %d handshakes", imp.attempts.Load(), imp.handshakes.Load())
		requireServers(ctx, t, c.Members(), "n1", "n2", "n3")
	})

	t.Run("rogue nodes", func(t *testing.T) {
		foreign := c.NewRogueNode(t, "rogue-foreign")
		foreign.CertFile, foreign.KeyFile = other.IssueNodeCert(t, foreign.ID, foreign.IP)
		foreign.ExtraEnv = []string{
			"REGISTRY_CLUSTER_TLS_CERTIFICATE=" + foreign.CertFile,
			"REGISTRY_CLUSTER_TLS_KEY=" + foreign.KeyFile,
			"REGISTRY_CLUSTER_TLS_CA=" + other.CertFile,
		}
		c.Reconfigure(foreign)
		plain := c.NewRogueNode(t, "rogue-plain")
		plain.UnsetEnv = []string{
			"REGISTRY_CLUSTER_TLS_CERTIFICATE", "REGISTRY_CLUSTER_TLS_KEY", "REGISTRY_CLUSTER_TLS_CA",
		}
		c.Reconfigure(plain)
		for _, r := range []*Node{foreign, plain} {
			if err := r.Start(); err != nil {
				t.Fatalf("start %s: %v", r.ID, err)
			}
		}
		deadline := time.Now().Add(rogueWatch)
		for time.Now().Before(deadline) {
			st, err := c.WaitLeader(t).Status(ctx)
			if err != nil {
				t.Fatalf("cluster status: %v", err)
			}
			if ids := sortedIDs(st); strings.Join(ids, ",") != "n1,n2,n3" {
				t.Fatalf("cluster lists servers %v with rogue nodes running, want [n1 n2 n3]", ids)
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, r := range []*Node{foreign, plain} {
			if exited, err := r.ExitError(); exited {
				t.Logf("%s exited: %v; last log lines:\n%s", r.ID, err, r.LogTail(1500))
				continue
			}
			probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
			status, err := r.Get(probeCtx, "/readyz")
			cancel()
			if err == nil && status == http.StatusOK {
				t.Errorf("%s is ready: it found a leader although no member accepts it", r.ID)
			}
			t.Logf("%s runs, /readyz returned %d, %v; last log lines:\n%s", r.ID, status, err, r.LogTail(1500))
		}
	})

	after, err := c.WaitLeader(t).Status(ctx)
	if err != nil {
		t.Fatalf("cluster status: %v", err)
	}
	if ids := sortedIDs(after); strings.Join(ids, ",") != strings.Join(sortedIDs(before), ",") {
		t.Errorf("servers changed from %v to %v", sortedIDs(before), ids)
	}
	config, layer := seedBlobs(ctx, t, c.WaitLeader(t).Client(), "strangers/after")
	m := tagManifest(t, config, layer, "after")
	if err := c.WaitLeader(t).Client().PutManifest(ctx, "strangers/after", "v1", m.MediaType, m.Data); err != nil {
		t.Errorf("write after the stranger tests: %v", err)
	}
}

// probeResult is what a raw connection to the cluster port saw.
type probeResult string

const (
	probeRejected probeResult = "rejected"
	probeAccepted probeResult = "accepted"
)

// probeClusterPort opens a TLS connection from localIP to n's cluster
// port with cert (nil for none), trusting roots for the server, and
// waits silenceWindow for the node to reject it. TLS 1.3 clients finish
// their handshake before the server has checked the client certificate,
// so a rejection shows as an alert or a closed connection on the first
// read.
func probeClusterPort(n *Node, localIP string, cert *tls.Certificate, roots *x509.CertPool) probeResult {
	config := &tls.Config{RootCAs: roots, ServerName: n.IP, MinVersion: tls.VersionTLS12}
	if cert != nil {
		config.Certificates = []tls.Certificate{*cert}
	}
	dialer := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	conn, err := tls.DialWithDialer(dialer, "tcp", n.ClusterAddr, config)
	if err != nil {
		return probeRejected
	}
	defer conn.Close()
	return waitForClose(conn)
}

// probePlainTCP sends an HTTP request in plain TCP to n's cluster port
// and waits for the node to close the connection.
func probePlainTCP(n *Node, localIP string) probeResult {
	dialer := &net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}}
	conn, err := dialer.Dial("tcp", n.ClusterAddr)
	if err != nil {
		return probeRejected
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "POST /join HTTP/1.1\r\nHost: "+n.ClusterAddr+"\r\nContent-Length: 2\r\n\r\n{}")
	return waitForClose(conn)
}

// waitForClose reads until the peer closes the connection or sends an
// alert (rejected), or silenceWindow passes (accepted: the peer waits
// for more).
func waitForClose(conn net.Conn) probeResult {
	_ = conn.SetReadDeadline(time.Now().Add(silenceWindow))
	buf := make([]byte, 512)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue
		}
		var netErr net.Error
		if errors.As(err, &netErr) && netErr.Timeout() {
			return probeAccepted
		}
		return probeRejected
	}
}

func loadPair(t *testing.T, ca *CertAuthority, name, ip string) tls.Certificate {
	t.Helper()
	certFile, keyFile := ca.IssueNodeCert(t, name, ip)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return pair
}

// impostor is a TLS listener that counts what nodes send it.
type impostor struct {
	addr       string
	attempts   atomic.Int64
	handshakes atomic.Int64
	bytesRead  atomic.Int64
}

// startImpostor listens on listenIP with a certificate of ca that names
// certIP, and requires client certificates of ca.
func startImpostor(t *testing.T, ca *CertAuthority, listenIP, certIP string) *impostor {
	t.Helper()
	pair := loadPair(t, ca, "impostor", certIP)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	config := &tls.Config{
		Certificates: []tls.Certificate{pair},
		ClientCAs:    roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}

	ln, err := net.Listen("tcp", listenIP+":0")
	if err != nil {
		t.Fatalf("impostor listen: %v", err)
	}
	imp := &impostor{addr: ln.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			imp.attempts.Add(1)
			go imp.serve(tls.Server(raw, config))
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return imp
}

func (imp *impostor) serve(conn *tls.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := conn.Handshake(); err != nil {
		return
	}
	imp.handshakes.Add(1)
	n, _ := io.Copy(io.Discard, conn)
	imp.bytesRead.Add(n)
}

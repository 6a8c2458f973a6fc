package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The tests in this file check the harness itself and need no flotilla
// binary.

func TestTagModelHistories(t *testing.T) {
	const (
		a = "sha256:aaaaaaaaaaaaaaaaaaaa"
		b = "sha256:bbbbbbbbbbbbbbbbbbbb"
	)
	write := func(client int, tag, d string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: TagInput{Write: true, Tag: tag, Digest: d},
			Call: call, Output: TagOutput{}, Return: ret}
	}
	unknown := func(client int, tag, d string, call int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: TagInput{Write: true, Tag: tag, Digest: d},
			Call: call, Output: TagOutput{Unknown: true}, Return: math.MaxInt64}
	}
	read := func(client int, tag, d string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: TagInput{Tag: tag},
			Call: call, Output: TagOutput{Digest: d}, Return: ret}
	}
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"empty", nil, porcupine.Ok},
		{"read before any write", []porcupine.Operation{read(0, "t", "", 0, 1)}, porcupine.Ok},
		{"read sees write", []porcupine.Operation{
			write(0, "t", a, 0, 10), read(1, "t", a, 11, 12),
		}, porcupine.Ok},
		{"stale read after write", []porcupine.Operation{
			write(0, "t", a, 0, 10), write(0, "t", b, 11, 20), read(1, "t", a, 21, 22),
		}, porcupine.Illegal},
		{"read of the initial state after write", []porcupine.Operation{
			write(0, "t", a, 0, 10), read(1, "t", "", 11, 12),
		}, porcupine.Illegal},
		{"concurrent read may see either", []porcupine.Operation{
			write(0, "t", a, 0, 10), write(0, "t", b, 11, 20), read(1, "t", a, 12, 30),
		}, porcupine.Ok},
		{"value read back and forth", []porcupine.Operation{
			write(0, "t", a, 0, 10), write(1, "t", b, 0, 10),
			read(2, "t", a, 11, 12), read(2, "t", b, 13, 14), read(2, "t", a, 15, 16),
		}, porcupine.Illegal},
		{"unknown write seen later", []porcupine.Operation{
			write(0, "t", a, 0, 10), unknown(1, "t", b, 11), read(2, "t", a, 20, 21), read(2, "t", b, 30, 31),
		}, porcupine.Ok},
		{"unknown write never applied", []porcupine.Operation{
			write(0, "t", a, 0, 10), unknown(1, "t", b, 11), read(2, "t", a, 20, 21), read(2, "t", a, 30, 31),
		}, porcupine.Ok},
		{"unknown write seen before its call", []porcupine.Operation{
			read(2, "t", b, 0, 5), unknown(1, "t", b, 11),
		}, porcupine.Illegal},
		{"tags are independent", []porcupine.Operation{
			write(0, "x", a, 0, 10), write(1, "y", b, 0, 10), read(2, "x", a, 11, 12), read(2, "y", b, 11, 12),
		}, porcupine.Ok},
		{"stale read on one of two tags", []porcupine.Operation{
			write(0, "x", a, 0, 10), write(1, "y", b, 0, 10), read(2, "x", a, 11, 12), read(2, "y", "", 11, 12),
		}, porcupine.Illegal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckLinearizable(tt.ops, 10*time.Second)
			if got.Result != tt.want {
				t.Errorf("check returned %s, want %s", got.Result, tt.want)
			}
			if explained := ExplainStaleReads(tt.ops, 5); tt.want == porcupine.Ok && len(explained) > 0 {
				t.Errorf("a linearizable history has stale reads: %v", explained)
			}
		})
	}
}

func TestExplainStaleReads(t *testing.T) {
	ops := []porcupine.Operation{
		{Input: TagInput{Write: true, Tag: "t", Digest: "sha256:a"}, Call: 0, Output: TagOutput{}, Return: 10, Metadata: "n1"},
		{Input: TagInput{Write: true, Tag: "t", Digest: "sha256:b"}, Call: 11, Output: TagOutput{}, Return: 20, Metadata: "n1"},
		{Input: TagInput{Tag: "t"}, Call: 21, Output: TagOutput{Digest: "sha256:a"}, Return: 22, Metadata: "n2"},
		{Input: TagInput{Tag: "t"}, Call: 23, Output: TagOutput{Digest: ""}, Return: 24, Metadata: "n3"},
	}
	got := ExplainStaleReads(ops, 5)
	if len(got) != 2 {
		t.Fatalf("found %d stale reads, want 2: %q", len(got), got)
	}
	for i, node := range []string{"on n2", "on n3"} {
		if !strings.Contains(got[i], node) {
			t.Errorf("explanation %d is %q, want the read %s", i, got[i], node)
		}
	}
}

func TestHistoryRecording(t *testing.T) {
	h := NewHistory(3)
	h.AddWrite(0, "n1", "t", "sha256:1", h.Now(), h.Now(), true)
	h.AddWrite(1, "n2", "t", "sha256:2", h.Now(), h.Now(), false)
	h.AddRead(2, "n3", "t", "sha256:1", h.Now(), h.Now())
	h.Drop()
	if !h.Full("t") {
		t.Error("tag t with 3 operations is not full at a cap of 3")
	}
	if h.Full("u") {
		t.Error("tag u without operations is full")
	}
	ops := h.Operations()
	if len(ops) != 3 {
		t.Fatalf("history has %d operations, want 3", len(ops))
	}
	if ops[1].Return != math.MaxInt64 {
		t.Errorf("failed write has return time %d, want infinity", ops[1].Return)
	}
	want := HistoryStats{Writes: 2, UnknownWrites: 1, Reads: 1, Dropped: 1}
	if got := h.Stats(); got != want {
		t.Errorf("stats are %+v, want %+v", got, want)
	}
}

func TestNodeCertificates(t *testing.T) {
	dir := t.TempDir()
	ca := NewCertAuthority(t, dir, "cluster")
	other := NewCertAuthority(t, t.TempDir(), "other")
	certFile, keyFile := ca.IssueNodeCert(t, "n1", "127.0.0.2")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("load key pair: %v", err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, ca.CertFile))
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(readCert(t, other.CertFile))

	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("verify for key usage %v: %v", usage, err)
		}
	}

	if err := cert.VerifyHostname("127.0.0.2"); err != nil {
		t.Errorf("certificate does not name its bind host: %v", err)
	}
	if err := cert.VerifyHostname("127.0.0.3"); err == nil {
		t.Error("certificate of 127.0.0.2 also names 127.0.0.3")
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
		t.Error("certificate verifies against another CA")
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s has no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return cert
}

func TestFirewallPartition(t *testing.T) {
	RequireFirewall(t)
	const a, b, c = "127.0.0.52", "127.0.0.53", "127.0.0.54"
	lnB := listen(t, b)
	lnA := listen(t, a)
	canDial := func(from string, to net.Listener) bool {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 500 * time.Millisecond}
		conn, err := d.Dial("tcp", to.Addr().String())
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	if !canDial(a, lnB) {
		t.Fatal("no connection from a to b before the partition")
	}

	if err := hostFirewall.drop(a, []string{b}); err != nil {
		t.Fatalf("drop: %v", err)
	}
	t.Cleanup(func() { _ = hostFirewall.allow(a, []string{b}) })
	if canDial(a, lnB) {
		t.Errorf("a reaches b after the partition; rules:\n%s", hostFirewall.rulesText())
	}
	if canDial(b, lnA) {
		t.Error("b reaches a after the partition")
	}
	if !canDial(c, lnB) {
		t.Error("c no longer reaches b: the rules cut more than the pair")
	}
	if !canDial("127.0.0.1", lnA) {
		t.Error("127.0.0.1 no longer reaches a")
	}

	if err := hostFirewall.allow(a, []string{b}); err != nil {
		t.Fatalf("allow: %v", err)
	}
	if !canDial(a, lnB) {
		t.Errorf("a does not reach b after healing; rules:\n%s", hostFirewall.rulesText())
	}
	if err := hostFirewall.drop("10.0.0.1", []string{b}); err == nil {
		t.Error("a rule for 10.0.0.1 was accepted")
	}
}

func listen(t *testing.T, ip string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	return ln
}

// fakeBackends starts TLS servers on 127.0.0.2 and up. Each responds
// with its id, the Host header it received and a relative Location. The
// servers are returned as nodes of a cluster that has only certificates.
func fakeBackends(t *testing.T, count int) (*Cluster, []*Node) {
	t.Helper()
	c := &Cluster{t: t, Dir: t.TempDir()}
	c.writeAPICert(t)
	cert, err := tls.LoadX509KeyPair(c.APICertFile, c.APIKeyFile)
	if err != nil {
		t.Fatalf("load certificate: %v", err)
	}
	var nodes []*Node
	for i := range count {
		id := fmt.Sprintf("f%d", i+1)
		ip := fmt.Sprintf("127.0.0.%d", firstHostByte+i)
		ln, err := tls.Listen("tcp", ip+":0", &tls.Config{Certificates: []tls.Certificate{cert}})
		if err != nil {
			t.Fatalf("listen on %s: %v", ip, err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("X-Backend", id)
			w.Header().Set("X-Host", r.Host)
			w.Header().Set("Location", "/v2/x/blobs/uploads/abc")
			fmt.Fprintf(w, "%s %d", id, len(body))
		})}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		nodes = append(nodes, &Node{ID: id, IP: ip, APIAddr: ln.Addr().String(),
			URL: "https://" + ln.Addr().String(), cluster: c})
	}
	return c, nodes
}

func TestProxyRoundRobin(t *testing.T) {
	c, nodes := fakeBackends(t, 3)
	p := StartProxy(t, c, nodes...)
	client := c.ClientFor("proxy", p.URL)
	ctx := t.Context()
	var got []string
	for range 6 {
		resp, err := client.Do(ctx, http.MethodPatch, "/v2/x/blobs/uploads/abc", nil, []byte("chunk"))
		if err != nil {
			t.Fatalf("request through the proxy: %v", err)
		}
		got = append(got, resp.Header.Get("X-Backend"))
		if host := resp.Header.Get("X-Host"); host != p.Host {
			t.Errorf("backend got Host %q, want the proxy's %q", host, p.Host)
		}
		if loc := resp.Header.Get("Location"); loc != "/v2/x/blobs/uploads/abc" {
			t.Errorf("Location became %q", loc)
		}
		if want := resp.Header.Get("X-Backend") + " 5"; string(resp.Body) != want {
			t.Errorf("backend responded %q, want %q", resp.Body, want)
		}
	}
	if strings.Join(got, ",") != "f1,f2,f3,f1,f2,f3" {
		t.Errorf("requests on one connection went to %v, want each to the next backend", got)
	}
}

func TestProxySkipsDeadBackend(t *testing.T) {
	c, nodes := fakeBackends(t, 2)
	// A node whose port has no listener refuses connections.
	dead := &Node{ID: "dead", IP: "127.0.0.9", APIAddr: fmt.Sprintf("127.0.0.9:%d", freePort(t, "127.0.0.9")), cluster: c}
	dead.URL = "https://" + dead.APIAddr
	// Without health checks, every request to the dead backend has to
	// be sent again to another one.
	p := startProxy(t, c, false, dead, nodes[0], nodes[1])
	client := c.ClientFor("proxy", p.URL)

	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := client.Do(ctx, http.MethodPost, "/v2/x/blobs/uploads/", nil, []byte("body"))
			if err != nil {
				errs <- err
				return
			}
			if resp.Status != http.StatusOK {
				errs <- fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request with a dead backend: %v", err)
	}

	st := p.Stats()
	if st.BackendErrors != 0 {
		t.Errorf("proxy counted %d backend errors, want 0: %v", st.BackendErrors, st.LastFailures)
	}
	if st.DialRetries == 0 {
		t.Error("proxy sent no request to the dead backend, so the retry was not tested")
	}
	t.Logf("proxy stats: %+v", st)
}

package scenario

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Service names and paths of docker-compose.yml.
const (
	// InitService creates the certificates, the first user and the bucket.
	InitService = "init"
	// StoreService is the S3 server.
	StoreService = "s3"
	// BalancerService is the load balancer in front of the nodes.
	BalancerService = "lb"
	// APIPort is the port of the registry API on the nodes and the load
	// balancer inside the compose network.
	APIPort = 5000

	caPath       = "/cluster-tls/ca.crt"
	passwordPath = "/secrets/password"
	htpasswdPath = "/auth/htpasswd"
	raftDataDir  = "/var/lib/registry/raft"
	flotillaPath = "/usr/bin/flotilla"
)

// Nodes are the node services of docker-compose.yml. Each node's Raft id
// and certificate name equal its service name.
var Nodes = []string{"flotilla-1", "flotilla-2", "flotilla-3"}

// Cluster is a running compose cluster as the drills see it.
type Cluster struct {
	Docker *Docker
	// Roots contains the compose CA, which signed the load balancer's and
	// the nodes' certificates.
	Roots *x509.CertPool
	// User and Password are the first user that init created.
	User, Password string
}

// Open finds the compose project's cluster and reads the CA and the first
// user's credentials out of the init container.
func Open(ctx context.Context, project string) (*Cluster, error) {
	d := &Docker{Project: project}
	caPEM, err := d.ReadFile(ctx, InitService, caPath)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s in %s holds no PEM certificate", caPath, InitService)
	}
	password, err := d.ReadFile(ctx, InitService, passwordPath)
	if err != nil {
		return nil, fmt.Errorf("%w (the drills need the password that init generated, "+
			"so they cannot run with a htpasswd file brought by the user)", err)
	}
	users, err := d.ReadFile(ctx, InitService, htpasswdPath)
	if err != nil {
		return nil, err
	}
	user, _, ok := strings.Cut(firstLine(users), ":")
	if !ok || user == "" {
		return nil, fmt.Errorf("%s in %s has no user line", htpasswdPath, InitService)
	}
	return &Cluster{
		Docker:   d,
		Roots:    roots,
		User:     user,
		Password: strings.TrimSpace(string(password)),
	}, nil
}

func firstLine(b []byte) string {
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" {
			return line
		}
	}
	return ""
}

// BalancerClient returns a client of the load balancer's published port.
func (c *Cluster) BalancerClient(ctx context.Context, counts *Counts) (*Client, error) {
	addr, err := c.Docker.HostPort(ctx, BalancerService, APIPort)
	if err != nil {
		return nil, err
	}
	return NewClient("https://"+addr, "localhost", c.Roots, c.User, c.Password, counts), nil
}

// NodeClient returns a client of one node's API port, published on
// loopback. The port changes when the container restarts.
func (c *Cluster) NodeClient(ctx context.Context, node string, counts *Counts) (*Client, error) {
	addr, err := c.Docker.HostPort(ctx, node, APIPort)
	if err != nil {
		return nil, err
	}
	return NewClient("https://"+addr, node, c.Roots, c.User, c.Password, counts), nil
}

// clusterStatus is the part of "flotilla cluster status --json" that the
// drills read.
type clusterStatus struct {
	LeaderID      string `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
}

// Leader returns the service name of the current leader. It asks each
// running node in turn until one reports a leader.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	var errs []error
	for _, node := range Nodes {
		if ok, err := c.Docker.Running(ctx, node); err != nil || !ok {
			continue
		}
		out, err := c.Docker.Exec(ctx, node, flotillaPath, "cluster", "status", "--json",
			"--datadir", raftDataDir, "--url", fmt.Sprintf("https://%s:%d", node, APIPort),
			"--cacert", caPath)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var st clusterStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			errs = append(errs, fmt.Errorf("parse cluster status of %s: %w", node, err))
			continue
		}
		if host, _, err := net.SplitHostPort(st.LeaderAddress); err == nil && host != "" {
			return host, nil
		}
		if st.LeaderID != "" {
			return st.LeaderID, nil
		}
	}
	return "", fmt.Errorf("no node knows a leader: %w", errors.Join(errs...))
}

// Followers returns the nodes other than leader.
func Followers(leader string) []string {
	var out []string
	for _, n := range Nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// readyPoll is the pause between readiness checks.
const readyPoll = 500 * time.Millisecond

// WaitReady waits until every node responds to /readyz with 200 on its
// own port, the load balancer does too, and a node reports a leader. It
// returns how long that took.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		last = c.ready(ctx)
		if last == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("cluster not ready within %s: %w", timeout, last)
		case <-time.After(readyPoll):
		}
	}
}

func (c *Cluster) ready(ctx context.Context) error {
	services := append([]string{BalancerService}, Nodes...)
	for _, s := range services {
		var client *Client
		var err error
		if s == BalancerService {
			client, err = c.BalancerClient(ctx, nil)
		} else {
			client, err = c.NodeClient(ctx, s, nil)
		}
		if err != nil {
			return err
		}
		status, err := client.Probe(ctx, "/readyz")
		client.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("%s: /readyz answered %d", s, status)
		}
	}
	_, err := c.Leader(ctx)
	return err
}

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/flotilla-registry/flotilla/internal/config"
)

// runHealthcheck requests the local node's /healthz and exits 0 on a 200
// response. Without an argument the URL comes from the same configuration
// as `flotilla serve`. The check skips certificate verification because
// it only tests whether the local process responds.
func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	url := ""
	if len(args) > 0 {
		url = args[0]
	} else {
		cfg, _, err := config.Load(os.Getenv(config.EnvConfigPath), os.Environ())
		if err != nil {
			fmt.Fprintf(stderr, "healthcheck: %v\n", err)
			return 1
		}
		url = localURL(cfg)
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback liveness probe
	}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: %s responded %s\n", url, resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// localURL returns the /healthz URL of the node on this host: the
// listen address's own IP when it names one, else the loopback address.
func localURL(cfg *config.Config) string {
	scheme := "http"
	if cfg.HTTP.TLS.Enabled() {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil {
		host, port = "", "5000"
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil || ip.Equal(net.IPv4zero):
		host = "127.0.0.1"
	case ip.Equal(net.IPv6unspecified):
		host = "::1"
	}
	return fmt.Sprintf("%s://%s/healthz", scheme, net.JoinHostPort(host, port))
}

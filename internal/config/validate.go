package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Validate checks every value and the rules between them, such as a TLS
// certificate needing a key. The error lists all problems, each naming the
// key and its REGISTRY_* variable, and errors.Is matches ErrInvalidValue
// in it. Validate reads no files.
func (c *Config) Validate() error {
	var v validator
	if c.Version != FormatVersion {
		v.invalid("version", "%q is not a supported version; use %s", c.Version, FormatVersion)
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.formatter", c.Log.Formatter, "text", "json")
	c.validateHTTP(&v)
	c.validateAuth(&v)
	c.validateStorage(&v)
	c.validateCluster(&v)
	if len(v.problems) > 0 {
		return v.problems
	}
	return nil
}

func (c *Config) validateHTTP(v *validator) {
	h := c.HTTP
	v.listenAddress("http.addr", h.Addr)
	if h.Host != "" {
		u, err := url.Parse(h.Host)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.Fragment != "" {
			v.invalid("http.host", "%q is not an absolute http or https URL, "+
				"such as https://registry.example.com:5000", h.Host)
		}
	}
	if p := h.Prefix; p != "" {
		// A request path is matched after decoding, so the prefix must be
		// a plain, clean path: "%", "?", "#", "//", "." or ".." would
		// never match.
		switch {
		case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/"):
			v.invalid("http.prefix", "%q does not begin and end with /", p)
		case strings.ContainsAny(p, "%?#") || (p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/")):
			v.invalid("http.prefix", "%q is not a plain path such as /registry/", p)
		}
	}
	if h.DrainTimeout < 0 {
		v.invalid("http.draintimeout", "%s is negative", h.DrainTimeout)
	}
	if h.MaxManifestSize <= 0 {
		v.invalid("http.maxmanifestsize", "%d is not a positive number of bytes",
			h.MaxManifestSize)
	}
	if h.Debug.Addr != "" {
		v.listenAddress("http.debug.addr", h.Debug.Addr)
	}

	t := h.TLS
	v.pair("http.tls.certificate", t.Certificate, "http.tls.key", t.Key)
	if len(t.ClientCAs) > 0 && t.Certificate == "" {
		v.invalid("http.tls.clientcas", "client certificates need TLS; "+
			"set http.tls.certificate and http.tls.key")
	}
	v.oneOf("http.tls.minimumtls", t.MinimumTLS, "tls1.2", "tls1.3")
}

func (c *Config) validateAuth(v *validator) {
	h := c.Auth.Htpasswd
	if h == nil {
		return
	}
	if h.Path == "" {
		v.invalid("auth.htpasswd.path", "missing; the htpasswd authentication method "+
			"needs the path of an htpasswd file")
	}
	switch {
	case h.Realm == "":
		v.invalid("auth.htpasswd.realm", "missing; the realm is sent in the "+
			"WWW-Authenticate header")
	case strings.ContainsFunc(h.Realm, breaksQuotedString):
		v.invalid("auth.htpasswd.realm", "%q contains a quote, backslash or control character, "+
			"which cannot appear in the WWW-Authenticate header", h.Realm)
	}
}

func (c *Config) validateStorage(v *validator) {
	s := c.Storage
	switch s.Driver {
	case DriverFilesystem:
		if s.Filesystem.RootDirectory == "" {
			v.invalid("storage.filesystem.rootdirectory",
				"missing; the filesystem storage driver needs a folder")
		}
	case DriverS3:
		validateS3(v, s.S3)
	default:
		v.invalid("storage", "unknown storage driver %q; use filesystem or s3", s.Driver)
	}
}

func validateS3(v *validator, s S3) {
	if s.Bucket == "" {
		v.invalid("storage.s3.bucket", "missing; the s3 storage driver needs a bucket")
	}
	if s.Region == "" && s.RegionEndpoint == "" {
		v.invalid("storage.s3.region", "missing; set the bucket's region, "+
			"or storage.s3.regionendpoint for an S3-compatible service")
	}
	if s.RegionEndpoint != "" && strings.Contains(s.RegionEndpoint, "://") {
		u, err := url.Parse(s.RegionEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.invalid("storage.s3.regionendpoint", "%q is not an http or https URL",
				redactURL(s.RegionEndpoint))
		}
	}
	v.pair("storage.s3.accesskey", s.AccessKey, "storage.s3.secretkey", s.SecretKey)
	if s.ChunkSize < MinS3ChunkSize || s.ChunkSize > MaxS3ChunkSize {
		v.invalid("storage.s3.chunksize",
			"%d is outside the part sizes S3 accepts, %d to %d bytes",
			s.ChunkSize, MinS3ChunkSize, MaxS3ChunkSize)
	}
}

func (c *Config) validateCluster(v *validator) {
	cl := c.Cluster
	isBlank := func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }
	if strings.ContainsFunc(cl.NodeID, isBlank) {
		v.invalid("cluster.nodeid", "%q contains white space or a control character",
			cl.NodeID)
	}
	if cl.DataDir == "" {
		v.invalid("cluster.datadir",
			"missing; the node needs a folder for the Raft log and snapshots")
	}
	v.listenAddress("cluster.bind", cl.Bind)
	if cl.Advertise != "" && v.dialAddress("cluster.advertise", cl.Advertise) &&
		hasUnspecifiedHost(cl.Advertise) {
		v.invalid("cluster.advertise", "%q is not an address other nodes can dial",
			cl.Advertise)
	}
	if cl.Advertise == "" && len(cl.Peers) > 0 && hasUnspecifiedHost(cl.Bind) {
		v.invalid("cluster.advertise", "missing; cluster.bind %q listens on all interfaces, "+
			"so other nodes need the address to dial", cl.Bind)
	}
	c.checkPortsDiffer(v)

	for i, peer := range cl.Peers {
		if v.dialAddress("cluster.peers", peer) && slices.Contains(cl.Peers[:i], peer) {
			v.invalid("cluster.peers", "%q is listed twice", peer)
		}
	}
	if cl.BootstrapExpect < 0 {
		v.invalid("cluster.bootstrapexpect", "%d is negative", cl.BootstrapExpect)
	}
	if cl.BootstrapExpect > 1 && len(cl.Peers) == 0 {
		v.invalid("cluster.bootstrapexpect",
			"%d nodes are expected but cluster.peers is empty", cl.BootstrapExpect)
	}
	v.oneOf("cluster.reads", cl.Reads, ReadsLinearizable, ReadsStale)
	if cl.SnapshotThreshold < 0 {
		v.invalid("cluster.snapshotthreshold", "%d is negative", cl.SnapshotThreshold)
	}
	if cl.SnapshotInterval < 0 {
		v.invalid("cluster.snapshotinterval", "%s is negative", cl.SnapshotInterval)
	} else if cl.SnapshotInterval > 0 && cl.SnapshotInterval < MinSnapshotInterval {
		v.invalid("cluster.snapshotinterval", "%s is shorter than %s", cl.SnapshotInterval, MinSnapshotInterval)
	}
	if cl.TrailingLogs < 0 {
		v.invalid("cluster.trailinglogs", "%d is negative", cl.TrailingLogs)
	}

	t := cl.TLS
	if t.Certificate != "" || t.Key != "" || t.CA != "" {
		for _, f := range []struct{ key, path string }{
			{"cluster.tls.certificate", t.Certificate},
			{"cluster.tls.key", t.Key},
			{"cluster.tls.ca", t.CA},
		} {
			if f.path == "" {
				v.invalid(f.key, "missing; cluster TLS needs cluster.tls.certificate, "+
					"cluster.tls.key and cluster.tls.ca together")
			}
		}
	}
}

// checkPortsDiffer reports the Raft listener sharing a port with an HTTP
// listener on an overlapping host.
func (c *Config) checkPortsDiffer(v *validator) {
	for _, other := range []struct{ key, addr string }{
		{"http.addr", c.HTTP.Addr},
		{"http.debug.addr", c.HTTP.Debug.Addr},
	} {
		if sameListener(c.Cluster.Bind, other.addr) {
			v.invalid("cluster.bind", "%q uses the same port as %s %q",
				c.Cluster.Bind, other.key, other.addr)
		}
	}
}

// sameListener reports whether two listen addresses would collide: same
// non-zero port, and equal hosts or one of them listening on all
// interfaces.
func sameListener(a, b string) bool {
	hostA, portA, errA := net.SplitHostPort(a)
	hostB, portB, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || portA != portB || portA == "0" {
		return false
	}
	return hostA == hostB || hasUnspecifiedHost(a) || hasUnspecifiedHost(b)
}

// hasUnspecifiedHost reports whether addr listens on all interfaces.
func hasUnspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || (ip != nil && ip.IsUnspecified())
}

// breaksQuotedString reports the runes that would need escaping, or are
// not allowed, inside the quoted realm of a WWW-Authenticate header.
func breaksQuotedString(r rune) bool {
	return r == '"' || r == '\\' || unicode.IsControl(r)
}

// validator collects the problems of one Validate call.
type validator struct {
	problems problemList
}

func (v *validator) invalid(key, format string, args ...any) {
	v.problems = append(v.problems, &keyError{
		label:  keyRef(key),
		kind:   ErrInvalidValue,
		detail: fmt.Sprintf(format, args...),
	})
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.invalid(key, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

// pair reports one of two values set without the other.
func (v *validator) pair(keyA, a, keyB, b string) {
	switch {
	case a != "" && b == "":
		v.invalid(keyB, "missing; required when %s is set", keyA)
	case a == "" && b != "":
		v.invalid(keyA, "missing; required when %s is set", keyB)
	}
}

// listenAddress checks a host:port to listen on. The host may be empty
// and the port 0, which picks a free port.
func (v *validator) listenAddress(key, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.invalid(key, "%q is not a host:port address", addr)
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.invalid(key, "%q has no valid port", addr)
	}
}

// dialAddress checks a host:port that other nodes connect to, and reports
// whether it is valid.
func (v *validator) dialAddress(key, addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.invalid(key, "%q is not a host:port address", addr)
		return false
	}
	if host == "" {
		v.invalid(key, "%q has no host", addr)
		return false
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.invalid(key, "%q has no valid port", addr)
		return false
	}
	return true
}

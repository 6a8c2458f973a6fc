package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeConfig writes content to a config.yml in a fresh folder and returns
// its path, or returns "" for empty content (no file).
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	if content == "" {
		return ""
	}
	path := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func warningKeys(warnings []Warning) []string {
	keys := make([]string, 0, len(warnings))
	for _, w := range warnings {
		keys = append(keys, w.Key)
	}
	slices.Sort(keys)
	return keys
}

// check compares one field and names it on failure.
func check[T comparable](t *testing.T, name string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

func checkList(t *testing.T, name string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		// warnings are the expected warning keys, sorted.
		warnings []string
		check    func(t *testing.T, c *Config)
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *Config) {
				check(t, "Version", c.Version, "0.1")
				check(t, "Log.Level", c.Log.Level, "info")
				check(t, "Log.Formatter", c.Log.Formatter, "text")
				check(t, "HTTP.Addr", c.HTTP.Addr, ":5000")
				check(t, "HTTP.Host", c.HTTP.Host, "")
				check(t, "HTTP.MaxManifestSize", c.HTTP.MaxManifestSize, int64(4<<20))
				check(t, "HTTP.TLS.MinimumTLS", c.HTTP.TLS.MinimumTLS, "tls1.2")
				check(t, "HTTP.TLS.Enabled", c.HTTP.TLS.Enabled(), false)
				check(t, "Auth.Htpasswd", c.Auth.Htpasswd, (*Htpasswd)(nil))
				check(t, "Storage.Driver", c.Storage.Driver, "filesystem")
				check(t, "Storage.Filesystem.RootDirectory", c.Storage.Filesystem.RootDirectory, "/var/lib/registry")
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, false)
				check(t, "Storage.S3.Secure", c.Storage.S3.Secure, true)
				check(t, "Storage.S3.ChunkSize", c.Storage.S3.ChunkSize, int64(10<<20))
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/var/lib/registry/raft")
				check(t, "Cluster.Bind", c.Cluster.Bind, ":7000")
				check(t, "Cluster.Reads", c.Cluster.Reads, "linearizable")
			},
		},
		{
			name: "file only",
			file: `version: 0.1
log:
  level: DEBUG
  formatter: json
http:
  addr: 127.0.0.1:5443
  host: https://registry.example.com:5443
  prefix: /nested
  relativeurls: true
  draintimeout: 45s
  maxmanifestsize: 8388608
  tls:
    certificate: /certs/domain.crt
    key: /certs/domain.key
    clientcas: [/certs/ca1.pem, /certs/ca2.pem]
    minimumtls: tls1.3
  debug:
    addr: 127.0.0.1:5001
auth:
  htpasswd:
    realm: Registry Realm
    path: /auth/htpasswd
storage:
  s3:
    accesskey: AKIAEXAMPLE
    secretkey: example-secret
    region: us-east-1
    regionendpoint: http://minio:9000
    bucket: images
    rootdirectory: /registry
    forcepathstyle: true
    secure: false
    skipverify: yes
    chunksize: 16777216
  delete:
    enabled: true
cluster:
  nodeid: node1
  datadir: /data/raft
  bind: 0.0.0.0:7000
  advertise: node1:7000
  peers:
    - node2:7000
    - node3:7000
  bootstrapexpect: 3
  tls:
    certificate: /certs/node.crt
    key: /certs/node.key
    ca: /certs/ca.pem
  reads: Stale
  snapshotthreshold: 64
  snapshotinterval: 5s
  trailinglogs: 32
`,
			check: func(t *testing.T, c *Config) {
				check(t, "Log.Level", c.Log.Level, "debug")
				check(t, "Log.Formatter", c.Log.Formatter, "json")
				check(t, "HTTP.Addr", c.HTTP.Addr, "127.0.0.1:5443")
				check(t, "HTTP.Host", c.HTTP.Host, "https://registry.example.com:5443")
				check(t, "HTTP.Prefix", c.HTTP.Prefix, "/nested/")
				check(t, "HTTP.RelativeURLs", c.HTTP.RelativeURLs, true)
				check(t, "HTTP.DrainTimeout", c.HTTP.DrainTimeout, 45*time.Second)
				check(t, "Cluster.SnapshotThreshold", c.Cluster.SnapshotThreshold, 64)
				check(t, "Cluster.SnapshotInterval", c.Cluster.SnapshotInterval, 5*time.Second)
				check(t, "Cluster.TrailingLogs", c.Cluster.TrailingLogs, 32)
				check(t, "HTTP.MaxManifestSize", c.HTTP.MaxManifestSize, int64(8<<20))
				check(t, "HTTP.TLS.Certificate", c.HTTP.TLS.Certificate, "/certs/domain.crt")
				check(t, "HTTP.TLS.Key", c.HTTP.TLS.Key, "/certs/domain.key")
				checkList(t, "HTTP.TLS.ClientCAs", c.HTTP.TLS.ClientCAs, []string{"/certs/ca1.pem", "/certs/ca2.pem"})
				check(t, "HTTP.TLS.MinimumTLS", c.HTTP.TLS.MinimumTLS, "tls1.3")
				check(t, "HTTP.Debug.Addr", c.HTTP.Debug.Addr, "127.0.0.1:5001")
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
				check(t, "Htpasswd.Realm", c.Auth.Htpasswd.Realm, "Registry Realm")
				check(t, "Htpasswd.Path", c.Auth.Htpasswd.Path, "/auth/htpasswd")
				s3 := c.Storage.S3
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				check(t, "S3.AccessKey", s3.AccessKey, "AKIAEXAMPLE")
				check(t, "S3.SecretKey", s3.SecretKey, "example-secret")
				check(t, "S3.Region", s3.Region, "us-east-1")
				check(t, "S3.RegionEndpoint", s3.RegionEndpoint, "http://minio:9000")
				check(t, "S3.Bucket", s3.Bucket, "images")
				check(t, "S3.RootDirectory", s3.RootDirectory, "/registry")
				check(t, "S3.ForcePathStyle", s3.ForcePathStyle, true)
				check(t, "S3.Secure", s3.Secure, false)
				check(t, "S3.SkipVerify", s3.SkipVerify, true)
				check(t, "S3.ChunkSize", s3.ChunkSize, int64(16<<20))
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
				cl := c.Cluster
				check(t, "Cluster.NodeID", cl.NodeID, "node1")
				check(t, "Cluster.DataDir", cl.DataDir, "/data/raft")
				check(t, "Cluster.Bind", cl.Bind, "0.0.0.0:7000")
				check(t, "Cluster.Advertise", cl.Advertise, "node1:7000")
				checkList(t, "Cluster.Peers", cl.Peers, []string{"node2:7000", "node3:7000"})
				check(t, "Cluster.BootstrapExpect", cl.BootstrapExpect, 3)
				check(t, "Cluster.TLS", cl.TLS, ClusterTLS{"/certs/node.crt", "/certs/node.key", "/certs/ca.pem"})
				check(t, "Cluster.Reads", cl.Reads, "stale")
			},
		},
		{
			// The variables of registry:2's TLS and htpasswd tutorial.
			name: "environment only, tutorial",
			env: []string{
				"REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt",
				"REGISTRY_HTTP_TLS_KEY=/certs/domain.key",
				"REGISTRY_AUTH=htpasswd",
				"REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm",
				"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
				"PATH=/usr/bin",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "HTTP.TLS.Certificate", c.HTTP.TLS.Certificate, "/certs/domain.crt")
				check(t, "HTTP.TLS.Key", c.HTTP.TLS.Key, "/certs/domain.key")
				check(t, "HTTP.TLS.Enabled", c.HTTP.TLS.Enabled(), true)
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
				check(t, "Htpasswd.Realm", c.Auth.Htpasswd.Realm, "Registry Realm")
				check(t, "Htpasswd.Path", c.Auth.Htpasswd.Path, "/auth/htpasswd")
				check(t, "Storage.Driver", c.Storage.Driver, "filesystem")
			},
		},
		{
			name: "environment only, s3",
			env: []string{
				"REGISTRY_STORAGE=s3",
				"REGISTRY_STORAGE_S3_ACCESSKEY=minio",
				"REGISTRY_STORAGE_S3_SECRETKEY=minio-secret",
				"REGISTRY_STORAGE_S3_REGION=us-east-1",
				"REGISTRY_STORAGE_S3_REGIONENDPOINT=http://minio:9000",
				"REGISTRY_STORAGE_S3_BUCKET=registry",
				"REGISTRY_STORAGE_S3_FORCEPATHSTYLE=true",
				"REGISTRY_STORAGE_S3_SECURE=false",
				"REGISTRY_STORAGE_S3_SKIPVERIFY=TRUE",
				"REGISTRY_STORAGE_S3_ROOTDIRECTORY=/flotilla",
				"REGISTRY_STORAGE_S3_CHUNKSIZE=5242880",
				"REGISTRY_STORAGE_DELETE_ENABLED=true",
				"REGISTRY_CLUSTER_DATADIR=/data/raft",
			},
			check: func(t *testing.T, c *Config) {
				s3 := c.Storage.S3
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				check(t, "S3.AccessKey", s3.AccessKey, "minio")
				check(t, "S3.SecretKey", s3.SecretKey, "minio-secret")
				check(t, "S3.Region", s3.Region, "us-east-1")
				check(t, "S3.RegionEndpoint", s3.RegionEndpoint, "http://minio:9000")
				check(t, "S3.Bucket", s3.Bucket, "registry")
				check(t, "S3.ForcePathStyle", s3.ForcePathStyle, true)
				check(t, "S3.Secure", s3.Secure, false)
				check(t, "S3.SkipVerify", s3.SkipVerify, true)
				check(t, "S3.RootDirectory", s3.RootDirectory, "/flotilla")
				check(t, "S3.ChunkSize", s3.ChunkSize, int64(5<<20))
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/data/raft")
			},
		},
		{
			name: "s3 section in environment selects s3",
			env: []string{
				"REGISTRY_STORAGE_S3_BUCKET=registry",
				"REGISTRY_STORAGE_S3_REGIONENDPOINT=minio:9000",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				check(t, "S3.Region", c.Storage.S3.Region, "")
			},
		},
		{
			name: "environment overrides file",
			file: `version: 0.1
log:
  level: debug
http:
  addr: :5000
  host: https://old.example.com
storage:
  filesystem:
    rootdirectory: /data
  delete:
    enabled: true
auth:
  htpasswd:
    realm: Old Realm
    path: /old/htpasswd
`,
			env: []string{
				"REGISTRY_HTTP_ADDR=:6000",
				"REGISTRY_HTTP_HOST=",
				"REGISTRY_LOG_LEVEL=warn",
				"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/srv/registry",
				"REGISTRY_STORAGE_DELETE_ENABLED=false",
				"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "HTTP.Addr", c.HTTP.Addr, ":6000")
				check(t, "HTTP.Host", c.HTTP.Host, "")
				check(t, "Log.Level", c.Log.Level, "warn")
				check(t, "Storage.Filesystem.RootDirectory", c.Storage.Filesystem.RootDirectory, "/srv/registry")
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, false)
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/srv/registry/raft")
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
				check(t, "Htpasswd.Realm", c.Auth.Htpasswd.Realm, "Old Realm")
				check(t, "Htpasswd.Path", c.Auth.Htpasswd.Path, "/auth/htpasswd")
			},
		},
		{
			name: "REGISTRY_STORAGE replaces the file's driver",
			file: `version: 0.1
storage:
  filesystem:
    rootdirectory: /data
  delete:
    enabled: true
`,
			env: []string{
				"REGISTRY_STORAGE=s3",
				"REGISTRY_STORAGE_S3_BUCKET=registry",
				"REGISTRY_STORAGE_S3_REGION=eu-west-1",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/data/raft")
			},
		},
		{
			name: "storage and auth as scalars in file",
			file: "version: 0.1\nstorage: s3\nauth: htpasswd\n",
			env: []string{
				"REGISTRY_STORAGE_S3_BUCKET=registry",
				"REGISTRY_STORAGE_S3_REGION=eu-west-1",
				"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
				check(t, "Htpasswd.Realm", c.Auth.Htpasswd.Realm, DefaultRealm)
			},
		},
		{
			name: "REGISTRY_AUTH=none turns off the file's htpasswd",
			file: "version: 0.1\nauth:\n  htpasswd:\n    realm: r\n    path: /auth/htpasswd\n",
			env:  []string{"REGISTRY_AUTH=none"},
			// The htpasswd section stays in the file but is not used.
			warnings: []string{"auth.htpasswd"},
			check: func(t *testing.T, c *Config) {
				check(t, "Auth.Htpasswd", c.Auth.Htpasswd, (*Htpasswd)(nil))
			},
		},
		{
			name: "REGISTRY_AUTH=htpasswd ignores a token section",
			file: "version: 0.1\nauth:\n  token:\n    realm: https://auth.example.com/token\n",
			env: []string{
				"REGISTRY_AUTH=htpasswd",
				"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
			},
			warnings: []string{"auth.token"},
			check: func(t *testing.T, c *Config) {
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
			},
		},
		{
			name:     "REGISTRY_STORAGE=filesystem ignores an inmemory section",
			file:     "version: 0.1\nstorage:\n  inmemory:\n",
			env:      []string{"REGISTRY_STORAGE=filesystem"},
			warnings: []string{"storage.inmemory"},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Driver", c.Storage.Driver, "filesystem")
			},
		},
		{
			name: "peers as comma-separated list",
			env: []string{
				"REGISTRY_CLUSTER_PEERS=node2:7000, node3:7000,",
				"REGISTRY_CLUSTER_ADVERTISE=node1:7000",
			},
			check: func(t *testing.T, c *Config) {
				checkList(t, "Cluster.Peers", c.Cluster.Peers, []string{"node2:7000", "node3:7000"})
			},
		},
		{
			name: "peers as YAML flow sequence",
			env: []string{
				"REGISTRY_CLUSTER_PEERS=[node2:7000, node3:7000]",
				"REGISTRY_CLUSTER_ADVERTISE=node1:7000",
			},
			check: func(t *testing.T, c *Config) {
				checkList(t, "Cluster.Peers", c.Cluster.Peers, []string{"node2:7000", "node3:7000"})
			},
		},
		{
			name: "list elements by index override the file",
			file: "version: 0.1\nhttp:\n  tls:\n    certificate: /c.crt\n    key: /c.key\n    clientcas: [/a.pem, /b.pem]\n",
			env: []string{
				"REGISTRY_HTTP_TLS_CLIENTCAS_2=/d.pem",
				"REGISTRY_HTTP_TLS_CLIENTCAS_0=/c.pem",
			},
			check: func(t *testing.T, c *Config) {
				checkList(t, "HTTP.TLS.ClientCAs", c.HTTP.TLS.ClientCAs, []string{"/c.pem", "/b.pem", "/d.pem"})
			},
		},
		{
			name: "variable sets a whole section in YAML",
			env: []string{
				"REGISTRY_STORAGE_DELETE={enabled: true}",
				"REGISTRY_HTTP_TLS={certificate: /c.crt, key: /c.key}",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
				check(t, "HTTP.TLS.Certificate", c.HTTP.TLS.Certificate, "/c.crt")
				check(t, "HTTP.TLS.Key", c.HTTP.TLS.Key, "/c.key")
			},
		},
		{
			name:     "deprecated loglevel applies without log.level",
			file:     "version: 0.1\nloglevel: error\n",
			warnings: []string{"loglevel"},
			check: func(t *testing.T, c *Config) {
				check(t, "Log.Level", c.Log.Level, "error")
			},
		},
		{
			name:     "log.level wins over deprecated loglevel",
			file:     "version: 0.1\nloglevel: error\nlog:\n  level: debug\n",
			warnings: []string{"loglevel"},
			check: func(t *testing.T, c *Config) {
				check(t, "Log.Level", c.Log.Level, "debug")
			},
		},
		{
			name:     "tls1.0 is raised to tls1.2",
			env:      []string{"REGISTRY_HTTP_TLS_MINIMUMTLS=tls1.0"},
			warnings: []string{"http.tls.minimumtls"},
			check: func(t *testing.T, c *Config) {
				check(t, "HTTP.TLS.MinimumTLS", c.HTTP.TLS.MinimumTLS, "tls1.2")
			},
		},
		{
			name:     "logstash formatter becomes json",
			file:     "version: 0.1\nlog:\n  formatter: logstash\n",
			warnings: []string{"log.formatter"},
			check: func(t *testing.T, c *Config) {
				check(t, "Log.Formatter", c.Log.Formatter, "json")
			},
		},
		{
			name:     "http.secret is stored with a warning",
			file:     "version: 0.1\nhttp:\n  secret: asecretforlocaldevelopment\n",
			warnings: []string{"http.secret"},
			check: func(t *testing.T, c *Config) {
				check(t, "HTTP.Secret", c.HTTP.Secret, "asecretforlocaldevelopment")
			},
		},
		{
			name: "YAML aliases and null values",
			file: `version: 0.1
storage:
  filesystem:
    rootdirectory: &root /srv/data
cluster:
  datadir: *root
http:
  host: ~
  addr:
`,
			check: func(t *testing.T, c *Config) {
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/srv/data")
				check(t, "HTTP.Host", c.HTTP.Host, "")
				check(t, "HTTP.Addr", c.HTTP.Addr, ":5000")
			},
		},
		{
			name: "quoted environment values",
			env: []string{
				`REGISTRY_AUTH_HTPASSWD_REALM="Registry Realm"`,
				`REGISTRY_AUTH_HTPASSWD_PATH='/auth/htpasswd'`,
				`REGISTRY_STORAGE_DELETE_ENABLED="true"`,
			},
			check: func(t *testing.T, c *Config) {
				if c.Auth.Htpasswd == nil {
					t.Fatal("Auth.Htpasswd = nil, want the htpasswd section")
				}
				check(t, "Htpasswd.Realm", c.Auth.Htpasswd.Realm, "Registry Realm")
				check(t, "Htpasswd.Path", c.Auth.Htpasswd.Path, "/auth/htpasswd")
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
			},
		},
		{
			name: "configuration path variable is skipped",
			env:  []string{EnvConfigPath + "=/etc/flotilla/config.yml"},
		},
		{
			name: "empty file",
			file: "# nothing configured\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warnings, err := Load(writeConfig(t, tt.file), tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkList(t, "warning keys", warningKeys(warnings), tt.warnings)
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// registryImageConfig is the config.yml that the registry:2 image ships
// in /etc/docker/registry/config.yml.
const registryImageConfig = `version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
`

// registryS3Config is a registry:2 configuration for S3 with Redis and
// notifications, in the form found in registry:2 deployment guides.
const registryS3Config = `version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
    environment: staging
storage:
  s3:
    accesskey: AKIAEXAMPLE
    secretkey: example-secret
    region: us-east-1
    bucket: registry.example.com
    encrypt: false
    secure: true
    v4auth: true
    chunksize: 5242880
    rootdirectory: /registry
  cache:
    blobdescriptor: redis
  maintenance:
    uploadpurging:
      enabled: true
      age: 168h
      interval: 24h
      dryrun: false
  redirect:
    disable: true
  delete:
    enabled: true
http:
  addr: :5000
  secret: asecretforlocaldevelopment
  relativeurls: false
  debug:
    addr: localhost:5001
    prometheus:
      enabled: true
      path: /metrics
  headers:
    X-Content-Type-Options: [nosniff]
redis:
  addr: localhost:6379
  password: asecret
  db: 0
  dialtimeout: 10ms
notifications:
  endpoints:
    - name: alistener
      url: https://my.listener.com/event
      timeout: 500ms
      threshold: 5
      backoff: 1s
`

func TestLoadRegistryConfigs(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		warnings []string
		check    func(t *testing.T, c *Config)
	}{
		{
			name:     "registry:2 image config",
			file:     registryImageConfig,
			warnings: []string{"health", "http.headers", "log.fields", "storage.cache"},
			check: func(t *testing.T, c *Config) {
				check(t, "HTTP.Addr", c.HTTP.Addr, ":5000")
				check(t, "Storage.Driver", c.Storage.Driver, "filesystem")
				check(t, "Storage.Filesystem.RootDirectory", c.Storage.Filesystem.RootDirectory, "/var/lib/registry")
				check(t, "Cluster.DataDir", c.Cluster.DataDir, "/var/lib/registry/raft")
			},
		},
		{
			name: "registry:2 s3 config with redis and notifications",
			file: registryS3Config,
			warnings: []string{
				"http.debug.prometheus", "http.headers", "http.secret", "log.fields",
				"notifications", "redis", "storage.cache", "storage.maintenance",
				"storage.redirect", "storage.s3.encrypt", "storage.s3.v4auth",
			},
			check: func(t *testing.T, c *Config) {
				check(t, "Storage.Driver", c.Storage.Driver, "s3")
				check(t, "S3.Bucket", c.Storage.S3.Bucket, "registry.example.com")
				check(t, "S3.ChunkSize", c.Storage.S3.ChunkSize, int64(5<<20))
				check(t, "Storage.Delete.Enabled", c.Storage.Delete.Enabled, true)
				check(t, "HTTP.Debug.Addr", c.HTTP.Debug.Addr, "localhost:5001")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warnings, err := Load(writeConfig(t, tt.file), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkList(t, "warning keys", warningKeys(warnings), tt.warnings)
			for _, w := range warnings {
				if w.Message == "" {
					t.Errorf("warning for %s has no message", w.Key)
				}
			}
			tt.check(t, c)
		})
	}
}

func TestLoadIgnoredKeysWarnOnce(t *testing.T) {
	// Every ignored registry:2 key, set through a variable for a key below
	// it, produces exactly one warning that names it.
	for _, k := range ignoredKeys {
		t.Run(k.key, func(t *testing.T) {
			env := []string{envName(k.key) + "_FIRST=1", envName(k.key) + "_SECOND=2"}
			if strings.HasPrefix(k.key, "storage.s3.") {
				// These keys select the s3 driver, which needs a bucket.
				env = append(env, "REGISTRY_STORAGE_S3_BUCKET=b", "REGISTRY_STORAGE_S3_REGION=r")
			}
			_, warnings, err := Load("", env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			checkList(t, "warning keys", warningKeys(warnings), []string{k.key})
			name, _, _ := strings.Cut(env[0], "=")
			if len(warnings) == 1 && !strings.Contains(warnings[0].Message, name) {
				t.Errorf("message %q does not name %s", warnings[0].Message, name)
			}
		})
	}

	t.Run("file and environment together", func(t *testing.T) {
		file := "version: 0.1\nhealth:\n  storagedriver:\n    enabled: true\n" +
			"  file:\n    - file: /tmp/x\n"
		env := []string{"REGISTRY_HEALTH_STORAGEDRIVER_INTERVAL=5s"}
		_, warnings, err := Load(writeConfig(t, file), env)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		checkList(t, "warning keys", warningKeys(warnings), []string{"health"})
	})
}

func TestLoadServiceLinkVariables(t *testing.T) {
	env := []string{
		"REGISTRY_PORT=tcp://10.0.0.7:5000",
		"REGISTRY_PORT_5000_TCP=tcp://10.0.0.7:5000",
		"REGISTRY_PORT_5000_TCP_ADDR=10.0.0.7",
		"REGISTRY_PORT_5000_TCP_PORT=5000",
		"REGISTRY_PORT_5000_TCP_PROTO=tcp",
		"REGISTRY_SERVICE_HOST=10.0.0.7",
		"REGISTRY_SERVICE_PORT=5000",
		"REGISTRY_SERVICE_PORT_HTTP=5000",
		"REGISTRY_UI_SERVICE_HOST=10.0.0.8",
		"REGISTRY_NAME=/web/registry",
		"REGISTRY_ENV_FOO=bar",
	}
	c, warnings, err := Load("", env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(warnings) != 1 {
		t.Fatalf("got %d warnings, want 1: %v", len(warnings), warnings)
	}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.Contains(warnings[0].Key, name) {
			t.Errorf("warning key %q does not name %s", warnings[0].Key, name)
		}
	}
	check(t, "HTTP.Addr", c.HTTP.Addr, ":5000")
}

func TestLoadUnknownKeys(t *testing.T) {
	file := `version: 0.1
http:
  addr: :5000
  tlss:
    certificate: /certs/domain.crt
storage:
  s3:
    bukcet: images
    region: us-east-1
  ftp:
    host: example.com
flotila:
  nodeid: x
`
	env := []string{
		"REGISTRY_HTTP_TLS_CERTIFICAT=/certs/domain.crt",
		"REGISTRY_CLUSTER_PEER=node2:7000",
		"REGISTRY_FOO=bar",
	}
	_, _, err := Load(writeConfig(t, file), env)
	if err == nil {
		t.Fatal("Load returned no error")
	}
	if !errors.Is(err, ErrUnknownKey) {
		t.Errorf("errors.Is(err, ErrUnknownKey) = false for %v", err)
	}
	for _, want := range []string{
		"http.tlss (", "storage.s3.bukcet (", "storage.ftp (", "flotila (",
		"REGISTRY_HTTP_TLS_CERTIFICAT:", "REGISTRY_CLUSTER_PEER:", "REGISTRY_FOO:",
		"did you mean http.tls?", "did you mean storage.s3.bucket?",
		"did you mean REGISTRY_HTTP_TLS_CERTIFICATE?", "did you mean REGISTRY_CLUSTER_PEERS?",
		"config.yml:4",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if got := strings.Count(err.Error(), "unknown key"); got != 7 {
		t.Errorf("error names %d unknown keys, want 7:\n%v", got, err)
	}
}

func TestLoadInvalidValues(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  []string
		kind error
		// want are substrings of the error: the key and the value.
		want []string
	}{
		{
			name: "bad boolean in environment",
			env:  []string{"REGISTRY_STORAGE_DELETE_ENABLED=maybe"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_STORAGE_DELETE_ENABLED", `"maybe"`},
		},
		{
			name: "bad boolean in file",
			file: "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    secure: sometimes\n",
			kind: ErrInvalidValue,
			want: []string{"storage.s3.secure", `"sometimes"`},
		},
		{
			name: "bad integer",
			env:  []string{"REGISTRY_CLUSTER_BOOTSTRAPEXPECT=three"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_CLUSTER_BOOTSTRAPEXPECT", `"three"`},
		},
		{
			name: "size with unit",
			file: "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n    chunksize: 5MB\n",
			kind: ErrInvalidValue,
			want: []string{"storage.s3.chunksize", `"5MB"`},
		},
		{
			name: "chunk size below S3 minimum",
			env: []string{
				"REGISTRY_STORAGE=s3",
				"REGISTRY_STORAGE_S3_BUCKET=b",
				"REGISTRY_STORAGE_S3_REGION=r",
				"REGISTRY_STORAGE_S3_CHUNKSIZE=1024",
			},
			kind: ErrInvalidValue,
			want: []string{"storage.s3.chunksize", "1024"},
		},
		{
			name: "duration without unit",
			file: "version: 0.1\nhttp:\n  draintimeout: 30\n",
			kind: ErrInvalidValue,
			want: []string{"http.draintimeout", `"30"`},
		},
		{
			name: "log level",
			env:  []string{"REGISTRY_LOG_LEVEL=verbose"},
			kind: ErrInvalidValue,
			want: []string{"log.level", `"verbose"`},
		},
		{
			name: "log formatter",
			file: "version: 0.1\nlog:\n  formatter: xml\n",
			kind: ErrInvalidValue,
			want: []string{"log.formatter", `"xml"`},
		},
		{
			name: "version",
			file: "version: 0.2\n",
			kind: ErrInvalidValue,
			want: []string{"version", `"0.2"`},
		},
		{
			name: "TLS certificate without key",
			env:  []string{"REGISTRY_HTTP_TLS_CERTIFICATE=/certs/domain.crt"},
			kind: ErrInvalidValue,
			want: []string{"http.tls.key", "REGISTRY_HTTP_TLS_KEY", "missing"},
		},
		{
			name: "TLS key without certificate",
			env:  []string{"REGISTRY_HTTP_TLS_KEY=/certs/domain.key"},
			kind: ErrInvalidValue,
			want: []string{"http.tls.certificate", "missing"},
		},
		{
			name: "minimum TLS version",
			env:  []string{"REGISTRY_HTTP_TLS_MINIMUMTLS=ssl3"},
			kind: ErrInvalidValue,
			want: []string{"http.tls.minimumtls", `"ssl3"`},
		},
		{
			name: "unsupported storage driver in file",
			file: "version: 0.1\nstorage:\n  azure:\n    accountname: a\n",
			kind: ErrUnsupported,
			want: []string{"storage.azure", `"azure"`},
		},
		{
			name: "unknown storage driver in environment",
			env:  []string{"REGISTRY_STORAGE=ftp"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_STORAGE", `"ftp"`},
		},
		{
			name: "two storage drivers in file",
			file: "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /data\n  s3:\n    bucket: b\n",
			kind: ErrInvalidValue,
			want: []string{"storage.filesystem", "storage.s3", "REGISTRY_STORAGE"},
		},
		{
			name: "file driver and environment driver",
			file: "version: 0.1\nstorage:\n  s3:\n    bucket: b\n    region: r\n",
			env:  []string{"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/data"},
			kind: ErrInvalidValue,
			want: []string{
				"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
				"storage.s3",
				"more than one",
			},
		},
		{
			name: "s3 without bucket",
			env:  []string{"REGISTRY_STORAGE=s3", "REGISTRY_STORAGE_S3_REGION=us-east-1"},
			kind: ErrInvalidValue,
			want: []string{"storage.s3.bucket", "REGISTRY_STORAGE_S3_BUCKET", "missing"},
		},
		{
			name: "s3 without region or endpoint",
			env:  []string{"REGISTRY_STORAGE=s3", "REGISTRY_STORAGE_S3_BUCKET=b"},
			kind: ErrInvalidValue,
			want: []string{"storage.s3.region", "missing"},
		},
		{
			name: "s3 secret key without access key",
			env: []string{
				"REGISTRY_STORAGE=s3",
				"REGISTRY_STORAGE_S3_BUCKET=b",
				"REGISTRY_STORAGE_S3_REGION=r",
				"REGISTRY_STORAGE_S3_SECRETKEY=s",
			},
			kind: ErrInvalidValue,
			want: []string{"storage.s3.accesskey", "missing"},
		},
		{
			name: "s3 endpoint with other scheme",
			env: []string{
				"REGISTRY_STORAGE=s3",
				"REGISTRY_STORAGE_S3_BUCKET=b",
				"REGISTRY_STORAGE_S3_REGIONENDPOINT=ftp://minio:9000",
			},
			kind: ErrInvalidValue,
			want: []string{"storage.s3.regionendpoint", "ftp://minio:9000"},
		},
		{
			name: "cluster reads",
			env:  []string{"REGISTRY_CLUSTER_READS=eventual"},
			kind: ErrInvalidValue,
			want: []string{"cluster.reads", `"eventual"`},
		},
		{
			name: "snapshot interval too short",
			env:  []string{"REGISTRY_CLUSTER_SNAPSHOTINTERVAL=1ms"},
			kind: ErrInvalidValue,
			want: []string{"cluster.snapshotinterval", "1ms", "100ms"},
		},
		{
			name: "negative trailing logs",
			env:  []string{"REGISTRY_CLUSTER_TRAILINGLOGS=-1"},
			kind: ErrInvalidValue,
			want: []string{"cluster.trailinglogs", "-1"},
		},
		{
			name: "token auth in file",
			file: "version: 0.1\nauth:\n  token:\n    realm: https://auth.example.com/token\n    service: registry\n",
			kind: ErrUnsupported,
			want: []string{"auth.token", `"token"`, "htpasswd"},
		},
		{
			name: "silly auth in environment",
			env:  []string{"REGISTRY_AUTH=silly"},
			kind: ErrUnsupported,
			want: []string{"REGISTRY_AUTH", `"silly"`},
		},
		{
			name: "unknown auth method",
			env:  []string{"REGISTRY_AUTH=ldap"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_AUTH", `"ldap"`},
		},
		{
			name: "two auth methods in file",
			file: "version: 0.1\nauth:\n  htpasswd:\n    path: /a\n  silly:\n    realm: r\n",
			kind: ErrInvalidValue,
			want: []string{"auth.htpasswd", "auth.silly", "REGISTRY_AUTH"},
		},
		{
			name: "htpasswd without path",
			env:  []string{"REGISTRY_AUTH=htpasswd", "REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm"},
			kind: ErrInvalidValue,
			want: []string{"auth.htpasswd.path", "REGISTRY_AUTH_HTPASSWD_PATH", "missing"},
		},
		{
			name: "realm with a quote",
			env: []string{
				"REGISTRY_AUTH_HTPASSWD_REALM=say \"hi\"",
				"REGISTRY_AUTH_HTPASSWD_PATH=/a",
			},
			kind: ErrInvalidValue,
			want: []string{"auth.htpasswd.realm", `say \"hi\"`},
		},
		{
			name: "http host without scheme",
			env:  []string{"REGISTRY_HTTP_HOST=registry.example.com"},
			kind: ErrInvalidValue,
			want: []string{"http.host", `"registry.example.com"`},
		},
		{
			name: "http addr without port",
			env:  []string{"REGISTRY_HTTP_ADDR=localhost"},
			kind: ErrInvalidValue,
			want: []string{"http.addr", `"localhost"`},
		},
		{
			name: "mapping where a value belongs",
			file: "version: 0.1\nhttp:\n  addr:\n    port: 5000\n",
			kind: ErrInvalidValue,
			want: []string{"http.addr", "mapping"},
		},
		{
			name: "list where a value belongs",
			file: "version: 0.1\nhttp:\n  addr: [a, b]\n",
			kind: ErrInvalidValue,
			want: []string{"http.addr", "list"},
		},
		{
			name: "section given a value",
			file: "version: 0.1\nhttp: localhost:5000\n",
			kind: ErrInvalidValue,
			want: []string{"http (", "mapping"},
		},
		{
			name: "key twice",
			file: "version: 0.1\nhttp:\n  addr: :5000\n  addr: :6000\n",
			kind: ErrInvalidValue,
			want: []string{"http.addr", "twice"},
		},
		{
			name: "list index skips elements",
			env:  []string{"REGISTRY_CLUSTER_PEERS_1=node2:7000"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_CLUSTER_PEERS_1", "index 1"},
		},
		{
			name: "bootstrap expects peers",
			env:  []string{"REGISTRY_CLUSTER_BOOTSTRAPEXPECT=3"},
			kind: ErrInvalidValue,
			want: []string{"cluster.bootstrapexpect", "3", "cluster.peers"},
		},
		{
			name: "peer without port",
			env:  []string{"REGISTRY_CLUSTER_PEERS=node2", "REGISTRY_CLUSTER_ADVERTISE=node1:7000"},
			kind: ErrInvalidValue,
			want: []string{"cluster.peers", `"node2"`},
		},
		{
			name: "peers without advertise address",
			env:  []string{"REGISTRY_CLUSTER_PEERS=node2:7000"},
			kind: ErrInvalidValue,
			want: []string{"cluster.advertise", "missing"},
		},
		{
			name: "advertise on all interfaces",
			env:  []string{"REGISTRY_CLUSTER_ADVERTISE=0.0.0.0:7000"},
			kind: ErrInvalidValue,
			want: []string{"cluster.advertise", `"0.0.0.0:7000"`},
		},
		{
			name: "cluster TLS without CA",
			env: []string{
				"REGISTRY_CLUSTER_TLS_CERTIFICATE=/n.crt",
				"REGISTRY_CLUSTER_TLS_KEY=/n.key",
			},
			kind: ErrInvalidValue,
			want: []string{"cluster.tls.ca", "missing"},
		},
		{
			name: "Raft port equals API port",
			env:  []string{"REGISTRY_CLUSTER_BIND=:5000"},
			kind: ErrInvalidValue,
			want: []string{"cluster.bind", `":5000"`, "http.addr"},
		},
		{
			name: "section variable with bad YAML",
			env:  []string{"REGISTRY_STORAGE_DELETE={enabled: [}"},
			kind: ErrInvalidValue,
			want: []string{"REGISTRY_STORAGE_DELETE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := Load(writeConfig(t, tt.file), tt.env)
			if err == nil {
				t.Fatalf("Load returned no error; configuration: %s", c.Redacted())
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("errors.Is(err, %v) = false for %v", tt.kind, err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestLoadReportsAllProblems(t *testing.T) {
	env := []string{
		"REGISTRY_LOG_LEVEL=loud",
		"REGISTRY_STORAGE_DELETE_ENABLED=perhaps",
		"REGISTRY_NOPE=1",
	}
	_, _, err := Load("", env)
	if err == nil {
		t.Fatal("Load returned no error")
	}
	for _, want := range []string{
		"3 problems", "REGISTRY_STORAGE_DELETE_ENABLED", "REGISTRY_NOPE", `log.level (REGISTRY_LOG_LEVEL): "loud"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
	if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidValue) {
		t.Errorf("error does not match both ErrUnknownKey and ErrInvalidValue: %v", err)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name string
		path func(t *testing.T) string
		want string
	}{
		{
			name: "missing file",
			path: func(t *testing.T) string { return filepath.Join(t.TempDir(), "absent.yml") },
			want: "read configuration file",
		},
		{
			name: "YAML syntax",
			path: func(t *testing.T) string { return writeConfig(t, "version: 0.1\nhttp: [\n") },
			want: "parse configuration file",
		},
		{
			name: "top level is a list",
			path: func(t *testing.T) string { return writeConfig(t, "- version\n") },
			want: "top level must be a mapping",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(tt.path(t), nil)
			if err == nil {
				t.Fatal("Load returned no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
	t.Run("missing file wraps fs.ErrNotExist", func(t *testing.T) {
		_, _, err := Load(filepath.Join(t.TempDir(), "absent.yml"), nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
		}
	})
}

func TestDefaultIsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
}

func TestValidateProgrammaticConfig(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{
			"unknown driver",
			func(c *Config) { c.Storage.Driver = "gcs" },
			`storage (REGISTRY_STORAGE): unknown storage driver "gcs"`,
		},
		{"empty data dir", func(c *Config) { c.Cluster.DataDir = "" }, "cluster.datadir"},
		{
			"zero manifest size",
			func(c *Config) { c.HTTP.MaxManifestSize = 0 },
			"http.maxmanifestsize",
		},
		{
			"htpasswd without realm",
			func(c *Config) { c.Auth.Htpasswd = &Htpasswd{Path: "/a"} },
			"auth.htpasswd.realm",
		},
		{
			"empty filesystem root",
			func(c *Config) { c.Storage.Filesystem.RootDirectory = "" },
			"storage.filesystem.rootdirectory",
		},
		{"node id with space", func(c *Config) { c.Cluster.NodeID = "node 1" }, "cluster.nodeid"},
		{
			"client CAs without TLS",
			func(c *Config) { c.HTTP.TLS.ClientCAs = []string{"/ca.pem"} },
			"http.tls.clientcas",
		},
		{
			"prefix without final slash",
			func(c *Config) { c.HTTP.Prefix = "/nested" },
			`http.prefix (REGISTRY_HTTP_PREFIX): "/nested"`,
		},
		{"prefix with a query", func(c *Config) { c.HTTP.Prefix = "/reg?x/" }, `"/reg?x/" is not a plain path`},
		{"prefix with an escape", func(c *Config) { c.HTTP.Prefix = "/reg%2F/" }, `"/reg%2F/" is not a plain path`},
		{"prefix with dot dot", func(c *Config) { c.HTTP.Prefix = "/a/../" }, `"/a/../" is not a plain path`},
		{"prefix with empty segment", func(c *Config) { c.HTTP.Prefix = "/a//b/" }, `"/a//b/" is not a plain path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate returned no error")
			}
			if !errors.Is(err, ErrInvalidValue) {
				t.Errorf("errors.Is(err, ErrInvalidValue) = false for %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	env := []string{
		"REGISTRY_STORAGE=s3",
		"REGISTRY_STORAGE_S3_ACCESSKEY=AKIAEXAMPLE",
		"REGISTRY_STORAGE_S3_SECRETKEY=s3-secret-value",
		"REGISTRY_STORAGE_S3_BUCKET=images",
		"REGISTRY_STORAGE_S3_REGIONENDPOINT=http://user:endpoint-password@minio:9000",
		"REGISTRY_HTTP_SECRET=http-secret-value",
		"REGISTRY_AUTH_HTPASSWD_REALM=Registry Realm",
		"REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
	}
	c, _, err := Load("", env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("configuration", "config", c)

	outputs := map[string]string{
		"Redacted":  c.Redacted(),
		"%v":        fmt.Sprintf("%v", c),
		"%+v":       fmt.Sprintf("%+v", c),
		"%#v":       fmt.Sprintf("%#v", c),
		"slog text": logged.String(),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			for _, secret := range []string{
				"s3-secret-value",
				"http-secret-value",
				"endpoint-password",
			} {
				if strings.Contains(out, secret) {
					t.Errorf("output contains %q: %s", secret, out)
				}
			}
			for _, want := range []string{
				"storage.s3.bucket=images",
				"storage.s3.secretkey=[redacted]",
				"storage=s3",
				"auth=htpasswd",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("output does not contain %q: %s", want, out)
				}
			}
		})
	}
	t.Run("quotes values with spaces", func(t *testing.T) {
		if want := `auth.htpasswd.realm="Registry Realm"`; !strings.Contains(c.Redacted(), want) {
			t.Errorf("Redacted() does not contain %s: %s", want, c.Redacted())
		}
	})
	t.Run("leaves out the unselected driver", func(t *testing.T) {
		if strings.Contains(c.Redacted(), "storage.filesystem") {
			t.Errorf("Redacted() shows the filesystem driver: %s", c.Redacted())
		}
	})
	t.Run("does not allocate htpasswd", func(t *testing.T) {
		d := Default()
		_ = d.Redacted()
		if d.Auth.Htpasswd != nil {
			t.Error("Redacted allocated Auth.Htpasswd")
		}
	})
}

func TestParseBool(t *testing.T) {
	tests := []struct {
		text    string
		want    bool
		wantErr bool
	}{
		{"true", true, false},
		{"True", true, false},
		{"1", true, false},
		{"yes", true, false},
		{"ON", true, false},
		{"false", false, false},
		{"no", false, false},
		{"off", false, false},
		{"0", false, false},
		{"", false, true},
		{"enabled", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := parseBool(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseBool(%q) error = %v, want error %v", tt.text, err, tt.wantErr)
			}
			check(t, "parseBool("+tt.text+")", got, tt.want)
		})
	}
}

func TestPrefixAccepted(t *testing.T) {
	for _, p := range []string{"/", "/registry/", "/a/b-c/d_e/"} {
		c := Default()
		c.HTTP.Prefix = p
		if err := c.Validate(); err != nil {
			t.Errorf("prefix %q: %v", p, err)
		}
	}
}

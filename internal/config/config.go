package config

import (
	"errors"
	"path/filepath"
	"time"
)

// Errors that Load and Validate wrap. The returned error may hold several
// problems, and errors.Is matches each of them.
var (
	// ErrUnknownKey marks a key that neither Flotilla nor registry:2 reads.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalidValue marks a value that cannot be parsed, is out of range,
	// or is missing although another setting requires it.
	ErrInvalidValue = errors.New("invalid value")
	// ErrUnsupported marks a registry:2 feature that Flotilla does not
	// implement and cannot ignore safely, such as token authentication.
	ErrUnsupported = errors.New("not supported by Flotilla")
)

// Names and values that callers compare against.
const (
	// EnvPrefix starts every environment variable that sets a key.
	EnvPrefix = "REGISTRY_"
	// EnvConfigPath is the variable from which registry:2 reads the path of
	// its configuration file. Load skips it, so callers can read it too.
	EnvConfigPath = "REGISTRY_CONFIGURATION_PATH"

	// FormatVersion is the only configuration format version, as in
	// registry:2.
	FormatVersion = "0.1"

	// DriverFilesystem keeps blobs in a local folder.
	DriverFilesystem = "filesystem"
	// DriverS3 keeps blobs in an S3-compatible bucket.
	DriverS3 = "s3"

	// ReadsLinearizable makes every read of the index see all writes
	// acknowledged before it started.
	ReadsLinearizable = "linearizable"
	// ReadsStale lets a follower serve reads from its own copy of the
	// index, which may lag behind the leader.
	ReadsStale = "stale"
)

// Defaults that Default and Load apply.
const (
	// DefaultHTTPAddr is the registry API address, as in registry:2.
	DefaultHTTPAddr = ":5000"
	// DefaultRootDirectory is the filesystem driver's folder, as in
	// registry:2.
	DefaultRootDirectory = "/var/lib/registry"
	// DefaultMaxManifestSize is 4 MiB.
	DefaultMaxManifestSize = 4 << 20
	// DefaultRealm is the htpasswd realm when auth.htpasswd.realm is unset.
	DefaultRealm = "Registry Realm"
	// DefaultMinimumTLS is the lowest TLS version the API listener accepts.
	DefaultMinimumTLS = "tls1.2"
	// DefaultClusterBind is the Raft transport address.
	DefaultClusterBind = ":7000"

	// DefaultS3ChunkSize is the part size of multipart uploads, 10 MiB as
	// in registry:2's s3 driver.
	DefaultS3ChunkSize = 10 << 20
	// MinS3ChunkSize is the smallest part size, 5 MiB, that S3 accepts for
	// every part of a multipart upload but the last.
	MinS3ChunkSize = 5 << 20
	// MaxS3ChunkSize is the largest part size, 5 GiB, that S3 accepts.
	MaxS3ChunkSize = 5 << 30
)

// Config is the whole configuration of one node.
type Config struct {
	// Version is the format version, always FormatVersion.
	Version string
	Log     Log
	HTTP    HTTP
	Auth    Auth
	Storage Storage
	Cluster Cluster
}

// Log configures the process log.
type Log struct {
	// Level is debug, info (the default), warn or error.
	Level string
	// Formatter is text (the default) or json.
	Formatter string
}

// HTTP configures the registry API listener.
type HTTP struct {
	// Addr is the host:port to listen on, ":5000" by default.
	Addr string
	// Host is the external URL of the registry, such as
	// https://registry.example.com:5000. When set, Location headers are
	// absolute URLs under it. When empty, they are relative.
	Host string
	// Prefix is the path before /v2/ when the registry is not served at
	// the root, for example "/my/registry/". It begins and ends with "/",
	// and Load adds the final "/" when the value lacks it.
	Prefix string
	// RelativeURLs is registry:2's http.relativeurls. When true, Location
	// headers stay relative even if Host is set.
	RelativeURLs bool
	// Secret is registry:2's http.secret. Flotilla reads it but does not
	// use it, because upload sessions are kept in the replicated index
	// rather than in state signed for the client.
	Secret string
	// DrainTimeout is the maximum time to wait for open requests when the
	// server shuts down. Zero means the node's default of 30 s.
	DrainTimeout time.Duration
	TLS          TLS
	Debug        Debug
	// MaxManifestSize is the largest manifest in bytes that a push may
	// upload, 4 MiB by default. It is a Flotilla extension.
	MaxManifestSize int64
}

// TLS configures TLS on the registry API listener.
type TLS struct {
	// Certificate and Key are paths to PEM files. Both or neither are set,
	// and with neither the listener serves plain HTTP.
	Certificate string
	Key         string
	// ClientCAs are paths to PEM files of the CAs that client certificates
	// are verified against. When empty, no client certificate is requested.
	ClientCAs []string
	// MinimumTLS is tls1.2 (the default) or tls1.3.
	MinimumTLS string
}

// Enabled reports whether the listener serves TLS.
func (t TLS) Enabled() bool { return t.Certificate != "" }

// Debug configures the debug listener.
type Debug struct {
	// Addr is the host:port of the debug listener. Empty means no debug
	// listener.
	Addr string
}

// Auth configures how clients authenticate.
type Auth struct {
	// Htpasswd is nil when authentication is off.
	Htpasswd *Htpasswd
}

// Htpasswd configures HTTP Basic authentication against an htpasswd file.
type Htpasswd struct {
	// Realm is sent in the WWW-Authenticate challenge. It defaults to
	// DefaultRealm.
	Realm string
	// Path is the htpasswd file.
	Path string
}

// Storage configures where blob content is kept.
type Storage struct {
	// Driver is DriverFilesystem (the default) or DriverS3. Only the
	// selected driver's section configures blob storage, but
	// Filesystem.RootDirectory also sets the default of Cluster.DataDir.
	Driver     string
	Filesystem Filesystem
	S3         S3
	Delete     Delete
}

// Delete configures deletion through the API.
type Delete struct {
	// Enabled allows DELETE of manifests and blobs. It is false by
	// default, as in registry:2.
	Enabled bool
}

// Filesystem configures the filesystem storage driver.
type Filesystem struct {
	// RootDirectory contains the stored blobs, /var/lib/registry by
	// default.
	RootDirectory string
}

// S3 configures the s3 storage driver.
type S3 struct {
	// AccessKey and SecretKey are static credentials. Both or neither are
	// set.
	AccessKey string
	SecretKey string
	// Region is the bucket's region. It may be empty only when
	// RegionEndpoint is set, as in registry:2.
	Region string
	// RegionEndpoint is the URL or host:port of an S3-compatible service.
	// Empty means Amazon S3.
	RegionEndpoint string
	Bucket         string
	// RootDirectory is a key prefix inside the bucket. Empty means the
	// bucket root.
	RootDirectory string
	// ForcePathStyle puts the bucket name in the URL path instead of the
	// host name, which most S3-compatible services need.
	ForcePathStyle bool
	// Secure selects HTTPS, true by default.
	Secure bool
	// SkipVerify disables verification of the endpoint's TLS certificate.
	SkipVerify bool
	// ChunkSize is the part size in bytes of multipart uploads, between
	// MinS3ChunkSize and MaxS3ChunkSize.
	ChunkSize int64
}

// MinSnapshotInterval is the shortest cluster.snapshotinterval.
const MinSnapshotInterval = 100 * time.Millisecond

// Cluster configures Raft replication between nodes.
type Cluster struct {
	// NodeID is this node's Raft server ID. Load leaves it empty when it
	// is not configured, and the caller then has to pick one.
	NodeID string
	// DataDir contains the Raft log and snapshots. It defaults to "raft"
	// under storage.filesystem.rootdirectory, even when the storage driver
	// is s3.
	DataDir string
	// Bind is the host:port the Raft transport listens on.
	Bind string
	// Advertise is the host:port that other nodes dial. Empty means Bind.
	// Validate requires it when Peers is set and Bind has no host or an
	// unspecified one (0.0.0.0, ::), since other nodes cannot dial that.
	Advertise string
	// Peers are the host:port Raft addresses of the other nodes.
	Peers []string
	// BootstrapExpect is the number of nodes to wait for before the first
	// election. Zero leaves the choice to the caller.
	BootstrapExpect int
	TLS             ClusterTLS
	// Reads is ReadsLinearizable (the default) or ReadsStale.
	Reads string
	// SnapshotThreshold is the number of log entries since the last
	// snapshot that makes the node take a new one; zero keeps Raft's
	// default of 8192.
	SnapshotThreshold int
	// SnapshotInterval is how often the node checks SnapshotThreshold;
	// zero means 30 s.
	SnapshotInterval time.Duration
	// TrailingLogs is the number of log entries kept after a snapshot.
	// A peer that lags by fewer entries catches up from the log instead
	// of a whole snapshot. Zero keeps Raft's default of 10240.
	TrailingLogs int
}

// ClusterTLS configures mutual TLS between nodes. All three paths are set,
// or none.
type ClusterTLS struct {
	// Certificate and Key are PEM files that this node presents.
	Certificate string
	Key         string
	// CA is a PEM file of the CA that peer certificates are verified
	// against.
	CA string
}

// Warning reports a key that Load accepted but ignored or changed.
type Warning struct {
	// Key is the dotted path of the key, such as "storage.cache", or the
	// names of the environment variables concerned.
	Key     string
	Message string
}

// String formats the warning for a log line.
func (w Warning) String() string { return w.Key + ": " + w.Message }

// Default returns the configuration that Load starts from.
func Default() *Config {
	return &Config{
		Version: FormatVersion,
		Log:     Log{Level: "info", Formatter: "text"},
		HTTP: HTTP{
			Addr:            DefaultHTTPAddr,
			TLS:             TLS{MinimumTLS: DefaultMinimumTLS},
			MaxManifestSize: DefaultMaxManifestSize,
		},
		Storage: Storage{
			Driver:     DriverFilesystem,
			Filesystem: Filesystem{RootDirectory: DefaultRootDirectory},
			S3:         S3{Secure: true, ChunkSize: DefaultS3ChunkSize},
		},
		Cluster: Cluster{
			DataDir: defaultDataDir(DefaultRootDirectory),
			Bind:    DefaultClusterBind,
			Reads:   ReadsLinearizable,
		},
	}
}

// defaultDataDir returns the Raft folder under the filesystem root.
func defaultDataDir(root string) string {
	if root == "" {
		root = DefaultRootDirectory
	}
	return filepath.Join(root, "raft")
}

package config

import (
	"strings"
	"time"
)

// setting binds one key that Flotilla implements to the Config field that
// stores it.
type setting struct {
	key string
	// secret keeps the value out of Redacted.
	secret bool
	// warning, when set, is reported once if the key is configured.
	warning string
	bind    func(c *Config) value
}

// settings lists every key Flotilla reads, in the order Redacted prints
// them. Keys under auth.htpasswd allocate Config.Auth.Htpasswd when bound.
var settings = []setting{
	stringKey("version", func(c *Config) *string { return &c.Version }),

	stringKey("log.level", func(c *Config) *string { return &c.Log.Level }),
	stringKey("log.formatter", func(c *Config) *string { return &c.Log.Formatter }),

	stringKey("http.addr", func(c *Config) *string { return &c.HTTP.Addr }),
	stringKey("http.host", func(c *Config) *string { return &c.HTTP.Host }),
	stringKey("http.prefix", func(c *Config) *string { return &c.HTTP.Prefix }),
	boolKey("http.relativeurls", func(c *Config) *bool { return &c.HTTP.RelativeURLs }),
	{
		key:    "http.secret",
		secret: true,
		warning: "read but not used: upload sessions live in the replicated index, " +
			"so nodes need no shared secret",
		bind: func(c *Config) value { return (*stringValue)(&c.HTTP.Secret) },
	},
	durationKey("http.draintimeout", func(c *Config) *time.Duration {
		return &c.HTTP.DrainTimeout
	}),
	sizeKey("http.maxmanifestsize", func(c *Config) *int64 {
		return &c.HTTP.MaxManifestSize
	}),
	stringKey("http.tls.certificate", func(c *Config) *string {
		return &c.HTTP.TLS.Certificate
	}),
	stringKey("http.tls.key", func(c *Config) *string { return &c.HTTP.TLS.Key }),
	listKey("http.tls.clientcas", func(c *Config) *[]string {
		return &c.HTTP.TLS.ClientCAs
	}),
	stringKey("http.tls.minimumtls", func(c *Config) *string {
		return &c.HTTP.TLS.MinimumTLS
	}),
	stringKey("http.debug.addr", func(c *Config) *string { return &c.HTTP.Debug.Addr }),

	stringKey("auth.htpasswd.realm", func(c *Config) *string {
		return &c.htpasswd().Realm
	}),
	stringKey("auth.htpasswd.path", func(c *Config) *string { return &c.htpasswd().Path }),

	stringKey("storage.filesystem.rootdirectory", func(c *Config) *string {
		return &c.Storage.Filesystem.RootDirectory
	}),
	stringKey("storage.s3.accesskey", func(c *Config) *string {
		return &c.Storage.S3.AccessKey
	}),
	{
		key:    "storage.s3.secretkey",
		secret: true,
		bind:   func(c *Config) value { return (*stringValue)(&c.Storage.S3.SecretKey) },
	},
	stringKey("storage.s3.region", func(c *Config) *string {
		return &c.Storage.S3.Region
	}),
	stringKey("storage.s3.regionendpoint", func(c *Config) *string {
		return &c.Storage.S3.RegionEndpoint
	}),
	stringKey("storage.s3.bucket", func(c *Config) *string {
		return &c.Storage.S3.Bucket
	}),
	stringKey("storage.s3.rootdirectory", func(c *Config) *string {
		return &c.Storage.S3.RootDirectory
	}),
	boolKey("storage.s3.forcepathstyle", func(c *Config) *bool {
		return &c.Storage.S3.ForcePathStyle
	}),
	boolKey("storage.s3.secure", func(c *Config) *bool { return &c.Storage.S3.Secure }),
	boolKey("storage.s3.skipverify", func(c *Config) *bool {
		return &c.Storage.S3.SkipVerify
	}),
	sizeKey("storage.s3.chunksize", func(c *Config) *int64 {
		return &c.Storage.S3.ChunkSize
	}),
	boolKey("storage.delete.enabled", func(c *Config) *bool {
		return &c.Storage.Delete.Enabled
	}),

	stringKey("cluster.nodeid", func(c *Config) *string { return &c.Cluster.NodeID }),
	stringKey("cluster.datadir", func(c *Config) *string { return &c.Cluster.DataDir }),
	stringKey("cluster.bind", func(c *Config) *string { return &c.Cluster.Bind }),
	stringKey("cluster.advertise", func(c *Config) *string {
		return &c.Cluster.Advertise
	}),
	listKey("cluster.peers", func(c *Config) *[]string { return &c.Cluster.Peers }),
	intKey("cluster.bootstrapexpect", func(c *Config) *int {
		return &c.Cluster.BootstrapExpect
	}),
	stringKey("cluster.tls.certificate", func(c *Config) *string {
		return &c.Cluster.TLS.Certificate
	}),
	stringKey("cluster.tls.key", func(c *Config) *string { return &c.Cluster.TLS.Key }),
	stringKey("cluster.tls.ca", func(c *Config) *string { return &c.Cluster.TLS.CA }),
	stringKey("cluster.reads", func(c *Config) *string { return &c.Cluster.Reads }),
	intKey("cluster.snapshotthreshold", func(c *Config) *int {
		return &c.Cluster.SnapshotThreshold
	}),
	durationKey("cluster.snapshotinterval", func(c *Config) *time.Duration {
		return &c.Cluster.SnapshotInterval
	}),
	intKey("cluster.trailinglogs", func(c *Config) *int { return &c.Cluster.TrailingLogs }),
}

// stringKey and the functions below build the setting for a field of
// each type.
func stringKey(key string, field func(*Config) *string) setting {
	return setting{key: key, bind: func(c *Config) value { return (*stringValue)(field(c)) }}
}

func boolKey(key string, field func(*Config) *bool) setting {
	return setting{key: key, bind: func(c *Config) value { return (*boolValue)(field(c)) }}
}

func intKey(key string, field func(*Config) *int) setting {
	return setting{key: key, bind: func(c *Config) value { return (*intValue)(field(c)) }}
}

func sizeKey(key string, field func(*Config) *int64) setting {
	return setting{key: key, bind: func(c *Config) value { return (*sizeValue)(field(c)) }}
}

func durationKey(key string, field func(*Config) *time.Duration) setting {
	return setting{key: key, bind: func(c *Config) value { return (*durationValue)(field(c)) }}
}

func listKey(key string, field func(*Config) *[]string) setting {
	return setting{key: key, bind: func(c *Config) value { return (*listValue)(field(c)) }}
}

// htpasswd returns the htpasswd section, allocating it with the default
// realm when a key under auth.htpasswd is set for the first time.
func (c *Config) htpasswd() *Htpasswd {
	if c.Auth.Htpasswd == nil {
		c.Auth.Htpasswd = &Htpasswd{Realm: DefaultRealm}
	}
	return c.Auth.Htpasswd
}

// ignoredKey is a registry:2 key that Flotilla accepts and ignores. It
// covers every key below it, and message is the text of its warning.
type ignoredKey struct {
	key     string
	message string
}

// ignoredKeys lists the registry:2 keys that Flotilla does not implement,
// taken from the configuration reference of distribution v3 and its s3
// driver. The other storage drivers and auth methods of registry:2 are in
// registryDrivers and registryAuthMethods instead, because selecting one of
// them is an error.
var ignoredKeys = []ignoredKey{
	{"log.accesslog", "ignored: not supported"},
	{"log.fields", "ignored: log lines get no fields from the configuration"},
	{"log.hooks", "ignored: log hooks (such as mail) are not supported"},
	{"log.reportcaller", "ignored: not supported"},

	{"storage.cache", "ignored: blob metadata comes from the replicated index, " +
		"so no cache is needed"},
	{"storage.maintenance", "ignored: upload purging and read-only mode are not supported"},
	{"storage.redirect", "ignored: not supported"},
	{"storage.tag", "ignored: tags are looked up in the replicated index"},
	{"storage.filesystem.maxthreads", "ignored: not supported"},
	{"storage.s3.encrypt", "ignored: not supported, so only the bucket's default encryption " +
		"applies"},
	{"storage.s3.keyid", "ignored: not supported, so only the bucket's default encryption " +
		"applies"},
	{"storage.s3.v4auth", "ignored: not supported"},
	{"storage.s3.multipartcopychunksize", "ignored: not supported"},
	{"storage.s3.multipartcopymaxconcurrency", "ignored: not supported"},
	{"storage.s3.multipartcopythresholdsize", "ignored: not supported"},
	{"storage.s3.storageclass", "ignored: not supported"},
	{"storage.s3.objectacl", "ignored: not supported"},
	{"storage.s3.useragent", "ignored: not supported"},
	{"storage.s3.usedualstack", "ignored: not supported"},
	{"storage.s3.usefipsendpoint", "ignored: not supported"},
	{"storage.s3.accelerate", "ignored: not supported"},
	{"storage.s3.sessiontoken", "ignored: not supported; use accesskey and secretkey"},
	{"storage.s3.loglevel", "ignored: not supported"},

	{"http.net", "ignored: Flotilla listens on TCP only"},
	{"http.tls.ciphersuites", "ignored: not supported"},
	{"http.tls.clientauth", "ignored: not supported"},
	{"http.tls.letsencrypt", "ignored: not supported; without http.tls.certificate " +
		"and http.tls.key the API is served over plain HTTP"},
	{"http.debug.prometheus", "ignored: not supported"},
	{"http.headers", "ignored: the headers are not added to responses"},
	{"http.http2", "ignored: not supported"},
	{"http.h2c", "ignored: not supported"},

	{"notifications", "ignored: webhook notifications are not supported"},
	{"redis", "ignored: Flotilla keeps no cache in Redis"},
	{"health", "ignored: registry:2's health checks are not supported"},
	{"middleware", "ignored: registry, repository and storage middleware are not " +
		"supported"},
	{"proxy", "ignored: Flotilla is not a pull-through cache yet"},
	{"validation", "ignored: not supported"},
	{"compatibility", "ignored: not supported"},
	{"reporting", "ignored: error reporting to Bugsnag or New Relic is not " +
		"supported"},
	{"catalog", "ignored: not supported"},
	{"policy", "ignored: not supported"},
}

// Storage drivers and auth methods, by the name that selects them.
var (
	supportedDrivers = []string{DriverFilesystem, DriverS3}
	// registryDrivers are registry:2's other drivers ("s3aws" is its alias
	// of s3).
	registryDrivers     = []string{"azure", "gcs", "inmemory", "oss", "swift", "s3aws"}
	supportedAuth       = []string{"htpasswd", "none"}
	registryAuthMethods = []string{"token", "silly"}
)

var (
	settingsByKey = indexSettings()
	sections      = sectionPaths()
)

func indexSettings() map[string]*setting {
	index := make(map[string]*setting, len(settings))
	for i := range settings {
		index[settings[i].key] = &settings[i]
	}
	return index
}

// sectionPaths returns every proper prefix of a setting's key, such as
// "http" and "http.tls". The root is the empty path.
func sectionPaths() map[string]bool {
	paths := map[string]bool{"": true}
	for _, s := range settings {
		key := s.key
		for i := strings.LastIndexByte(key, '.'); i > 0; i = strings.LastIndexByte(key, '.') {
			key = key[:i]
			paths[key] = true
		}
	}
	return paths
}

// findIgnored returns the entry of ignoredKeys that covers path.
func findIgnored(path string) (ignoredKey, bool) {
	for _, k := range ignoredKeys {
		if path == k.key || strings.HasPrefix(path, k.key+".") {
			return k, true
		}
	}
	return ignoredKey{}, false
}

// envName returns the environment variable that sets the key at path.
func envName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// keyRef names a key in both spellings, for messages about a value whose
// source is not known.
func keyRef(path string) string {
	return path + " (" + envName(path) + ")"
}

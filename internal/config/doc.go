// Package config loads Flotilla's configuration: a YAML file shaped like the
// config.yml of the CNCF registry (registry:2, the "distribution" project)
// plus a cluster section, overridden by REGISTRY_* environment variables.
//
// A key's variable name is REGISTRY_ followed by its path in capitals, with
// underscores between the levels: http.tls.certificate is
// REGISTRY_HTTP_TLS_CERTIFICATE. REGISTRY_STORAGE names the storage driver
// (filesystem or s3) and REGISTRY_AUTH the authentication method (htpasswd
// or none), as in registry:2. A list such as cluster.peers takes a
// comma-separated value, a YAML flow sequence ("[a, b]"), or one element
// per variable (REGISTRY_CLUSTER_PEERS_0, REGISTRY_CLUSTER_PEERS_1, ...).
//
// Load treats keys in three ways:
//
//   - Keys that Flotilla implements are parsed into Config and checked by
//     Validate.
//   - Keys that registry:2 defines but Flotilla does not implement (health,
//     redis, http.headers, storage.cache, ...) are ignored with one Warning
//     each, so that an existing registry:2 config.yml still starts.
//   - Any other key, in the file or as a REGISTRY_* variable, stops start-up:
//     Load returns an error that names every such key. The variables that
//     Kubernetes service links and Docker links inject for a service named
//     "registry" (REGISTRY_PORT, REGISTRY_SERVICE_HOST, ...) are the
//     exception. They produce a Warning.
//
// Two choices are stricter than registry:2 on purpose. A storage driver or
// authentication method that Flotilla does not implement is an error when it
// is the one selected, because falling back to another driver would put data
// elsewhere and falling back to no authentication would open the registry.
// And where registry:2 silently ignores a key it does not know, Flotilla
// stops, because a misspelt key would otherwise leave a default in force.
package config

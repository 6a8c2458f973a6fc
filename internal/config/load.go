package config

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the configuration file at path, applies the REGISTRY_*
// variables of environ over it, and validates the result. An empty path
// means no file. environ has the form of os.Environ.
//
// The error lists every unknown key and invalid value found, and errors.Is
// matches ErrUnknownKey, ErrInvalidValue and ErrUnsupported in it. Warnings
// are returned even when the error is not nil.
func Load(path string, environ []string) (*Config, []Warning, error) {
	l := &loader{
		cfg:      Default(),
		assigned: make(map[string]bool),
		warned:   make(map[string]bool),
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read configuration file: %w", err)
		}
		if err := l.loadFile(path, data); err != nil {
			return nil, nil, fmt.Errorf("parse configuration file %s: %w", path, err)
		}
	}
	l.loadEnv(environ)
	l.finish()

	// Validate also runs after parse problems, so that one error lists
	// everything to fix, such as a misspelt key and the missing value it
	// was meant to set.
	problems := l.problems
	var invalid problemList
	if errors.As(l.cfg.Validate(), &invalid) {
		problems = append(problems, invalid...)
	}
	if len(problems) > 0 {
		return nil, l.warnings, problems
	}
	return l.cfg, l.warnings, nil
}

// loader carries the state of one Load call.
type loader struct {
	cfg *Config
	// assigned contains the keys of settings that the file or the
	// environment set.
	assigned map[string]bool
	// warned contains the keys that already produced a warning.
	warned   map[string]bool
	warnings []Warning
	problems problemList

	storage selection
	auth    selection
	// legacyLevel is registry:2's deprecated top-level loglevel.
	legacyLevel string
	// serviceLinks are the injected variables that were skipped.
	serviceLinks []string
}

// origin records where a key was found, for messages.
type origin struct {
	file   string // the configuration file, when envVar is empty
	envVar string
}

// label names the key at path as the user wrote it: the dotted path with
// file and line, or the environment variable.
func (o origin) label(path string, line int) string {
	switch {
	case o.envVar == "":
		return fmt.Sprintf("%s (%s:%d)", path, o.file, line)
	case strings.EqualFold(envName(path), o.envVar):
		return o.envVar
	default:
		return fmt.Sprintf("%s (in %s)", path, o.envVar)
	}
}

// source returns the suffix that warning messages add for keys set by an
// environment variable. A file key needs none, because the warning names it.
func (o origin) source() string {
	if o.envVar == "" {
		return ""
	}
	return " (set by " + o.envVar + ")"
}

func (l *loader) loadFile(path string, data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil // an empty file
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode && !isNull(root) {
		return fmt.Errorf("line %d: the top level must be a mapping of keys", root.Line)
	}
	l.walk("", root, origin{file: path}, root.Line)
	return nil
}

// walk applies the YAML value n found at path, reporting unknown keys and
// warning about ignored ones. line is the line of the key in the file.
func (l *loader) walk(path string, n *yaml.Node, o origin, line int) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	l.noteChoice(path, o, line)
	if s, ok := settingsByKey[path]; ok {
		l.assignNode(s, n, o, line)
		return
	}
	if path == "loglevel" {
		l.setLegacyLevel(n, o, line)
		return
	}
	if k, ok := findIgnored(path); ok {
		l.warnOnce(k.key, k.message+o.source())
		return
	}
	if isChoiceWithoutSettings(path) {
		return // noteChoice recorded it for resolveStorage or resolveAuth
	}
	if (path == "storage" || path == "auth") && n.Kind == yaml.ScalarNode && !isNull(n) {
		l.choose(path, n.Value, o.label(path, line))
		return
	}
	if !sections[path] {
		l.fail(ErrUnknownKey, o.label(path, line), unknownKeyDetail(path, o))
		return
	}
	if isNull(n) {
		return // an empty section, such as "inmemory:" in registry:2 files
	}
	if n.Kind != yaml.MappingNode {
		l.fail(ErrInvalidValue, o.label(path, line), "expected a mapping of keys")
		return
	}
	l.walkMapping(path, n, o)
}

func (l *loader) walkMapping(path string, n *yaml.Node, o origin) {
	seen := make(map[string]bool)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		if key.Kind != yaml.ScalarNode {
			l.fail(ErrInvalidValue, o.label(path, key.Line), "a key must be a string")
			continue
		}
		child := key.Value
		if path != "" {
			child = path + "." + key.Value
		}
		if seen[key.Value] {
			l.fail(ErrInvalidValue, o.label(child, key.Line), "the key appears twice")
			continue
		}
		seen[key.Value] = true
		l.walk(child, val, o, key.Line)
	}
}

// assignNode parses the YAML value n into the setting s.
func (l *loader) assignNode(s *setting, n *yaml.Node, o origin, line int) {
	label := o.label(s.key, line)
	if isNull(n) {
		return // "key:" with no value keeps the default
	}
	v := s.bind(l.cfg)
	switch n.Kind {
	case yaml.ScalarNode:
		if err := v.set(n.Value); err != nil {
			l.fail(ErrInvalidValue, label, err.Error())
			return
		}
	case yaml.SequenceNode:
		list, ok := v.(listElements)
		if !ok {
			l.fail(ErrInvalidValue, label, "expected a single value, not a list")
			return
		}
		items := make([]string, 0, len(n.Content))
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				l.fail(ErrInvalidValue, label, "expected a list of strings")
				return
			}
			items = append(items, item.Value)
		}
		list.setList(items)
	default:
		l.fail(ErrInvalidValue, label, "expected a value, not a mapping")
		return
	}
	l.markAssigned(s, o)
}

func (l *loader) markAssigned(s *setting, o origin) {
	l.assigned[s.key] = true
	if s.warning != "" {
		l.warnOnce(s.key, s.warning+o.source())
	}
}

func (l *loader) setLegacyLevel(n *yaml.Node, o origin, line int) {
	if n.Kind != yaml.ScalarNode {
		l.fail(ErrInvalidValue, o.label("loglevel", line), "expected a single value")
		return
	}
	if !isNull(n) {
		l.legacyLevel = n.Value
	}
	l.warnOnce("loglevel", "deprecated in registry:2; use log.level, "+
		"which takes precedence when both are set"+o.source())
}

func (l *loader) fail(kind error, label, detail string) {
	l.problems = append(l.problems, &keyError{label: label, kind: kind, detail: detail})
}

func (l *loader) warnOnce(key, message string) {
	if l.warned[key] {
		return
	}
	l.warned[key] = true
	l.warnings = append(l.warnings, Warning{Key: key, Message: message})
}

// finish resolves the storage driver and auth method, then applies the
// defaults that depend on other keys and normalizes values.
func (l *loader) finish() {
	l.resolveStorage()
	l.resolveAuth()

	c := l.cfg
	if l.legacyLevel != "" && !l.assigned["log.level"] {
		c.Log.Level = l.legacyLevel
	}
	c.Log.Level = strings.ToLower(c.Log.Level)
	c.Log.Formatter = strings.ToLower(c.Log.Formatter)
	if c.Log.Formatter == "logstash" {
		c.Log.Formatter = "json"
		l.warnOnce("log.formatter", "logstash is not supported; json is used instead")
	}

	c.HTTP.TLS.MinimumTLS = strings.ToLower(c.HTTP.TLS.MinimumTLS)
	if c.HTTP.TLS.MinimumTLS == "tls1.0" || c.HTTP.TLS.MinimumTLS == "tls1.1" {
		l.warnOnce("http.tls.minimumtls", c.HTTP.TLS.MinimumTLS+
			" is not supported; tls1.2 is used instead")
		c.HTTP.TLS.MinimumTLS = DefaultMinimumTLS
	}
	if c.HTTP.Prefix != "" && !strings.HasSuffix(c.HTTP.Prefix, "/") {
		c.HTTP.Prefix += "/"
	}

	c.Cluster.Reads = strings.ToLower(c.Cluster.Reads)
	if !l.assigned["cluster.datadir"] {
		c.Cluster.DataDir = defaultDataDir(c.Storage.Filesystem.RootDirectory)
	}
}

// isNull reports whether n is an empty or null YAML value ("key:", "~").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// keyError is one problem found by Load or Validate. It prints the key as
// the user wrote it and unwraps to one of the package's errors.
type keyError struct {
	label  string
	kind   error
	detail string
}

func (e *keyError) Error() string { return e.label + ": " + e.detail }
func (e *keyError) Unwrap() error { return e.kind }

// problemList is the error of Load and Validate. errors.Is and errors.As
// reach each problem in it.
type problemList []error

func (p problemList) Error() string {
	if len(p) == 1 {
		return "invalid configuration: " + p[0].Error()
	}
	var b strings.Builder
	b.WriteString("invalid configuration, " + strconv.Itoa(len(p)) + " problems:")
	for _, err := range p {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (p problemList) Unwrap() []error { return p }

// unknownKeyDetail explains an unknown key and suggests a known key of the
// same section whose last part is at most two edits away.
func unknownKeyDetail(path string, o origin) string {
	detail := "unknown key; neither Flotilla nor registry:2 reads it"
	parent, last := "", path
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		parent, last = path[:i], path[i+1:]
	}
	best, bestDistance := "", 3
	for _, known := range knownPaths() {
		knownParent, knownLast := "", known
		if i := strings.LastIndexByte(known, '.'); i >= 0 {
			knownParent, knownLast = known[:i], known[i+1:]
		}
		if knownParent != parent {
			continue
		}
		if d := editDistance(last, knownLast); d < bestDistance {
			best, bestDistance = known, d
		}
	}
	if best == "" {
		return detail
	}
	if o.envVar != "" {
		best = envName(best)
	}
	return detail + " (did you mean " + best + "?)"
}

// knownPaths returns every key and section that Load recognizes.
func knownPaths() []string {
	paths := []string{"loglevel"}
	for _, s := range settings {
		paths = append(paths, s.key)
	}
	for p := range sections {
		if p != "" {
			paths = append(paths, p)
		}
	}
	for _, k := range ignoredKeys {
		paths = append(paths, k.key)
	}
	for _, d := range slices.Concat(supportedDrivers, registryDrivers) {
		paths = append(paths, "storage."+d)
	}
	for _, m := range slices.Concat(supportedAuth, registryAuthMethods) {
		paths = append(paths, "auth."+m)
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// editDistance returns the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	previous := make([]int, len(b)+1)
	current := make([]int, len(b)+1)
	for j := range previous {
		previous[j] = j
	}
	for i := 1; i <= len(a); i++ {
		current[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			current[j] = min(previous[j]+1, current[j-1]+1, previous[j-1]+cost)
		}
		previous, current = current, previous
	}
	return previous[len(b)]
}

package config

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// loadEnv applies the REGISTRY_* variables of environ. They are applied in
// lexical order, as registry:2 does, so a variable that sets a whole
// section (REGISTRY_STORAGE_DELETE='{enabled: true}') comes before the
// variables for keys inside it.
func (l *loader) loadEnv(environ []string) {
	type variable struct{ name, text string }
	var vars []variable
	for _, entry := range environ {
		name, text, ok := strings.Cut(entry, "=")
		isKey := len(name) > len(EnvPrefix) && strings.HasPrefix(name, EnvPrefix)
		if ok && isKey && name != EnvConfigPath {
			vars = append(vars, variable{name, text})
		}
	}
	slices.SortStableFunc(vars, func(a, b variable) int {
		return strings.Compare(a.name, b.name)
	})

	for _, v := range vars {
		l.applyVariable(v.name, v.text)
	}
	if len(l.serviceLinks) > 0 {
		l.warnOnce(strings.Join(l.serviceLinks, ", "),
			"ignored: Kubernetes service links or Docker links set variables like these "+
				"for a service named registry; set enableServiceLinks: false in the pod "+
				"spec to remove them")
	}
}

func (l *loader) applyVariable(name, text string) {
	rest := strings.TrimPrefix(name, EnvPrefix)
	path := strings.ToLower(strings.ReplaceAll(rest, "_", "."))
	o := origin{envVar: name}

	if s, ok := settingsByKey[path]; ok {
		l.noteChoice(path, o, 0)
		if err := s.bind(l.cfg).set(unquote(text)); err != nil {
			l.fail(ErrInvalidValue, name, err.Error())
			return
		}
		l.markAssigned(s, o)
		return
	}
	if l.applyListElement(path, name, text) {
		return
	}
	if serviceLink.MatchString(rest) {
		l.serviceLinks = append(l.serviceLinks, name)
		return
	}

	node := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: text}
	if sections[path] {
		// Like registry:2, a variable may set a whole section in YAML.
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
			l.fail(ErrInvalidValue, name, "the value is not valid YAML: "+err.Error())
			return
		}
		node = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
		if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
			node = doc.Content[0]
		}
	}
	l.walk(path, node, o, 0)
}

// unquote removes YAML quotes around a whole value, because registry:2
// parses every variable as YAML and so reads REGISTRY_AUTH_HTPASSWD_REALM="x"
// as x. Other text is returned unchanged.
func unquote(text string) string {
	if len(text) < 2 || (text[0] != '"' && text[0] != '\'') || text[len(text)-1] != text[0] {
		return text
	}
	var unquoted string
	if err := yaml.Unmarshal([]byte(text), &unquoted); err != nil {
		return text
	}
	return unquoted
}

// applyListElement sets one element of a list, for variables such as
// REGISTRY_CLUSTER_PEERS_0. It reports whether path named a list element.
func (l *loader) applyListElement(path, name, text string) bool {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return false
	}
	index, err := strconv.Atoi(path[i+1:])
	s, ok := settingsByKey[path[:i]]
	if err != nil || !ok {
		return false
	}
	list, ok := s.bind(l.cfg).(listElements)
	if !ok {
		return false
	}
	if index < 0 {
		l.fail(ErrInvalidValue, name, "a list index must not be negative")
		return true
	}
	if err := list.setIndex(index, unquote(text)); err != nil {
		l.fail(ErrInvalidValue, name, err.Error())
		return true
	}
	l.markAssigned(s, origin{envVar: name})
	return true
}

// serviceLink matches the part after REGISTRY_ of the variables that
// Kubernetes injects for services whose name starts with "registry"
// (REGISTRY_SERVICE_HOST, REGISTRY_PORT_5000_TCP_ADDR,
// REGISTRY_UI_SERVICE_PORT, ...), and of those that Docker links inject
// for a container linked as "registry" (REGISTRY_NAME, REGISTRY_ENV_*).
var serviceLink = regexp.MustCompile(`^(?:[A-Z0-9_]+_)?` +
	`(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?|` +
	`PORT(?:_[0-9]+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$` +
	`|^NAME$|^ENV_`)

package config

import (
	"fmt"
	"slices"
	"strings"
)

// selection records how the storage driver or the auth method was chosen.
// In registry:2 both are maps with one entry per driver or method, and a
// scalar (storage: s3, or REGISTRY_STORAGE=s3) names the entry instead.
type selection struct {
	// explicit is the name given as a scalar. The environment is read
	// after the file, so REGISTRY_STORAGE replaces a storage: s3 line.
	explicit     string
	explicitFrom string
	// names are the sections found, in the order first seen, and from
	// labels where each was first seen.
	names []string
	from  map[string]string
}

func (s *selection) note(name, label string) {
	if s.from == nil {
		s.from = make(map[string]string)
	}
	if _, ok := s.from[name]; !ok {
		s.names = append(s.names, name)
		s.from[name] = label
	}
}

// pick returns the chosen name and where it was chosen. An explicit name
// wins, then a single section. Several sections without an explicit name
// are an error, as in registry:2. An empty name means nothing was chosen.
func (s *selection) pick(key, choiceName string) (name, label string, err error) {
	if s.explicit != "" {
		return s.explicit, s.explicitFrom, nil
	}
	switch len(s.names) {
	case 0:
		return "", "", nil
	case 1:
		return s.names[0], s.from[s.names[0]], nil
	}
	found := make([]string, len(s.names))
	for i, name := range s.names {
		found[i] = s.from[name]
	}
	return "", "", &keyError{
		label: key,
		kind:  ErrInvalidValue,
		detail: fmt.Sprintf(
			"more than one %s is configured (%s); keep one, or choose one with %s",
			choiceName, strings.Join(found, ", "), envName(key)),
	}
}

// noteChoice records path if it is, or lies under, a storage driver or an
// auth method section.
func (l *loader) noteChoice(path string, o origin, line int) {
	for _, c := range []struct {
		prefix string
		names  []string
		sel    *selection
	}{
		{"storage.", slices.Concat(supportedDrivers, registryDrivers), &l.storage},
		{"auth.", slices.Concat(supportedAuth, registryAuthMethods), &l.auth},
	} {
		rest, ok := strings.CutPrefix(path, c.prefix)
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, ".")
		if slices.Contains(c.names, name) {
			c.sel.note(name, o.label(c.prefix+name, line))
		}
	}
}

// isChoiceWithoutSettings reports whether path is, or lies under, a driver
// or method section whose keys Flotilla does not read: registry:2's other
// drivers and methods, and auth.none.
func isChoiceWithoutSettings(path string) bool {
	for _, c := range []struct {
		prefix string
		names  []string
	}{
		{"storage.", registryDrivers},
		{"auth.", append([]string{"none"}, registryAuthMethods...)},
	} {
		if rest, ok := strings.CutPrefix(path, c.prefix); ok {
			name, _, _ := strings.Cut(rest, ".")
			if slices.Contains(c.names, name) {
				return true
			}
		}
	}
	return false
}

// choose records a scalar storage or auth value as the explicit choice.
func (l *loader) choose(path, name, label string) {
	sel := &l.storage
	if path == "auth" {
		sel = &l.auth
	}
	sel.explicit = strings.ToLower(strings.TrimSpace(name))
	sel.explicitFrom = label
}

func (l *loader) resolveStorage() {
	name, label, err := l.storage.pick("storage", "storage driver")
	if err != nil {
		l.problems = append(l.problems, err)
		return
	}
	switch {
	case name == "":
		return // Default selects the filesystem driver
	case slices.Contains(supportedDrivers, name):
		l.cfg.Storage.Driver = name
	case slices.Contains(registryDrivers, name):
		l.fail(ErrUnsupported, label, fmt.Sprintf(
			"storage driver %q is not supported; use filesystem or s3", name))
		return
	default:
		l.fail(ErrInvalidValue, label, fmt.Sprintf(
			"unknown storage driver %q; use filesystem or s3", name))
		return
	}
	for _, other := range l.storage.names {
		// The filesystem section stays in use when s3 is selected, because
		// its root directory places cluster.datadir by default.
		if other == name || other == DriverFilesystem {
			continue
		}
		l.warnOnce("storage."+other, fmt.Sprintf(
			"ignored: the storage driver is %s, selected by %s", name, label))
	}
}

func (l *loader) resolveAuth() {
	name, label, err := l.auth.pick("auth", "authentication method")
	if err != nil {
		l.problems = append(l.problems, err)
		return
	}
	switch {
	case name == "" || name == "none":
		l.cfg.Auth.Htpasswd = nil
	case name == "htpasswd":
		l.cfg.htpasswd()
	case slices.Contains(registryAuthMethods, name):
		l.fail(ErrUnsupported, label, fmt.Sprintf(
			"authentication method %q is not supported; use htpasswd", name))
		return
	default:
		l.fail(ErrInvalidValue, label, fmt.Sprintf(
			"unknown authentication method %q; use htpasswd or none", name))
		return
	}
	for _, other := range l.auth.names {
		if other != name {
			l.warnOnce("auth."+other, fmt.Sprintf(
				"ignored: the authentication method is %s, selected by %s", name, label))
		}
	}
}

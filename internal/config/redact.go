package config

import (
	"log/slog"
	"net/url"
	"strconv"
	"strings"
)

// redactedText replaces a secret that is set.
const redactedText = "[redacted]"

// Redacted formats the configuration as one line of key=value pairs for a
// start-up log. The values of http.secret and storage.s3.secretkey appear
// as [redacted] when set, and passwords in URLs are masked. Empty
// values, and the sections of the storage driver and auth method that are
// not selected, are left out.
func (c *Config) Redacted() string {
	var b strings.Builder
	for i, attr := range c.redactedAttrs() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(attr.Key)
		b.WriteByte('=')
		text := attr.Value.String()
		if text == "" || strings.ContainsAny(text, " \t\"=\\") {
			text = strconv.Quote(text)
		}
		b.WriteString(text)
	}
	return b.String()
}

// String returns Redacted, so that printing a Config with fmt shows no
// secrets. Printing the HTTP or S3 struct on its own does show them.
func (c *Config) String() string { return c.Redacted() }

// GoString returns Redacted, so that the %#v verb shows no secrets either.
func (c *Config) GoString() string { return c.Redacted() }

// LogValue implements slog.LogValuer with the pairs of Redacted as a
// group, so that logging a Config shows no secrets.
func (c *Config) LogValue() slog.Value {
	return slog.GroupValue(c.redactedAttrs()...)
}

func (c *Config) redactedAttrs() []slog.Attr {
	auth := "none"
	if c.Auth.Htpasswd != nil {
		auth = "htpasswd"
	}
	attrs := []slog.Attr{
		slog.String("storage", c.Storage.Driver),
		slog.String("auth", auth),
	}
	for i := range settings {
		s := &settings[i]
		if !c.showsSection(s.key) {
			continue
		}
		text := s.bind(c).String()
		switch {
		case text == "":
			continue
		case s.secret:
			text = redactedText
		case strings.Contains(text, "://"):
			text = redactURL(text)
		}
		attrs = append(attrs, slog.String(s.key, text))
	}
	return attrs
}

// showsSection reports whether the key belongs to the selected storage
// driver and auth method, or to no such section. It must run before the
// setting is bound, because binding an auth.htpasswd key allocates the
// section.
func (c *Config) showsSection(key string) bool {
	switch {
	case strings.HasPrefix(key, "auth.htpasswd."):
		return c.Auth.Htpasswd != nil
	case strings.HasPrefix(key, "storage.s3."):
		return c.Storage.Driver == DriverS3
	case strings.HasPrefix(key, "storage.filesystem."):
		return c.Storage.Driver == DriverFilesystem
	}
	return true
}

// redactURL removes the password from a URL. Text that does not parse is
// replaced whole, since it may hold a password in a form url.Parse rejects.
func redactURL(text string) string {
	u, err := url.Parse(text)
	if err != nil {
		return redactedText
	}
	return u.Redacted()
}

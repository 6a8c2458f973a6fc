package auth

import (
	"encoding/base64"
	"strings"
)

// ParseBasic returns the user name and password of an HTTP Basic
// Authorization header value (RFC 7617). The scheme name is matched
// without regard to case. ok is false for another scheme, invalid base64,
// credentials without ':' or an empty user name. The password may contain
// ':' because only the first one separates it from the name.
func ParseBasic(header string) (name, password string, ok bool) {
	const scheme = "Basic "
	if len(header) < len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return "", "", false
	}
	decoded, err := base64.StdEncoding.DecodeString(strings.TrimLeft(header[len(scheme):], " "))
	if err != nil {
		return "", "", false
	}
	name, password, found := strings.Cut(string(decoded), ":")
	if !found || name == "" {
		return "", "", false
	}
	return name, password, true
}

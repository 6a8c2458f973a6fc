package node

import (
	"errors"
	"regexp"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// repoPathRegexp is the repository name grammar of the OCI Distribution
// Specification: lower-case path components joined by slashes, without the
// registry host that reference.WithName would also accept.
var repoPathRegexp = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// parseName validates a repository name. The name is used exactly as it
// came, because the grammar admits one spelling per repository: routing,
// auth and storage all see the same string.
func parseName(name string) (string, error) {
	if len(name) > reference.RepositoryNameTotalLengthMax {
		return "", &Error{Code: CodeNameInvalid, Message: "repository name longer than 255 characters"}
	}
	if !repoPathRegexp.MatchString(name) {
		return "", &Error{Code: CodeNameInvalid, Message: "invalid repository name", Detail: map[string]string{"name": name}}
	}
	if _, err := reference.WithName(name); err != nil {
		return "", &Error{Code: CodeNameInvalid, Message: "invalid repository name", Detail: map[string]string{"name": name}, Cause: err}
	}
	return name, nil
}

// tagRegexp is the tag grammar of the OCI Distribution Specification.
var tagRegexp = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// parseDigest validates a digest of a supported algorithm (sha256 or
// sha512) and returns it.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", &Error{Code: CodeDigestInvalid, Message: "invalid digest", Detail: map[string]string{"digest": truncate(s, 200)}, Cause: err}
	}
	if !d.Algorithm().Available() {
		return "", &Error{Code: CodeDigestInvalid, Message: "unsupported digest algorithm", Detail: map[string]string{"digest": truncate(s, 200)}}
	}
	return d, nil
}

// parseReference splits a manifest reference into a tag or a digest.
func parseReference(ref string) (tag string, d digest.Digest, err error) {
	if tagRegexp.MatchString(ref) {
		return ref, "", nil
	}
	d, err = parseDigest(ref)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.Message = "invalid tag or digest"
		}
		return "", "", err
	}
	return "", d, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

package htpasswd

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

const (
	// MaxLineLength is the maximum length in bytes of one line, without its
	// line ending. A bcrypt line with a 255-byte user name fits easily.
	MaxLineLength = 4096

	// MaxFileSize is the maximum size in bytes of an htpasswd file.
	MaxFileSize = 8 << 20
)

var (
	// ErrMalformed is returned, wrapped in a *SyntaxError, when a line breaks
	// the htpasswd syntax. The whole file is rejected.
	ErrMalformed = errors.New("malformed htpasswd file")

	// ErrFileTooLarge is returned when a file is larger than MaxFileSize.
	ErrFileTooLarge = errors.New("htpasswd file too large")

	// ErrInvalidUser is returned for an empty user name or one that contains
	// ':', whitespace, a control character or invalid UTF-8.
	ErrInvalidUser = errors.New("invalid user name")
)

// SyntaxError reports the first line that makes a file malformed. It
// unwraps to ErrMalformed. Reason never quotes the line's hash.
type SyntaxError struct {
	Line   int
	Reason string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%v: line %d: %s", ErrMalformed, e.Line, e.Reason)
}

// Unwrap returns ErrMalformed.
func (e *SyntaxError) Unwrap() error { return ErrMalformed }

// File is the parsed content of an htpasswd file.
type File struct {
	// Entries are the users with a bcrypt hash, in file order.
	Entries []Entry
	// Rejected are the users whose hash Flotilla cannot verify, in file
	// order. They cannot log in.
	Rejected []Rejected

	// sum is the SHA-256 of the bytes the file was parsed from.
	sum [sha256.Size]byte
}

// Entry is one usable line: a user with a bcrypt hash.
type Entry struct {
	Line int // 1-based line number
	User string
	Hash string // as stored, with its $2a$, $2b$ or $2y$ prefix
}

// Rejected is a line whose hash scheme Flotilla does not accept.
type Rejected struct {
	Line   int    // 1-based line number
	User   string // user name from the line
	Format string // name of the hash scheme, such as "MD5 ($apr1$)"
	Fix    string // command that writes a bcrypt line for the user
}

// Lookup returns the entry for user and whether the file has a usable one.
func (f *File) Lookup(user string) (Entry, bool) {
	for _, e := range f.Entries {
		if e.User == user {
			return e, true
		}
	}
	return Entry{}, false
}

// LogRejected logs one warning per rejected line, so that a user who cannot
// log in shows up in the log with the reason and the fix.
func (f *File) LogRejected(logger *slog.Logger, path string) {
	for _, r := range f.Rejected {
		logger.Warn("htpasswd line uses an unsupported hash format; the user cannot log in",
			"path", path, "line", r.Line, "user", r.User, "format", r.Format, "fix", r.Fix)
	}
}

// Load reads and parses the htpasswd file at path.
func Load(path string) (*File, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	f, err := parseBytes(data)
	if err != nil {
		return nil, fmt.Errorf("htpasswd file %s: %w", path, err)
	}
	return f, nil
}

// readFile reads at most MaxFileSize bytes from path.
func readFile(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open htpasswd file: %w", err)
	}
	defer fh.Close()
	data, err := readLimited(fh)
	if err != nil {
		return nil, fmt.Errorf("htpasswd file %s: %w", path, err)
	}
	return data, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrFileTooLarge, MaxFileSize)
	}
	return data, nil
}

// Parse reads an htpasswd file of at most MaxFileSize bytes from r.
//
// A malformed line fails the whole file with a *SyntaxError: a line without
// ':', an invalid or duplicate user name, or a line longer than
// MaxLineLength. Whitespace around a line, a trailing carriage return and a
// leading UTF-8 byte order mark are ignored.
func Parse(r io.Reader) (*File, error) {
	data, err := readLimited(r)
	if err != nil {
		return nil, err
	}
	return parseBytes(data)
}

func parseBytes(data []byte) (*File, error) {
	f := &File{sum: sha256.Sum256(data)}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	firstLine := make(map[string]int)
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		n := i + 1
		if len(strings.TrimSuffix(raw, "\r")) > MaxLineLength {
			return nil, &SyntaxError{Line: n, Reason: fmt.Sprintf("line longer than %d bytes", MaxLineLength)}
		}
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == '#' {
			continue
		}
		user, hash, found := strings.Cut(line, ":")
		if !found {
			return nil, &SyntaxError{Line: n, Reason: "missing ':' between user name and hash"}
		}
		if reason := userNameProblem(user); reason != "" {
			return nil, &SyntaxError{Line: n, Reason: reason}
		}
		if first, dup := firstLine[user]; dup {
			return nil, &SyntaxError{Line: n, Reason: fmt.Sprintf("user %q already defined on line %d", user, first)}
		}
		firstLine[user] = n
		if format := unsupportedFormat(hash); format != "" {
			f.Rejected = append(f.Rejected, Rejected{Line: n, User: user, Format: format, Fix: fixCommand(user)})
			continue
		}
		f.Entries = append(f.Entries, Entry{Line: n, User: user, Hash: hash})
	}
	return f, nil
}

// ValidateUser returns an error wrapping ErrInvalidUser unless name can be
// stored in an htpasswd file and parsed back unchanged.
func ValidateUser(name string) error {
	if reason := userNameProblem(name); reason != "" {
		return fmt.Errorf("%w: %s", ErrInvalidUser, reason)
	}
	if strings.Contains(name, ":") {
		return fmt.Errorf("%w: user name contains ':'", ErrInvalidUser)
	}
	return nil
}

// userNameProblem describes what is wrong with a user name taken from the
// part of a line before the first ':', or returns "".
func userNameProblem(name string) string {
	switch {
	case name == "":
		return "empty user name"
	case !utf8.ValidString(name):
		return "user name is not valid UTF-8"
	}
	for _, r := range name {
		if unicode.IsSpace(r) {
			return "user name contains whitespace"
		}
		if unicode.IsControl(r) {
			return "user name contains a control character"
		}
	}
	return ""
}

// unsupportedFormat names the hash scheme of a line that Flotilla cannot
// verify, or returns "" for a well-formed bcrypt hash.
func unsupportedFormat(hash string) string {
	switch {
	case hash == "":
		return "empty hash"
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if !wellFormedBcrypt(hash) {
			return "malformed bcrypt hash"
		}
		return ""
	case strings.HasPrefix(hash, "$2x$"):
		// crypt_blowfish marks hashes made by its old, wrong handling of
		// 8-bit characters with $2x$; x/crypto computes the fixed algorithm.
		return "bcrypt $2x$ (legacy crypt_blowfish variant)"
	case strings.HasPrefix(hash, "$apr1$"):
		return "MD5 ($apr1$)"
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1 ({SHA})"
	case strings.HasPrefix(hash, "$1$"):
		return "MD5-crypt ($1$)"
	case strings.HasPrefix(hash, "$5$"):
		return "SHA-256-crypt ($5$)"
	case strings.HasPrefix(hash, "$6$"):
		return "SHA-512-crypt ($6$)"
	case strings.HasPrefix(hash, "$"):
		return "unknown crypt scheme"
	case len(hash) == 13 && onlyCryptAlphabet(hash):
		return "DES crypt"
	default:
		return "plain text"
	}
}

// bcryptHashLength is the length of "$2y$NN$" followed by a 22-character
// salt and a 31-character hash.
const bcryptHashLength = 60

func wellFormedBcrypt(hash string) bool {
	if len(hash) != bcryptHashLength || hash[6] != '$' {
		return false
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return false
	}
	return onlyCryptAlphabet(hash[7:])
}

// onlyCryptAlphabet reports whether s contains only the characters of the
// base-64 alphabet that crypt(3) and bcrypt use: ./0-9A-Za-z.
func onlyCryptAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '.' || c == '/' ||
			('0' <= c && c <= '9') || ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z')
		if !ok {
			return false
		}
	}
	return true
}

func fixCommand(user string) string {
	return fmt.Sprintf("write a bcrypt line with 'flotilla htpasswd -Bbn %s PASSWORD' or 'htpasswd -B FILE %s'", user, user)
}

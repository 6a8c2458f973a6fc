package htpasswd

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

const (
	// DefaultCost is the bcrypt cost used when none is given, the same as
	// x/crypto's bcrypt.DefaultCost. Apache's htpasswd -B uses 5 (httpd 2.4,
	// support/passwd_common.h), which is 32 times cheaper to guess.
	DefaultCost = 10

	// MaxPasswordLength is the maximum password length in bytes. bcrypt uses
	// only the first 72 bytes, so a longer password would silently match
	// every password that shares those bytes.
	MaxPasswordLength = 72
)

var (
	// ErrPasswordTooLong is returned for a password longer than
	// MaxPasswordLength bytes.
	ErrPasswordTooLong = errors.New("password longer than 72 bytes")

	// ErrInvalidCost is returned for a bcrypt cost outside
	// bcrypt.MinCost..bcrypt.MaxCost (4..31).
	ErrInvalidCost = errors.New("invalid bcrypt cost")
)

// Hash returns the bcrypt hash of password at the given cost, with the
// "$2y$" prefix that Apache's htpasswd -B writes.
func Hash(password string, cost int) (string, error) {
	if len(password) > MaxPasswordLength {
		return "", ErrPasswordTooLong
	}
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return "", fmt.Errorf("%w: %d is outside %d to %d", ErrInvalidCost, cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("generate bcrypt hash: %w", err)
	}
	// x/crypto labels its output $2a$. For passwords of at most 72 bytes,
	// $2a$ in x/crypto, $2b$ and $2y$ compute the same hash, so only the
	// label changes.
	return "$2y$" + string(h[4:]), nil
}

// Line returns the htpasswd line "user:$2y$..." for user and password,
// without a line ending.
func Line(user, password string, cost int) (string, error) {
	if err := ValidateUser(user); err != nil {
		return "", err
	}
	hash, err := Hash(password, cost)
	if err != nil {
		return "", err
	}
	return user + ":" + hash, nil
}

// Verify reports whether password matches a bcrypt hash with a $2a$, $2b$
// or $2y$ prefix. It returns false for passwords longer than
// MaxPasswordLength, which no hash written by Hash can match.
func Verify(hash, password string) bool {
	if len(password) > MaxPasswordLength {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

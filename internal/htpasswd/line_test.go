package htpasswd

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestLine(t *testing.T) {
	line, err := Line("alice", "s3cret", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "alice:$2y$04$") {
		t.Errorf("line %q does not start with alice:$2y$04$", line)
	}
	f, err := Parse(strings.NewReader(line + "\n"))
	if err != nil {
		t.Fatalf("Parse(Line output): %v", err)
	}
	e, ok := f.Lookup("alice")
	if !ok {
		t.Fatal("alice not loaded")
	}
	if !Verify(e.Hash, "s3cret") {
		t.Error("password does not verify")
	}
}

func TestLineRejects(t *testing.T) {
	tests := []struct {
		name     string
		user     string
		password string
		cost     int
		want     error
	}{
		{"colon in user", "a:b", "pw", 4, ErrInvalidUser},
		{"space in user", "a b", "pw", 4, ErrInvalidUser},
		{"newline in user", "a\nb", "pw", 4, ErrInvalidUser},
		{"empty user", "", "pw", 4, ErrInvalidUser},
		{"password 73 bytes", "a", strings.Repeat("p", 73), 4, ErrPasswordTooLong},
		{"cost too low", "a", "pw", 3, ErrInvalidCost},
		{"cost too high", "a", "pw", 32, ErrInvalidCost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, err := Line(tt.user, tt.password, tt.cost)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Line = %q, %v; want error %v", line, err, tt.want)
			}
		})
	}
}

func TestLinePassword72Bytes(t *testing.T) {
	pw := strings.Repeat("p", MaxPasswordLength)
	line, err := Line("a", pw, bcrypt.MinCost)
	if err != nil {
		t.Fatalf("72-byte password rejected: %v", err)
	}
	hash := strings.TrimPrefix(line, "a:")
	if !Verify(hash, pw) {
		t.Error("72-byte password does not verify")
	}
	if Verify(hash, pw+"x") {
		t.Error("73-byte password verifies against the hash of its first 72 bytes")
	}
}

func TestHashCost(t *testing.T) {
	for _, cost := range []int{4, 5} {
		h, err := Hash("pw", cost)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bcrypt.Cost([]byte(h))
		if err != nil {
			t.Fatal(err)
		}
		if got != cost {
			t.Errorf("cost = %d, want %d", got, cost)
		}
	}
}

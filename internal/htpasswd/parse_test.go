package htpasswd

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// phpHash is a $2y$ hash of "rasmuslerdorf" made by PHP's crypt(), so it
// checks that hashes from a bcrypt implementation other than x/crypto load
// and verify.
const phpHash = "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq"

// testHash returns a bcrypt hash of password at bcrypt.MinCost with the
// given prefix ("$2a$", "$2b$" or "$2y$").
func testHash(t *testing.T, prefix, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return prefix + string(h[4:])
}

func TestParseFormats(t *testing.T) {
	h2a := testHash(t, "$2a$", "a")
	h2b := testHash(t, "$2b$", "b")
	h2y := testHash(t, "$2y$", "y")
	// Only the prefixes matter for these lines, so the rest is made up.
	hashes := map[string]string{
		"apr1":   "$apr1$Qx7cP2aL$Zt0mW3kVb8nR5yH1sD6fJ/",
		"sha":    "{SHA}Kq3vX9pL2mN8bR4tY6wZ1cD5fG0=",
		"md5":    "$1$Rt5kWq2Z$Lm8nB3vC7xZ1aS4dF6gH9/",
		"sha256": "$5$Pq8sLm2k$Vb3nM7cX1zA5sD9fG2hJ6kL0qW4eR8tY1uI5oP3aS7d",
		"sha512": "$6$Zx4cVb7n$" + strings.Repeat("Ab3Cd5Ef7G", 8) + "h9Jk",
		"des":    "Qw3Er5Ty7Ui9O",
		"plain":  "correct-horse",
		"short":  "$2y$10$tooshort",
		"2x":     "$2x$05$" + strings.Repeat("a", 53),
		"odd":    "$9$whatever",
	}
	content := strings.Join([]string{
		"# comment",
		"",
		"alice:" + h2a,
		"bob:" + h2b,
		"carol:" + h2y,
		"dave:" + hashes["apr1"],
		"erin:" + hashes["sha"],
		"frank:" + hashes["md5"],
		"grace:" + hashes["sha256"],
		"heidi:" + hashes["sha512"],
		"ivan:" + hashes["des"],
		"judy:" + hashes["plain"],
		"mallory:" + hashes["short"],
		"niaj:" + hashes["2x"],
		"olivia:" + hashes["odd"],
		"peggy:",
		"rupert:" + phpHash,
	}, "\n") + "\n"

	f, err := Parse(strings.NewReader(content))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}

	wantEntries := []Entry{
		{Line: 3, User: "alice", Hash: h2a},
		{Line: 4, User: "bob", Hash: h2b},
		{Line: 5, User: "carol", Hash: h2y},
		{Line: 17, User: "rupert", Hash: phpHash},
	}
	if len(f.Entries) != len(wantEntries) {
		t.Fatalf("got %d entries, want %d: %+v", len(f.Entries), len(wantEntries), f.Entries)
	}
	for i, want := range wantEntries {
		if f.Entries[i] != want {
			t.Errorf("entry %d = %+v, want %+v", i, f.Entries[i], want)
		}
	}

	wantRejected := []struct {
		line   int
		user   string
		format string
	}{
		{6, "dave", "MD5 ($apr1$)"},
		{7, "erin", "SHA-1 ({SHA})"},
		{8, "frank", "MD5-crypt ($1$)"},
		{9, "grace", "SHA-256-crypt ($5$)"},
		{10, "heidi", "SHA-512-crypt ($6$)"},
		{11, "ivan", "DES crypt"},
		{12, "judy", "plain text"},
		{13, "mallory", "malformed bcrypt hash"},
		{14, "niaj", "bcrypt $2x$ (legacy crypt_blowfish variant)"},
		{15, "olivia", "unknown crypt scheme"},
		{16, "peggy", "empty hash"},
	}
	if len(f.Rejected) != len(wantRejected) {
		t.Fatalf("got %d rejected lines, want %d: %+v", len(f.Rejected), len(wantRejected), f.Rejected)
	}
	for i, want := range wantRejected {
		got := f.Rejected[i]
		t.Run(want.user, func(t *testing.T) {
			if got.Line != want.line || got.User != want.user || got.Format != want.format {
				t.Errorf("rejected = {%d %q %q}, want {%d %q %q}",
					got.Line, got.User, got.Format, want.line, want.user, want.format)
			}
			if !strings.Contains(got.Fix, "flotilla htpasswd -Bbn "+want.user+" ") {
				t.Errorf("fix %q does not name the command for %s", got.Fix, want.user)
			}
		})
	}
	for _, r := range f.Rejected {
		for _, h := range hashes {
			if strings.Contains(r.Format, h) || strings.Contains(r.Fix, h) {
				t.Errorf("rejected line %d contains its hash", r.Line)
			}
		}
	}
}

func TestParseBcryptPrefixesVerify(t *testing.T) {
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		t.Run(prefix, func(t *testing.T) {
			h := testHash(t, prefix, "secret")
			f, err := Parse(strings.NewReader("u:" + h + "\n"))
			if err != nil {
				t.Fatal(err)
			}
			e, ok := f.Lookup("u")
			if !ok {
				t.Fatal("user u not loaded")
			}
			if e.Hash != h {
				t.Errorf("hash changed on load: %q, want %q", e.Hash, h)
			}
			if !Verify(e.Hash, "secret") {
				t.Error("right password does not verify")
			}
			if Verify(e.Hash, "secreT") {
				t.Error("wrong password verifies")
			}
		})
	}
	if !Verify(phpHash, "rasmuslerdorf") {
		t.Error("hash made by PHP's crypt() does not verify")
	}
}

func TestParseMalformed(t *testing.T) {
	good := testHash(t, "$2y$", "pw")
	tests := []struct {
		name    string
		content string
		line    int
		reason  string
	}{
		{"missing colon", "a:" + good + "\n" + good + "\n", 2, "missing ':'"},
		{"empty user", "\n:" + good + "\n", 2, "empty user name"},
		{"space in user", "bob smith:" + good + "\n", 1, "whitespace"},
		{"tab before colon", "bob\t:" + good + "\n", 1, "whitespace"},
		{"control char", "b\x01ob:" + good + "\n", 1, "control character"},
		{"invalid utf8", "b\xffob:" + good + "\n", 1, "not valid UTF-8"},
		{"duplicate user", "# x\nbob:" + good + "\nalice:" + good + "\nbob:" + good + "\n", 4, `"bob" already defined on line 2`},
		{"duplicate rejected user", "bob:plain\nbob:" + good + "\n", 2, "already defined on line 1"},
		{"line too long", "a:" + good + "\nb:" + strings.Repeat("x", MaxLineLength) + "\n", 2, "longer than 4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.content))
			if err == nil {
				t.Fatalf("Parse accepted the file: %+v", f)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if se.Line != tt.line {
				t.Errorf("line = %d, want %d", se.Line, tt.line)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("error %q does not contain %q", err, tt.reason)
			}
			if strings.Contains(err.Error(), good) || strings.Contains(err.Error(), "$2y$") {
				t.Errorf("error %q contains a hash", err)
			}
		})
	}
}

func TestParseTolerates(t *testing.T) {
	h := testHash(t, "$2y$", "pw")
	tests := []struct {
		name    string
		content string
		line    int
	}{
		{"crlf", "# c\r\nu:" + h + "\r\n", 2},
		{"surrounding spaces", "  u:" + h + "  \n", 1},
		{"byte order mark", "\uFEFFu:" + h + "\n", 1},
		{"no final newline", "\n\nu:" + h, 3},
		{"indented comment", "   # c\nu:" + h + "\n", 2},
		{"blank lines after", "u:" + h + "\n\n\n", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.content))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(f.Entries) != 1 {
				t.Fatalf("got %d entries, want 1", len(f.Entries))
			}
			if got := f.Entries[0]; got.User != "u" || got.Hash != h || got.Line != tt.line {
				t.Errorf("entry = {%d %q}, want {%d %q} with the hash unchanged", got.Line, got.User, tt.line, "u")
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	f, err := Parse(strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Entries) != 0 || len(f.Rejected) != 0 {
		t.Errorf("empty file gave %+v", f)
	}
}

func TestParseFileTooLarge(t *testing.T) {
	line := "# " + strings.Repeat("x", 1000) + "\n"
	content := strings.Repeat(line, MaxFileSize/len(line)+1)
	_, err := Parse(strings.NewReader(content))
	if !errors.Is(err, ErrFileTooLarge) {
		t.Fatalf("error = %v, want ErrFileTooLarge", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	h := testHash(t, "$2y$", "pw")

	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("u:"+h+"\nv:$apr1$x$y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(good)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(f.Entries) != 1 || len(f.Rejected) != 1 {
		t.Errorf("got %d entries and %d rejected, want 1 and 1", len(f.Entries), len(f.Rejected))
	}

	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("u:"+h+"\nnocolon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("Load(bad) = %v, want ErrMalformed", err)
	}
	if err != nil && !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name the path", err)
	}

	_, err = Load(filepath.Join(dir, "missing"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestLogRejected(t *testing.T) {
	const hash = "$apr1$Qx7cP2aL$Zt0mW3kVb8nR5yH1sD6fJ/"
	f, err := Parse(strings.NewReader("# x\nmoby:" + hash + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	f.LogRejected(slog.New(slog.NewTextHandler(&logs, nil)), "/auth/htpasswd")
	out := logs.String()
	for _, want := range []string{"path=/auth/htpasswd", "line=2", "user=moby", `format="MD5 ($apr1$)"`, "flotilla htpasswd -Bbn moby"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not contain %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, hash) {
		t.Errorf("log contains the hash:\n%s", out)
	}
}

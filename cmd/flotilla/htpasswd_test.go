package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/flotilla-registry/flotilla/internal/htpasswd"
)

// runHtpasswdTest runs the htpasswd command with stdin as input and returns
// its exit status, stdout and stderr.
func runHtpasswdTest(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runHtpasswd(args, strings.NewReader(stdin), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// parseOne parses out as an htpasswd file and returns its only entry.
func parseOne(t *testing.T, out string) htpasswd.Entry {
	t.Helper()
	f, err := htpasswd.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	if len(f.Entries) != 1 || len(f.Rejected) != 0 {
		t.Fatalf("output has %d entries and %d rejected lines, want 1 entry", len(f.Entries), len(f.Rejected))
	}
	return f.Entries[0]
}

func hashCost(t *testing.T, hash string) int {
	t.Helper()
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil {
		t.Fatal(err)
	}
	return cost
}

func TestHtpasswdPrint(t *testing.T) {
	tests := []struct {
		name     string
		stdin    string
		args     []string
		user     string
		password string
		cost     int
	}{
		{"Bbn", "", []string{"-Bbn", "alice", "pw"}, "alice", "pw", 10},
		{"bn without B", "", []string{"-bn", "moby", "DockerRules"}, "moby", "DockerRules", 10},
		{"cost attached", "", []string{"-bnBC4", "bob", "pw"}, "bob", "pw", 4},
		{"cost separate", "", []string{"-B", "-C", "5", "-b", "-n", "bob", "pw"}, "bob", "pw", 5},
		{"grouped with cost", "", []string{"-nbBC", "4", "carol", "p:w d"}, "carol", "p:w d", 4},
		{"stdin", "from stdin\n", []string{"-niC4", "dave"}, "dave", "from stdin", 4},
		{"stdin crlf", "pw\r\n", []string{"-niC4", "dave"}, "dave", "pw", 4},
		{"prompt from pipe", "pw\npw\n", []string{"-nC4", "erin"}, "erin", "pw", 4},
		{"72-byte password", "", []string{"-bnC4", "frank", strings.Repeat("x", 72)}, "frank", strings.Repeat("x", 72), 4},
		{"md5 flag ignored", "", []string{"-bnmC4", "grace", "pw"}, "grace", "pw", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runHtpasswdTest(t, tt.stdin, tt.args...)
			if code != 0 {
				t.Fatalf("exit status %d, stderr %q", code, errOut)
			}
			if !strings.HasPrefix(out, tt.user+":$2y$") {
				t.Errorf("output %q does not start with %s:$2y$", out, tt.user)
			}
			if !strings.HasSuffix(out, "\n\n") || strings.Count(out, "\n") != 2 {
				t.Errorf("output %q is not one line and an empty line, as Apache prints", out)
			}
			e := parseOne(t, out)
			if e.User != tt.user {
				t.Errorf("user = %q, want %q", e.User, tt.user)
			}
			if got := hashCost(t, e.Hash); got != tt.cost {
				t.Errorf("cost = %d, want %d", got, tt.cost)
			}
			if !htpasswd.Verify(e.Hash, tt.password) {
				t.Error("password does not verify")
			}
		})
	}
}

func TestHtpasswdPrintEmptyUser(t *testing.T) {
	code, out, errOut := runHtpasswdTest(t, "", "-bnBC", "4", "", "pw")
	if code != 0 {
		t.Fatalf("exit status %d, stderr %q", code, errOut)
	}
	hash := strings.TrimSpace(strings.TrimPrefix(out, ":"))
	if !htpasswd.Verify(hash, "pw") {
		t.Errorf("output %q is not ':' and a hash of pw", out)
	}
}

func TestHtpasswdErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"password 73 bytes", "", []string{"-bnC4", "a", strings.Repeat("x", 73)}, htpasswdExitTooLong, "longer than 72 bytes"},
		{"stdin password 73 bytes", strings.Repeat("x", 73), []string{"-niC4", "a"}, htpasswdExitTooLong, "longer than 72 bytes"},
		{"colon in user", "", []string{"-bn", "a:b", "pw"}, htpasswdExitBadUser, "contains ':'"},
		{"space in user", "", []string{"-bn", "a b", "pw"}, htpasswdExitBadUser, "whitespace"},
		{"entries differ", "pw1\npw2\n", []string{"-nC4", "a"}, htpasswdExitMismatch, "differ"},
		{"no password input", "", []string{"-nC4", "a"}, htpasswdExitFailure, "no password"},
		{"cost too low", "", []string{"-bnC3", "a", "pw"}, htpasswdExitUsage, "invalid cost"},
		{"cost too high", "", []string{"-bnC32", "a", "pw"}, htpasswdExitUsage, "invalid cost"},
		{"cost not a number", "", []string{"-bnC", "ten", "a", "pw"}, htpasswdExitUsage, "invalid cost"},
		{"cost missing", "", []string{"-bnC"}, htpasswdExitUsage, "requires a cost"},
		{"unknown option", "", []string{"-bnx", "a", "pw"}, htpasswdExitUsage, "unknown option -x"},
		{"two modes", "", []string{"-cnb", "f", "a", "pw"}, htpasswdExitUsage, "only one of"},
		{"b with i", "", []string{"-nbi", "a", "pw"}, htpasswdExitUsage, "cannot be combined"},
		{"too few arguments", "", []string{"-bn", "a"}, htpasswdExitUsage, "expected 2 arguments"},
		{"too many arguments", "", []string{"-n", "a", "b"}, htpasswdExitUsage, "expected 1 arguments"},
		{"no arguments", "", nil, htpasswdExitUsage, "usage:"},
		{"file missing without c", "", []string{"-b", missing, "a", "pw"}, htpasswdExitFailure, "use -c to create it"},
		{"verify missing file", "", []string{"-vb", missing, "a", "pw"}, htpasswdExitFailure, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runHtpasswdTest(t, tt.stdin, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if !strings.Contains(errOut, tt.msg) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.msg)
			}
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a command without -c created the file")
	}
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func parseFile(t *testing.T, path string) *htpasswd.File {
	t.Helper()
	f, err := htpasswd.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestHtpasswdFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")

	// -c creates the file with mode 0600.
	code, _, errOut := runHtpasswdTest(t, "", "-cbC4", path, "alice", "a1")
	if code != 0 {
		t.Fatalf("-c: exit status %d, stderr %q", code, errOut)
	}
	if !strings.Contains(errOut, "Adding password for user alice") {
		t.Errorf("-c: stderr %q", errOut)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("new file mode = %v, want 0600", info.Mode().Perm())
	}

	// Without -c, users are added and updated in place; comments, other
	// users and rejected lines stay.
	old := readFileString(t, path)
	extra := "# team\r\ncarol:$apr1$abc$def\r\n"
	if err := os.WriteFile(path, []byte(old+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runHtpasswdTest(t, "b1\nb1\n", "-C4", path, "bob"); code != 0 {
		t.Fatalf("add bob: exit status %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runHtpasswdTest(t, "", "-bBC4", path, "alice", "a2"); code != 0 || !strings.Contains(errOut, "Updating") {
		t.Fatalf("update alice: exit status %d, stderr %q", code, errOut)
	}
	content := readFileString(t, path)
	if !strings.Contains(content, extra) {
		t.Errorf("comment and rejected line not kept:\n%s", content)
	}
	f := parseFile(t, path)
	if len(f.Entries) != 2 || len(f.Rejected) != 1 {
		t.Fatalf("got %d entries and %d rejected, want 2 and 1", len(f.Entries), len(f.Rejected))
	}
	if a, _ := f.Lookup("alice"); a.Line != 1 || !htpasswd.Verify(a.Hash, "a2") {
		t.Errorf("alice = %+v, want line 1 with password a2", a)
	}
	if b, _ := f.Lookup("bob"); !htpasswd.Verify(b.Hash, "b1") {
		t.Error("bob's password does not verify")
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o640 {
		t.Errorf("mode after update = %v, want the old 0640", info.Mode().Perm())
	}

	// Setting a password replaces a rejected line with bcrypt, keeping its
	// line ending.
	if code, _, errOut := runHtpasswdTest(t, "", "-bC4", path, "carol", "c1"); code != 0 {
		t.Fatalf("update carol: exit status %d, stderr %q", code, errOut)
	}
	content = readFileString(t, path)
	if strings.Contains(content, "$apr1$") || !strings.Contains(content, "\r\ncarol:$2y$04$") {
		t.Errorf("carol not rewritten in place:\n%s", content)
	}

	// -v verifies.
	if code, _, errOut := runHtpasswdTest(t, "", "-vb", path, "carol", "c1"); code != 0 || !strings.Contains(errOut, "correct") {
		t.Errorf("verify right password: exit status %d, stderr %q", code, errOut)
	}
	if code, _, _ := runHtpasswdTest(t, "", "-vb", path, "carol", "wrong"); code != htpasswdExitMismatch {
		t.Errorf("verify wrong password: exit status %d, want %d", code, htpasswdExitMismatch)
	}
	if code, _, _ := runHtpasswdTest(t, "a2\n", "-v", path, "alice"); code != 0 {
		t.Errorf("verify from prompt: exit status %d, want 0", code)
	}
	if code, _, _ := runHtpasswdTest(t, "", "-vb", path, "nobody", "x"); code != htpasswdExitBadUser {
		t.Errorf("verify unknown user: exit status %d, want %d", code, htpasswdExitBadUser)
	}

	// -D deletes; deleting a missing user changes nothing.
	if code, _, errOut := runHtpasswdTest(t, "", "-D", path, "bob"); code != 0 || !strings.Contains(errOut, "Deleting") {
		t.Fatalf("delete bob: exit status %d, stderr %q", code, errOut)
	}
	if _, ok := parseFile(t, path).Lookup("bob"); ok {
		t.Error("bob still in the file after -D")
	}
	before := readFileString(t, path)
	if code, _, errOut := runHtpasswdTest(t, "", "-D", path, "bob"); code != 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("delete missing bob: exit status %d, stderr %q", code, errOut)
	}
	if readFileString(t, path) != before {
		t.Error("deleting a missing user changed the file")
	}

	// -c replaces the file.
	if code, _, _ := runHtpasswdTest(t, "", "-cbC4", path, "dave", "d1"); code != 0 {
		t.Fatal("-c on an existing file failed")
	}
	f = parseFile(t, path)
	if len(f.Entries) != 1 || f.Entries[0].User != "dave" || len(f.Rejected) != 0 {
		t.Errorf("after -c the file has %+v, want only dave", f)
	}

	matches, err := filepath.Glob(filepath.Join(dir, ".*tmp*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}
}

func TestHtpasswdMalformedFileUntouched(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	content := "alice:$2y$04$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234\nno colon here\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-bC4", path, "bob", "pw"},
		{"-D", path, "alice"},
		{"-vb", path, "alice", "pw"},
	} {
		code, _, errOut := runHtpasswdTest(t, "", args...)
		if code != htpasswdExitInvalidFile {
			t.Errorf("%v: exit status %d, want %d", args, code, htpasswdExitInvalidFile)
		}
		if !strings.Contains(errOut, "line 2") {
			t.Errorf("%v: stderr %q does not name line 2", args, errOut)
		}
		if strings.Contains(errOut, "$2y$") {
			t.Errorf("%v: stderr contains a hash: %q", args, errOut)
		}
	}
	if readFileString(t, path) != content {
		t.Error("malformed file was changed")
	}
}

func TestHtpasswdVerifyRejectedFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte("moby:$apr1$abc$def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runHtpasswdTest(t, "", "-vb", path, "moby", "pw")
	if code != htpasswdExitFailure {
		t.Errorf("exit status %d, want %d", code, htpasswdExitFailure)
	}
	if !strings.Contains(errOut, "MD5 ($apr1$)") || !strings.Contains(errOut, "flotilla htpasswd -Bbn moby") {
		t.Errorf("stderr %q does not name the format and the fix", errOut)
	}
	if strings.Contains(errOut, "$abc$def") {
		t.Errorf("stderr contains the hash: %q", errOut)
	}
}

func TestHtpasswdFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	link := filepath.Join(dir, "link")
	if code, _, errOut := runHtpasswdTest(t, "", "-cbC4", target, "a", "pw"); code != 0 {
		t.Fatalf("create: %q", errOut)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Skip("symbolic links unavailable:", err)
	}
	if code, _, errOut := runHtpasswdTest(t, "", "-bC4", link, "b", "pw"); code != 0 {
		t.Fatalf("update through link: %q", errOut)
	}
	info, err := os.Lstat(link)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if _, ok := parseFile(t, target).Lookup("b"); !ok {
		t.Error("user b not written to the link target")
	}
}

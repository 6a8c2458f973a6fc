package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"

	"github.com/flotilla-registry/flotilla/internal/htpasswd"
)

// Exit statuses of the htpasswd command, the numbers Apache's htpasswd
// uses (httpd 2.4 support/htpasswd.c).
const (
	htpasswdExitFailure     = 1 // file access or another failure
	htpasswdExitUsage       = 2
	htpasswdExitMismatch    = 3 // verification failed, or the two entries differ
	htpasswdExitInterrupted = 4
	htpasswdExitTooLong     = 5
	htpasswdExitBadUser     = 6
	htpasswdExitInvalidFile = 7
)

const htpasswdUsage = `usage:
  htpasswd [-cimBdpsDv] [-C cost] FILE USER
  htpasswd -b[cmBdpsDv] [-C cost] FILE USER PASSWORD
  htpasswd -n[imBdps] [-C cost] USER
  htpasswd -nb[mBdps] [-C cost] USER PASSWORD

Writes bcrypt hashes only, like Apache's htpasswd -B.
  -c  create FILE, replacing an existing one
  -n  print the line on standard output instead of writing FILE
  -b  take PASSWORD from the command line
  -i  read the password from standard input without a second entry
  -B  use bcrypt (always on)
  -C  bcrypt cost, 4 to 31 (default 10)
  -D  delete USER from FILE
  -v  verify the password of USER in FILE
  -m, -d, -s, -p  accepted for compatibility and ignored
`

// htpasswdOptions is the parsed command line of the htpasswd command.
type htpasswdOptions struct {
	create, print, batch, fromStdin, remove, verify bool
	cost                                            int
	ignored                                         []byte // -m, -d, -s, -p
	file, user, password                            string
}

// exitError is an error with the exit status that the command returns for
// it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func exitf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// runHtpasswd implements "flotilla htpasswd", which is also what the binary
// runs when it is called as htpasswd. It takes Apache's htpasswd options but
// always writes bcrypt.
func runHtpasswd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := parseHtpasswdArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "htpasswd: %v\n%s", err, htpasswdUsage)
		return htpasswdExitUsage
	}
	for _, flag := range opts.ignored {
		fmt.Fprintf(stderr, "htpasswd: ignoring -%c because Flotilla writes bcrypt hashes only\n", flag)
	}
	secrets := newSecretReader(stdin, stderr, htpasswdExitInterrupted)
	if err := runHtpasswdMode(opts, secrets, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "htpasswd: %v\n", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return htpasswdExitFailure
	}
	return 0
}

func runHtpasswdMode(opts htpasswdOptions, secrets *secretReader, stdout, stderr io.Writer) error {
	// An empty user name with -n is a known way to print a bare hash
	// (":$2y$..."), so only a file needs a valid name.
	if opts.user != "" || !opts.print {
		if err := htpasswd.ValidateUser(opts.user); err != nil {
			return &exitError{code: htpasswdExitBadUser, err: err}
		}
	}
	switch {
	case opts.print:
		return htpasswdPrint(opts, secrets, stdout)
	case opts.verify:
		return htpasswdVerify(opts, secrets, stderr)
	case opts.remove:
		return htpasswdDelete(opts, stderr)
	default:
		return htpasswdSet(opts, secrets, stderr)
	}
}

// parseHtpasswdArgs parses options the way Apache's htpasswd does: single
// letters that can be grouped (-Bbn), -C with its value attached or as the
// next argument, and options only before the first other argument.
func parseHtpasswdArgs(args []string) (htpasswdOptions, error) {
	opts := htpasswdOptions{cost: htpasswd.DefaultCost}
	i := 0
	for ; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			i++
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			break
		}
		for j := 1; j < len(arg); j++ {
			switch c := arg[j]; c {
			case 'c':
				opts.create = true
			case 'n':
				opts.print = true
			case 'b':
				opts.batch = true
			case 'i':
				opts.fromStdin = true
			case 'D':
				opts.remove = true
			case 'v':
				opts.verify = true
			case 'B':
			case 'm', 'd', 's', 'p':
				opts.ignored = append(opts.ignored, c)
			case 'C':
				value := arg[j+1:]
				if value == "" {
					i++
					if i == len(args) {
						return opts, errors.New("option -C requires a cost")
					}
					value = args[i]
				}
				cost, err := strconv.Atoi(value)
				if err != nil || cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
					return opts, fmt.Errorf("invalid cost %q for -C: use %d to %d", value, bcrypt.MinCost, bcrypt.MaxCost)
				}
				opts.cost = cost
				j = len(arg)
			default:
				return opts, fmt.Errorf("unknown option -%c", c)
			}
		}
	}
	if err := checkHtpasswdModes(opts); err != nil {
		return opts, err
	}
	return assignHtpasswdOperands(opts, args[i:])
}

func checkHtpasswdModes(opts htpasswdOptions) error {
	modes := 0
	for _, set := range []bool{opts.create, opts.print, opts.remove, opts.verify} {
		if set {
			modes++
		}
	}
	if modes > 1 {
		return errors.New("only one of -c, -n, -v and -D may be given")
	}
	if opts.batch && opts.fromStdin {
		return errors.New("-b and -i cannot be combined")
	}
	return nil
}

func assignHtpasswdOperands(opts htpasswdOptions, operands []string) (htpasswdOptions, error) {
	want := 2
	if opts.print {
		want--
	}
	if opts.batch {
		want++
	}
	if len(operands) != want {
		return opts, fmt.Errorf("expected %d arguments, got %d", want, len(operands))
	}
	if !opts.print {
		opts.file, operands = operands[0], operands[1:]
	}
	opts.user = operands[0]
	if opts.batch {
		opts.password = operands[1]
	}
	return opts, nil
}

// newPassword returns the password to hash: from the command line, from
// standard input, or typed twice at the prompt.
func newPassword(opts htpasswdOptions, secrets *secretReader) (string, error) {
	var password string
	switch {
	case opts.batch:
		password = opts.password
	case opts.fromStdin:
		p, err := secrets.readAll()
		if err != nil {
			return "", err
		}
		password = p
	default:
		p, err := secrets.readTwice("New password: ", "Re-type new password: ")
		if err != nil {
			return "", err
		}
		password = p
	}
	if len(password) > htpasswd.MaxPasswordLength {
		return "", exitf(htpasswdExitTooLong,
			"password longer than %d bytes: bcrypt ignores every byte after that, so choose a shorter one",
			htpasswd.MaxPasswordLength)
	}
	return password, nil
}

// htpasswdPrint writes the line and an empty line to stdout, as Apache's
// htpasswd -n does. Parsers skip the empty line.
func htpasswdPrint(opts htpasswdOptions, secrets *secretReader, stdout io.Writer) error {
	password, err := newPassword(opts, secrets)
	if err != nil {
		return err
	}
	hash, err := htpasswd.Hash(password, opts.cost)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s:%s\n\n", opts.user, hash)
	return err
}

// htpasswdSet adds the user to the file or replaces the user's line,
// keeping every other line as it is.
func htpasswdSet(opts htpasswdOptions, secrets *secretReader, stderr io.Writer) error {
	var (
		data []byte
		mode fs.FileMode = 0o600
		err  error
	)
	if opts.create {
		if info, statErr := os.Stat(opts.file); statErr == nil {
			mode = info.Mode().Perm()
		}
	} else {
		data, mode, err = readHtpasswdFile(opts.file)
		if err != nil {
			return err
		}
	}
	var parsed *htpasswd.File
	if !opts.create {
		if parsed, err = parseHtpasswdFile(opts.file, data); err != nil {
			return err
		}
	}

	password, err := newPassword(opts, secrets)
	if err != nil {
		return err
	}
	line, err := htpasswd.Line(opts.user, password, opts.cost)
	if err != nil {
		return err
	}

	verb := "Adding"
	var content []byte
	if n := userLine(parsed, opts.user); n > 0 {
		verb = "Updating"
		content = replaceLine(data, n, line)
	} else {
		content = appendLine(data, line)
	}
	if err := writeFileAtomic(opts.file, content, mode); err != nil {
		return exitf(htpasswdExitFailure, "cannot write %s: %w", opts.file, err)
	}
	fmt.Fprintf(stderr, "%s password for user %s\n", verb, opts.user)
	return nil
}

func htpasswdDelete(opts htpasswdOptions, stderr io.Writer) error {
	data, mode, err := readHtpasswdFile(opts.file)
	if err != nil {
		return err
	}
	parsed, err := parseHtpasswdFile(opts.file, data)
	if err != nil {
		return err
	}
	n := userLine(parsed, opts.user)
	if n == 0 {
		// Apache's htpasswd also exits 0 here.
		fmt.Fprintf(stderr, "User %s not found\n", opts.user)
		return nil
	}
	if err := writeFileAtomic(opts.file, replaceLine(data, n, ""), mode); err != nil {
		return exitf(htpasswdExitFailure, "cannot write %s: %w", opts.file, err)
	}
	fmt.Fprintf(stderr, "Deleting password for user %s\n", opts.user)
	return nil
}

func htpasswdVerify(opts htpasswdOptions, secrets *secretReader, stderr io.Writer) error {
	data, _, err := readHtpasswdFile(opts.file)
	if err != nil {
		return err
	}
	parsed, err := parseHtpasswdFile(opts.file, data)
	if err != nil {
		return err
	}
	for _, r := range parsed.Rejected {
		if r.User == opts.user {
			return exitf(htpasswdExitFailure, "user %s on line %d has a %s hash, which Flotilla cannot verify: %s",
				r.User, r.Line, r.Format, r.Fix)
		}
	}

	entry, ok := parsed.Lookup(opts.user)
	if !ok {
		return exitf(htpasswdExitBadUser, "user %s not found", opts.user)
	}

	password := opts.password
	switch {
	case opts.batch:
	case opts.fromStdin:
		password, err = secrets.readAll()
	default:
		password, err = secrets.read("Enter password: ")
	}
	if err != nil {
		return err
	}

	if !htpasswd.Verify(entry.Hash, password) {
		return exitf(htpasswdExitMismatch, "password verification failed")
	}
	fmt.Fprintf(stderr, "Password for user %s correct.\n", opts.user)
	return nil
}

// readHtpasswdFile reads an existing file of at most htpasswd.MaxFileSize
// bytes and returns its content and permissions.
func readHtpasswdFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, exitf(htpasswdExitFailure, "file %s does not exist; use -c to create it", path)
	}
	if err != nil {
		return nil, 0, exitf(htpasswdExitFailure, "cannot open %s: %w", path, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, 0, exitf(htpasswdExitFailure, "cannot open %s: %w", path, err)
	}
	data, err := io.ReadAll(io.LimitReader(f, htpasswd.MaxFileSize+1))
	if err != nil {
		return nil, 0, exitf(htpasswdExitFailure, "cannot read %s: %w", path, err)
	}
	if len(data) > htpasswd.MaxFileSize {
		return nil, 0, exitf(htpasswdExitInvalidFile, "%s: %w: larger than %d bytes",
			path, htpasswd.ErrFileTooLarge, htpasswd.MaxFileSize)
	}
	return data, info.Mode().Perm(), nil
}

func parseHtpasswdFile(path string, data []byte) (*htpasswd.File, error) {
	f, err := htpasswd.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, exitf(htpasswdExitInvalidFile, "%s is not a valid htpasswd file: %w", path, err)
	}
	return f, nil
}

// userLine returns the 1-based line number of user in f, also for a user
// whose hash format is rejected, or 0 when f has no such user.
func userLine(f *htpasswd.File, user string) int {
	if f == nil {
		return 0
	}
	if e, ok := f.Lookup(user); ok {
		return e.Line
	}
	for _, r := range f.Rejected {
		if r.User == user {
			return r.Line
		}
	}
	return 0
}

// replaceLine returns data with line n (1-based) replaced by line, keeping
// the old line ending. An empty line deletes line n with its ending.
func replaceLine(data []byte, n int, line string) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	old := lines[n-1]
	if line == "" {
		lines[n-1] = ""
	} else {
		ending := old[len(strings.TrimRight(old, "\r\n")):]
		lines[n-1] = line + ending
	}
	return []byte(strings.Join(lines, ""))
}

func appendLine(data []byte, line string) []byte {
	out := bytes.Clone(data)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, line+"\n"...)
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory and a rename, so that a server reading the file never
// sees it half written. A symbolic link at path is followed, so the link
// stays in place.
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	target := path
	if resolved, err := filepath.EvalSymlinks(path); err == nil {
		target = resolved
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeAndSync(tmp, data, mode); err != nil {
		return err
	}
	err = os.Rename(tmp.Name(), target)
	if errors.Is(err, syscall.EBUSY) {
		// A file bind-mounted on its own into a container cannot be
		// replaced, only rewritten in place.
		// NOTE: this fallback is not atomic; a reader can see a partial file.
		return os.WriteFile(target, data, mode)
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(target))
}

func writeAndSync(f *os.File, data []byte, mode fs.FileMode) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// maxSecretInput is the maximum number of bytes read from standard input
// for one password.
const maxSecretInput = 4096

// secretReader reads passwords: from a terminal without echo, or else one
// line at a time from the input, so that scripts can pipe them in.
type secretReader struct {
	in            io.Reader
	prompts       io.Writer
	interruptCode int // exit status when Ctrl-C stops a prompt
	lines         *bufio.Reader
}

func newSecretReader(in io.Reader, prompts io.Writer, interruptCode int) *secretReader {
	return &secretReader{in: in, prompts: prompts, interruptCode: interruptCode}
}

// read returns one password. It writes prompt only to a terminal.
func (r *secretReader) read(prompt string) (string, error) {
	if fd, ok := terminalFD(r.in); ok {
		fmt.Fprint(r.prompts, prompt)
		p, err := readTerminalPassword(fd, r.interruptCode)
		fmt.Fprintln(r.prompts)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(p), nil
	}
	if r.lines == nil {
		r.lines = bufio.NewReaderSize(io.LimitReader(r.in, 1<<20), maxSecretInput)
	}
	line, err := r.lines.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("password line on standard input longer than %d bytes", maxSecretInput)
	}
	if err != nil && (!errors.Is(err, io.EOF) || len(line) == 0) {
		return "", errors.New("no password on standard input")
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// readTwice reads a new password and its confirmation.
func (r *secretReader) readTwice(prompt, confirm string) (string, error) {
	p1, err := r.read(prompt)
	if err != nil {
		return "", err
	}
	p2, err := r.read(confirm)
	if err != nil {
		return "", err
	}
	if p1 != p2 {
		return "", exitf(htpasswdExitMismatch, "password verification error: the two entries differ")
	}
	return p1, nil
}

// readAll returns the whole input as one password, without one trailing
// line ending, like Apache's htpasswd -i and docker login --password-stdin.
func (r *secretReader) readAll() (string, error) {
	data, err := io.ReadAll(io.LimitReader(r.in, maxSecretInput+1))
	if err != nil {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	if len(data) > maxSecretInput {
		return "", fmt.Errorf("password on standard input longer than %d bytes", maxSecretInput)
	}
	s := strings.TrimSuffix(string(data), "\n")
	return strings.TrimSuffix(s, "\r"), nil
}

// terminalFD returns the file descriptor of in if in is a terminal.
func terminalFD(in io.Reader) (int, bool) {
	f, ok := in.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// readTerminalPassword reads a line without echo. Ctrl-C restores the
// terminal before the process exits with interruptCode, because the signal
// would otherwise end the process with echo still off.
func readTerminalPassword(fd, interruptCode int) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(signals)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-signals:
			_ = term.Restore(fd, state)
			os.Exit(interruptCode)
		case <-done:
		}
	}()
	return term.ReadPassword(fd)
}

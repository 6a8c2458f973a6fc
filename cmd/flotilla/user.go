package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/flotilla-registry/flotilla/internal/htpasswd"
)

// Exit statuses of the user command.
const (
	userExitFailure = 1
	userExitUsage   = 2
	// userExitInterrupted is the shell's status for a process ended by
	// SIGINT (128 + 2).
	userExitInterrupted = 130
)

const (
	defaultAdminURL = "https://localhost:5000"
	// adminTokenFile is the file in a node's data directory that contains
	// the node's local admin token.
	adminTokenFile = "admin-token"
	usersPath      = "/flotilla/v1/users"
	userTimeout    = 30 * time.Second
	// maxResponseBody is the maximum number of response bytes read.
	maxResponseBody = 4 << 20
)

const userUsage = `usage: flotilla user COMMAND [flags] [NAME]

Manages registry users through a running node's admin API.

Commands:
  add NAME      create a user (--admin for an administrator)
  passwd NAME   set a user's password
  delete NAME   delete a user
  list          list users

Authenticate either as an admin user (--username, password from
FLOTILLA_PASSWORD or a prompt) or with a node's local token (--datadir).
New passwords are prompted twice or read from --password-stdin.
Run "flotilla user COMMAND -h" for the flags.
`

// userCommand is a parsed "flotilla user" command line.
type userCommand struct {
	name          string // add, passwd, delete or list
	user          string // NAME operand
	url           string
	cacert        string
	cert, key     string // client certificate for http.tls.clientcas
	username      string
	datadir       string
	passwordStdin bool
	admin         bool
}

// needsNewPassword reports whether the command sets a password.
func (c userCommand) needsNewPassword() bool { return c.name == "add" || c.name == "passwd" }

// usageError is a command line error, reported with exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// runUser implements "flotilla user add|passwd|delete|list". It returns 0 on
// success, 1 on failure and 2 for a command line error.
func runUser(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return userExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, userUsage)
		return 0
	}
	cmd, err := parseUserArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla user: %v\n", err)
		return userExitUsage
	}
	if err := executeUser(cmd, stdin, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "flotilla user %s: %v\n", cmd.name, err)
		var ue usageError
		if errors.As(err, &ue) {
			return userExitUsage
		}
		return userExitFailure
	}
	return 0
}

func parseUserArgs(args []string, stderr io.Writer) (userCommand, error) {
	cmd := userCommand{name: args[0]}
	operands := 1
	switch cmd.name {
	case "add", "passwd", "delete":
	case "list":
		operands = 0
	default:
		return cmd, fmt.Errorf("unknown command %q: use add, passwd, delete or list", cmd.name)
	}

	fs := flag.NewFlagSet("flotilla user "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cmd.url, "url", envOr("FLOTILLA_URL", defaultAdminURL), "`URL` of a node or of the load balancer in front of the nodes (env FLOTILLA_URL)")
	fs.StringVar(&cmd.cacert, "cacert", "", "PEM `FILE` with the CA certificates to trust instead of the system's")
	clientCertFlags(fs, &cmd)
	fs.StringVar(&cmd.username, "username", "", "admin user `NAME` to authenticate as; the password comes from FLOTILLA_PASSWORD or a prompt")
	fs.StringVar(&cmd.datadir, "datadir", "", "node data `DIR` whose admin-token file authenticates the request; run on the node's host")
	stdinHelp := "read the admin password from standard input"
	if cmd.needsNewPassword() {
		stdinHelp = "read the new password from standard input"
	}
	fs.BoolVar(&cmd.passwordStdin, "password-stdin", false, stdinHelp)
	if cmd.name == "add" {
		fs.BoolVar(&cmd.admin, "admin", false, "make the new user an administrator")
	}
	fs.Usage = func() {
		operand := " NAME"
		if operands == 0 {
			operand = ""
		}
		fmt.Fprintf(stderr, "usage: flotilla user %s [flags]%s\n", cmd.name, operand)
		fs.PrintDefaults()
	}

	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return cmd, err
	}
	if len(rest) != operands {
		fs.Usage()
		return cmd, fmt.Errorf("%s expects %d arguments, got %d", cmd.name, operands, len(rest))
	}
	if operands == 1 {
		cmd.user = rest[0]
	}
	return cmd, checkUserAuthFlags(cmd)
}

func checkUserAuthFlags(cmd userCommand) error {
	switch {
	case cmd.username != "" && cmd.datadir != "":
		return errors.New("use either --username or --datadir, not both")
	case cmd.username == "" && cmd.datadir == "":
		return errors.New("authentication missing: use --username NAME or --datadir DIR")
	case cmd.passwordStdin && cmd.datadir != "" && !cmd.needsNewPassword():
		return errors.New("--password-stdin has nothing to read: --datadir needs no password")
	}
	return nil
}

// parseInterspersed parses flags that may appear before, between and after
// the operands, and returns the operands. Everything after "--" is an
// operand.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return operands, nil
		}
		// fs.Parse stops at the first operand, or after "--", which it drops.
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(operands, rest...), nil
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func executeUser(cmd userCommand, stdin io.Reader, stdout, stderr io.Writer) error {
	if cmd.user != "" {
		if err := htpasswd.ValidateUser(cmd.user); err != nil {
			return err
		}
	}
	secrets := newSecretReader(stdin, stderr, userExitInterrupted)
	client, err := newAdminClient(cmd, secrets)
	if err != nil {
		return err
	}
	var password string
	if cmd.needsNewPassword() {
		if password, err = readNewUserPassword(cmd, secrets); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), userTimeout)
	defer cancel()

	userPath := usersPath + "/" + url.PathEscape(cmd.user)
	switch cmd.name {
	case "add":
		body := newUserRequest{Name: cmd.user, Password: password, Admin: cmd.admin}
		err = client.do(ctx, http.MethodPost, usersPath, body, http.StatusCreated, nil)
		if err == nil {
			fmt.Fprintf(stdout, "user %s added\n", cmd.user)
		}
	case "passwd":
		body := passwordRequest{Password: password}
		err = client.do(ctx, http.MethodPut, userPath+"/password", body, http.StatusNoContent, nil)
		if err == nil {
			fmt.Fprintf(stdout, "password of user %s changed\n", cmd.user)
		}
	case "delete":
		err = client.do(ctx, http.MethodDelete, userPath, nil, http.StatusNoContent, nil)
		if err == nil {
			fmt.Fprintf(stdout, "user %s deleted\n", cmd.user)
		}
	case "list":
		err = listUsers(ctx, client, stdout)
	}
	return err
}

// readNewUserPassword reads the password for add and passwd and checks it
// before anything is sent.
func readNewUserPassword(cmd userCommand, secrets *secretReader) (string, error) {
	var (
		password string
		err      error
	)
	if cmd.passwordStdin {
		password, err = secrets.readAll()
	} else {
		password, err = secrets.readTwice("New password for "+cmd.user+": ", "Re-type new password for "+cmd.user+": ")
	}
	if err != nil {
		return "", err
	}
	switch {
	case password == "":
		return "", errors.New("empty password: choose a password of 1 to 72 bytes")
	case len(password) > htpasswd.MaxPasswordLength:
		return "", fmt.Errorf("password longer than %d bytes: bcrypt ignores every byte after that, so choose a shorter one",
			htpasswd.MaxPasswordLength)
	}
	return password, nil
}

// newUserRequest is the body of POST /flotilla/v1/users.
type newUserRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
	Admin    bool   `json:"admin"`
}

// passwordRequest is the body of PUT /flotilla/v1/users/{name}/password.
type passwordRequest struct {
	Password string `json:"password"`
}

// userListing is the body of GET /flotilla/v1/users.
type userListing struct {
	Users []struct {
		Name   string `json:"name"`
		Admin  bool   `json:"admin"`
		Source string `json:"source"`
	} `json:"users"`
}

func listUsers(ctx context.Context, client *adminClient, stdout io.Writer) error {
	var listing userListing
	if err := client.do(ctx, http.MethodGet, usersPath, nil, http.StatusOK, &listing); err != nil {
		return err
	}
	sort.Slice(listing.Users, func(i, j int) bool { return listing.Users[i].Name < listing.Users[j].Name })
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADMIN\tSOURCE")
	for _, u := range listing.Users {
		admin := "no"
		if u.Admin {
			admin = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, admin, u.Source)
	}
	return tw.Flush()
}

// adminClient sends authenticated requests to a node's admin API.
type adminClient struct {
	base          *url.URL
	http          *http.Client
	authorization string // Authorization header value
}

// clientCertFlags adds the flags of the client certificate that a node
// with http.tls.clientcas requires.
func clientCertFlags(fs *flag.FlagSet, cmd *userCommand) {
	fs.StringVar(&cmd.cert, "cert", "", "PEM `FILE` with a client certificate, for a node that requires one (http.tls.clientcas)")
	fs.StringVar(&cmd.key, "key", "", "PEM `FILE` with the key of --cert")
}

func newAdminClient(cmd userCommand, secrets *secretReader) (*adminClient, error) {
	base, err := parseAdminURL(cmd.url)
	if err != nil {
		return nil, usageError{err}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if cmd.cacert != "" {
		pool, err := loadCertPool(cmd.cacert)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	if (cmd.cert == "") != (cmd.key == "") {
		return nil, usageError{errors.New("--cert and --key go together")}
	}
	if cmd.cert != "" {
		pair, err := tls.LoadX509KeyPair(cmd.cert, cmd.key)
		if err != nil {
			return nil, fmt.Errorf("load --cert and --key: %w", err)
		}
		transport.TLSClientConfig.Certificates = []tls.Certificate{pair}
	}
	c := &adminClient{base: base, http: &http.Client{Transport: transport, Timeout: userTimeout}}
	if cmd.datadir != "" {
		token, err := readAdminToken(cmd.datadir)
		if err != nil {
			return nil, err
		}
		c.authorization = "Bearer " + token
		return c, nil
	}
	password, err := adminPassword(cmd, secrets)
	if err != nil {
		return nil, err
	}
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(cmd.username, password)
	c.authorization = req.Header.Get("Authorization")
	return c, nil
}

// parseAdminURL accepts https URLs, and http URLs only for loopback hosts,
// because the request carries a password or the admin token.
func parseAdminURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("invalid --url %q: %w", raw, err)
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("invalid --url %q: expected https://HOST[:PORT]", raw)
	case u.Scheme == "https":
		return u, nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return u, nil
	case u.Scheme == "http":
		return nil, fmt.Errorf("--url %q uses plain http to a host that is not loopback, which would expose the credentials: use https", raw)
	default:
		return nil, fmt.Errorf("invalid --url %q: the scheme must be https", raw)
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func loadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --cacert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--cacert %s contains no PEM certificate", path)
	}
	return pool, nil
}

// readAdminToken reads the token that a node writes to DIR/admin-token
// when it starts.
func readAdminToken(dir string) (string, error) {
	path := filepath.Join(dir, adminTokenFile)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read admin token: %w (is --datadir the data directory of a node that has started?)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("read admin token %s: %w", path, err)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("admin token file %s is empty", path)
	}
	return token, nil
}

// adminPassword returns the password of --username from FLOTILLA_PASSWORD,
// standard input or a prompt.
func adminPassword(cmd userCommand, secrets *secretReader) (string, error) {
	if p := os.Getenv("FLOTILLA_PASSWORD"); p != "" {
		return p, nil
	}
	if !cmd.passwordStdin {
		return secrets.read("Password for " + cmd.username + ": ")
	}
	if cmd.needsNewPassword() {
		return "", usageError{errors.New("--password-stdin supplies the new password, so set FLOTILLA_PASSWORD to the password of --username")}
	}
	return secrets.readAll()
}

// apiError is an error response of the admin API.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string {
	msg := e.message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.status))
	}
	code := e.code
	if code == "" {
		code = "HTTP " + fmt.Sprint(e.status)
	}
	if e.status == http.StatusUnauthorized {
		msg += " (check --username and the password, or use --datadir on a node's host)"
	}
	return fmt.Sprintf("%s (%s)", msg, code)
}

// do sends a request to escapedPath below the base URL with an optional
// JSON body. It returns an *apiError unless the response status is want, and
// then decodes the JSON response into out if out is not nil.
func (c *adminClient) do(ctx context.Context, method, escapedPath string, body any, want int, out any) error {
	var (
		reader io.Reader
		err    error
	)
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}

	target := *c.base
	target.RawPath = c.base.EscapedPath() + escapedPath
	target.Path, err = url.PathUnescape(target.RawPath)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, target.String(), reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", c.authorization)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, c.base.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}

	if resp.StatusCode != want {
		return decodeAPIError(resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("invalid response from %s: %w", c.base.Redacted(), err)
		}
	}
	return nil
}

func decodeAPIError(status int, data []byte) error {
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	e := &apiError{status: status}
	if json.Unmarshal(data, &body) == nil && len(body.Errors) > 0 {
		e.code, e.message = body.Errors[0].Code, body.Errors[0].Message
	}
	return e
}

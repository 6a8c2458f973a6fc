package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/flotilla-registry/flotilla/internal/config"
	"github.com/flotilla-registry/flotilla/internal/htpasswd"
	"github.com/flotilla-registry/flotilla/internal/logging"
)

const initUsage = `usage: flotilla init [flags]
       flotilla init show-password [flags]
       flotilla init show-ca [flags]

Prepares the files and the bucket that a cluster started by docker compose
needs, and keeps whatever already exists:
  - a CA (ca.crt, ca.key in -ca-dir),
  - a certificate per node for the cluster port and the API, named by the
    node's host name (-cluster-tls-dir),
  - the certificate that clients see at the load balancer (registry.crt,
    registry.key and a copy of ca.crt in -registry-tls-dir),
  - an htpasswd file with a first user (-auth-dir) whose generated password
    goes to a file readable only by root (-secrets-dir),
  - the S3 bucket that the REGISTRY_STORAGE_S3_* variables name.
A folder that already holds registry.crt and registry.key, or an htpasswd
file, is used as it is: that is how to bring your own.

show-password prints the first user's generated password.
show-ca prints the CA certificate that clients must trust.

Flags:
`

// Defaults and limits of flotilla init. The default folders, set in
// parseInitFlags, are where docker-compose.yml mounts the volumes.
const (
	defaultInitNodes     = "flotilla-1,flotilla-2,flotilla-3"
	defaultRegistryNames = "localhost,registry.local,lb,127.0.0.1,::1"
	defaultFirstUser     = "flotilla"
	// passwordFile is the name of the first user's password file.
	passwordFile = "password"
	// caValidity and leafValidity bound the generated certificates.
	// Running init again renews a leaf certificate that has less than
	// renewBefore left.
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 825 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
	// bucketPoll is the pause between attempts to reach the S3 server.
	bucketPoll = time.Second
)

// initOptions are the flags of flotilla init.
type initOptions struct {
	caDir, clusterDir, registryDir, authDir, secretsDir string
	nodes, registryNames                                []string
	user                                                string
	bucketTimeout                                       time.Duration
	// owner, when set, owns the node keys and the htpasswd file, so a
	// node that dropped root (FLOTILLA_RUN_AS) can read them.
	owner *identity
}

// runInit implements "flotilla init", "flotilla init show-password" and
// "flotilla init show-ca".
func runInit(args []string, stdout, stderr io.Writer) int {
	action := "setup"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	opts, err := parseInitFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla init: %v\n", err)
		return 2
	}
	switch action {
	case "setup":
		logger, _ := logging.New(stderr, "info", "text")
		if err := setupCompose(opts, logger); err != nil {
			logger.Error("init failed", "err", err)
			return 1
		}
		return 0
	case "show-password":
		return printFile(filepath.Join(opts.secretsDir, passwordFile), stdout, stderr)
	case "show-ca":
		return printFile(filepath.Join(opts.caDir, "ca.crt"), stdout, stderr)
	default:
		fmt.Fprintf(stderr, "flotilla init: unknown action %q: use show-password, show-ca or no action\n", action)
		return 2
	}
}

func parseInitFlags(args []string, stderr io.Writer) (initOptions, error) {
	var opts initOptions
	var nodes, names, runAs string
	fs := flag.NewFlagSet("flotilla init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, initUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.caDir, "ca-dir", "/ca", "`DIR` of the CA certificate and key; mount it only into the init service")
	fs.StringVar(&opts.clusterDir, "cluster-tls-dir", "/cluster-tls", "`DIR` of the node certificates, keys and ca.crt")
	fs.StringVar(&opts.registryDir, "registry-tls-dir", "/registry-tls", "`DIR` of the load balancer's registry.crt and registry.key")
	fs.StringVar(&opts.authDir, "auth-dir", "/auth", "`DIR` of the htpasswd file")
	fs.StringVar(&opts.secretsDir, "secrets-dir", "/secrets", "`DIR` of the first user's password file")
	fs.StringVar(&nodes, "nodes", envOr("FLOTILLA_INIT_NODES", defaultInitNodes),
		"comma-separated host `NAMES` of the nodes, one certificate each (env FLOTILLA_INIT_NODES)")
	fs.StringVar(&names, "registry-names", envOr("FLOTILLA_REGISTRY_NAMES", defaultRegistryNames),
		"comma-separated DNS `NAMES` and IP addresses in the registry certificate (env FLOTILLA_REGISTRY_NAMES)")
	fs.StringVar(&opts.user, "user", envOr("FLOTILLA_FIRST_USER", defaultFirstUser),
		"`NAME` of the first user (env FLOTILLA_FIRST_USER)")
	fs.StringVar(&runAs, "owner", os.Getenv(envRunAs),
		"`UID:GID` that owns the node keys and the htpasswd file (default from "+envRunAs+")")
	fs.DurationVar(&opts.bucketTimeout, "bucket-timeout", 2*time.Minute, "how long to wait for the S3 server")
	if err := fs.Parse(args); err != nil {
		return opts, err
	}

	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	opts.nodes = splitList(nodes)
	opts.registryNames = splitList(names)
	if len(opts.nodes) == 0 || len(opts.registryNames) == 0 {
		return opts, errors.New("-nodes and -registry-names need at least one name each")
	}
	if err := htpasswd.ValidateUser(opts.user); err != nil {
		return opts, fmt.Errorf("-user: %w", err)
	}
	if runAs != "" {
		id, err := parseRunAs(runAs)
		if err != nil {
			return opts, err
		}
		opts.owner = &id
	}
	return opts, nil
}

func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func printFile(path string, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "flotilla init: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(data)
	return 0
}

// setupCompose creates what is missing, in the order that lets a failed
// run be repeated: certificates, the user, then the bucket.
func setupCompose(opts initOptions, logger *slog.Logger) error {
	ca, err := loadOrCreateCA(opts.caDir, logger)
	if err != nil {
		return err
	}
	if err := writeFileAs(filepath.Join(opts.clusterDir, "ca.crt"), ca.pem, 0o644, nil); err != nil {
		return err
	}
	for _, node := range opts.nodes {
		if err := ensureLeaf(ca, opts.clusterDir, node, []string{node}, opts.owner, logger); err != nil {
			return err
		}
	}
	if err := ensureRegistryCert(ca, opts, logger); err != nil {
		return err
	}
	if err := ensureFirstUser(opts, logger); err != nil {
		return err
	}
	return ensureBucket(opts.bucketTimeout, logger)
}

// authority is the CA that signs every generated certificate.
type authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func loadOrCreateCA(dir string, logger *slog.Logger) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err == nil {
		key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("CA key %s is not an ECDSA key", keyPath)
		}
		certPEM, err := os.ReadFile(certPath)
		if err != nil {
			return nil, err
		}
		logger.Info("using the existing CA", "cert", certPath)
		return &authority{cert: pair.Leaf, key: key, pem: certPEM}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load CA %s: %w; remove both files to create a new CA", certPath, err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: "Flotilla compose CA", Organization: []string{"Flotilla"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := &authority{cert: cert, key: key, pem: pemBlock("CERTIFICATE", der)}
	if err := writeKey(keyPath, key, nil); err != nil {
		return nil, err
	}
	if err := writeFileAs(certPath, ca.pem, 0o644, nil); err != nil {
		return nil, err
	}
	logger.Info("CA created", "cert", certPath, "valid_until", cert.NotAfter.Format(time.DateOnly))
	return ca, nil
}

// ensureLeaf issues DIR/NAME.crt and DIR/NAME.key for the hosts unless a
// certificate there is signed by ca, names every host and stays valid
// for more than renewBefore. The certificate serves both ends of mutual
// TLS, so it has the serverAuth and clientAuth usages.
func ensureLeaf(ca *authority, dir, name string, hosts []string, owner *identity, logger *slog.Logger) error {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if reason := leafProblem(ca, certPath, keyPath, hosts); reason == nil {
		if owner != nil {
			// A key written before the owner was configured, or by
			// hand, is handed to the node's user all the same.
			if err := os.Chown(keyPath, owner.uid, owner.gid); err != nil {
				return err
			}
		}
		return nil
	} else if !errors.Is(reason, fs.ErrNotExist) {
		logger.Info("certificate reissued", "cert", certPath, "reason", reason)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"Flotilla"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("create certificate for %s: %w", name, err)
	}
	if err := writeKey(keyPath, key, owner); err != nil {
		return err
	}
	if err := writeFileAs(certPath, pemBlock("CERTIFICATE", der), 0o644, nil); err != nil {
		return err
	}
	logger.Info("certificate issued", "cert", certPath, "names", hosts,
		"valid_until", tmpl.NotAfter.Format(time.DateOnly))
	return nil
}

// leafProblem returns why the certificate at certPath must be issued
// again, or nil when it can stay. A missing file returns an error that
// matches fs.ErrNotExist.
func leafProblem(ca *authority, certPath, keyPath string, hosts []string) error {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{
		Roots:     roots,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fmt.Errorf("not signed by the CA: %w", err)
	}
	if time.Until(pair.Leaf.NotAfter) < renewBefore {
		return fmt.Errorf("expires on %s", pair.Leaf.NotAfter.Format(time.DateOnly))
	}
	for _, h := range hosts {
		if err := pair.Leaf.VerifyHostname(h); err != nil {
			return fmt.Errorf("does not name %s", h)
		}
	}
	return nil
}

// ensureRegistryCert keeps a certificate that the user brought (one that
// the CA did not sign) as it is, and otherwise issues or renews the one
// for the registry names.
func ensureRegistryCert(ca *authority, opts initOptions, logger *slog.Logger) error {
	certPath := filepath.Join(opts.registryDir, "registry.crt")
	keyPath := filepath.Join(opts.registryDir, "registry.key")
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if pair.Leaf.CheckSignatureFrom(ca.cert) != nil {
			logger.Info("using the registry certificate found in the folder", "cert", certPath,
				"names", append(pair.Leaf.DNSNames, ipStrings(pair.Leaf.IPAddresses)...))
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("load registry certificate %s: %w; fix or remove registry.crt and registry.key", certPath, err)
	}
	if err := writeFileAs(filepath.Join(opts.registryDir, "ca.crt"), ca.pem, 0o644, nil); err != nil {
		return err
	}
	return ensureLeaf(ca, opts.registryDir, "registry", opts.registryNames, nil, logger)
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// ensureFirstUser writes an htpasswd file with one user and a generated
// password unless the folder already has an htpasswd file. The password
// goes only to a file of mode 0600, and the log shows where that file is.
func ensureFirstUser(opts initOptions, logger *slog.Logger) error {
	htpasswdPath := filepath.Join(opts.authDir, "htpasswd")
	if info, err := os.Stat(htpasswdPath); err == nil && info.Size() > 0 {
		// A file the user brought keeps its owner; a node that cannot
		// read it copies it at start (see dropPrivileges).
		logger.Info("using the existing htpasswd file", "path", htpasswdPath)
		return nil
	}
	password := rand.Text()
	line, err := htpasswd.Line(opts.user, password, htpasswd.DefaultCost)
	if err != nil {
		return err
	}
	secretPath := filepath.Join(opts.secretsDir, passwordFile)
	if err := writeFileAs(secretPath, []byte(password+"\n"), 0o600, nil); err != nil {
		return err
	}
	if err := writeFileAs(htpasswdPath, []byte(line+"\n"), 0o640, opts.owner); err != nil {
		return err
	}
	logger.Info("first user created; its password is in a file readable only by root",
		"user", opts.user, "password_file", secretPath,
		"print_with", "docker compose run --rm --no-deps init show-password")
	return nil
}

// ensureBucket creates the bucket named by the REGISTRY_STORAGE_S3_*
// variables, waiting up to timeout for the S3 server to respond. It does
// nothing when the storage driver is not s3.
func ensureBucket(timeout time.Duration, logger *slog.Logger) error {
	cfg, _, err := config.Load(os.Getenv(config.EnvConfigPath), os.Environ())
	if err != nil {
		return fmt.Errorf("read the storage configuration: %w", err)
	}
	if cfg.Storage.Driver != config.DriverS3 {
		return nil
	}
	s := cfg.Storage.S3
	client, err := newBucketClient(s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := makeBucket(ctx, client, s)
		if err == nil {
			logger.Info("bucket ready", "bucket", s.Bucket, "endpoint", client.EndpointURL().Host)
			return nil
		}
		if attempt == 1 || attempt%10 == 0 {
			logger.Info("waiting for the S3 server", "endpoint", client.EndpointURL().Host,
				"attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create bucket %s: no success within %s: %w", s.Bucket, timeout, err)
		case <-time.After(bucketPoll):
		}
	}
}

func newBucketClient(s config.S3) (*minio.Client, error) {
	host, secure := s.RegionEndpoint, s.Secure
	if host == "" {
		host = "s3.amazonaws.com"
	}
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return nil, fmt.Errorf("storage.s3.regionendpoint: %w", err)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if s.SkipVerify {
		// The operator asked for this with storage.s3.skipverify.
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	lookup := minio.BucketLookupAuto
	if s.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	return minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       secure,
		Region:       s.Region,
		BucketLookup: lookup,
		Transport:    transport,
	})
}

func makeBucket(ctx context.Context, client *minio.Client, s config.S3) error {
	reqCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	exists, err := client.BucketExists(reqCtx, s.Bucket)
	if err != nil || exists {
		return err
	}
	err = client.MakeBucket(reqCtx, s.Bucket, minio.MakeBucketOptions{Region: s.Region})
	code := minio.ToErrorResponse(err).Code
	if slices.Contains([]string{minio.BucketAlreadyOwnedByYou, "BucketAlreadyExists"}, code) {
		return nil
	}
	return err
}

// writeKey writes key as PKCS #8 PEM with mode 0600, owned by owner when
// it is set.
func writeKey(path string, key *ecdsa.PrivateKey, owner *identity) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writeFileAs(path, pemBlock("PRIVATE KEY", der), 0o600, owner)
}

// writeFileAs replaces path through a temporary file and a rename, so a
// reader never sees half a file, and gives it to owner when set.
func writeFileAs(path string, data []byte, mode fs.FileMode, owner *identity) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if owner != nil {
		if err := tmp.Chown(owner.uid, owner.gid); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := writeAndSync(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}

func pemBlock(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

func randomSerial() *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux since Go 1.24
	}
	return serial
}

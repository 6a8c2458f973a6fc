package bench

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// Environment variables that may carry secrets instead of flags, so they
// do not show in the process list.
const (
	EnvPassword    = "FLOTILLA_BENCH_PASSWORD"
	EnvS3SecretKey = "FLOTILLA_BENCH_S3_SECRET_KEY"
)

// secretFlags are left out of a report's Params.
var secretFlags = map[string]bool{"password": true, "s3-secret-key": true}

// sizeValue is a flag of a byte size such as 1048576, 512KiB, 1MiB or
// 2GiB (KB, MB and GB are powers of 1000).
type sizeValue int64

func (s *sizeValue) String() string { return formatSize(int64(*s)) }

func (s *sizeValue) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*s = sizeValue(n)
	return nil
}

// parseSize parses a byte size with an optional unit.
func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	s := strings.TrimSpace(v)
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsInf(f*mult, 0) || f*mult > math.MaxInt64/2 {
		return 0, fmt.Errorf("invalid size %q: use bytes or a number with KiB, MiB or GiB", v)
	}
	return int64(f * mult), nil
}

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return strconv.FormatInt(n, 10)
}

// listValue is a flag of comma-separated values.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

// registryFlags are the flags of every workload that talks to a registry.
type registryFlags struct {
	url         string
	username    string
	password    string
	caCert      string
	concurrency int
	s3Stats     string
	opTimeout   time.Duration
	maxErrors   int
	maxOps      int64
	repoPrefix  string
	runID       string
	http2       bool
	output      outputFlags
}

func (f *registryFlags) register(fs *flag.FlagSet, concurrency int) {
	fs.StringVar(&f.url, "url", "", "registry base `URL`, for example https://127.0.0.1:5000; comma-separated URLs are used in turn")
	fs.StringVar(&f.username, "username", "", "user name for Basic authentication")
	fs.StringVar(&f.password, "password", "", "password for Basic authentication (default $"+EnvPassword+")")
	fs.StringVar(&f.caCert, "cacert", "", "PEM `file` of the CA that the registry's certificate is verified against (default: system roots)")
	fs.IntVar(&f.concurrency, "concurrency", concurrency, "number of concurrent clients")
	fs.StringVar(&f.s3Stats, "s3-requests-url", "", "`URL` of a flotilla-bench s3proxy stats listener; adds S3 requests per operation to the report")
	fs.DurationVar(&f.opTimeout, "op-timeout", time.Minute, "maximum time of one operation (image, request, listing)")
	fs.IntVar(&f.maxErrors, "max-errors", 100, "stop a phase after this many failed operations (0: never)")
	fs.Int64Var(&f.maxOps, "max-ops", 10_000_000, "maximum operations of a timed phase")
	fs.StringVar(&f.repoPrefix, "repo-prefix", "bench", "first component of every repository name")
	fs.StringVar(&f.runID, "run-id", "", "second component of every repository name (default: random)")
	fs.BoolVar(&f.http2, "http2", false, "allow HTTP/2; by default each client uses its own HTTP/1.1 connection")
	f.output.register(fs)
}

// options builds the workload Options; the password comes from the flag
// or from EnvPassword.
func (f *registryFlags) options(o *Options) error {
	password := f.password
	if password == "" {
		password = os.Getenv(EnvPassword)
	}
	if f.concurrency < 1 {
		return fmt.Errorf("invalid --concurrency %d: use 1 or more", f.concurrency)
	}
	client, err := NewClient(ClientConfig{
		URL:         f.url,
		Username:    f.username,
		Password:    password,
		CACertFile:  f.caCert,
		Connections: f.concurrency,
		HTTP2:       f.http2,
	})
	if err != nil {
		return err
	}
	o.Client = client
	o.Concurrency = f.concurrency
	o.RepoPrefix = f.repoPrefix
	o.RunID = f.runID
	o.MaxErrors = f.maxErrors
	o.OpTimeout = f.opTimeout
	o.MaxOps = f.maxOps
	if f.s3Stats != "" {
		o.S3 = NewS3StatsClient(f.s3Stats)
	}
	return nil
}

// outputFlags select where a report goes.
type outputFlags struct {
	label string
	json  string
	quiet bool
}

func (f *outputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.label, "label", "", "name of the system under test in the report, such as flotilla or reference")
	fs.StringVar(&f.json, "json", "", "also write the report as JSON to `file`")
	fs.BoolVar(&f.quiet, "quiet", false, "log only warnings and errors")
}

// s3Flags are the flags of the commands that talk to S3 directly.
type s3Flags struct {
	cfg S3Config
}

func (f *s3Flags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.cfg.Endpoint, "s3-endpoint", "", "S3 endpoint, HOST:PORT or http(s)://HOST:PORT")
	fs.StringVar(&f.cfg.Region, "s3-region", "us-east-1", "S3 region")
	fs.StringVar(&f.cfg.Bucket, "s3-bucket", "", "S3 bucket")
	fs.StringVar(&f.cfg.AccessKey, "s3-access-key", "", "S3 access key")
	fs.StringVar(&f.cfg.SecretKey, "s3-secret-key", "", "S3 secret key (default $"+EnvS3SecretKey+")")
	fs.StringVar(&f.cfg.CACertFile, "s3-cacert", "", "PEM `file` of the CA of an https S3 endpoint")
}

func (f *s3Flags) config() (S3Config, error) {
	cfg := f.cfg
	if cfg.SecretKey == "" {
		cfg.SecretKey = os.Getenv(EnvS3SecretKey)
	}
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return cfg, fmt.Errorf("missing --s3-endpoint or --s3-bucket")
	}
	return cfg, nil
}

// flagParams returns every flag's value except the secret ones.
func flagParams(fs *flag.FlagSet) map[string]string {
	params := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if !secretFlags[f.Name] {
			params[f.Name] = f.Value.String()
		}
	})
	return params
}

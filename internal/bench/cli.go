package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

const usage = `usage: flotilla-bench COMMAND [FLAGS]

Workloads against a registry (--url, --username, --password, --cacert):
  images        push, then pull, N images of K layers of S bytes with C clients
  large         push, then pull, one large layer streamed in one PATCH
  head          manifest HEAD by tag for a duration with C clients
  tags          PUT a manifest under new tags for a duration with C clients
  list          seed repositories and tags, then list tags and the catalog
  wait          wait until the registry answers, or until a tag is readable

Object store baseline and tools for bench/compare.sh:
  s3raw         PUT and GET objects with minio-go, without a registry
  s3proxy       reverse proxy in front of an S3 server that counts requests
  rrproxy       HTTPS proxy that sends each request to the next node
  clustercheck  check that a tag pushed through one node is readable through others
  gencert       write a CA and a certificate for 127.0.0.1
  mkbucket      create an S3 bucket
  procstat      record the peak RSS and CPU time of processes
  sysinfo       record the machine's CPUs, memory and load average
  report        write the comparison table from a folder of JSON records
  freeport      print free loopback TCP ports

Run "flotilla-bench COMMAND -h" for the flags of a command. Exit status:
0 when every operation succeeded, 1 when some failed, 2 for invalid flags.
`

// Main runs flotilla-bench with the arguments after the program name and
// returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "images":
		return runWorkload(cmd, rest, stdout, stderr, 8, imagesCommand)
	case "large":
		return runWorkload(cmd, rest, stdout, stderr, 1, largeCommand)
	case "head":
		return runWorkload(cmd, rest, stdout, stderr, 8, headCommand)
	case "tags":
		return runWorkload(cmd, rest, stdout, stderr, 16, tagsCommand)
	case "list":
		return runWorkload(cmd, rest, stdout, stderr, 8, listCommand)
	case "wait":
		return runWorkload(cmd, rest, stdout, stderr, 1, waitCommand)
	case "s3raw":
		return runS3Raw(rest, stdout, stderr)
	case "s3proxy":
		return runS3Proxy(rest, stdout, stderr)
	case "rrproxy":
		return runRRProxy(rest, stdout, stderr)
	case "clustercheck":
		return runClusterCheck(rest, stdout, stderr)
	case "gencert":
		return runGenCert(rest, stdout, stderr)
	case "mkbucket":
		return runMakeBucket(rest, stdout, stderr)
	case "procstat":
		return runProcStat(rest, stdout, stderr)
	case "sysinfo":
		return runSysInfo(rest, stdout, stderr)
	case "report":
		return runReport(rest, stdout, stderr)
	case "freeport":
		return runFreePort(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "flotilla-bench: unknown command %q\n%s", cmd, usage)
		return 2
	}
}

// workloadFunc runs a workload with the parsed Options.
type workloadFunc func(ctx context.Context, o Options) ([]Result, error)

// workloadCommand registers a workload's own flags and returns the
// function that runs it after parsing.
type workloadCommand func(fs *flag.FlagSet) workloadFunc

func imagesCommand(fs *flag.FlagSet) workloadFunc {
	var cfg ImagesConfig
	size := sizeValue(1 << 20)
	fs.IntVar(&cfg.Images, "images", 50, "number of images, each in its own repository")
	fs.IntVar(&cfg.Layers, "layers", 3, "layers per image")
	fs.Var(&size, "layer-size", "bytes per layer (KiB, MiB and GiB suffixes allowed)")
	fs.BoolVar(&cfg.HeadFirst, "head-first", true, "send HEAD for each blob before uploading it, as docker push does")
	return func(ctx context.Context, o Options) ([]Result, error) {
		cfg.LayerSize = int64(size)
		return RunImages(ctx, o, cfg)
	}
}

func largeCommand(fs *flag.FlagSet) workloadFunc {
	cfg := LargeConfig{Count: 1}
	size := sizeValue(1 << 30)
	fs.Var(&size, "size", "layer size in bytes (KiB, MiB and GiB suffixes allowed)")
	fs.IntVar(&cfg.Count, "count", 1, "number of layers, pushed one after the other")
	fs.DurationVar(&cfg.Timeout, "transfer-timeout", 30*time.Minute, "maximum time of one layer push or pull")
	return func(ctx context.Context, o Options) ([]Result, error) {
		cfg.Size = int64(size)
		return RunLarge(ctx, o, cfg)
	}
}

func headCommand(fs *flag.FlagSet) workloadFunc {
	var cfg TimedConfig
	fs.DurationVar(&cfg.Duration, "duration", 15*time.Second, "how long the clients send requests")
	fs.StringVar(&cfg.Name, "name", "head", "result name, for example head-cost10")
	return func(ctx context.Context, o Options) ([]Result, error) { return RunHead(ctx, o, cfg) }
}

func tagsCommand(fs *flag.FlagSet) workloadFunc {
	var cfg TimedConfig
	fs.DurationVar(&cfg.Duration, "duration", 15*time.Second, "how long the clients write tags")
	fs.StringVar(&cfg.Name, "name", "tag-write", "result name")
	return func(ctx context.Context, o Options) ([]Result, error) { return RunTagWrites(ctx, o, cfg) }
}

func listCommand(fs *flag.FlagSet) workloadFunc {
	var cfg ListConfig
	fs.IntVar(&cfg.Repos, "repos", 500, "repositories to create before listing the catalog")
	fs.IntVar(&cfg.TagsPerRepo, "tags-per-repo", 1, "tags in each created repository")
	fs.IntVar(&cfg.Tags, "tags", 2000, "tags to write into the repository whose tag list is measured")
	fs.IntVar(&cfg.PageSize, "page-size", 1000, "n of each listing request (0: the registry's default)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long each listing phase runs")
	return func(ctx context.Context, o Options) ([]Result, error) { return RunList(ctx, o, cfg) }
}

func waitCommand(fs *flag.FlagSet) workloadFunc {
	var cfg WaitConfig
	fs.StringVar(&cfg.Repo, "repo", "", "repository whose tag must be readable (default: any answer to GET /v2/)")
	fs.StringVar(&cfg.Tag, "tag", "latest", "tag that must be readable with --repo")
	fs.IntVar(&cfg.Status, "status", 0, "status of GET /v2/ that means ready (0: any answer)")
	fs.DurationVar(&cfg.Timeout, "timeout", time.Minute, "maximum wait")
	return func(ctx context.Context, o Options) ([]Result, error) { return RunWait(ctx, o, cfg) }
}

// runWorkload parses the flags of a registry workload, runs it, prints
// the report and writes its JSON.
func runWorkload(name string, args []string, stdout, stderr io.Writer, concurrency int, define workloadCommand) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf registryFlags
	rf.register(fs, concurrency)
	run := define(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "flotilla-bench %s: unexpected arguments %q\n", name, fs.Args())
		return 2
	}
	var o Options
	if err := rf.options(&o); err != nil {
		fmt.Fprintf(stderr, "flotilla-bench %s: %v\n", name, err)
		return 2
	}
	o.Logger = newLogger(stderr, rf.output.quiet).With("workload", name)
	report := &Report{
		Kind:     "workload",
		Label:    rf.output.label,
		Workload: name,
		URL:      o.Client.URL(),
		Params:   flagParams(fs),
	}
	return execute(report, rf.output, stdout, stderr, func(ctx context.Context) ([]Result, error) {
		return run(ctx, o)
	})
}

// execute runs fn under a context that SIGINT and SIGTERM cancel, fills
// in the report, prints it and writes its JSON.
func execute(report *Report, out outputFlags, stdout, stderr io.Writer, fn func(context.Context) ([]Result, error)) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	report.Started = time.Now().UTC()
	report.LoadAvgBefore = LoadAvg()
	cpu := selfCPUSeconds()
	results, err := fn(ctx)
	report.Results = results
	report.ClientCPUSeconds = selfCPUSeconds() - cpu
	report.LoadAvgAfter = LoadAvg()
	if err != nil {
		report.Error = err.Error()
	}
	printReport(stdout, report)
	if out.json != "" {
		if werr := writeJSON(out.json, report); werr != nil {
			fmt.Fprintf(stderr, "flotilla-bench: %v\n", werr)
			return 1
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla-bench %s: %v\n", report.Workload, err)
		return 1
	}
	if report.Failed() {
		return 1
	}
	return 0
}

func newLogger(w io.Writer, quiet bool) *slog.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// writeJSON writes v as indented JSON to path, through a temporary file
// so that a reader never sees half a file.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// runS3Raw runs the raw S3 baseline.
func runS3Raw(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("s3raw", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf s3Flags
	var out outputFlags
	var cfg S3RawConfig
	large, small := sizeValue(1<<30), sizeValue(1<<20)
	var statsURL string
	sf.register(fs)
	out.register(fs)
	fs.Var(&large, "large-size", "size of the one large object (0: skip)")
	fs.IntVar(&cfg.Objects, "objects", 150, "number of small objects (0: skip)")
	fs.Var(&small, "object-size", "size of each small object")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "concurrent clients for the small objects")
	fs.DurationVar(&cfg.Timeout, "transfer-timeout", 30*time.Minute, "maximum time of one object transfer")
	fs.IntVar(&cfg.MaxErrors, "max-errors", 100, "stop a phase after this many failed operations (0: never)")
	fs.StringVar(&statsURL, "s3-requests-url", "", "`URL` of a flotilla-bench s3proxy stats listener")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	s3cfg, err := sf.config()
	if err != nil {
		fmt.Fprintf(stderr, "flotilla-bench s3raw: %v\n", err)
		return 2
	}
	cfg.S3, cfg.LargeSize, cfg.ObjectSize = s3cfg, int64(large), int64(small)

	o := Options{Logger: newLogger(stderr, out.quiet).With("workload", "s3raw")}
	if statsURL != "" {
		o.S3 = NewS3StatsClient(statsURL)
	}
	report := &Report{Kind: "workload", Label: out.label, Workload: "s3raw", URL: s3cfg.Endpoint, Params: flagParams(fs)}
	return execute(report, out, stdout, stderr, func(ctx context.Context) ([]Result, error) {
		return RunS3Raw(ctx, o, cfg)
	})
}

// runClusterCheck pushes through --url and reads through --others.
func runClusterCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("clustercheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var rf registryFlags
	var others listValue
	rf.register(fs, 1)
	fs.Var(&others, "others", "comma-separated base URLs of the other nodes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var o Options
	if err := rf.options(&o); err != nil {
		fmt.Fprintf(stderr, "flotilla-bench clustercheck: %v\n", err)
		return 2
	}
	o.Logger = newLogger(stderr, true)

	var clients []*Client
	for _, u := range others {
		other := rf
		other.url = u
		var oo Options
		if err := other.options(&oo); err != nil {
			fmt.Fprintf(stderr, "flotilla-bench clustercheck: %v\n", err)
			return 2
		}
		clients = append(clients, oo.Client)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := CheckCluster(ctx, o, clients); err != nil {
		fmt.Fprintf(stdout, "cluster check failed: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "cluster check passed: a tag pushed through %s is readable through %d other nodes\n",
		o.Client.URL(), len(clients))
	return 0
}

// errUsage marks an invalid command line, exit status 2.
var errUsage = errors.New("invalid usage")

// exitStatus maps an error of a tool command to its exit status.
func exitStatus(name string, err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "flotilla-bench %s: %v\n", name, err)
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

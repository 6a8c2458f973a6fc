package bench

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runS3Proxy runs an S3CountingProxy until SIGINT or SIGTERM.
func runS3Proxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("s3proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address of the proxy (port 0 picks a free port)")
	statsListen := fs.String("stats-listen", "127.0.0.1:0", "address of the JSON counters (GET /)")
	target := fs.String("target", "", "`URL` of the S3 server, such as http://127.0.0.1:9000")
	addrFile := fs.String("addr-file", "", "write the proxy's HOST:PORT to this `file` once it listens")
	statsAddrFile := fs.String("stats-addr-file", "", "write the counters' HOST:PORT to this `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := newLogger(stderr, false).With("command", "s3proxy")
	proxy, err := NewS3CountingProxy(*target, logger)
	if err != nil {
		return exitStatus("s3proxy", fmt.Errorf("%w: %w", errUsage, err), stderr)
	}
	return exitStatus("s3proxy", serveAll(logger, []listener{
		{addr: *listen, addrFile: *addrFile, handler: proxy, name: "proxy"},
		{addr: *statsListen, addrFile: *statsAddrFile, handler: proxy.StatsHandler(), name: "stats"},
	}), stderr)
}

// runRRProxy runs a RoundRobinProxy until SIGINT or SIGTERM.
func runRRProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rrproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address of the proxy (port 0 picks a free port)")
	var backends listValue
	fs.Var(&backends, "backends", "comma-separated base URLs of the nodes")
	cert := fs.String("cert", "", "PEM certificate `file` of the proxy's TLS listener (empty: plain HTTP)")
	key := fs.String("key", "", "PEM private key `file` of the proxy's TLS listener")
	caCert := fs.String("cacert", "", "PEM `file` of the CA that the nodes' certificates are verified against")
	addrFile := fs.String("addr-file", "", "write the proxy's HOST:PORT to this `file` once it listens")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := newLogger(stderr, false).With("command", "rrproxy")
	proxy, err := NewRoundRobinProxy(backends, *caCert, logger)
	if err != nil {
		return exitStatus("rrproxy", fmt.Errorf("%w: %w", errUsage, err), stderr)
	}
	l := listener{addr: *listen, addrFile: *addrFile, handler: proxy, name: "proxy"}
	if *cert != "" || *key != "" {
		pair, err := tls.LoadX509KeyPair(*cert, *key)
		if err != nil {
			return exitStatus("rrproxy", fmt.Errorf("load TLS certificate %s and key %s: %w", *cert, *key, err), stderr)
		}
		l.tls = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	return exitStatus("rrproxy", serveAll(logger, []listener{l}), stderr)
}

// listener is one HTTP listener of a proxy command.
type listener struct {
	name     string
	addr     string
	addrFile string
	handler  http.Handler
	tls      *tls.Config
}

// serveAll opens every listener, writes their address files, and serves
// until SIGINT or SIGTERM or until one server fails.
func serveAll(logger *slog.Logger, listeners []listener) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, l := range listeners {
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", l.addr, err)
		}
		lns = append(lns, ln)
	}
	errc := make(chan error, len(listeners))
	for i, l := range listeners {
		ln := lns[i]
		if l.tls != nil {
			ln = tls.NewListener(ln, l.tls)
		}
		go func() { errc <- serveHTTP(ctx, ln, l.handler, logger) }()
	}
	// The address files are written after every server runs, so a
	// script that waits for them can connect at once.
	for i, l := range listeners {
		addr := lns[i].Addr().String()
		logger.Info("listening", "listener", l.name, "addr", addr, "tls", l.tls != nil)
		if l.addrFile != "" {
			if err := writeFileAtomic(l.addrFile, []byte(addr+"\n")); err != nil {
				return err
			}
		}
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		logger.Info("stopping")
		return nil
	}
}

// serveHTTP serves h on ln until ctx ends, then shuts the server down.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	return nil
}

// runGenCert writes a CA and a certificate for loopback.
func runGenCert(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gencert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "`folder` to write ca.pem, cert.pem and key.pem into")
	var hosts listValue
	fs.Var(&hosts, "hosts", "comma-separated extra IP addresses or DNS names of the certificate")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		return exitStatus("gencert", fmt.Errorf("%w: missing --dir", errUsage), stderr)
	}
	files, err := WriteCerts(*dir, hosts...)
	if err != nil {
		return exitStatus("gencert", err, stderr)
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s\n", files.CA, files.Cert, files.Key)
	return 0
}

// runMakeBucket creates a bucket.
func runMakeBucket(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkbucket", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf s3Flags
	sf.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := sf.config()
	if err != nil {
		return exitStatus("mkbucket", fmt.Errorf("%w: %w", errUsage, err), stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := MakeBucket(ctx, cfg); err != nil {
		return exitStatus("mkbucket", err, stderr)
	}
	fmt.Fprintf(stdout, "bucket %s ready\n", cfg.Bucket)
	return 0
}

// runProcStat records the figures of processes given as NAME=PID.
func runProcStat(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("procstat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: flotilla-bench procstat [--label L] [--json FILE] NAME=PID...")
		fs.PrintDefaults()
	}
	var out outputFlags
	out.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}

	snap := ProcessSnapshot{Kind: "processes", Label: out.label, Time: time.Now().UTC(), LoadAvg: LoadAvg()}
	failed := false
	for _, arg := range fs.Args() {
		name, pidText, ok := strings.Cut(arg, "=")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 {
			return exitStatus("procstat", fmt.Errorf("%w: argument %q is not NAME=PID", errUsage, arg), stderr)
		}
		ps, err := ReadProcessStats(name, pid)
		if err != nil {
			fmt.Fprintf(stderr, "flotilla-bench procstat: %v\n", err)
			failed = true
			continue
		}
		snap.Processes = append(snap.Processes, ps)
		fmt.Fprintf(stdout, "%-12s pid %-7d peak RSS %7.1f MiB  RSS %7.1f MiB (anonymous %.1f, file %.1f)  CPU %8.2f s\n",
			ps.Name, ps.PID, float64(ps.PeakRSS)/mib, float64(ps.RSS)/mib,
			float64(ps.RSSAnon)/mib, float64(ps.RSSFile)/mib, ps.CPUSeconds)
	}

	if out.json != "" {
		if err := writeJSON(out.json, snap); err != nil {
			return exitStatus("procstat", err, stderr)
		}
	}
	if failed {
		return 1
	}
	return 0
}

// runSysInfo records the machine.
func runSysInfo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sysinfo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var out outputFlags
	out.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	info := ReadSystemInfo(out.label)
	fmt.Fprintf(stdout, "%d CPUs (%s), %.1f GiB memory, kernel %s, load average %.2f %.2f %.2f\n",
		info.CPUs, info.CPUModel, float64(info.MemTotal)/(1<<30), info.Kernel,
		info.LoadAvg[0], info.LoadAvg[1], info.LoadAvg[2])
	if out.json != "" {
		if err := writeJSON(out.json, info); err != nil {
			return exitStatus("sysinfo", err, stderr)
		}
	}
	return 0
}

// runFreePort prints free loopback TCP ports, one per line. The ports
// were free when printed; another process may take one before it is used.
func runFreePort(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("freeport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	count := fs.Int("count", 1, "number of ports")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range max(*count, 1) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return exitStatus("freeport", err, stderr)
		}
		lns = append(lns, ln)
		fmt.Fprintln(stdout, ln.Addr().(*net.TCPAddr).Port)
	}
	return 0
}

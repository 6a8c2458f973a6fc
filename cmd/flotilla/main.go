// Command flotilla is the Flotilla registry: one binary that runs a node
// and manages users and htpasswd files.
//
// Invoked under the name htpasswd (a link to this binary), it behaves as
// `flotilla htpasswd`, so `docker run --entrypoint htpasswd IMAGE -Bbn USER
// PASSWORD` works as it does with registry:2.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

const usage = `usage: flotilla COMMAND [ARGS]

Commands:
  serve [CONFIG]      run a registry node (config.yml and/or REGISTRY_* variables)
  htpasswd ...        write bcrypt htpasswd lines, like Apache's htpasswd
  user ...            add, change, delete or list users of a running node
  cluster ...         show the cluster's status, add or remove a node
  healthcheck [URL]   exit 0 when the node at URL (default from the configuration) is alive
  init ...            create the certificates, first user and bucket of a compose cluster
  version             print the version
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}

func run(argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if filepath.Base(argv[0]) == "htpasswd" {
		return runHtpasswd(argv[1:], stdin, stdout, stderr)
	}
	if len(argv) < 2 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	args := argv[2:]
	switch argv[1] {
	case "serve":
		return runServe(args, stdout, stderr)
	case "htpasswd":
		return runHtpasswd(args, stdin, stdout, stderr)
	case "user":
		return runUser(args, stdin, stdout, stderr)
	case "cluster":
		return runCluster(args, stdin, stdout, stderr)
	case "healthcheck":
		return runHealthcheck(args, stdout, stderr)
	case "init":
		return runInit(args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "flotilla", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "flotilla: unknown command %q\n%s", argv[1], usage)
		return 2
	}
}

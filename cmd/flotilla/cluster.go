package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"
)

const clusterUsage = `usage: flotilla cluster COMMAND [flags]

Commands:
  status              print the leader, term, commit and applied index, and every server with its lag
  join ID ADDRESS     add the node ID, reachable at its cluster ADDRESS (host:port), as a voter
  remove ID           remove the node ID from the cluster

Authenticate either as an admin user (--username, password from
FLOTILLA_PASSWORD or a prompt) or with a node's local token (--datadir).
Run "flotilla cluster COMMAND -h" for the flags.
`

const clusterPath = "/flotilla/v1/cluster"

// clusterTimeout bounds one cluster command; a membership change waits for
// a Raft commit, which can take an election.
const clusterTimeout = 30 * time.Second

// runCluster implements "flotilla cluster status|join|remove".
func runCluster(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, clusterUsage)
		return 2
	}
	name := args[0]
	operands := map[string]int{"status": 0, "join": 2, "remove": 1}
	want, ok := operands[name]
	if !ok {
		if name == "-h" || name == "--help" || name == "help" {
			fmt.Fprint(stdout, clusterUsage)
			return 0
		}
		fmt.Fprintf(stderr, "flotilla cluster: unknown command %q: use status, join or remove\n", name)
		return 2
	}
	cmd := userCommand{name: name}
	fs := flag.NewFlagSet("flotilla cluster "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cmd.url, "url", envOr("FLOTILLA_URL", defaultAdminURL), "`URL` of a node (env FLOTILLA_URL)")
	fs.StringVar(&cmd.cacert, "cacert", "", "PEM `FILE` with the CA certificates to trust instead of the system's")
	clientCertFlags(fs, &cmd)
	fs.StringVar(&cmd.username, "username", "", "admin user `NAME`; the password comes from FLOTILLA_PASSWORD or a prompt")
	fs.StringVar(&cmd.datadir, "datadir", "", "node data `DIR` whose admin-token file authenticates the request")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	rest, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(rest) != want {
		fmt.Fprintf(stderr, "flotilla cluster %s: expected %d arguments, got %d\n%s", name, want, len(rest), clusterUsage)
		return 2
	}
	if err := checkUserAuthFlags(cmd); err != nil {
		fmt.Fprintf(stderr, "flotilla cluster %s: %v\n", name, err)
		return 2
	}
	client, err := newAdminClient(cmd, newSecretReader(stdin, stderr, userExitInterrupted))
	if err != nil {
		fmt.Fprintf(stderr, "flotilla cluster %s: %v\n", name, err)
		return 1
	}
	client.http.Timeout = clusterTimeout
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	switch name {
	case "status":
		err = printClusterStatus(ctx, client, stdout, *asJSON)
	case "join":
		body := map[string]string{"id": rest[0], "address": rest[1]}
		err = client.do(ctx, http.MethodPost, clusterPath+"/servers", body, http.StatusNoContent, nil)
		if err == nil {
			fmt.Fprintf(stdout, "server %s at %s added\n", rest[0], rest[1])
		}
	case "remove":
		err = client.do(ctx, http.MethodDelete, clusterPath+"/servers/"+url.PathEscape(rest[0]), nil, http.StatusNoContent, nil)
		if err == nil {
			fmt.Fprintf(stdout, "server %s removed\n", rest[0])
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flotilla cluster %s: %v\n", name, err)
		return 1
	}
	return 0
}

type clusterStatus struct {
	NodeID        string `json:"node_id"`
	State         string `json:"state"`
	LeaderID      string `json:"leader_id"`
	LeaderAddress string `json:"leader_address"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	SnapshotIndex uint64 `json:"snapshot_index"`
	FirstLogIndex uint64 `json:"first_log_index"`
	Servers       []struct {
		ID           string `json:"id"`
		Address      string `json:"address"`
		Suffrage     string `json:"suffrage"`
		Leader       bool   `json:"leader"`
		Reachable    bool   `json:"reachable"`
		AppliedIndex uint64 `json:"applied_index"`
		Lag          uint64 `json:"lag"`
	} `json:"servers"`
}

func printClusterStatus(ctx context.Context, client *adminClient, stdout io.Writer, asJSON bool) error {
	var raw json.RawMessage
	if err := client.do(ctx, http.MethodGet, clusterPath, nil, http.StatusOK, &raw); err != nil {
		return err
	}
	if asJSON {
		_, err := fmt.Fprintf(stdout, "%s\n", raw)
		return err
	}
	var st clusterStatus
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("invalid status: %w", err)
	}
	fmt.Fprintf(stdout, "node %s (%s), leader %s at %s, term %d, commit index %d, applied index %d\n",
		st.NodeID, st.State, st.LeaderID, st.LeaderAddress, st.Term, st.CommitIndex, st.AppliedIndex)
	fmt.Fprintf(stdout, "snapshot index %d, first log index %d\n\n", st.SnapshotIndex, st.FirstLogIndex)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tSUFFRAGE\tROLE\tAPPLIED\tLAG")
	for _, s := range st.Servers {
		role := "follower"
		if s.Leader {
			role = "leader"
		}
		lag := fmt.Sprint(s.Lag)
		if !s.Reachable {
			role, lag = "unreachable", "?"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.Address, s.Suffrage, role, s.AppliedIndex, lag)
	}
	return tw.Flush()
}

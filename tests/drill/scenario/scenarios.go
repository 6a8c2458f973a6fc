package scenario

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// fault is what a scenario's inject function works with.
type fault struct {
	cluster *Cluster
	// hold is how long the fault lasts before it is healed.
	hold time.Duration
	// readyTimeout bounds each wait for the cluster to be ready.
	readyTimeout time.Duration
	// event adds a line to the drill's timeline.
	event func(format string, args ...any)
	// target names the node or service the fault hit, for the report.
	target string
}

// Scenario is one failover drill: a fault injected into the running
// cluster and healed again.
type Scenario struct {
	Name string
	// Proves is what a passing run shows.
	Proves string
	inject func(ctx context.Context, f *fault) error
}

// Scenarios lists every drill in the order "all" runs them.
var Scenarios = []Scenario{
	{
		Name: "kill-leader",
		Proves: "SIGKILL of the leader: the other two elect a new leader, the load balancer " +
			"stops sending to the dead node, and the restarted node catches up",
		inject: killLeader,
	},
	{
		Name: "stop-follower",
		Proves: "a graceful stop of a follower drains its requests; the cluster keeps a " +
			"majority and serves on; the follower rejoins and catches up",
		inject: stopFollower,
	},
	{
		Name: "disconnect-node",
		Proves: "the leader cut off the network: the majority elects a new leader, the old " +
			"one steps down, and after reconnecting it follows the new term",
		inject: disconnectLeader,
	},
	{
		Name: "pause-leader",
		Proves: "the leader frozen longer than the election timeout: a new leader takes over " +
			"and the resumed old leader steps down without acknowledging stale writes",
		inject: pauseLeader,
	},
	{
		Name: "stop-store",
		Proves: "the S3 store stopped: blob writes fail with 503, nothing half-written is " +
			"acknowledged, and pushes resume when the store is back",
		inject: stopStore,
	},
	{
		Name: "restart-cluster",
		Proves: "every node stopped and started: the Raft log and snapshots on the volumes " +
			"restore the index, and the cluster elects a leader again",
		inject: restartCluster,
	},
	{
		Name: "rolling-restart",
		Proves: "each node restarted in turn, followers first, waiting for readiness between " +
			"them: pushes go on with at most one node down at a time",
		inject: rollingRestart,
	},
}

// Find returns the scenario called name.
func Find(name string) (Scenario, error) {
	var names []string
	for _, s := range Scenarios {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Scenario{}, fmt.Errorf("unknown scenario %q: use one of %s, or all", name,
		strings.Join(names, ", "))
}

func killLeader(ctx context.Context, f *fault) error {
	leader, err := f.cluster.Leader(ctx)
	if err != nil {
		return err
	}
	f.target = leader
	f.event("docker kill %s (the leader)", leader)
	if err := f.cluster.Docker.Kill(ctx, leader); err != nil {
		return err
	}
	pause(ctx, f.hold)
	f.event("docker start %s", leader)
	return f.cluster.Docker.Start(ctx, leader)
}

func stopFollower(ctx context.Context, f *fault) error {
	leader, err := f.cluster.Leader(ctx)
	if err != nil {
		return err
	}
	follower := Followers(leader)[0]
	f.target = follower
	f.event("docker stop %s (a follower; %s leads)", follower, leader)
	if err := f.cluster.Docker.Stop(ctx, follower); err != nil {
		return err
	}
	f.event("%s stopped", follower)
	pause(ctx, f.hold)
	f.event("docker start %s", follower)
	return f.cluster.Docker.Start(ctx, follower)
}

func disconnectLeader(ctx context.Context, f *fault) error {
	leader, err := f.cluster.Leader(ctx)
	if err != nil {
		return err
	}
	f.target = leader
	f.event("docker network disconnect %s (the leader)", leader)
	reconnect, err := f.cluster.Docker.Disconnect(ctx, leader)
	if err != nil {
		return err
	}
	pause(ctx, f.hold)
	f.event("docker network connect %s", leader)
	// The context of the drill may have ended; the node must be
	// reconnected all the same.
	return reconnect(context.WithoutCancel(ctx))
}

func pauseLeader(ctx context.Context, f *fault) error {
	leader, err := f.cluster.Leader(ctx)
	if err != nil {
		return err
	}
	f.target = leader
	f.event("docker pause %s (the leader) for %s", leader, f.hold)
	if err := f.cluster.Docker.Pause(ctx, leader); err != nil {
		return err
	}
	pause(ctx, f.hold)
	f.event("docker unpause %s", leader)
	return f.cluster.Docker.Unpause(context.WithoutCancel(ctx), leader)
}

func stopStore(ctx context.Context, f *fault) error {
	f.target = StoreService
	f.event("docker stop %s", StoreService)
	if err := f.cluster.Docker.Stop(ctx, StoreService); err != nil {
		return err
	}
	pause(ctx, f.hold)
	f.event("docker start %s", StoreService)
	return f.cluster.Docker.Start(context.WithoutCancel(ctx), StoreService)
}

func restartCluster(ctx context.Context, f *fault) error {
	f.target = strings.Join(Nodes, ",")
	f.event("docker stop %s (all at once)", f.target)
	if err := eachNode(func(n string) error { return f.cluster.Docker.Stop(ctx, n) }); err != nil {
		return err
	}
	f.event("all nodes stopped; docker start %s", f.target)
	return eachNode(func(n string) error { return f.cluster.Docker.Start(ctx, n) })
}

// eachNode runs fn for every node at once.
func eachNode(fn func(node string) error) error {
	errs := make([]error, len(Nodes))
	var wg sync.WaitGroup
	for i, n := range Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func rollingRestart(ctx context.Context, f *fault) error {
	leader, err := f.cluster.Leader(ctx)
	if err != nil {
		return err
	}
	order := append(Followers(leader), leader)
	f.target = strings.Join(order, ",")
	for _, node := range order {
		f.event("docker stop %s", node)
		if err := f.cluster.Docker.Stop(ctx, node); err != nil {
			return err
		}
		f.event("docker start %s", node)
		if err := f.cluster.Docker.Start(ctx, node); err != nil {
			return err
		}
		took, err := f.cluster.WaitReady(ctx, f.readyTimeout)
		if err != nil {
			return err
		}
		f.event("cluster ready again %s after starting %s", took.Round(time.Millisecond), node)
	}
	return nil
}

// Package consensus replicates Flotilla's repository index and user set
// through hashicorp/raft.
//
// The state machine (FSM) holds repositories, tags, manifests, blob links,
// referrers, upload sessions and users. Every change is a Command, encoded
// with a leading version byte, proposed to Raft and applied in log order on
// every node. Apply is deterministic and touches nothing outside the state:
// the proposer chooses ids and timestamps, and the state machine only checks
// and records them. The package does not depend on HTTP or object storage.
package consensus

package scenario

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Verification settings.
const (
	// verifyWorkers is how many images are checked at once per node.
	verifyWorkers = 4
	// verifyAttempts is how often a check that failed for another reason
	// than missing or different content is tried.
	verifyAttempts = 3
	// maxSamples is how many failed images a NodeCheck names.
	maxSamples = 5
)

// NodeCheck is the verification result of one node.
type NodeCheck struct {
	Node string `json:"node"`
	// Checked counts the acknowledged images pulled from this node.
	Checked int `json:"checked"`
	// Missing counts images whose manifest or a blob got a 404.
	Missing int `json:"missing"`
	// Mismatched counts images whose manifest or a blob differs from
	// what was pushed.
	Mismatched int `json:"mismatched"`
	// Errors counts images that could not be checked: every attempt
	// failed without a 404 or a wrong byte.
	Errors  int      `json:"errors"`
	Samples []string `json:"samples,omitempty"`
}

// ok reports whether every image was present and equal.
func (n NodeCheck) ok(want int) bool {
	return n.Checked == want && n.Missing == 0 && n.Mismatched == 0 && n.Errors == 0
}

// verify pulls every image from every node directly, on the node's own
// port, and compares manifests and blobs byte for byte with what was
// pushed.
func verify(ctx context.Context, c *Cluster, images []*Image) ([]NodeCheck, error) {
	checks := make([]NodeCheck, 0, len(Nodes))
	for _, node := range Nodes {
		client, err := c.NodeClient(ctx, node, nil)
		if err != nil {
			return checks, err
		}
		checks = append(checks, verifyNode(ctx, client, node, images))
		client.Close()
	}
	return checks, nil
}

func verifyNode(ctx context.Context, client *Client, node string, images []*Image) NodeCheck {
	result := NodeCheck{Node: node}
	var mu sync.Mutex
	work := make(chan *Image)
	var wg sync.WaitGroup
	for range verifyWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for img := range work {
				err := checkWithRetry(ctx, client, img)
				mu.Lock()
				result.add(img, err)
				mu.Unlock()
			}
		}()
	}
	for _, img := range images {
		work <- img
	}
	close(work)
	wg.Wait()
	return result
}

func (n *NodeCheck) add(img *Image, err error) {
	n.Checked++
	if err == nil {
		return
	}
	var mismatch *mismatchError
	switch {
	case errors.Is(err, ErrNotFound):
		n.Missing++
	case errors.As(err, &mismatch):
		n.Mismatched++
	default:
		n.Errors++
	}
	if len(n.Samples) < maxSamples {
		n.Samples = append(n.Samples, img.Repo+":"+img.Tag+": "+err.Error())
	}
}

// checkWithRetry checks img. It tries again after a failure that tells
// nothing about the content, such as a timeout.
func checkWithRetry(ctx context.Context, client *Client, img *Image) error {
	var err error
	for attempt := 1; attempt <= verifyAttempts; attempt++ {
		err = img.check(ctx, client, true)
		var mismatch *mismatchError
		if err == nil || errors.Is(err, ErrNotFound) || errors.As(err, &mismatch) {
			return err
		}
		pause(ctx, time.Duration(attempt)*time.Second)
	}
	return err
}

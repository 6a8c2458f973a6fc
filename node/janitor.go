package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/flotilla-registry/flotilla/consensus"
	"github.com/flotilla-registry/flotilla/internal/upload"
)

// RunUploadExpiry deletes upload sessions untouched for maxAge, every
// interval, until ctx ends. Only the leader sweeps, so the job runs once
// per cluster.
func (s *Server) RunUploadExpiry(ctx context.Context, maxAge, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if s.raft.IsLeader() {
				s.expireUploads(ctx, now.Add(-maxAge))
			}
		}
	}
}

func (s *Server) expireUploads(ctx context.Context, before time.Time) {
	for _, u := range s.raft.State().Uploads() {
		if u.Updated >= before.UnixNano() {
			continue
		}
		_, err := s.apply(ctx, &consensus.Command{Op: consensus.OpUploadDelete, UploadID: u.ID, Repo: u.Repo})
		if err != nil {
			s.logger.Warn("expiring upload session failed", "upload_id", u.ID, "repo", u.Repo, "err", err)
			continue
		}
		var st upload.State
		if err := json.Unmarshal(u.State, &st); err == nil {
			if err := s.uploads.Abort(ctx, st); err != nil {
				s.logger.Warn("discarding expired upload content failed", "upload_id", u.ID, "err", err)
			}
		}
		s.logger.Info("upload session expired", "upload_id", u.ID, "repo", u.Repo)
	}
}

// Package logging builds the process's slog handler and bridges the
// hclog.Logger that hashicorp/raft expects onto it, so every log line of a
// node shares one handler and one set of key spellings.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// New returns a logger writing to w. level is debug, info, warn or error;
// format is text or json.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("invalid log format %q: use text or json", format)
	}
}

// Discard returns a logger that drops every record, for tests.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

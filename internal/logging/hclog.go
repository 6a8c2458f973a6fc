package logging

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// HCLog adapts an slog.Logger to the hclog.Logger interface used by
// hashicorp/raft. Raft's own messages keep their text; their key-value
// pairs become slog attributes.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return &hcAdapter{l: l.With("component", name), name: name}
}

type hcAdapter struct {
	l     *slog.Logger
	name  string
	attrs []any
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 4
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hcAdapter) Log(level hclog.Level, msg string, args ...any) {
	for i, a := range args {
		// hclog.Fmt values carry a format string and its arguments.
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				args[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	h.l.Log(context.Background(), toSlog(level), msg, args...)
}
func (h *hcAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcAdapter) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcAdapter) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcAdapter) enabled(level hclog.Level) bool {
	return h.l.Enabled(context.Background(), toSlog(level))
}
func (h *hcAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }
func (h *hcAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }
func (h *hcAdapter) IsInfo() bool  { return h.enabled(hclog.Info) }
func (h *hcAdapter) IsWarn() bool  { return h.enabled(hclog.Warn) }
func (h *hcAdapter) IsError() bool { return h.enabled(hclog.Error) }

func (h *hcAdapter) ImpliedArgs() []any { return h.attrs }
func (h *hcAdapter) With(args ...any) hclog.Logger {
	return &hcAdapter{l: h.l.With(args...), name: h.name, attrs: append(append([]any{}, h.attrs...), args...)}
}
func (h *hcAdapter) Name() string { return h.name }
func (h *hcAdapter) Named(name string) hclog.Logger {
	return h.ResetNamed(h.name + "." + name)
}
func (h *hcAdapter) ResetNamed(name string) hclog.Logger {
	return &hcAdapter{l: h.l.With("component", name), name: name, attrs: h.attrs}
}

// SetLevel is a no-op: the slog handler's level governs.
func (h *hcAdapter) SetLevel(hclog.Level) {}

func (h *hcAdapter) GetLevel() hclog.Level {
	switch {
	case h.IsTrace():
		return hclog.Trace
	case h.IsDebug():
		return hclog.Debug
	case h.IsInfo():
		return hclog.Info
	case h.IsWarn():
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (h *hcAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(h.l.Handler(), slog.LevelInfo)
}
func (h *hcAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return h.StandardLogger(nil).Writer()
}

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/flotilla-registry/flotilla/internal/config"
)

// Environment variables of the privilege drop. The container image sets
// envRunAs, so a node started there as root serves as an unprivileged
// user. Outside the image the variable is unset and nothing changes.
const (
	// envRunAs is "UID:GID", the numeric identity to serve as when the
	// process starts as root. Empty or "0:0" keeps root.
	envRunAs = "FLOTILLA_RUN_AS"
	// envRuntimeDir is the folder for private copies of files that only
	// root can read; defaultRuntimeDir when unset.
	envRuntimeDir     = "FLOTILLA_RUNTIME_DIR"
	defaultRuntimeDir = "/run/flotilla"
)

// identity is a numeric user and group.
type identity struct {
	uid, gid int
}

// parseRunAs parses the "UID:GID" value of FLOTILLA_RUN_AS.
func parseRunAs(value string) (identity, error) {
	uidText, gidText, ok := strings.Cut(value, ":")
	if !ok {
		return identity{}, fmt.Errorf("%s=%q is not UID:GID, such as 65532:65532", envRunAs, value)
	}
	uid, err := strconv.ParseUint(uidText, 10, 31)
	if err != nil {
		return identity{}, fmt.Errorf("%s=%q: invalid user id %q", envRunAs, value, uidText)
	}
	gid, err := strconv.ParseUint(gidText, 10, 31)
	if err != nil {
		return identity{}, fmt.Errorf("%s=%q: invalid group id %q", envRunAs, value, gidText)
	}
	return identity{uid: int(uid), gid: int(gid)}, nil
}

// dropPrivileges switches a node started as root to the identity in
// FLOTILLA_RUN_AS. First it does what only root can do. It hands the data
// folders to that identity. It copies TLS and htpasswd files that the
// identity cannot read into a private folder and points cfg at the copies.
// This makes registry:2's usual setup work unchanged: a data folder
// bind-mounted from the host (created by Docker as root) and a key file of
// mode 0600 owned by root. Without the variable, or when the process is not
// root, it does nothing.
//
// syscall.Setuid and Setgid change every thread of the process on Linux
// since Go 1.16, so no goroutine keeps root.
func dropPrivileges(cfg *config.Config, logger *slog.Logger) error {
	value := os.Getenv(envRunAs)
	if value == "" || os.Geteuid() != 0 {
		return nil
	}
	id, err := parseRunAs(value)
	if err != nil {
		return err
	}
	if id.uid == 0 {
		logger.Warn("the node runs as root because " + envRunAs + " names user 0")
		return nil
	}

	for _, dir := range dataFolders(cfg) {
		if err := ownTree(dir, id, logger); err != nil {
			return err
		}
	}
	if err := makeReadable(cfg, id, logger); err != nil {
		return err
	}

	if err := syscall.Setgroups([]int{id.gid}); err != nil {
		return fmt.Errorf("set supplementary groups to %d: %w", id.gid, err)
	}
	if err := syscall.Setgid(id.gid); err != nil {
		return fmt.Errorf("set group id %d: %w", id.gid, err)
	}
	if err := syscall.Setuid(id.uid); err != nil {
		return fmt.Errorf("set user id %d: %w", id.uid, err)
	}
	logger.Info("running as an unprivileged user", "uid", id.uid, "gid", id.gid)
	return nil
}

// dataFolders returns the folders the node writes: the Raft data folder
// and, with the filesystem driver, the blob folder. A folder inside
// another is left out, because ownTree walks the outer one.
func dataFolders(cfg *config.Config) []string {
	var dirs []string
	if cfg.Storage.Driver == config.DriverFilesystem && cfg.Storage.Filesystem.RootDirectory != "" {
		dirs = append(dirs, filepath.Clean(cfg.Storage.Filesystem.RootDirectory))
	}
	raft := filepath.Clean(cfg.Cluster.DataDir)
	if len(dirs) == 0 || !within(raft, dirs[0]) {
		dirs = append(dirs, raft)
	}
	return dirs
}

// within reports whether path is dir or lies below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// ownTree creates dir if needed and gives it and everything below it to
// id. Symbolic links are changed themselves, never followed.
// NOTE: it stats every entry at each start, which adds start-up time to a
// filesystem blob folder with millions of files.
func ownTree(dir string, id identity, logger *slog.Logger) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("data folder %s: %w", dir, err)
	}
	if abs == "/" {
		return fmt.Errorf("data folder %s is the root folder: refusing to change the owner of every file; choose a dedicated folder", dir)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	changed := 0
	err = filepath.WalkDir(abs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if ok && int(st.Uid) == id.uid && int(st.Gid) == id.gid {
			return nil
		}
		changed++
		return os.Lchown(path, id.uid, id.gid)
	})
	if err != nil {
		return fmt.Errorf("give data folder %s to uid %d: %w", abs, id.uid, err)
	}
	if changed > 0 {
		logger.Info("data folder handed to the unprivileged user", "path", abs, "entries", changed,
			"uid", id.uid, "gid", id.gid)
	}
	return nil
}

// makeReadable replaces every configured file that id cannot read by a
// private copy that it can. Certificates and keys are read once at start,
// so a copy behaves like the original. The htpasswd file is polled for
// changes, which a copy does not see, so that case gets a warning.
func makeReadable(cfg *config.Config, id identity, logger *slog.Logger) error {
	files := []*string{
		&cfg.HTTP.TLS.Certificate, &cfg.HTTP.TLS.Key,
		&cfg.Cluster.TLS.Certificate, &cfg.Cluster.TLS.Key, &cfg.Cluster.TLS.CA,
	}
	for i := range cfg.HTTP.TLS.ClientCAs {
		files = append(files, &cfg.HTTP.TLS.ClientCAs[i])
	}
	if h := cfg.Auth.Htpasswd; h != nil {
		files = append(files, &h.Path)
	}
	runtimeDir := os.Getenv(envRuntimeDir)
	if runtimeDir == "" {
		runtimeDir = defaultRuntimeDir
	}
	for n, path := range files {
		if *path == "" {
			continue
		}
		ok, err := readableBy(*path, id)
		if err != nil || ok {
			// A missing file is reported by the code that opens it.
			continue
		}
		copyPath := filepath.Join(runtimeDir, fmt.Sprintf("%d-%s", n, filepath.Base(*path)))
		if err := copyPrivate(*path, copyPath, runtimeDir, id); err != nil {
			return err
		}
		logger.Info("file readable only by root copied for the unprivileged user",
			"path", *path, "copy", copyPath)
		if cfg.Auth.Htpasswd != nil && path == &cfg.Auth.Htpasswd.Path {
			logger.Warn("changes to the htpasswd file take effect only after a restart, because the "+
				"unprivileged user cannot read it; make it readable by that user, for example "+
				"with chmod 0644 or chown", "path", *path, "uid", id.uid)
		}
		*path = copyPath
	}
	return nil
}

// readableBy reports whether id may open path for reading, judged by the
// permission bits of the file and the search bits of every folder above
// it.
// NOTE: POSIX ACLs and capabilities are not considered; a file readable
// only through an ACL is copied although the copy is not needed.
func readableBy(path string, id identity) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	info, err := os.Stat(abs)
	if err != nil {
		return false, err
	}
	if !permits(info, id, 4) {
		return false, nil
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		dinfo, err := os.Stat(dir)
		if err != nil {
			return false, err
		}
		if !permits(dinfo, id, 1) {
			return false, nil
		}
		if dir == "/" {
			return true, nil
		}
	}
}

// permits reports whether the permission bits of info grant id the
// access in bit (4 read, 2 write, 1 search).
func permits(info fs.FileInfo, id identity, bit fs.FileMode) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	perm := info.Mode().Perm()
	switch {
	case int(st.Uid) == id.uid:
		return perm&(bit<<6) != 0
	case int(st.Gid) == id.gid:
		return perm&(bit<<3) != 0
	default:
		return perm&bit != 0
	}
}

// copyPrivate copies src to dst with mode 0600, both dst and its folder
// owned by id.
func copyPrivate(src, dst, dir string, id identity) error {
	// The folders above must stay searchable by id, so only the last one
	// is private.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create runtime folder %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create runtime folder %s: %w", dir, err)
	}
	if err := os.Chown(dir, id.uid, id.gid); err != nil {
		return fmt.Errorf("give runtime folder %s to uid %d: %w", dir, id.uid, err)
	}

	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	// Remove a copy left by an earlier start, so OpenFile creates a
	// fresh file with mode 0600 instead of keeping an old mode.
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if err := out.Chown(id.uid, id.gid); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

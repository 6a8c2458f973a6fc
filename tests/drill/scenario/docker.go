package scenario

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"time"
)

// dockerTimeout bounds one docker command. docker stop waits up to the
// service's stop_grace_period (20 s in docker-compose.yml) first.
const dockerTimeout = 60 * time.Second

// maxCopyBytes bounds a file read out of a container.
const maxCopyBytes = 1 << 20

// Docker controls the containers of one compose project through the docker
// command line. Both compose implementations label containers the same
// way, so it works with either.
type Docker struct {
	// Project is the compose project name (docker-compose -p).
	Project string
}

// run executes docker with args and returns its trimmed standard output.
func (d *Docker) run(ctx context.Context, args ...string) (string, error) {
	out, err := d.runBytes(ctx, args...)
	return strings.TrimSpace(string(out)), err
}

// Container returns the id of the service's container, running or not.
// One-off containers of "compose run" are left out.
func (d *Docker) Container(ctx context.Context, service string) (string, error) {
	out, err := d.run(ctx, "ps", "-a", "-q", "--no-trunc",
		"--filter", "label=com.docker.compose.project="+d.Project,
		"--filter", "label=com.docker.compose.service="+service,
		"--filter", "label=com.docker.compose.oneoff=False")
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "", fmt.Errorf("compose project %s has no container for service %s: is the cluster up?",
			d.Project, service)
	}
	return ids[0], nil
}

// do runs "docker VERB CONTAINER EXTRA..." on the service's container.
func (d *Docker) do(ctx context.Context, verb, service string, extra ...string) error {
	id, err := d.Container(ctx, service)
	if err != nil {
		return err
	}
	args := append([]string{verb}, extra...)
	_, err = d.run(ctx, append(args, id)...)
	return err
}

// Kill sends SIGKILL to the service's container.
func (d *Docker) Kill(ctx context.Context, service string) error {
	return d.do(ctx, "kill", service)
}

// Stop stops the container gracefully: SIGTERM, then SIGKILL after its
// stop grace period.
func (d *Docker) Stop(ctx context.Context, service string) error {
	return d.do(ctx, "stop", service)
}

// Start starts a stopped container.
func (d *Docker) Start(ctx context.Context, service string) error {
	return d.do(ctx, "start", service)
}

// Pause freezes every process of the container.
func (d *Docker) Pause(ctx context.Context, service string) error {
	return d.do(ctx, "pause", service)
}

// Unpause resumes a paused container.
func (d *Docker) Unpause(ctx context.Context, service string) error {
	return d.do(ctx, "unpause", service)
}

// Running reports whether the service's container runs and is not paused.
func (d *Docker) Running(ctx context.Context, service string) (bool, error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return false, err
	}
	out, err := d.run(ctx, "inspect", "-f", "{{.State.Running}} {{.State.Paused}}", id)
	if err != nil {
		return false, err
	}
	return out == "true false", nil
}

// endpoint is a container's attachment to one network.
type endpoint struct {
	Aliases   []string
	IPAddress string
}

// Disconnect cuts the service's container off every network it is on. It
// returns the function that connects it again with the same aliases, so
// that the compose service name resolves to it again.
func (d *Docker) Disconnect(ctx context.Context, service string) (reconnect func(context.Context) error, err error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return nil, err
	}
	out, err := d.run(ctx, "inspect", "-f", "{{json .NetworkSettings.Networks}}", id)
	if err != nil {
		return nil, err
	}
	var networks map[string]endpoint
	if err := json.Unmarshal([]byte(out), &networks); err != nil {
		return nil, fmt.Errorf("parse networks of %s: %w", service, err)
	}
	if len(networks) == 0 {
		return nil, fmt.Errorf("container of %s is on no network", service)
	}
	var done []string
	for name := range networks {
		if _, err := d.run(ctx, "network", "disconnect", name, id); err != nil {
			return nil, err
		}
		done = append(done, name)
	}
	reconnect = func(ctx context.Context) error {
		var errs []error
		for _, name := range done {
			args := []string{"network", "connect"}
			for _, alias := range networks[name].Aliases {
				// The short container id is an alias Docker adds itself.
				if !strings.HasPrefix(id, alias) {
					args = append(args, "--alias", alias)
				}
			}
			if _, err := d.run(ctx, append(args, name, id)...); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return reconnect, nil
}

// HostPort returns the loopback address at which the host reaches the
// container's TCP port, as published by compose.
func (d *Docker) HostPort(ctx context.Context, service string, port int) (string, error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return "", err
	}
	out, err := d.run(ctx, "port", id, fmt.Sprintf("%d/tcp", port))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		host, p, err := net.SplitHostPort(strings.TrimSpace(line))
		if err != nil {
			continue
		}
		ip := net.ParseIP(host)
		if ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) && ip.To4() != nil {
			return net.JoinHostPort("127.0.0.1", p), nil
		}
	}
	return "", fmt.Errorf("port %d of %s is not published on an IPv4 loopback or wildcard address: %q",
		port, service, out)
}

// IPAddress returns the container's address on its compose network.
func (d *Docker) IPAddress(ctx context.Context, service string) (string, error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return "", err
	}
	out, err := d.run(ctx, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id)
	if err != nil {
		return "", err
	}
	fields := strings.Fields(out)
	if len(fields) == 0 {
		return "", fmt.Errorf("container of %s has no IP address", service)
	}
	return fields[0], nil
}

// ReadFile returns a file of the service's container, which may be
// stopped, through "docker cp", which writes a tar stream.
func (d *Docker) ReadFile(ctx context.Context, service, path string) ([]byte, error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return nil, err
	}
	out, err := d.runBytes(ctx, "cp", id+":"+path, "-")
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", path, service, err)
		}
		if h.Typeflag == tar.TypeReg {
			return io.ReadAll(io.LimitReader(tr, maxCopyBytes))
		}
	}
}

// runBytes runs docker and returns its standard output unchanged, for
// binary output.
func (d *Docker) runBytes(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, dockerTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Exec runs a command in the service's running container and returns its
// standard output.
func (d *Docker) Exec(ctx context.Context, service string, command ...string) (string, error) {
	id, err := d.Container(ctx, service)
	if err != nil {
		return "", err
	}
	return d.run(ctx, append([]string{"exec", id}, command...)...)
}

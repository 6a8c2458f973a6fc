package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every Linux architecture that Go supports.
const clockTicks = 100

// ProcessStats are the memory and CPU figures of one process.
type ProcessStats struct {
	// Name is the caller's name for the process, such as "node1".
	Name string `json:"name"`
	PID  int    `json:"pid"`
	// PeakRSS is VmHWM from /proc/PID/status, RSS is VmRSS, in bytes.
	PeakRSS int64 `json:"peak_rss_bytes"`
	RSS     int64 `json:"rss_bytes"`
	// RSSAnon and RSSFile split RSS into anonymous memory (the Go heap,
	// stacks) and file pages mapped into the process, such as a
	// memory-mapped Raft log.
	RSSAnon int64 `json:"rss_anon_bytes"`
	RSSFile int64 `json:"rss_file_bytes"`
	// CPUSeconds is user plus system time since the process started.
	CPUSeconds float64 `json:"cpu_seconds"`
}

// ReadProcessStats reads the figures of a running process from /proc.
func ReadProcessStats(name string, pid int) (ProcessStats, error) {
	ps := ProcessStats{Name: name, PID: pid}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, fmt.Errorf("process %s (%d): %w", name, pid, err)
	}
	if ps.PeakRSS, err = statusKiB(status, "VmHWM"); err != nil {
		return ps, fmt.Errorf("process %s (%d): %w", name, pid, err)
	}
	if ps.RSS, err = statusKiB(status, "VmRSS"); err != nil {
		return ps, fmt.Errorf("process %s (%d): %w", name, pid, err)
	}
	// RssAnon and RssFile exist since Linux 4.5; older kernels leave
	// them zero.
	ps.RSSAnon, _ = statusKiB(status, "RssAnon")
	ps.RSSFile, _ = statusKiB(status, "RssFile")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, fmt.Errorf("process %s (%d): %w", name, pid, err)
	}
	if ps.CPUSeconds, err = statCPUSeconds(string(stat)); err != nil {
		return ps, fmt.Errorf("process %s (%d): %w", name, pid, err)
	}
	return ps, nil
}

// statusKiB returns a "kB" field of /proc/PID/status in bytes.
func statusKiB(status []byte, field string) (int64, error) {
	scanner := bufio.NewScanner(bytes.NewReader(status))
	for scanner.Scan() {
		key, value, ok := strings.Cut(scanner.Text(), ":")
		if !ok || key != field {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("invalid %s %q: %w", field, value, err)
		}
		return kib << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// statCPUSeconds returns utime + stime of a /proc/PID/stat line. The
// command name in brackets may contain spaces, so fields are counted
// after its closing bracket: state is field 3, utime 14 and stime 15.
func statCPUSeconds(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("invalid /proc stat line")
	}
	fields := strings.Fields(stat[i+1:])
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("short /proc stat line: %d fields", len(fields)+2)
	}
	u, err1 := strconv.ParseInt(fields[utime], 10, 64)
	s, err2 := strconv.ParseInt(fields[stime], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("invalid utime %q or stime %q", fields[utime], fields[stime])
	}
	return float64(u+s) / clockTicks, nil
}

// LoadAvg returns the 1, 5 and 15 minute load averages from
// /proc/loadavg, or zeros when it cannot be read.
func LoadAvg() [3]float64 {
	var avg [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return avg
	}
	fields := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(fields); i++ {
		avg[i], _ = strconv.ParseFloat(fields[i], 64)
	}
	return avg
}

// ProcessSnapshot is the kind "processes" record of the results folder:
// the figures of the servers of one section at one moment.
type ProcessSnapshot struct {
	Kind      string         `json:"kind"`
	Label     string         `json:"label"`
	Time      time.Time      `json:"time"`
	LoadAvg   [3]float64     `json:"load_avg"`
	Processes []ProcessStats `json:"processes"`
}

// SystemInfo is the kind "system" record: the machine the results were
// measured on.
type SystemInfo struct {
	Kind      string     `json:"kind"`
	Label     string     `json:"label"`
	Time      time.Time  `json:"time"`
	CPUs      int        `json:"cpus"`
	CPUModel  string     `json:"cpu_model"`
	MemTotal  int64      `json:"mem_total_bytes"`
	Kernel    string     `json:"kernel"`
	GoVersion string     `json:"go_version"`
	LoadAvg   [3]float64 `json:"load_avg"`
}

// ReadSystemInfo describes this machine.
func ReadSystemInfo(label string) SystemInfo {
	info := SystemInfo{
		Kind:      "system",
		Label:     label,
		Time:      time.Now().UTC(),
		CPUs:      runtime.NumCPU(),
		GoVersion: runtime.Version(),
		LoadAvg:   LoadAvg(),
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if key, value, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(key) == "model name" {
				info.CPUModel = strings.TrimSpace(value)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		info.MemTotal, _ = statusKiB(b, "MemTotal")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		info.Kernel = strings.TrimSpace(string(b))
	}
	return info
}

// selfCPUSeconds returns the CPU time this process has used.
func selfCPUSeconds() float64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	s, _ := statCPUSeconds(string(b))
	return s
}

//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat:
// sysconf(_SC_CLK_TCK), asked of getconf; 100 on Linux.
var clockTicks = sync.OnceValue(func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
})

// cpuSeconds is the user plus system CPU time the process pid has used so
// far (utime and stime, fields 14 and 15 of /proc/PID/stat).
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q, stime %q", pid, f[14-3], f[15-3])
	}
	return float64(utime+stime) / clockTicks(), nil
}

// statusBytes reads a memory line of /proc/PID/status ("VmHWM", "VmRSS"),
// which the kernel gives in kB, and returns bytes.
func statusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: %q", pid, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s line", pid, field)
}

// procStat is what the benchmark reads of one process in /proc/PID/stat.
type procStat struct {
	comm string
	ppid int
	cpu  float64 // utime+stime, seconds
}

func readProcStat(pid int) (procStat, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(data)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return procStat{}, false
	}
	f := strings.Fields(s[j+1:])
	if len(f) < 13 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[4-3])
	utime, _ := strconv.ParseInt(f[14-3], 10, 64)
	stime, _ := strconv.ParseInt(f[15-3], 10, 64)
	return procStat{comm: s[i+1 : j], ppid: ppid, cpu: float64(utime+stime) / clockTicks()}, true
}

// descendants returns the benchmark's own descendants (the daemons and
// foxproxies it started, and their children, such as c-icap's workers) by
// PID. Only these are ever measured: other processes on a shared machine,
// even of the same programs, are not ours.
func descendants() map[int]procStat {
	all := map[int]procStat{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			all[pid] = st
		}
	}
	mine := map[int]bool{os.Getpid(): true}
	for changed := true; changed; {
		changed = false
		for pid, st := range all {
			if !mine[pid] && mine[st.ppid] {
				mine[pid] = true
				changed = true
			}
		}
	}
	out := map[int]procStat{}
	for pid := range mine {
		if pid != os.Getpid() {
			out[pid] = all[pid]
		}
	}
	return out
}

// cpuByProgram is the CPU time that each program among the descendants
// used between two snapshots (a process that is new in after counts from
// zero). foxPID's process is "foxproxy"; other foxproxies (idle ones of
// other rows) are left out.
func cpuByProgram(before, after map[int]procStat, foxPID int) map[string]float64 {
	out := map[string]float64{}
	for pid, a := range after {
		name := a.comm
		switch {
		case pid == foxPID:
			name = "foxproxy"
		case strings.Contains(name, "foxproxy"):
			continue
		}
		d := a.cpu - before[pid].cpu
		if d > 0 {
			out[name] += d
		}
	}
	return out
}

// machineBusy is the CPU time all processors have spent not idle since
// boot (user, nice, system, irq, softirq and steal from the first line of
// /proc/stat), in seconds. Its growth during a run, less the benchmark's
// own processes, is what the rest of a shared machine took meanwhile.
func machineBusy() float64 {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, _ := strconv.ParseInt(f[i], 10, 64)
		busy += v
	}
	return float64(busy) / clockTicks()
}

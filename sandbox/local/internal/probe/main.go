// Command probe runs inside a sandbox during the local backend's tests: it attempts what a sandbox
// must not be able to do (mount, load modules, raw sockets, new user namespaces, ptrace, …) and
// prints each outcome as JSON, and it drives the limit tests (memory, fork and CPU bombs).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe isolation [ptrace-pid] [host-addr] [host-file] | membomb | forkbomb N | spin SECONDS THREADS | sleep")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "isolation":
		isolation(os.Args[2:])
	case "membomb":
		membomb()
	case "forkbomb":
		n, _ := strconv.Atoi(os.Args[2])
		forkbomb(n)
	case "spin":
		secs, _ := strconv.Atoi(os.Args[2])
		threads, _ := strconv.Atoi(os.Args[3])
		spin(time.Duration(secs)*time.Second, threads)
	case "sleep":
		time.Sleep(time.Hour)
	default:
		os.Exit(2)
	}
}

// outcome is "allowed" or the error's errno name.
func outcome(err error) string {
	if err == nil {
		return "allowed"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

func isolation(args []string) {
	res := map[string]string{}
	res["mount"] = outcome(unix.Mount("none", "/mnt", "tmpfs", 0, ""))
	res["mount_proc"] = outcome(unix.Mount("proc", "/mnt", "proc", 0, ""))
	if f, err := os.Open("/.agent/envd"); err == nil {
		res["finit_module"] = outcome(unix.FinitModule(int(f.Fd()), "", 0))
		f.Close()
	}
	res["init_module"] = outcome(unix.InitModule([]byte{0x7f, 'E', 'L', 'F'}, ""))
	res["sysrq"] = outcome(os.WriteFile("/proc/sysrq-trigger", []byte("h"), 0))
	res["mknod"] = outcome(unix.Mknod("/tmp/probe-null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	res["raw_socket"] = outcome(err)
	if err == nil {
		unix.Close(fd)
	}
	fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	res["packet_socket"] = outcome(err)
	if err == nil {
		unix.Close(fd)
	}
	// A child in a new user namespace would hold every capability there.
	cmd := exec.Command("/proc/self/exe", "sleep")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
	err = cmd.Start()
	if err == nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	res["clone_newuser"] = outcome(err)
	runtime.LockOSThread()
	res["unshare_newns"] = outcome(unix.Unshare(unix.CLONE_NEWNS))
	res["setns"] = outcome(func() error {
		f, err := os.Open("/proc/1/ns/mnt")
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Setns(int(f.Fd()), 0)
	}())
	res["chroot_escape_pivot"] = outcome(unix.PivotRoot("/tmp", "/tmp"))
	res["bpf"] = outcome(func() error {
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	}())
	res["keyctl"] = outcome(func() error {
		_, err := unix.KeyctlGetKeyringID(unix.KEY_SPEC_SESSION_KEYRING, false)
		return err
	}())
	res["write_usr"] = outcome(os.WriteFile("/usr/probe-write", []byte("x"), 0o644))
	res["set_hostname"] = outcome(unix.Sethostname([]byte("escaped")))
	res["reboot"] = outcome(unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF))
	res["settimeofday"] = outcome(unix.Settimeofday(&unix.Timeval{Sec: 1}))
	if len(args) > 0 {
		pid, _ := strconv.Atoi(args[0])
		err := unix.PtraceAttach(pid)
		if err == nil {
			_ = unix.PtraceDetach(pid)
		}
		res["ptrace_host_pid"] = outcome(err)
	}
	if len(args) > 1 {
		c, err := net.DialTimeout("tcp", args[1], 2*time.Second)
		if err == nil {
			c.Close()
		}
		res["connect_host"] = outcome(err)
	}
	if len(args) > 2 {
		_, err := os.Stat(args[2])
		res["host_file"] = outcome(err)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// membomb allocates and touches memory until the kernel kills it.
func membomb() {
	var keep [][]byte
	for i := 0; ; i++ {
		b := make([]byte, 8<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = 1
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Printf("allocated %d MiB\n", (i+1)*8)
		}
	}
}

// forkbomb starts n sleeping children (each a fork+exec) and reports how many forks failed.
func forkbomb(n int) {
	ok, failed := 0, 0
	var procs []*os.Process
	for i := 0; i < n; i++ {
		cmd := exec.Command("/proc/self/exe", "sleep")
		if err := cmd.Start(); err != nil {
			failed++
			continue
		}
		ok++
		procs = append(procs, cmd.Process)
	}
	fmt.Printf("started %d failed %d\n", ok, failed)
	for _, p := range procs {
		_ = p.Kill()
		_, _ = p.Wait()
	}
}

// spin keeps threads busy for d.
func spin(d time.Duration, threads int) {
	runtime.GOMAXPROCS(threads)
	deadline := time.Now().Add(d)
	done := make(chan struct{})
	for i := 0; i < threads; i++ {
		go func() {
			x := 0
			for time.Now().Before(deadline) {
				for j := 0; j < 1000000; j++ {
					x += j
				}
			}
			_ = x
			done <- struct{}{}
		}()
	}
	for i := 0; i < threads; i++ {
		<-done
	}
}

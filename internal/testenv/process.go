package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/herald-lb/herald/internal/pinnedexec"
)

// process is a control-plane process started in its own process group,
// with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has been reaped
	waitErr error         // valid after done is closed
}

// startProcess starts bin with args, its stdout and stderr appended to
// logPath. The process gets its own process group, so that stop reaches
// anything it spawns, and SIGKILL when this process dies (Pdeathsig, from
// a thread of its own: see pinnedexec), so that a crashed test does not
// leave it running.
func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	// The child has its own copy of the descriptor.
	defer logFile.Close()

	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	if err := pinnedexec.Start(cmd, func(err error) {
		p.waitErr = err
		close(p.done)
	}); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

// pid returns the process id, which is also its process group id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// exitErr returns a non-nil error describing the exit if the process has
// exited, with the tail of its log.
func (p *process) exitErr() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	state := "exited"
	if p.waitErr != nil {
		state = p.waitErr.Error()
	}
	err := fmt.Errorf("%s exited early (%s); last lines of %s:\n%s", p.name, state, p.logPath, p.tail())
	if p.addrInUse() {
		err = fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// tail returns the last lines of the process log.
func (p *process) tail() string { return TailFile(p.logPath, 40) }

// addrInUse reports whether the process log says a port was taken.
func (p *process) addrInUse() bool {
	data, err := os.ReadFile(p.logPath)
	return err == nil && bytes.Contains(data, []byte("address already in use"))
}

// stop sends SIGTERM to the process group, waits up to grace for the process
// to exit and then kills the group. It returns once the process is reaped.
func (p *process) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := syscall.Kill(-p.pid(), syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("terminate %s: %w", p.name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := syscall.Kill(-p.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// TailFile returns the last n lines of the file at path, or a note why it
// could not be read.
func TailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxTail = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		if _, err := f.Seek(-maxTail, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read %s: %v)", path, err)
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

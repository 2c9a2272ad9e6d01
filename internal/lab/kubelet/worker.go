package kubelet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/herald-lb/herald/internal/lab/images"
	"github.com/herald-lb/herald/internal/lab/labnet"
)

const (
	// retryEvery is how soon a failed step (network, volumes) is retried.
	retryEvery = 2 * time.Second
	// maxBackoff caps the restart back-off of a crashing container (the
	// kubelet's is 5 minutes; the lab is for watching things recover).
	maxBackoff = 30 * time.Second
	// shutdownGrace bounds the stop of every Pod when the kubelet stops.
	shutdownGrace = 5 * time.Second
)

// defaultCapabilities is what a container runtime grants by default.
func defaultCapabilities() []string {
	return []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
		"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}
}

// podWorker owns one Pod: its network, volumes, processes and status. All
// of its state is guarded by mu; run's loop does the work and other
// goroutines (informer, process waiters, probes) only record and kick.
type podWorker struct {
	k    *Kubelet
	kick chan struct{}

	mu       sync.Mutex
	pod      *corev1.Pod
	gone     bool
	network  *podNetwork
	netns    string
	podIPs   []string // IPv4 first
	volumes  map[string]string
	refresh  time.Time
	podError string // why the Pod cannot start, for its conditions
	started  time.Time
	ctrs     map[string]*container
	pushed   *corev1.PodStatus
}

// container is one container's process and state across restarts.
type container struct {
	spec     corev1.Container
	cmd      *exec.Cmd
	exited   chan struct{}
	stop     context.CancelFunc // stops its probes
	running  bool
	startAt  metav1.Time
	restarts int32
	ready    bool
	last     *corev1.ContainerStateTerminated
	waiting  *corev1.ContainerStateWaiting
	backoff  time.Duration
	next     time.Time
	image    string // the built-in program, as ImageID
	done     bool   // exited and will not restart
}

func newPodWorker(k *Kubelet, pod *corev1.Pod) *podWorker {
	return &podWorker{k: k, kick: make(chan struct{}, 1), pod: pod, ctrs: map[string]*container{}}
}

func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// update records the newest state of the Pod.
func (w *podWorker) update(pod *corev1.Pod, gone bool) {
	w.mu.Lock()
	w.pod, w.gone = pod, w.gone || gone
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) logger() *slog.Logger {
	return w.k.log.With("pod", w.pod.Namespace+"/"+w.pod.Name)
}

// run syncs the Pod whenever something changes or a deadline passes, until
// the Pod is gone (or deleted and stopped), or ctx is done.
func (w *podWorker) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			w.mu.Lock()
			w.stopAll(shutdownGrace)
			w.releaseNetwork()
			w.mu.Unlock()
			return
		case <-w.kick:
		case <-timer.C:
		}
		finished, next := w.sync(ctx)
		if finished {
			return
		}
		timer.Reset(next)
	}
}

// sync moves the Pod one step toward its spec and returns whether the
// worker is finished and when to look again.
func (w *podWorker) sync(ctx context.Context) (bool, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pod := w.pod
	log := w.logger()

	if w.gone {
		w.stopAll(time.Second)
		w.releaseNetwork()
		w.removeVolumes()
		return true, 0
	}
	if pod.DeletionTimestamp != nil {
		grace := time.Duration(ptr.Deref(pod.DeletionGracePeriodSeconds, 30)) * time.Second
		w.stopAll(grace)
		w.releaseNetwork()
		err := w.k.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To(int64(0)),
			Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			log.Warn("kubelet: delete stopped pod", "err", err)
			return false, retryEvery
		}
		w.removeVolumes()
		log.Info("kubelet: pod stopped and deleted")
		return true, 0
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false, time.Hour
	}
	if w.started.IsZero() {
		w.started = time.Now()
	}

	next := time.Hour
	soon := func(d time.Duration) { next = min(next, max(d, 10*time.Millisecond)) }
	w.podError = ""
	if err := w.ensureNetwork(); err != nil {
		w.podError = err.Error()
		soon(retryEvery)
	} else if err := w.ensureVolumes(ctx); err != nil {
		w.podError = err.Error()
		soon(retryEvery)
	} else if len(pod.Spec.InitContainers) > 0 {
		w.podError = "init containers are not supported by the lab kubelet"
	} else {
		for i := range pod.Spec.Containers {
			if d, ok := w.ensureContainer(ctx, &pod.Spec.Containers[i]); ok {
				soon(d)
			}
		}
	}
	if !w.refresh.IsZero() {
		soon(time.Until(w.refresh))
	}
	if err := w.pushStatus(ctx); err != nil {
		log.Warn("kubelet: pod status", "err", err)
		soon(retryEvery)
	}
	return false, next
}

// ensureNetwork gives the Pod its namespace and address once.
func (w *podWorker) ensureNetwork() error {
	if w.netns != "" {
		return nil
	}
	if w.pod.Spec.HostNetwork {
		w.netns, w.podIPs = w.k.cfg.NetNS, w.k.hostIPs()
		return nil
	}
	n, err := w.k.net.addPod(strings.ReplaceAll(string(w.pod.UID), "-", "")[:8])
	if err != nil {
		return err
	}
	w.network, w.netns, w.podIPs = n, n.netns, nil
	for _, a := range n.addrs {
		w.podIPs = append(w.podIPs, a.String())
	}
	return nil
}

// releaseNetwork removes the Pod's own namespace, if it has one.
func (w *podWorker) releaseNetwork() {
	if w.network != nil {
		w.k.net.removePod(w.network)
		w.network = nil
	}
	w.netns = ""
}

// removeVolumes deletes the written volumes (Secrets, tokens) of a Pod
// that is gone; its logs stay until the lab is torn down.
func (w *podWorker) removeVolumes() {
	if err := os.RemoveAll(filepath.Join(w.k.podDir(w.pod), "volumes")); err != nil {
		w.logger().Warn("kubelet: remove pod volumes", "err", err)
	}
	w.volumes = nil
}

// ensureVolumes writes the volumes once, and again when a token is due.
func (w *podWorker) ensureVolumes(ctx context.Context) error {
	if w.volumes != nil && (w.refresh.IsZero() || time.Now().Before(w.refresh)) {
		return nil
	}
	vols, refresh, err := w.k.volumes(ctx, w.pod, w.k.podDir(w.pod))
	if err != nil {
		return err
	}
	w.volumes, w.refresh = vols, refresh
	return nil
}

// ensureContainer starts the container if it should run and is not
// running; it returns when to look again if a restart is pending.
func (w *podWorker) ensureContainer(ctx context.Context, spec *corev1.Container) (time.Duration, bool) {
	c := w.ctrs[spec.Name]
	if c == nil {
		c = &container{spec: *spec}
		w.ctrs[spec.Name] = c
	}
	if c.running || c.done {
		return 0, false
	}
	if wait := time.Until(c.next); wait > 0 {
		return wait, true
	}
	argv, env, err := w.prepare(ctx, spec)
	if err != nil {
		reason := "CreateContainerConfigError"
		if errors.Is(err, images.ErrUnknownImage) {
			reason = "ErrImagePull"
		}
		c.waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: err.Error()}
		return retryEvery, true
	}
	c.spec = *spec
	if err := w.start(ctx, c, argv, env); err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "RunContainerError", Message: err.Error()}
		w.backOff(c)
		return time.Until(c.next), true
	}
	return 0, false
}

// prepare resolves the container's program and environment.
func (w *podWorker) prepare(ctx context.Context, spec *corev1.Container) ([]string, []string, error) {
	hostname := w.pod.Name
	if w.pod.Spec.HostNetwork {
		hostname = w.k.cfg.NodeName
	}
	pod := w.pod.DeepCopy()
	pod.Status.PodIP, pod.Status.HostIP = w.podIPs[0], w.k.cfg.NodeIP.String()
	env, vars, err := w.k.environment(ctx, pod, spec, hostname)
	if err != nil {
		return nil, nil, err
	}
	expandAll := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expand(s, vars)
		}
		return out
	}
	argv, err := images.Resolve(spec.Image, expandAll(spec.Command), expandAll(spec.Args),
		images.Binaries{Lab: w.k.cfg.Lab, Herald: w.k.cfg.Herald})
	if err != nil {
		return nil, nil, err
	}
	return argv, env, nil
}

// start runs the container's process through the shim.
func (w *podWorker) start(ctx context.Context, c *container, argv, env []string) error {
	spec := &c.spec
	shim := Shim{
		NetNS:        labnet.Path(w.netns),
		Hostname:     w.pod.Name,
		Capabilities: capabilities(spec.SecurityContext),
		NoNewPrivs:   spec.SecurityContext != nil && spec.SecurityContext.AllowPrivilegeEscalation != nil && !*spec.SecurityContext.AllowPrivilegeEscalation,
		WorkingDir:   spec.WorkingDir,
		Argv:         argv,
	}
	if w.pod.Spec.HostNetwork {
		shim.Hostname = w.k.cfg.NodeName
	}
	mounts := slices.Clone(spec.VolumeMounts)
	// Parents before children, so a nested mount is not hidden.
	slices.SortStableFunc(mounts, func(a, b corev1.VolumeMount) int {
		return strings.Count(path.Clean(a.MountPath), "/") - strings.Count(path.Clean(b.MountPath), "/")
	})
	for _, m := range mounts {
		src, ok := w.volumes[m.Name]
		if !ok {
			return fmt.Errorf("volume mount %q: no such volume", m.Name)
		}
		if m.SubPath != "" {
			src = filepath.Join(src, filepath.Clean("/"+m.SubPath))
		}
		spec := src + ":" + m.MountPath
		if m.ReadOnly {
			spec += ":ro"
		}
		shim.Mounts = append(shim.Mounts, spec)
	}

	logDir := filepath.Join(w.k.podDir(w.pod), "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(logDir, spec.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	cmd := exec.Command(w.k.cfg.Lab, shim.Args()...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
		Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", argv[0], err)
	}
	_ = logFile.Close()

	pctx, stop := context.WithCancel(ctx)
	c.cmd, c.exited, c.stop = cmd, make(chan struct{}), stop
	c.running, c.waiting, c.ready = true, nil, false
	c.startAt = metav1.Now()
	c.image = filepath.Base(argv[0])
	if len(argv) > 2 && argv[1] == "builtin" {
		c.image = argv[2]
	}
	w.logger().Info("kubelet: container started", "container", spec.Name, "pid", cmd.Process.Pid, "argv", strings.Join(argv, " "))

	exited := c.exited
	go func() {
		err := cmd.Wait()
		stop()
		w.mu.Lock()
		w.exited(c, cmd, err)
		w.mu.Unlock()
		close(exited)
		w.poke()
	}()
	if spec.ReadinessProbe == nil {
		c.ready = true
	} else {
		go w.probeLoop(pctx, c, spec.ReadinessProbe, false)
	}
	if spec.LivenessProbe != nil {
		go w.probeLoop(pctx, c, spec.LivenessProbe, true)
	}
	return nil
}

// exited records a process's end and schedules its restart as the Pod's
// restartPolicy says.
func (w *podWorker) exited(c *container, cmd *exec.Cmd, err error) {
	if c.cmd != cmd {
		return
	}
	code := int32(0)
	reason := "Completed"
	if err != nil {
		code, reason = 1, "Error"
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok {
				switch {
				case ws.Signaled():
					code = 128 + int32(ws.Signal())
				default:
					code = int32(ws.ExitStatus())
				}
			}
		}
	}
	c.running, c.ready, c.cmd = false, false, nil
	c.last = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, StartedAt: c.startAt, FinishedAt: metav1.Now()}
	w.logger().Info("kubelet: container exited", "container", c.spec.Name, "exitCode", code)
	switch w.pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		c.done = true
	case corev1.RestartPolicyOnFailure:
		c.done = code == 0
	}
	if !c.done {
		if time.Since(c.startAt.Time) > time.Minute {
			c.backoff = 0
		}
		w.backOff(c)
		c.restarts++
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container %s", c.backoff, c.spec.Name)}
	}
}

func (w *podWorker) backOff(c *container) {
	c.backoff = min(max(2*c.backoff, time.Second), maxBackoff)
	c.next = time.Now().Add(c.backoff)
}

// probeLoop runs a readiness or liveness probe until ctx is done.
func (w *podWorker) probeLoop(ctx context.Context, c *container, p *corev1.Probe, liveness bool) {
	pr := newProber(w.k.cfg.NetNS)
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	failures, successes := 0, 0
	failureThreshold := int(max(p.FailureThreshold, 1))
	if p.FailureThreshold == 0 {
		failureThreshold = 3
	}
	successThreshold := int(max(p.SuccessThreshold, 1))
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	w.mu.Lock()
	podIP, spec := w.podIPs[0], c.spec
	w.mu.Unlock()
	for {
		err := pr.probe(ctx, p, &spec, podIP)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures, successes = 0, successes+1
		} else {
			failures, successes = failures+1, 0
		}
		w.mu.Lock()
		switch {
		case liveness && failures >= failureThreshold && c.cmd != nil:
			w.logger().Info("kubelet: liveness probe failed, restarting", "container", spec.Name, "err", err)
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
			failures = 0
		case !liveness && err == nil && successes >= successThreshold && !c.ready:
			c.ready = true
			w.poke()
		case !liveness && err != nil && failures >= failureThreshold && c.ready:
			c.ready = false
			w.poke()
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

// stopAll stops every running container: SIGTERM to its process group,
// SIGKILL after grace. The caller holds mu; it is released while waiting.
func (w *podWorker) stopAll(grace time.Duration) {
	var waits []chan struct{}
	for _, c := range w.ctrs {
		c.done = true
		if c.running && c.cmd != nil {
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGTERM)
			waits = append(waits, c.exited)
		}
	}
	if len(waits) == 0 {
		return
	}
	w.mu.Unlock()
	defer w.mu.Lock()
	deadline := time.After(grace)
	for _, ch := range waits {
		select {
		case <-ch:
		case <-deadline:
			w.mu.Lock()
			for _, c := range w.ctrs {
				if c.running && c.cmd != nil {
					_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
				}
			}
			w.mu.Unlock()
			<-ch
		}
	}
}

// capabilities is the capability set a container's securityContext grants
// on top of (or instead of) the runtime's defaults.
func capabilities(sc *corev1.SecurityContext) []string {
	if sc != nil && ptr.Deref(sc.Privileged, false) {
		return []string{"ALL"}
	}
	caps := sets.New(defaultCapabilities()...)
	if sc != nil && sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			if string(d) == "ALL" {
				caps.Clear()
			}
			caps.Delete(strings.TrimPrefix(string(d), "CAP_"))
		}
		for _, a := range sc.Capabilities.Add {
			if string(a) == "ALL" {
				return []string{"ALL"}
			}
			caps.Insert(strings.TrimPrefix(string(a), "CAP_"))
		}
	}
	return sets.List(caps)
}

// status computes the Pod's status from the worker's state.
func (w *podWorker) status() corev1.PodStatus {
	pod := w.pod
	st := corev1.PodStatus{QOSClass: pod.Status.QOSClass, Phase: corev1.PodPending}
	if !w.started.IsZero() {
		st.StartTime = &metav1.Time{Time: w.started.Truncate(time.Second)}
	}
	for _, ip := range w.k.hostIPs() {
		st.HostIPs = append(st.HostIPs, corev1.HostIP{IP: ip})
	}
	st.HostIP = st.HostIPs[0].IP
	if w.netns != "" {
		st.PodIP = w.podIPs[0]
		for _, ip := range w.podIPs {
			st.PodIPs = append(st.PodIPs, corev1.PodIP{IP: ip})
		}
	}
	allReady, anyRunning, allDone, anyFailed := len(pod.Spec.Containers) > 0, false, len(pod.Spec.Containers) > 0, false
	for _, spec := range pod.Spec.Containers {
		cs := corev1.ContainerStatus{Name: spec.Name, Image: spec.Image, ImageID: "herald-lab://builtin"}
		c := w.ctrs[spec.Name]
		switch {
		case c == nil:
			reason, msg := "ContainerCreating", ""
			if w.podError != "" {
				reason, msg = "CreateContainerConfigError", w.podError
			}
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
		case c.running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: c.startAt}
			cs.ContainerID = fmt.Sprintf("herald-lab://%d", c.cmd.Process.Pid)
			cs.ImageID = "herald-lab://builtin/" + c.image
		case c.waiting != nil:
			cs.State.Waiting = c.waiting.DeepCopy()
		case c.last != nil:
			cs.State.Terminated = c.last.DeepCopy()
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if c != nil {
			cs.Ready = c.running && c.ready
			cs.Started = ptr.To(c.running)
			cs.RestartCount = c.restarts
			if c.last != nil && cs.State.Terminated == nil {
				cs.LastTerminationState.Terminated = c.last.DeepCopy()
			}
			anyRunning = anyRunning || c.running || !c.done
			allDone = allDone && c.done && !c.running
			anyFailed = anyFailed || (c.done && c.last != nil && c.last.ExitCode != 0)
		} else {
			allDone = false
		}
		allReady = allReady && cs.Ready
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case allDone && anyFailed:
		st.Phase = corev1.PodFailed
	case allDone:
		st.Phase = corev1.PodSucceeded
	case anyRunning && w.anyStarted():
		st.Phase = corev1.PodRunning
	}
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, "", ""
		}
		c.LastTransitionTime = metav1.Now()
		for _, old := range pod.Status.Conditions {
			if old.Type == t && old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		st.Conditions = append(st.Conditions, c)
	}
	for _, old := range pod.Status.Conditions {
		if old.Type == corev1.PodScheduled {
			st.Conditions = append(st.Conditions, old)
		}
	}
	cond(corev1.PodReadyToStartContainers, w.netns != "", "", w.podError)
	cond(corev1.PodInitialized, w.podError == "", "PodError", w.podError)
	notReady := "containers with unready status"
	cond(corev1.ContainersReady, allReady, "ContainersNotReady", notReady)
	cond(corev1.PodReady, allReady, "ContainersNotReady", notReady)
	return st
}

func (w *podWorker) anyStarted() bool {
	for _, c := range w.ctrs {
		if c.running || c.last != nil {
			return true
		}
	}
	return false
}

// pushStatus writes the status when it changed since the last write.
func (w *podWorker) pushStatus(ctx context.Context) error {
	st := w.status()
	if w.pushed != nil && apiequality.Semantic.DeepEqual(*w.pushed, st) {
		return nil
	}
	pods := w.k.cfg.Client.CoreV1().Pods(w.pod.Namespace)
	pod := w.pod.DeepCopy()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod.Status = st
		updated, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			fresh, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			if fresh.UID != w.pod.UID {
				return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
			}
			pod = fresh
			return err
		}
		if err == nil {
			w.pod = updated
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		w.gone = true
		w.poke()
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of pod %s/%s: %w", w.pod.Namespace, w.pod.Name, err)
	}
	w.pushed = &st
	return nil
}

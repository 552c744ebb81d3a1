package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// DialFromPod returns a dialer whose connections start in a pod's network
// namespace, from the pod's IP, as the pod's own application would dial:
// what a collector sees of the connection (its peer address, for
// k8s_attributes) is the pod's. The pod's container (containerID, from its
// status) must run.
func (n *Node) DialFromPod(pod *corev1.Pod, containerID string) (func(ctx context.Context, addr string) (net.Conn, error), error) {
	pids, err := n.ContainerPIDs(pod, containerID)
	if err != nil {
		return nil, err
	}
	netns := fmt.Sprintf("/proc/%d/ns/net", pids[0])
	return func(ctx context.Context, addr string) (net.Conn, error) {
		// A socket belongs to the network namespace of the thread that
		// creates it: create it on a thread of its own, moved into the
		// pod's namespace and back.
		type result struct {
			conn net.Conn
			err  error
		}
		done := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			conn, err := dialIn(ctx, netns, addr)
			if err == nil {
				runtime.UnlockOSThread() // back in the test's namespace
			} // else the thread may be left in the pod's: it ends with the goroutine
			done <- result{conn, err}
		}()
		r := <-done
		return r.conn, r.err
	}, nil
}

// dialIn dials addr from the network namespace at path, on the calling
// (locked) thread, and returns the thread to its namespace.
func dialIn(ctx context.Context, path, addr string) (net.Conn, error) {
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer own.Close()
	target, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter the pod's network namespace: %w", err)
	}
	conn, dialErr := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("return from the pod's network namespace: %w", err)
	}
	return conn, dialErr
}

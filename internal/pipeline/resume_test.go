package pipeline

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// TestAPollWaitsForTemporalToReturn: with Temporal down, a poll made
// through the worker's connection waits and goes through once the server
// listens again, rather than failing and sending the SDK's poller into a
// backoff that grows to ten seconds; any other call still fails at once.
func TestAPollWaitsForTemporalToReturn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, resumeSoon...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const service = "/temporal.api.workflowservice.v1.WorkflowService/"

	err = conn.Invoke(ctx, service+"RespondWorkflowTaskCompleted", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a completion while Temporal is down: %v; want Unavailable at once", err)
	}
	polled := make(chan error, 1)
	go func() {
		polled <- conn.Invoke(ctx, service+"PollWorkflowTaskQueue", &emptypb.Empty{}, &emptypb.Empty{})
	}()
	select {
	case err := <-polled:
		t.Fatalf("a poll while Temporal is down returned %v; want it to wait", err)
	case <-time.After(time.Second):
	}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		return stream.SendMsg(&emptypb.Empty{})
	}))
	defer srv.Stop()
	go srv.Serve(l)
	if err := <-polled; err != nil {
		t.Fatalf("the poll once Temporal is back: %v", err)
	}
}

package devstacktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"cloud.google.com/go/bigquery/storage/apiv1/storagepb"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// StorageProxy stands in front of the emulator's Storage API (gRPC) and
// passes every call through, except appends to the streams of a table
// chosen with Refuse: those it answers as BigQuery answers rows it cannot
// take (a schema changed by hand, say), with INVALID_ARGUMENT in the
// response and nothing written.
type StorageProxy struct {
	// Addr is the host:port to give the worker as its Storage endpoint.
	Addr    string
	backend *grpc.ClientConn
	srv     *grpc.Server
	refuse  atomic.Pointer[string]
	refused atomic.Int64
}

const appendRowsMethod = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows"

// NewStorageProxy starts a proxy to the Storage API at target on a
// loopback port; it stops when t ends.
func NewStorageProxy(t testing.TB, target string) *StorageProxy {
	t.Helper()
	p, err := StartStorageProxy(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// StartStorageProxy is NewStorageProxy for a command (the chaos run),
// which stops it with Close.
func StartStorageProxy(target string) (*StorageProxy, error) {
	backend, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(frameCodec{})))
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		backend.Close()
		return nil, err
	}
	p := &StorageProxy{Addr: l.Addr().String(), backend: backend}
	// Appends up to the Storage Write API's 10 MB pass (gRPC's default
	// 4 MiB would refuse some BigQuery takes); the emulator judges them.
	p.srv = grpc.NewServer(grpc.ForceServerCodec(frameCodec{}), grpc.UnknownServiceHandler(p.pass), grpc.MaxRecvMsgSize(64<<20))
	go func() { _ = p.srv.Serve(l) }()
	return p, nil
}

// Close stops the proxy.
func (p *StorageProxy) Close() {
	p.srv.Stop()
	p.backend.Close()
}

// Refuse makes appends to table's streams fail from now on; "" lets all
// through again.
func (p *StorageProxy) Refuse(table string) { p.refuse.Store(&table) }

// Refused is how many appends the proxy refused.
func (p *StorageProxy) Refused() int64 { return p.refused.Load() }

func (p *StorageProxy) refuses(stream string) bool {
	table := p.refuse.Load()
	return table != nil && *table != "" && strings.Contains(stream, "/tables/"+*table+"/")
}

// pass forwards one call, of any method, frame by frame.
func (p *StorageProxy) pass(_ any, in grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(in)
	if !ok {
		return errors.New("storage proxy: no method")
	}
	ctx, cancel := context.WithCancel(in.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(ctx)
	out, err := p.backend.NewStream(metadata.NewOutgoingContext(ctx, md.Copy()),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method)
	if err != nil {
		return err
	}
	defer func() { in.SetTrailer(out.Trailer()) }()
	if method == appendRowsMethod {
		return p.appends(in, out)
	}
	sent := make(chan error, 1)
	go func() {
		for {
			var f frame
			if err := in.RecvMsg(&f); err != nil {
				if errors.Is(err, io.EOF) {
					err = out.CloseSend()
				}
				sent <- err
				return
			}
			if err := out.SendMsg(&f); err != nil {
				sent <- err
				return
			}
		}
	}()
	for {
		var f frame
		if err := out.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := in.SendMsg(&f); err != nil {
			return err
		}
	}
}

// appends forwards an AppendRows connection one request and its answer at
// a time, answering refused ones itself. A connection names its stream
// and schema in its first request only, so the first one forwarded gets
// them if a refused request carried them.
func (p *StorageProxy) appends(in grpc.ServerStream, out grpc.ClientStream) error {
	var first *storagepb.AppendRowsRequest // the connection's stream and schema
	forwarded := false
	for {
		var f frame
		if err := in.RecvMsg(&f); err != nil {
			if errors.Is(err, io.EOF) {
				return out.CloseSend()
			}
			return err
		}
		req := &storagepb.AppendRowsRequest{}
		if err := proto.Unmarshal(f, req); err != nil {
			return fmt.Errorf("storage proxy: read append: %w", err)
		}
		if first == nil {
			first = req
		}
		stream := first.GetWriteStream()
		if p.refuses(stream) {
			p.refused.Add(1)
			resp, err := proto.Marshal(&storagepb.AppendRowsResponse{
				WriteStream: stream,
				Response: &storagepb.AppendRowsResponse_Error{Error: &status.Status{
					Code: int32(codes.InvalidArgument), Message: "injected by the test: rows refused"}},
			})
			if err != nil {
				return err
			}
			if err := in.SendMsg((*frame)(&resp)); err != nil {
				return err
			}
			continue
		}
		if !forwarded && req.GetWriteStream() == "" {
			req.WriteStream = first.GetWriteStream()
			if rows := req.GetProtoRows(); rows != nil && rows.WriterSchema == nil {
				rows.WriterSchema = first.GetProtoRows().GetWriterSchema()
			}
			b, err := proto.Marshal(req)
			if err != nil {
				return err
			}
			f = b
		}
		forwarded = true
		if err := out.SendMsg(&f); err != nil {
			return err
		}
		var resp frame
		if err := out.RecvMsg(&resp); err != nil {
			return err
		}
		if err := in.SendMsg(&resp); err != nil {
			return err
		}
	}
}

// frame is one gRPC message, passed on unread.
type frame []byte

type frameCodec struct{}

func (frameCodec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, fmt.Errorf("storage proxy: cannot send %T", v)
	}
	return *f, nil
}

func (frameCodec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return fmt.Errorf("storage proxy: cannot receive into %T", v)
	}
	*f = append((*f)[:0], data...)
	return nil
}

func (frameCodec) Name() string { return "proto" }

package kafkalog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/segmentio/kafka-go/protocol"
	fetchapi "github.com/segmentio/kafka-go/protocol/fetch"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fetchVersion is the newest Fetch version asked for: the last before
// flexible encoding and topic IDs, and well past v4, the first with
// read_committed and aborted transactions.
const fetchVersion = 11

// fetchRequest is a read_committed fetch of one partition that writes
// itself and reads its own answer on the transport's connection to the
// partition's leader. kafka-go decodes a fetch's record batches but drops
// each batch's last offset, which a compacted log needs: compaction keeps
// a batch's header when it removes the batch's last records, so a range
// can end inside a batch after its last record.
type fetchRequest struct {
	fetchapi.Request // the partition to fetch, and routing to its leader
	version          int16
}

// fetched is one partition's answer to a fetchRequest.
type fetched struct {
	ErrorCode        int16
	LastStableOffset int64
	Aborted          []abortedTransaction
	Records          protocol.RecordReader // the batches, as kafka-go decodes them
	headers          map[int64]batchHeader // each whole v2 batch's header, by its first offset
}

// batchHeader is what a v2 record batch's header says of it.
type batchHeader struct {
	last    int64 // its last offset, which compaction keeps
	records int   // how many records it holds
}

type abortedTransaction struct {
	ProducerID  int64
	FirstOffset int64
}

func (*fetched) ApiKey() protocol.ApiKey { return protocol.Fetch }

// Required makes the connection hand the request its raw stream
// (protocol.RawExchanger), at the broker's version if older.
func (r *fetchRequest) Required(versions map[protocol.ApiKey]int16) bool {
	r.version = min(versions[protocol.Fetch], fetchVersion)
	return true
}

func (r *fetchRequest) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if r.version < 4 {
		return nil, fmt.Errorf("fetch: the broker answers Fetch up to v%d; read_committed needs v4", r.version)
	}
	in := r.Topics[0].Partitions[0]
	req := kmsg.NewPtrFetchRequest()
	req.Version = r.version
	req.ReplicaID, req.MaxWaitMillis, req.MinBytes, req.MaxBytes = -1, r.MaxWaitTime, r.MinBytes, r.MaxBytes
	req.IsolationLevel = r.IsolationLevel
	p := kmsg.NewFetchRequestTopicPartition()
	p.Partition, p.FetchOffset, p.PartitionMaxBytes = in.Partition, in.FetchOffset, in.PartitionMaxBytes
	t := kmsg.NewFetchRequestTopic()
	t.Topic, t.Partitions = r.Topics[0].Topic, []kmsg.FetchRequestTopicPartition{p}
	req.Topics = []kmsg.FetchRequestTopic{t}

	const correlationID = 1 // one request at a time on this connection
	if _, err := rw.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("paystream")).AppendRequest(nil, req, correlationID)); err != nil {
		return nil, fmt.Errorf("fetch: write: %w", err)
	}
	var size [4]byte
	if _, err := io.ReadFull(rw, size[:]); err != nil {
		return nil, fmt.Errorf("fetch: read: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(rw, body); err != nil {
		return nil, fmt.Errorf("fetch: read: %w", err)
	}
	if len(body) < 4 || binary.BigEndian.Uint32(body) != correlationID {
		return nil, fmt.Errorf("fetch: an answer to another request")
	}
	resp := kmsg.NewPtrFetchResponse()
	resp.Version = r.version
	if err := resp.ReadFrom(body[4:]); err != nil {
		return nil, fmt.Errorf("fetch: decode: %w", err)
	}
	if resp.ErrorCode != 0 {
		return &fetched{ErrorCode: resp.ErrorCode}, nil
	}
	if len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) == 0 {
		return nil, fmt.Errorf("fetch %s/%d: empty answer", t.Topic, in.Partition)
	}
	return decodePartition(resp.Topics[0].Partitions[0])
}

func decodePartition(p kmsg.FetchResponseTopicPartition) (*fetched, error) {
	f := &fetched{ErrorCode: p.ErrorCode, LastStableOffset: p.LastStableOffset, headers: batchHeaders(p.RecordBatches)}
	for _, a := range p.AbortedTransactions {
		f.Aborted = append(f.Aborted, abortedTransaction{ProducerID: a.ProducerID, FirstOffset: a.FirstOffset})
	}
	if len(p.RecordBatches) == 0 {
		return f, nil
	}
	// kafka-go decodes the batches, compressed ones too, from the record
	// set as it would have read it from the wire: its size, then the
	// bytes. A batch the broker cut at the answer's size limit is dropped.
	set := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(p.RecordBatches)), uint32(len(p.RecordBatches)))
	set = append(set, p.RecordBatches...)
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bufio.NewReader(bytes.NewReader(set))); err != nil {
		return nil, fmt.Errorf("fetch: decode record batches: %w", err)
	}
	f.Records = rs.Records
	return f, nil
}

// batchHeaders reads each whole v2 record batch's header: its first and
// last offsets and its record count.
func batchHeaders(raw []byte) map[int64]batchHeader {
	const (
		lengthAt          = 8  // after the first offset
		magicAt           = 16 // after the length and partition leader epoch
		lastOffsetDeltaAt = 23 // after the magic byte, crc and attributes
		recordsAt         = 57 // after the timestamps, producer and base sequence
		headerSize        = 61
	)
	headers := map[int64]batchHeader{}
	for len(raw) > magicAt {
		first := int64(binary.BigEndian.Uint64(raw))
		size := lengthAt + 4 + int(int32(binary.BigEndian.Uint32(raw[lengthAt:])))
		if size <= magicAt || size > len(raw) {
			break // cut by the answer's size limit
		}
		if raw[magicAt] == 2 && size >= headerSize { // v0/v1 message sets carry no such header
			headers[first] = batchHeader{
				last:    first + int64(int32(binary.BigEndian.Uint32(raw[lastOffsetDeltaAt:]))),
				records: int(int32(binary.BigEndian.Uint32(raw[recordsAt:]))),
			}
		}
		raw = raw[size:]
	}
	return headers
}

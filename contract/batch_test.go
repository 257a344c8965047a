package contract

import "testing"

func TestParseIDReadsBackID(t *testing.T) {
	for _, r := range []Range{
		{Topic: "payments", Partition: 3, Start: 0, End: 20000},
		{Topic: "eu.payments-v2", Partition: 11, Start: 123456789, End: 123456790},
	} {
		got, err := ParseID(r.ID())
		if err != nil || got != r {
			t.Errorf("ParseID(%q) = %+v, %v; want %+v", r.ID(), got, err, r)
		}
	}
	for _, id := range []string{"", "ingest/payments/3", "batch/payments/3", "batch/payments/x/1-2",
		"batch/payments/3/9-2", "batch//3/1-2", "batch/payments/-1/1-2", "batch/payments/3/1-2x", "batch/payments/03/1-2"} {
		if r, err := ParseID(id); err == nil {
			t.Errorf("ParseID(%q) = %+v, want an error", id, r)
		}
	}
}

// TestIngestPartitionReadsIngestID: a partition's workflow ID reads back
// to its partition, and no other ID does.
func TestIngestPartitionReadsIngestID(t *testing.T) {
	if p, ok := IngestPartition("payments", IngestID("payments", 12)); !ok || p != 12 {
		t.Errorf("IngestID(payments, 12) read back as %d, %v", p, ok)
	}
	for _, id := range []string{"ingest/payments-eu/1", "ingest/payments/", "ingest/payments/x", "ingest/payments/01", "batch/payments/0/0-10", "supervise/payments"} {
		if p, ok := IngestPartition("payments", id); ok {
			t.Errorf("%q read as partition %d of payments", id, p)
		}
	}
}

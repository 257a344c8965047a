package kafkalog

import "testing"

// TestPartitionForKeyIsTheJavaClients: keys land where the Java client's
// default partitioner puts them, toPositive(murmur2(key)) % n, by the
// murmur2 values of Kafka's own UtilsTest; a producer in another language
// and the simulator's manifest then agree on every record's partition.
func TestPartitionForKeyIsTheJavaClients(t *testing.T) {
	for key, murmur2 := range map[string]int32{
		"21":                         -973932308,
		"foobar":                     -790332482,
		"a-little-bit-long-string":   -985981536,
		"a-little-bit-longer-string": -1486304829,
		"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
		"abc": 479470107,
	} {
		for _, n := range []int{1, 3, 8, 12, 300} {
			want := int(uint32(murmur2)&0x7fffffff) % n
			if got := PartitionForKey([]byte(key), n); got != want {
				t.Errorf("key %q over %d partitions: %d, want %d", key, n, got, want)
			}
		}
	}
}

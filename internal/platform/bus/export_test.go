package bus

import "context"

// OpenLeases opens the partition lease buckets, as a partitioned
// consumer's start does.
func OpenLeases(ctx context.Context, b *Bus) error {
	_, _, err := b.leases(ctx)
	return err
}

// SubjectPartition is the subject partition events about subject are
// published in.
var SubjectPartition = subjectPartition

// PartitionOfMessage is the partition of a message on the events stream,
// by its NATS subject.
var PartitionOfMessage = partitionOfMessage

package bus

// SubjectPartition is the subject partition events about subject are
// published in.
var SubjectPartition = subjectPartition

// PartitionOfMessage is the partition of a message on the events stream,
// by its NATS subject.
var PartitionOfMessage = partitionOfMessage

package bus

import (
	"strconv"
	"strings"
)

// Partitions is how many partitions the events are consumed in. An event
// about subject S (an order id) is published on events.<type>.<n>, n one
// of 16 subject partitions (subjectPartition); consumer partition p takes
// the subject partitions n with n % Partitions == p, so every event about
// one order is in one partition (PartitionOf). With partitioned consumers
// (Config.Partitioned) one instance at a time handles a partition, so two
// instances never handle one order's events at once, and the partitions
// spread over the instances: up to Partitions instances of a service share
// the work.
//
// Each partition is a replicated durable consumer per service, whose
// state the brokers keep and write; 4 (down from 16) cut the brokers' CPU
// per order by a third (BENCHMARKS.md). The subjects keep 16, so
// the count can change without moving stored events.
const Partitions = 4

// subjectPartitions is how many subject partitions events are published
// on: a multiple of Partitions.
const subjectPartitions = 16

// subjectPartition is the subject partition of events about subject
// (FNV-1a).
func subjectPartition(subject string) int {
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h = (h ^ uint32(subject[i])) * 16777619
	}
	return int(h % subjectPartitions)
}

// WorkerOf is which of n workers handles the events about subject, so that
// one order's events are handled in order (FNV-1a, inline: no allocation).
func WorkerOf(subject string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(subject); i++ {
		h = (h ^ uint32(subject[i])) * 16777619
	}
	return int(h % uint32(n))
}

// PartitionOf is the partition that consumes the events about subject.
func PartitionOf(subject string) int { return subjectPartition(subject) % Partitions }

// TypeSubjects are the NATS subjects of the given event types: of one
// partition, or of every partition when partition is negative (with the
// unpartitioned events.<type> that earlier versions published, so a
// consumer still sees events stored before an upgrade).
func TypeSubjects(types []string, partition int) []string {
	var out []string
	for _, t := range types {
		if partition < 0 {
			out = append(out, SubjectPrefix+t, SubjectPrefix+t+".*")
			continue
		}
		for n := partition; n < subjectPartitions; n += Partitions {
			out = append(out, typeSubject(t, n))
		}
	}
	return out
}

// typeSubject is the subject of events of type typ in subject partition n.
func typeSubject(typ string, n int) string { return SubjectPrefix + typ + "." + strconv.Itoa(n) }

// partitionOfMessage is the partition of a message on the events stream,
// from its NATS subject's last token (false: not a partitioned subject).
func partitionOfMessage(natsSubject string) (int, bool) {
	if !strings.HasPrefix(natsSubject, SubjectPrefix) {
		return 0, false
	}
	n, err := strconv.Atoi(natsSubject[strings.LastIndexByte(natsSubject, '.')+1:])
	if err != nil || n < 0 {
		return 0, false
	}
	return n % Partitions, true
}

package bus

import (
	"fmt"
	"slices"
	"testing"
)

// TestPlan: the balance decision, from what the broker says of each
// partition (its pin), the pins this instance received messages under and
// the instances counted.
func TestPlan(t *testing.T) {
	mine := partitionView{pinned: "x", ours: "x"}
	theirs := partitionView{pinned: "y", ours: "x"}
	for _, tc := range []struct {
		name           string
		views          []partitionView
		instances      int
		held, giveBack []int
	}{
		{"alone with every partition", []partitionView{mine, mine, mine, mine}, 1, []int{0, 1, 2, 3}, nil},
		{"every partition, two instances", []partitionView{mine, mine, mine, mine}, 2, []int{0, 1, 2, 3}, []int{2, 3}},
		{"every partition, three instances", []partitionView{mine, mine, mine, mine}, 3, []int{0, 1, 2, 3}, []int{2, 3}},
		{"its share of two", []partitionView{mine, theirs, mine, theirs}, 2, []int{0, 2}, nil},
		{"one of four instances", []partitionView{theirs, mine, theirs, theirs}, 4, []int{1}, nil},
		{"two of four instances", []partitionView{theirs, mine, mine, theirs}, 4, []int{1, 2}, []int{2}},
		{"more instances than partitions", []partitionView{theirs, mine, theirs, theirs}, 6, []int{1}, nil},
		{"a pin moved away (paused, woke)", []partitionView{theirs, theirs, theirs, theirs}, 2, nil, nil},
		{"pinned, no message seen yet", []partitionView{{pinned: "y"}, mine, mine, mine}, 2, []int{1, 2, 3}, []int{3}},
		{"nothing pinned", []partitionView{{}, {}, {}, {}}, 2, nil, nil},
		{"no answer counted (not even its own)", []partitionView{mine, mine, mine, mine}, 0, []int{0, 1, 2, 3}, nil},
		{"no partitions", nil, 2, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			held, giveBack := plan(tc.views, tc.instances)
			if !slices.Equal(held, tc.held) || !slices.Equal(giveBack, tc.giveBack) {
				t.Fatalf("plan(%s, %d) = held %v, give back %v; want %v, %v", fmt.Sprint(tc.views), tc.instances, held, giveBack, tc.held, tc.giveBack)
			}
		})
	}
}

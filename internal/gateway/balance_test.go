package gateway

import (
	"fmt"
	"testing"
)

func instances(t *testing.T, specs ...string) []*Instance {
	t.Helper()
	var out []*Instance
	for _, s := range specs {
		in, err := NewInstance(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, in)
	}
	return out
}

func TestSmoothWeightedFollowsWeightsEachCycle(t *testing.T) {
	ins := instances(t, "http://a:1;w=5", "http://b:1;w=2", "http://c:1;w=1")
	b := NewSmoothWeighted(ins)
	for cycle := range 20 {
		counts := map[*Instance]int{}
		prev, run := (*Instance)(nil), 0
		for range 8 { // sum of weights
			in, err := b.Pick("", nil)
			if err != nil {
				t.Fatal(err)
			}
			counts[in]++
			if in == prev {
				run++
			} else {
				prev, run = in, 1
			}
			if run > 2 {
				t.Fatalf("cycle %d: %s picked %d times in a row; smooth WRR interleaves", cycle, in.URL, run)
			}
		}
		for _, in := range ins {
			if counts[in] != in.Weight {
				t.Fatalf("cycle %d: %s picked %d times, want its weight %d", cycle, in.URL, counts[in], in.Weight)
			}
		}
	}
}

func TestRingMovesAboutOneNthOfKeys(t *testing.T) {
	var specs []string
	for i := range 5 {
		specs = append(specs, fmt.Sprintf("http://node%d:8080", i))
	}
	before := NewHashRing(instances(t, specs...), 1e9) // no load bound: pure hashing
	after := NewHashRing(instances(t, append(specs, "http://node5:8080")...), 1e9)
	const keys = 20000
	moved := 0
	for k := range keys {
		key := fmt.Sprintf("customer-%d", k)
		a, _ := before.Pick(key, nil)
		b, _ := after.Pick(key, nil)
		if a.URL.String() != b.URL.String() {
			moved++
			if b.URL.Host != "node5:8080" {
				t.Fatalf("key %s moved between old nodes (%s → %s)", key, a.URL.Host, b.URL.Host)
			}
		}
	}
	share := float64(moved) / keys
	if share > 1.0/6*1.3 || share < 1.0/6*0.7 {
		t.Fatalf("adding a 6th node moved %.1f%% of keys, want about 1/6 (16.7%%)", 100*share)
	}
}

func TestRingBoundedLoad(t *testing.T) {
	ins := instances(t, "http://a:1", "http://b:1", "http://c:1", "http://d:1")
	r := NewHashRing(ins, 0.25)
	// One very hot key: without the bound every request would go to one node.
	for range 400 {
		in, err := r.Pick("hot-customer", nil)
		if err != nil {
			t.Fatal(err)
		}
		in.Begin() // held: never released in this test
		limit := r.Cap()
		for _, x := range ins {
			if x.Inflight() > limit {
				t.Fatalf("%s has %d in flight, over the cap %d", x.URL, x.Inflight(), limit)
			}
		}
	}
	// The hot key fills instances in ring order up to the cap (125 = 1.25 ×
	// the average of 100), so it must have reached at least three of them.
	used := 0
	for _, x := range ins {
		if x.Inflight() > 126 {
			t.Fatalf("%s holds %d of 400, over 1.25 × the average", x.URL, x.Inflight())
		}
		if x.Inflight() > 0 {
			used++
		}
	}
	if used < 3 {
		t.Fatalf("the hot key reached %d instances, want at least 3", used)
	}
}

func TestLeastConnectionsAndExclusion(t *testing.T) {
	ins := instances(t, "http://a:1", "http://b:1", "http://c:1")
	ins[0].Begin()
	ins[0].Begin()
	ins[1].Begin()
	b := NewLeastConnections(ins)
	if in, _ := b.Pick("", nil); in != ins[2] {
		t.Fatalf("picked %s, want the idle c", in.URL)
	}
	if in, _ := b.Pick("", map[*Instance]bool{ins[2]: true}); in != ins[1] {
		t.Fatalf("with c excluded picked %s, want b", in.URL)
	}
	ins[1].SetHealthy(false)
	if in, _ := b.Pick("", map[*Instance]bool{ins[2]: true}); in != ins[0] {
		t.Fatalf("with c excluded and b unhealthy picked %s, want a", in.URL)
	}
	ins[0].SetHealthy(false)
	if _, err := b.Pick("", map[*Instance]bool{ins[2]: true}); err != ErrNoInstance {
		t.Fatalf("nothing eligible: err = %v", err)
	}
}

func TestP2CPrefersTheFasterInstance(t *testing.T) {
	ins := instances(t, "http://fast:1", "http://slow:1")
	ins[0].observe(1e6) // 1 ms
	ins[1].observe(50e6)
	b := NewP2C(ins)
	for range 100 {
		if in, _ := b.Pick("", nil); in != ins[0] {
			t.Fatal("p2c picked the 50x slower instance")
		}
	}
}

func TestNewInstanceRejectsBadInput(t *testing.T) {
	for _, s := range []string{"ftp://a:1", "http://", "http://a:1;w=0", "http://a:1;w=x", "not a url"} {
		if _, err := NewInstance(s); err == nil {
			t.Errorf("NewInstance(%q) accepted", s)
		}
	}
}

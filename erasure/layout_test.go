package erasure

import (
	"strings"
	"testing"
)

func TestLayoutAccessors(t *testing.T) {
	tests := []struct {
		l                               Layout
		data, parity, shards, tolerates int
		cell                            int
		row                             int64
		str                             string
	}{
		{RS(4, 2), 4, 2, 6, 2, DefaultCellSize, 4 << 20, "RS(4,2)"},
		{RS(6, 3), 6, 3, 9, 3, DefaultCellSize, 6 << 20, "RS(6,3)"},
		{RS(1, 1), 1, 1, 2, 1, DefaultCellSize, 1 << 20, "RS(1,1)"},
		{RS(16, 16), 16, 16, 32, 16, DefaultCellSize, 16 << 20, "RS(16,16)"},
		{RS(10, 4).WithCellSize(4096), 10, 4, 14, 4, 4096, 40960, "RS(10,4)/4KiB"},
		{RS(2, 1).WithCellSize(1000), 2, 1, 3, 1, 1000, 2000, "RS(2,1)/1000B"},
		{RS(6, 3).WithCellSize(64 << 20), 6, 3, 9, 3, 64 << 20, 6 * 64 << 20, "RS(6,3)/64MiB"},
		{Replicated(3), 1, 2, 3, 2, DefaultCellSize, 1 << 20, "Replicated(3)"},
		{Replicated(1), 1, 0, 1, 0, DefaultCellSize, 1 << 20, "Replicated(1)"},
		{Replicated(2).WithCellSize(4 << 10), 1, 1, 2, 1, 4096, 4096, "Replicated(2)/4KiB"},
	}
	for _, tt := range tests {
		t.Run(tt.str, func(t *testing.T) {
			l := tt.l
			if err := l.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := l.DataShards(); got != tt.data {
				t.Errorf("DataShards = %d, want %d", got, tt.data)
			}
			if got := l.ParityShards(); got != tt.parity {
				t.Errorf("ParityShards = %d, want %d", got, tt.parity)
			}
			if got := l.Shards(); got != tt.shards {
				t.Errorf("Shards = %d, want %d", got, tt.shards)
			}
			if got := l.Tolerates(); got != tt.tolerates {
				t.Errorf("Tolerates = %d, want %d", got, tt.tolerates)
			}
			if got := l.CellSize(); got != tt.cell {
				t.Errorf("CellSize = %d, want %d", got, tt.cell)
			}
			if got := l.StripeRow(); got != tt.row {
				t.Errorf("StripeRow = %d, want %d", got, tt.row)
			}
			if got := l.String(); got != tt.str {
				t.Errorf("String = %q, want %q", got, tt.str)
			}
			back, err := ParseLayout(l.String())
			if err != nil || back != l {
				t.Errorf("ParseLayout(%q) = %v, %v; want %v", l.String(), back, err, l)
			}
		})
	}
}

func TestNamedLayouts(t *testing.T) {
	for _, tt := range []struct {
		named, built Layout
	}{
		{EC2P1, RS(2, 1)}, {EC3P2, RS(3, 2)}, {EC4P2, RS(4, 2)}, {EC6P3, RS(6, 3)},
		{EC8P3, RS(8, 3)}, {EC10P4, RS(10, 4)}, {EC12P4, RS(12, 4)},
		{Rep1, Replicated(1)}, {Rep2, Replicated(2)}, {Rep3, Replicated(3)},
	} {
		if tt.named != tt.built {
			t.Errorf("%v != %v", tt.named, tt.built)
		}
		if err := tt.named.Validate(); err != nil {
			t.Errorf("%v: %v", tt.named, err)
		}
	}
}

func TestReplicatedEquivalent(t *testing.T) {
	for _, tt := range []struct{ in, want Layout }{
		{RS(4, 2), Replicated(3)},
		{RS(10, 4).WithCellSize(4096), Replicated(5).WithCellSize(4096)},
		{Replicated(2), Replicated(2)},
	} {
		if got := tt.in.ReplicatedEquivalent(); got != tt.want {
			t.Errorf("%v.ReplicatedEquivalent() = %v, want %v", tt.in, got, tt.want)
		}
		if got := tt.in.ReplicatedEquivalent().Tolerates(); got != tt.in.Tolerates() {
			t.Errorf("%v: replicated tolerates %d, want %d", tt.in, got, tt.in.Tolerates())
		}
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		l    Layout
		want string // substring of the error
	}{
		{Layout(0), "zero Layout"},
		{Layout(7 << kindShift), "malformed"},
		{RS(0, 0), "RS(0,0): need at least 1 data shard"},
		{RS(-1, 1), "need at least 1 data shard"},
		{RS(4, 0), "RS(4,0): need at least 1 parity shard"},
		{RS(2, 3), "RS(2,3): 3 parity shards exceed the 2 data shards"},
		{RS(20, 13), "RS(20,13): 33 shards exceed the maximum of 32"},
		{RS(1<<20, 1), "shards exceed the maximum"},
		{Replicated(0), "Replicated(0): need at least 1 copy"},
		{Replicated(33), "Replicated(33): 33 copies exceed the maximum of 32"},
		{RS(4, 2).WithCellSize(0), "RS(4,2)/0B: cell size must be positive"},
		{RS(4, 2).WithCellSize(-4096), "cell size must be positive"},
		{RS(4, 2).WithCellSize(64<<20 + 1), "exceeds the maximum of 64MiB"},
		{RS(4, 2).WithCellSize(1 << 30), "exceeds the maximum of 64MiB"},
	}
	for _, tt := range tests {
		err := tt.l.Validate()
		if err == nil {
			t.Errorf("%v: Validate() = nil, want error containing %q", tt.l, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "erasure: ") {
			t.Errorf("%v: Validate() = %q, want it to contain %q", tt.l, err, tt.want)
		}
		if _, err := NewCoder(tt.l); err == nil {
			t.Errorf("NewCoder(%v) succeeded", tt.l)
		}
	}
}

func TestParseLayout(t *testing.T) {
	good := []struct {
		in   string
		want Layout
	}{
		{"RS(4,2)", RS(4, 2)},
		{" rs( 6 , 3 ) ", RS(6, 3)},
		{"Replicated(3)", Replicated(3)},
		{"REPLICATED(1)", Replicated(1)},
		{"RS(6,3)/1MiB", RS(6, 3)},
		{"RS(6,3)/4KiB", RS(6, 3).WithCellSize(4096)},
		{"RS(6,3)/4K", RS(6, 3).WithCellSize(4096)},
		{"RS(6,3) / 2M", RS(6, 3).WithCellSize(2 << 20)},
		{"RS(2,1)/1000", RS(2, 1).WithCellSize(1000)},
		{"RS(2,1)/1000B", RS(2, 1).WithCellSize(1000)},
		{"Replicated(2)/64MiB", Replicated(2).WithCellSize(64 << 20)},
	}
	for _, tt := range good {
		got, err := ParseLayout(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseLayout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ in, want string }{
		{"", "want \"RS(k,m)\""},
		{"RS", "want \"RS(k,m)\""},
		{"RS(4,2", "want \"RS(k,m)\""},
		{"RS(4)", "RS takes two arguments"},
		{"RS(4,2,1)", "RS takes two arguments"},
		{"Replicated(1,2)", "Replicated takes one argument"},
		{"XOR(4,2)", "unknown scheme \"XOR\""},
		{"RS(a,2)", "argument \"a\" is not an integer"},
		{"RS(4,2)/", "does not start with a number"},
		{"RS(4,2)/1GiB", "unknown unit \"GiB\""},
		{"RS(4,2)/65MiB", "exceeds the maximum of 64MiB"},
		{"RS(4,2)/99999999999999999999", "cell size"},
		{"RS(4,2)/0", "cell size must be positive"},
		{"RS(2,4)", "4 parity shards exceed the 2 data shards"},
		{"Replicated(0)", "need at least 1 copy"},
		{"RS(99999999999999999999,1)", "not an integer"},
	}
	for _, tt := range bad {
		l, err := ParseLayout(tt.in)
		if err == nil {
			t.Errorf("ParseLayout(%q) = %v, want error", tt.in, l)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseLayout(%q) error %q does not contain %q", tt.in, err, tt.want)
		}
	}
}

// TestInvalidLayoutArithmetic checks that invalid layouts never panic and
// behave as if they had no shards.
func TestInvalidLayoutArithmetic(t *testing.T) {
	for _, l := range []Layout{0, RS(0, 0), RS(4, 2).WithCellSize(0), Replicated(0), Layout(^uint64(0))} {
		if l.Rows(100) != 0 || l.Cells(100) != 0 || l.ShardLength(100, 0) != 0 || l.CellLength(100, 0, 0) != 0 {
			t.Errorf("%v: arithmetic not zero", l)
		}
		if p := l.Locate(5); p.Shard != -1 {
			t.Errorf("%v: Locate = %+v", l, p)
		}
		if _, err := l.Extents(100, 0, 10); err == nil {
			t.Errorf("%v: Extents succeeded", l)
		}
		if got := l.AppendCells(nil, make([]byte, 10)); len(got) != 0 {
			t.Errorf("%v: AppendCells = %d cells", l, len(got))
		}
		_ = l.String()
	}
}

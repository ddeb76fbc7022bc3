package erasure

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Layout says how one slice is stored: striped with Reed-Solomon RS(k, m)
// over k+m shards, or as n full copies, and the cell size both use.
//
// A Layout is a small comparable value (it can be a map key or a constant).
// Build one with RS or Replicated, optionally WithCellSize, and check it with
// Validate before use: the constructors never fail, so an impossible layout
// is only reported by Validate (and by NewCoder and ParseLayout, which call
// it). The integer representation is internal; persist a Layout as its String
// and read it back with ParseLayout.
//
// A replicated layout is arithmetically RS(1, n-1) whose parity is a copy:
// one data shard (shard 0) and n-1 parity shards, all holding the whole
// slice. Every stripe function below therefore works for both kinds.
type Layout uint64

// The bit fields of a Layout. k and m saturate at fieldMax in the
// constructors, so any out-of-range argument still yields an invalid Layout
// rather than wrapping around into a valid one.
const (
	cellBits  = 32
	fieldBits = 12
	fieldMax  = 1<<fieldBits - 1
	mShift    = cellBits
	kShift    = mShift + fieldBits
	kindShift = kShift + fieldBits

	kindRS         = 1
	kindReplicated = 2
)

// Limits on layouts.
const (
	// DefaultCellSize is the cell size of layouts built by RS and
	// Replicated: 1 MiB, the unit of striping and of checksumming.
	DefaultCellSize = 1 << 20
	// MaxCellSize is the largest cell size Validate accepts. Any positive
	// size up to it is valid, but cells below about 4 KiB spend more on
	// per-cell checksums and requests than they save, so they are for tests.
	MaxCellSize = 64 << 20
	// MaxShards bounds k+m (or n): a stripe's shards must land on distinct
	// chunkservers, and the coding matrices stay small.
	MaxShards = 32
)

// makeLayout packs fields that the caller has already range-limited.
func makeLayout(kind, k, m uint64, cell uint64) Layout {
	return Layout(kind<<kindShift | k<<kShift | m<<mShift | cell)
}

// Named layouts for common schemes (after cubefs codemode), all with
// DefaultCellSize. ECkPm is RS(k, m); RepN is Replicated(n).
const (
	EC2P1  = Layout(kindRS<<kindShift | 2<<kShift | 1<<mShift | DefaultCellSize)
	EC3P2  = Layout(kindRS<<kindShift | 3<<kShift | 2<<mShift | DefaultCellSize)
	EC4P2  = Layout(kindRS<<kindShift | 4<<kShift | 2<<mShift | DefaultCellSize)
	EC6P3  = Layout(kindRS<<kindShift | 6<<kShift | 3<<mShift | DefaultCellSize)
	EC8P3  = Layout(kindRS<<kindShift | 8<<kShift | 3<<mShift | DefaultCellSize)
	EC10P4 = Layout(kindRS<<kindShift | 10<<kShift | 4<<mShift | DefaultCellSize)
	EC12P4 = Layout(kindRS<<kindShift | 12<<kShift | 4<<mShift | DefaultCellSize)
	Rep1   = Layout(kindReplicated<<kindShift | 1<<kShift | DefaultCellSize)
	Rep2   = Layout(kindReplicated<<kindShift | 2<<kShift | DefaultCellSize)
	Rep3   = Layout(kindReplicated<<kindShift | 3<<kShift | DefaultCellSize)
)

// saturate maps an int argument into a field; negative numbers become 0
// and huge ones fieldMax, both of which Validate rejects.
func saturate(v int) uint64 {
	switch {
	case v < 0:
		return 0
	case v > fieldMax:
		return fieldMax
	}
	return uint64(v)
}

// RS returns the Reed-Solomon layout with k data and m parity shards and
// DefaultCellSize. It never fails; Validate reports arguments outside
// 1 ≤ m ≤ k, k+m ≤ MaxShards.
func RS(k, m int) Layout {
	return makeLayout(kindRS, saturate(k), saturate(m), DefaultCellSize)
}

// Replicated returns the layout of n full copies with DefaultCellSize. It
// never fails; Validate reports n outside 1 ≤ n ≤ MaxShards.
func Replicated(n int) Layout {
	return makeLayout(kindReplicated, saturate(n), 0, DefaultCellSize)
}

// WithCellSize returns l with cells of n bytes. Sizes outside
// 1..MaxCellSize are kept as an invalid Layout for Validate to report.
func (l Layout) WithCellSize(n int) Layout {
	var cell uint64
	switch {
	case n <= 0:
		cell = 0
	case uint64(n) > 1<<cellBits-1:
		cell = 1<<cellBits - 1
	default:
		cell = uint64(n)
	}
	return l&^(1<<cellBits-1) | Layout(cell)
}

func (l Layout) kind() uint64 { return uint64(l) >> kindShift }
func (l Layout) fieldK() int  { return int(uint64(l) >> kShift & fieldMax) }
func (l Layout) fieldM() int  { return int(uint64(l) >> mShift & fieldMax) }

// IsReplicated reports whether l is a replicated layout (valid or not).
func (l Layout) IsReplicated() bool { return l.kind() == kindReplicated }

// IsRS reports whether l is a Reed-Solomon layout (valid or not).
func (l Layout) IsRS() bool { return l.kind() == kindRS }

// DataShards is k for RS(k, m) and 1 for a replicated layout (the copy
// that the stripe arithmetic reads by default).
func (l Layout) DataShards() int {
	if l.IsReplicated() {
		return 1
	}
	return l.fieldK()
}

// ParityShards is m for RS(k, m) and n-1 for Replicated(n): the shards
// computed from the data shards.
func (l Layout) ParityShards() int {
	if l.IsReplicated() {
		return max(l.fieldK()-1, 0)
	}
	return l.fieldM()
}

// Shards is the number of shards a slice is stored as: k+m, or n. Shards
// 0..DataShards()-1 are data shards, the rest parity (or copies).
func (l Layout) Shards() int {
	if l.IsReplicated() {
		return l.fieldK()
	}
	return l.fieldK() + l.fieldM()
}

// Tolerates is how many shards of a slice can be lost with its bytes still
// recoverable: m, or n-1.
func (l Layout) Tolerates() int { return l.ParityShards() }

// CellSize is the size in bytes of every cell but possibly a shard's last.
func (l Layout) CellSize() int { return int(uint64(l) & (1<<cellBits - 1)) }

// StripeRow is the number of slice bytes one full stripe row holds: k cells,
// k*CellSize(). For a replicated layout a row is one cell, because each copy
// is checksummed and read cell by cell like a data shard of RS(1, n-1).
func (l Layout) StripeRow() int64 { return int64(l.DataShards()) * int64(l.CellSize()) }

// ReplicatedEquivalent returns Replicated(m+1) with l's cell size: the
// layout with the same fault tolerance that DESIGN.md prescribes for slices
// shorter than one stripe row. A replicated l is returned unchanged.
func (l Layout) ReplicatedEquivalent() Layout {
	if l.IsReplicated() {
		return l
	}
	return makeLayout(kindReplicated, saturate(l.fieldM()+1), 0, uint64(l.CellSize()))
}

// Validate returns nil if l can be used, or an error naming the layout and
// the rule it breaks. Every other function treats an invalid Layout as
// having no shards rather than failing loudly, so check Validate (or use
// NewCoder or ParseLayout, which do) where layouts enter the program.
func (l Layout) Validate() error {
	var problem string
	k, m := l.fieldK(), l.fieldM()
	switch l.kind() {
	case kindRS:
		switch {
		case k < 1:
			problem = "need at least 1 data shard"
		case m < 1:
			problem = "need at least 1 parity shard (use Replicated(1) for no redundancy)"
		case m > k:
			problem = fmt.Sprintf("%d parity shards exceed the %d data shards", m, k)
		case k+m > MaxShards:
			problem = fmt.Sprintf("%d shards exceed the maximum of %d", k+m, MaxShards)
		}
	case kindReplicated:
		switch {
		case k < 1:
			problem = "need at least 1 copy"
		case k > MaxShards:
			problem = fmt.Sprintf("%d copies exceed the maximum of %d", k, MaxShards)
		}
	default:
		if l == 0 {
			return errors.New("erasure: zero Layout; build one with RS or Replicated")
		}
		return fmt.Errorf("erasure: malformed Layout %#x", uint64(l))
	}
	if problem == "" {
		switch c := l.CellSize(); {
		case c <= 0:
			problem = "cell size must be positive"
		case c > MaxCellSize:
			problem = fmt.Sprintf("cell size %d exceeds the maximum of %s", c, formatSize(MaxCellSize))
		}
	}
	if problem != "" {
		return fmt.Errorf("erasure: invalid layout %s: %s", l, problem)
	}
	return nil
}

// String formats l as ParseLayout reads it: "RS(4,2)" or "Replicated(3)",
// followed by "/" and the cell size when it is not DefaultCellSize, e.g.
// "RS(6,3)/4KiB" or "RS(2,1)/1000B". An unknown kind formats as
// "Layout(0x…)".
func (l Layout) String() string {
	var s string
	switch l.kind() {
	case kindRS:
		s = "RS(" + strconv.Itoa(l.fieldK()) + "," + strconv.Itoa(l.fieldM()) + ")"
	case kindReplicated:
		s = "Replicated(" + strconv.Itoa(l.fieldK()) + ")"
	default:
		return fmt.Sprintf("Layout(%#x)", uint64(l))
	}
	if c := l.CellSize(); c != DefaultCellSize {
		s += "/" + formatSize(c)
	}
	return s
}

// formatSize writes n in the largest binary unit that divides it exactly.
func formatSize(n int) string {
	switch {
	case n > 0 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n > 0 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// ParseLayout reads a layout in String's format and validates it.
//
// Accepted: "RS(k,m)" and "Replicated(n)" (names case-insensitive, blanks
// around numbers allowed), optionally followed by "/SIZE" for the cell
// size, where SIZE is a decimal number with an optional unit B, KiB or MiB
// (also K or M, meaning the same binary units): "RS(6,3)/1MiB",
// "Replicated(3)/4KiB", "RS(2,1)/1000". Without a size the cell size is
// DefaultCellSize.
func ParseLayout(s string) (Layout, error) {
	bad := func(why string) (Layout, error) {
		return 0, fmt.Errorf("erasure: parse layout %q: %s", s, why)
	}
	spec, size, hasSize := strings.Cut(strings.TrimSpace(s), "/")
	spec = strings.TrimSpace(spec)
	open := strings.IndexByte(spec, '(')
	if open < 0 || !strings.HasSuffix(spec, ")") {
		return bad(`want "RS(k,m)" or "Replicated(n)", optionally followed by "/cellsize"`)
	}
	name := strings.TrimSpace(spec[:open])
	args := strings.Split(spec[open+1:len(spec)-1], ",")
	nums := make([]int, len(args))
	for i, a := range args {
		n, err := strconv.Atoi(strings.TrimSpace(a))
		if err != nil {
			return bad(fmt.Sprintf("argument %q is not an integer", strings.TrimSpace(a)))
		}
		nums[i] = n
	}
	var l Layout
	switch {
	case strings.EqualFold(name, "RS"):
		if len(nums) != 2 {
			return bad("RS takes two arguments, k and m")
		}
		l = RS(nums[0], nums[1])
	case strings.EqualFold(name, "Replicated"):
		if len(nums) != 1 {
			return bad("Replicated takes one argument, the number of copies")
		}
		l = Replicated(nums[0])
	default:
		return bad(fmt.Sprintf("unknown scheme %q; want RS or Replicated", name))
	}
	if hasSize {
		n, err := parseSize(size)
		if err != nil {
			return bad(err.Error())
		}
		l = l.WithCellSize(n)
	}
	if err := l.Validate(); err != nil {
		return 0, fmt.Errorf("erasure: parse layout %q: %w", s, err)
	}
	return l, nil
}

// parseSize reads "4096", "4096B", "4KiB", "4K", "1MiB" or "1M".
func parseSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if digits == 0 {
		return 0, fmt.Errorf("cell size %q does not start with a number", s)
	}
	n, err := strconv.Atoi(s[:digits])
	if err != nil {
		return 0, fmt.Errorf("cell size %q: %v", s, err)
	}
	var shift uint
	switch unit := strings.TrimSpace(s[digits:]); strings.ToLower(unit) {
	case "", "b":
	case "k", "kib":
		shift = 10
	case "m", "mib":
		shift = 20
	default:
		return 0, fmt.Errorf("cell size %q: unknown unit %q; want B, KiB or MiB", s, unit)
	}
	if n > MaxCellSize>>shift {
		return 0, fmt.Errorf("cell size %q exceeds the maximum of %s", s, formatSize(MaxCellSize))
	}
	return n << shift, nil
}

package upload

import "sync"

// minBuffer is the smallest buffer a writer starts with. Buffers grow
// fourfold up to the part size, so a small layer never holds a whole
// part's worth of memory.
const minBuffer = 256 << 10

// bufferPool keeps part buffers in a few capacities, from minBuffer up to
// the part size.
type bufferPool struct {
	sizes []int
	pools []sync.Pool
}

func newBufferPool(partSize int64) *bufferPool {
	p := &bufferPool{}
	for size := minBuffer; int64(size) < partSize; size *= 4 {
		p.sizes = append(p.sizes, size)
	}
	p.sizes = append(p.sizes, int(partSize))
	p.pools = make([]sync.Pool, len(p.sizes))
	return p
}

// get returns an empty buffer of the smallest capacity that holds n
// bytes, or of the largest capacity.
func (p *bufferPool) get(n int) *[]byte {
	i := 0
	for i < len(p.sizes)-1 && p.sizes[i] < n {
		i++
	}
	if b, ok := p.pools[i].Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, p.sizes[i])
	return &b
}

// put returns b to the pool of its capacity; a buffer of another
// capacity is left to the garbage collector.
func (p *bufferPool) put(b *[]byte) {
	for i, size := range p.sizes {
		if cap(*b) == size {
			*b = (*b)[:0]
			p.pools[i].Put(b)
			return
		}
	}
}

// largest is the capacity of the largest buffers.
func (p *bufferPool) largest() int { return p.sizes[len(p.sizes)-1] }

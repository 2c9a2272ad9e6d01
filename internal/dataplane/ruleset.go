package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers. nf_tables addresses 32-bit registers 8..23 for concatenations;
// register 1 (128 bits) is the same storage as 32-bit registers 8..11.
const (
	reg1    = 1
	reg32v4 = 9  // second field after an IPv4 address
	reg32v6 = 12 // second field after an IPv6 address
)

// ipsDstNAT is conntrack's IPS_DST_NAT status bit: the connection's
// destination was translated.
const ipsDstNAT = 1 << 5

// family bundles what differs between IPv4 and IPv6.
type family struct {
	nfproto  byte
	natFam   uint32
	addrOff  uint32 // offset of the destination address in the network header
	addrLen  uint32
	addrType nftables.SetDatatype
	suffix   string
}

var families = [2]family{
	{nfproto: unix.NFPROTO_IPV4, natFam: unix.NFPROTO_IPV4, addrOff: 16, addrLen: 4, addrType: nftables.TypeIPAddr, suffix: "4"},
	{nfproto: unix.NFPROTO_IPV6, natFam: unix.NFPROTO_IPV6, addrOff: 24, addrLen: 16, addrType: nftables.TypeIP6Addr, suffix: "6"},
}

func famIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// secondReg is the 32-bit register right after an address in a
// concatenation.
func (f family) secondReg() uint32 {
	if f.addrLen == 4 {
		return reg32v4
	}
	return reg32v6
}

// Names of the table's chains and sets. The sets get the family suffix
// "4" or "6"; an endpoint map also the endpoint count ("endpoints4-3").
const (
	chainServices    = "services"
	chainDNAT        = "dnat" // + family suffix
	chainNoEndpoints = "no-endpoints"
	chainPostrouting = "postrouting"
	setServices      = "services"
	setEndpoints     = "endpoints"
	setMasquerade    = "masquerade"
	setNoEndpoints   = "no-endpoints"
)

// fixedObjects is how many chains and sets the table holds besides the
// endpoint maps: the chains prerouting, output, services, dnat4, dnat6,
// no-endpoints, filter-prerouting, filter-output and postrouting, and the
// sets services, masquerade and no-endpoints of each family. The kernel
// reports chains plus sets as the table's use count.
const fixedObjects = 9 + 3*len(families)

func endpointMap(fi, n int) string {
	return setEndpoints + families[fi].suffix + "-" + strconv.Itoa(n)
}

// key builds a concatenated "address . l4proto . port" set key; every
// field is padded to a multiple of four bytes as the kernel expects.
func key(addr []byte, proto byte, port uint16) []byte {
	k := make([]byte, 0, len(addr)+12)
	k = append(k, addr...)
	k = append(k, proto, 0, 0, 0)
	k = binary.BigEndian.AppendUint16(k, port)
	return append(k, 0, 0)
}

// maxComment bounds the Key in an element's comment (nft(8) allows 128
// bytes).
const maxComment = 128

func comment(k string) string {
	if len(k) <= maxComment {
		return k
	}
	k = k[:maxComment]
	for len(k) > 0 && !utf8.ValidString(k) {
		k = k[:len(k)-1]
	}
	return k
}

// serviceElement is r's element of the services or no-endpoints set,
// with the Key as its comment for people reading `nft list ruleset`.
func (r *record) serviceElement() nftables.SetElement {
	return nftables.SetElement{Key: key(r.id.vip.AsSlice(), r.id.proto, r.id.port), Comment: comment(r.key)}
}

// endpointKey is the key of r's bucket i in its endpoint map: the service
// key and i as numgen leaves it in a register (host byte order).
func (r *record) endpointKey(i int) []byte {
	return binary.NativeEndian.AppendUint32(key(r.id.vip.AsSlice(), r.id.proto, r.id.port), uint32(i))
}

// endpointElement maps r's bucket i to its endpoint i: address, port.
func (r *record) endpointElement(i int) nftables.SetElement {
	ep := r.eps[i]
	val := binary.BigEndian.AppendUint16(ep.Addr().AsSlice(), ep.Port())
	return nftables.SetElement{Key: r.endpointKey(i), Val: append(val, 0, 0)}
}

// element is k's element of a masquerade set: the endpoint's "daddr .
// l4proto . dport" and the service port.
func (k masqKey) element() nftables.SetElement {
	b := binary.BigEndian.AppendUint16(key(k.ep.Addr().AsSlice(), k.proto, k.ep.Port()), k.vport)
	return nftables.SetElement{Key: append(b, 0, 0)}
}

// elemChunk is how many set elements go into one netlink message.
const elemChunk = 128

// batch is one netlink batch being queued, with its message count.
type batch struct {
	c   *nftables.Conn
	tbl *nftables.Table
	n   uint64
	err error
}

func (t *Table) newBatch(c *nftables.Conn) *batch {
	return &batch{c: c, tbl: &nftables.Table{Family: nftables.TableFamilyINet, Name: t.name}}
}

func (b *batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *batch) addChain(ch *nftables.Chain) *nftables.Chain {
	b.n++
	ch.Table = b.tbl
	return b.c.AddChain(ch)
}

func (b *batch) addRule(ch *nftables.Chain, exprs ...expr.Any) {
	b.n++
	b.c.AddRule(&nftables.Rule{Table: b.tbl, Chain: ch, Exprs: exprs})
}

func (b *batch) addSet(s *nftables.Set) {
	b.n++
	if err := b.c.AddSet(s, nil); err != nil {
		b.fail(fmt.Errorf("set %s: %w", s.Name, err))
	}
}

// set names a set of the table, for element changes.
func (b *batch) set(name string) *nftables.Set {
	return &nftables.Set{Table: b.tbl, Name: name}
}

// elements queues adding (or deleting) elems to set, in chunks: an
// element list is one netlink attribute, whose length field has 16 bits,
// so chunks stay well below 64 KiB (an element is under 300 bytes).
func (b *batch) elements(set *nftables.Set, elems []nftables.SetElement, del bool) {
	for chunk := range slices.Chunk(elems, elemChunk) {
		b.n++
		var err error
		if del {
			err = b.c.SetDeleteElements(set, chunk)
		} else {
			err = b.c.SetAddElements(set, chunk)
		}
		if err != nil {
			b.fail(fmt.Errorf("set %s: %w", set.Name, err))
		}
	}
}

// Sets of the table, for creating them.

func servicesSet(tbl *nftables.Table, fi int) *nftables.Set {
	f := families[fi]
	return &nftables.Set{
		Table: tbl, Name: setServices + f.suffix, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
	}
}

func noEndpointsSet(tbl *nftables.Table, fi int) *nftables.Set {
	f := families[fi]
	return &nftables.Set{
		Table: tbl, Name: setNoEndpoints + f.suffix, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService),
	}
}

func masqueradeSet(tbl *nftables.Table, fi int) *nftables.Set {
	f := families[fi]
	return &nftables.Set{
		Table: tbl, Name: setMasquerade + f.suffix, Concatenation: true,
		KeyType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeInetService),
	}
}

// endpointsMap maps "daddr . l4proto . dport . bucket" to "address .
// port" for the services of family fi with n endpoints. The bucket's type
// is mark only so that nft(8) can print it: a 32-bit number in host byte
// order, as numgen writes it.
func endpointsMap(tbl *nftables.Table, fi, n int) *nftables.Set {
	f := families[fi]
	return &nftables.Set{
		Table: tbl, Name: endpointMap(fi, n), IsMap: true, Concatenation: true,
		KeyType:  nftables.MustConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark),
		DataType: nftables.MustConcatSetType(f.addrType, nftables.TypeInetService),
	}
}

// dnatRule is the rule of chain dnat4/dnat6 for services with n
// endpoints: it picks bucket "numgen random mod n" of the packet's service
// in the endpoint map for n and DNATs to that endpoint. A packet of a
// service with another number of endpoints finds no element and goes on
// to the next rule.
func (b *batch) dnatRule(ch *nftables.Chain, fi, n int) {
	f := families[fi]
	b.addRule(ch, append(matchDest(f),
		&expr.Numgen{Register: f.secondReg() + 2, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, SetName: endpointMap(fi, n), DestRegister: reg1, IsDestRegSet: true},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFam, RegAddrMin: reg1, RegProtoMin: f.secondReg(), Specified: true},
	)...)
}

// replaceAll queues the batch that replaces Herald's table with one
// holding recs (in Key order).
func (b *batch) replaceAll(recs []*record) {
	// add + delete + add: the delete cannot fail for a missing table, and
	// the whole batch is one transaction.
	b.c.AddTable(b.tbl)
	b.c.DelTable(b.tbl)
	b.c.AddTable(b.tbl)
	b.n += 3

	var svcElems, masqElems, noepElems [2][]nftables.SetElement
	epElems := [2]map[int][]nftables.SetElement{{}, {}}
	masqSeen := map[masqKey]bool{}
	for _, r := range recs {
		fi := r.id.fam()
		if len(r.eps) == 0 {
			noepElems[fi] = append(noepElems[fi], r.serviceElement())
			continue
		}
		svcElems[fi] = append(svcElems[fi], r.serviceElement())
		for i := range r.eps {
			epElems[fi][len(r.eps)] = append(epElems[fi][len(r.eps)], r.endpointElement(i))
		}
		// Services on different VIPs may share an endpoint and a port:
		// one element serves them all.
		r.masqueraded(func(k masqKey) {
			if !masqSeen[k] {
				masqSeen[k] = true
				masqElems[fi] = append(masqElems[fi], k.element())
			}
		})
	}
	for fi := range families {
		for _, s := range []struct {
			set   *nftables.Set
			elems []nftables.SetElement
		}{
			{servicesSet(b.tbl, fi), svcElems[fi]},
			{masqueradeSet(b.tbl, fi), masqElems[fi]},
			{noEndpointsSet(b.tbl, fi), noepElems[fi]},
		} {
			b.addSet(s.set)
			b.elements(s.set, s.elems, false)
		}
		for _, n := range sortedCounts(epElems[fi]) {
			m := endpointsMap(b.tbl, fi, n)
			b.addSet(m)
			b.elements(m, epElems[fi][n], false)
		}
	}

	// dnat4, dnat6: one rule per number of endpoints in use.
	var dnat [2]*nftables.Chain
	for fi, f := range families {
		dnat[fi] = b.addChain(&nftables.Chain{Name: chainDNAT + f.suffix})
		for _, n := range sortedCounts(epElems[fi]) {
			b.dnatRule(dnat[fi], fi, n)
		}
	}
	// services: packets to a service with endpoints go on to the DNAT
	// rules of their family; all others return at once.
	services := b.addChain(&nftables.Chain{Name: chainServices})
	for fi, f := range families {
		b.addRule(services, append(matchDest(f),
			&expr.Lookup{SourceRegister: reg1, SetName: setServices + f.suffix},
			&expr.Verdict{Kind: expr.VerdictGoto, Chain: dnat[fi].Name},
		)...)
	}
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"prerouting", nftables.ChainHookPrerouting}, {"output", nftables.ChainHookOutput}} {
		ch := b.addChain(&nftables.Chain{Name: h.name, Type: nftables.ChainTypeNAT, Hooknum: h.hook, Priority: nftables.ChainPriorityNATDest})
		b.addRule(ch, &expr.Verdict{Kind: expr.VerdictJump, Chain: services.Name})
	}

	// no-endpoints: reject early, in filter chains, so no NAT is set up.
	noep := b.addChain(&nftables.Chain{Name: chainNoEndpoints})
	for _, f := range families {
		b.addRule(noep, append(matchDest(f),
			&expr.Lookup{SourceRegister: reg1, SetName: setNoEndpoints + f.suffix},
			&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
		)...)
	}
	filterPrio := nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 10)
	for _, h := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"filter-prerouting", nftables.ChainHookPrerouting}, {"filter-output", nftables.ChainHookOutput}} {
		ch := b.addChain(&nftables.Chain{Name: h.name, Type: nftables.ChainTypeFilter, Hooknum: h.hook, Priority: filterPrio})
		b.addRule(ch, &expr.Verdict{Kind: expr.VerdictJump, Chain: noep.Name})
	}

	// postrouting: masquerade DNATed connections to Cluster endpoints.
	post := b.addChain(&nftables.Chain{Name: chainPostrouting, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, f := range families {
		exprs := []expr.Any{
			&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
				Mask: binary.NativeEndian.AppendUint32(nil, ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{0, 0, 0, 0}},
		}
		exprs = append(exprs, matchDest(f)...)
		exprs = append(exprs,
			&expr.Ct{Register: f.secondReg() + 2, Key: expr.CtKeyPROTODST, Direction: 0},
			&expr.Lookup{SourceRegister: reg1, SetName: setMasquerade + f.suffix},
			&expr.Masq{},
		)
		b.addRule(post, exprs...)
	}
}

func sortedCounts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// update queues the batch that applies changes (with the masquerade
// elements and endpoint maps they add and delete) to the table as the
// state describes it. Rules that use a map that goes are flushed first
// and refilled last; elements are deleted before any are added, so that
// a key freed by one service can be taken by another in the same batch.
func (b *batch) update(changes []change, masq masqChanges, counts countChanges) {
	var svcDel, noepDel, svcAdd, noepAdd, masqDel, masqAdd [2][]nftables.SetElement
	var epDel, epAdd [2]map[int][]nftables.SetElement
	for fi := range families {
		epDel[fi], epAdd[fi] = map[int][]nftables.SetElement{}, map[int][]nftables.SetElement{}
	}
	for _, c := range changes {
		o, n := c.old, c.new
		oHas, nHas := o != nil && len(o.eps) > 0, n != nil && len(n.eps) > 0
		sameID := o != nil && n != nil && o.id == n.id
		// The services or no-endpoints element stays while the service
		// keeps its VIP:port/protocol and stays on the same side.
		if o != nil && !(sameID && oHas == nHas) {
			if oHas {
				svcDel[o.id.fam()] = append(svcDel[o.id.fam()], o.serviceElement())
			} else {
				noepDel[o.id.fam()] = append(noepDel[o.id.fam()], o.serviceElement())
			}
		}
		if n != nil && !(sameID && oHas == nHas) {
			if nHas {
				svcAdd[n.id.fam()] = append(svcAdd[n.id.fam()], n.serviceElement())
			} else {
				noepAdd[n.id.fam()] = append(noepAdd[n.id.fam()], n.serviceElement())
			}
		}
		// Endpoint map elements: bucket by bucket while the service
		// keeps its key and its number of endpoints, else all of them.
		if oHas && nHas && sameID && len(o.eps) == len(n.eps) {
			fi, k := n.id.fam(), len(n.eps)
			for i := range n.eps {
				if o.eps[i] != n.eps[i] {
					epDel[fi][k] = append(epDel[fi][k], nftables.SetElement{Key: o.endpointKey(i)})
					epAdd[fi][k] = append(epAdd[fi][k], n.endpointElement(i))
				}
			}
			continue
		}
		if oHas {
			fi, k := o.id.fam(), len(o.eps)
			if !slices.Contains(counts.removed[fi], k) { // a map that goes takes its elements along
				for i := range o.eps {
					epDel[fi][k] = append(epDel[fi][k], nftables.SetElement{Key: o.endpointKey(i)})
				}
			}
		}
		if nHas {
			fi, k := n.id.fam(), len(n.eps)
			for i := range n.eps {
				epAdd[fi][k] = append(epAdd[fi][k], n.endpointElement(i))
			}
		}
	}
	for _, k := range masq.del {
		fi := famIndex(k.ep.Addr())
		masqDel[fi] = append(masqDel[fi], k.element())
	}
	for _, k := range masq.add {
		fi := famIndex(k.ep.Addr())
		masqAdd[fi] = append(masqAdd[fi], k.element())
	}

	for fi, f := range families {
		if counts.rules[fi] {
			b.n++
			b.c.FlushChain(&nftables.Chain{Table: b.tbl, Name: chainDNAT + f.suffix})
		}
	}
	for fi, f := range families {
		b.elements(b.set(setServices+f.suffix), svcDel[fi], true)
		b.elements(b.set(setNoEndpoints+f.suffix), noepDel[fi], true)
		b.elements(b.set(setMasquerade+f.suffix), masqDel[fi], true)
		for _, k := range sortedCounts(epDel[fi]) {
			b.elements(b.set(endpointMap(fi, k)), epDel[fi][k], true)
		}
		for _, k := range counts.removed[fi] {
			b.n++
			b.c.DelSet(b.set(endpointMap(fi, k)))
		}
	}
	for fi, f := range families {
		for _, k := range counts.added[fi] {
			b.addSet(endpointsMap(b.tbl, fi, k))
		}
		for _, k := range sortedCounts(epAdd[fi]) {
			b.elements(b.set(endpointMap(fi, k)), epAdd[fi][k], false)
		}
		b.elements(b.set(setServices+f.suffix), svcAdd[fi], false)
		b.elements(b.set(setNoEndpoints+f.suffix), noepAdd[fi], false)
		b.elements(b.set(setMasquerade+f.suffix), masqAdd[fi], false)
		if counts.rules[fi] {
			ch := &nftables.Chain{Table: b.tbl, Name: chainDNAT + f.suffix}
			for _, k := range counts.after[fi] {
				b.dnatRule(ch, fi, k)
			}
		}
	}
}

// matchDest loads "daddr . l4proto . th dport" of family f into the
// registers starting at reg1, after checking the packet is of family f
// (an inet table sees both).
func matchDest(f family) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.addrOff, Len: f.addrLen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.secondReg()},
		&expr.Payload{DestRegister: f.secondReg() + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
}

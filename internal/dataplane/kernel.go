package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Attributes of an nf_tables table that golang.org/x/sys/unix does not
// name (linux/netfilter/nf_tables.h).
const nftaTableHandle = 4

// query asks the kernel for Herald's table: its handle (a per-namespace
// counter the kernel assigns when it creates a table, so a table deleted
// and created again has a new one) and its use count (its chains, sets,
// objects and flowtables). One netlink round trip.
func (t *Table) query() (handle uint64, use uint32, found bool, err error) {
	if _, err := t.conn(); err != nil {
		return 0, 0, false, err
	}
	name, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(t.name + "\x00")}})
	if err != nil {
		return 0, 0, false, err
	}
	t.stats.RoundTrips++
	msgs, err := t.nl.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETTABLE),
			Flags: netlink.Request,
		},
		// struct nfgenmsg: family, version, resource id
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, name...),
	})
	if errors.Is(err, unix.ENOENT) {
		return 0, 0, false, nil
	}
	if err != nil {
		t.dropConn()
		return 0, 0, false, fmt.Errorf("get table inet %s: %w", t.name, err)
	}
	if len(msgs) != 1 || len(msgs[0].Data) < 4 {
		t.dropConn()
		return 0, 0, false, fmt.Errorf("get table inet %s: %d answers", t.name, len(msgs))
	}
	ad, err := netlink.NewAttributeDecoder(msgs[0].Data[4:])
	if err != nil {
		return 0, 0, false, fmt.Errorf("get table inet %s: %w", t.name, err)
	}
	ad.ByteOrder = binary.BigEndian
	var gotHandle bool
	for ad.Next() {
		switch ad.Type() {
		case nftaTableHandle:
			handle, gotHandle = ad.Uint64(), true
		case unix.NFTA_TABLE_USE:
			use = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return 0, 0, false, fmt.Errorf("get table inet %s: %w", t.name, err)
	}
	if !gotHandle {
		return 0, 0, false, fmt.Errorf("get table inet %s: no handle in the answer", t.name)
	}
	return handle, use, true, nil
}

// intact reports why the kernel's table is not the one the Table last
// left, or "" when it is, as far as one query can tell: the same table
// (handle) with as many chains and sets as the Table made.
func (t *Table) intact() string {
	h, use, found, err := t.query()
	switch {
	case err != nil:
		return err.Error()
	case !found:
		return "the table is gone"
	case h != t.handle:
		return fmt.Sprintf("the table was created anew (handle %d, was %d)", h, t.handle)
	case int(use) != fixedObjects+t.st.maps():
		return fmt.Sprintf("the table holds %d chains and sets, want %d", use, fixedObjects+t.st.maps())
	}
	return ""
}
